"""``digit-scenes``: the built-in dataset, generated on first use (no data, no internet).

Small colour scenes with 1-4 objects from 20 categories (10 handwritten digits from
scikit-learn's bundled digits, 10 drawn shapes; see :mod:`.scenes`), with co-occurrence
structure and imbalanced class frequencies. It is materialised once, in a real on-disk format,
and read back through an ordinary loader like any other dataset::

    <dir>/annotations/instances_train.json   COCO style: images, categories, annotations
    <dir>/annotations/instances_test.json
    <dir>/images/train/000000.png ...
    <dir>/images/test/000000.png ...
    <dir>/DONE.json                           options, generator version, sha256 of every file

``<dir>`` is ``--data-root`` when given, else ``$MLRPL_BENCH_CACHE`` (default
``~/.cache/mlrpl-bench``) ``/datasets/digit-scenes-<hash of the options>/``. Generation writes
into a temporary directory beside ``<dir>`` and renames it into place, so a crash or a second
process generating at the same time never leaves a half-written dataset behind.

Sizes (defaults: 1200 train / 600 test images of 32 px, ~8 MB) were chosen for the CPU
budget of a full ``mlrpl-bench run`` sweep with ``small-cnn``: SmallCNN + linear head trains at
~790 images/s at 32 px (vs ~430 at 48 px, ~270 at 64 px) on 2 otherwise idle cores, and the
PIL train transform costs ~1-1.5 ms per image. Generation takes a few seconds on an idle
machine (18 s measured with the 2 cores ~5x oversubscribed). For tiny fixtures without disk,
use :func:`mlrpl_bench.data.scenes.generate_scene_images`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from ..errors import BenchError
from ..hookspecs import hookimpl
from ..schema import SchemaError, read_json_file
from . import scenes
from .base import SPLITS, Dataset, DatasetSplit

MANIFEST = "DONE.json"
#: The ``test_draw`` of the public test split (anyone can regenerate it: for development).
PUBLIC_DRAW = "public"
MANIFEST_FORMAT = 1
CACHE_ENV = "MLRPL_BENCH_CACHE"
_TMP_MARK = ".tmp-"
#: A temporary directory of a process on another host (or whose pid we cannot check) is
#: considered abandoned after this many seconds.
STALE_TMP_SECONDS = 6 * 3600


def default_cache_root() -> Path:
    """``$MLRPL_BENCH_CACHE`` or ``~/.cache/mlrpl-bench``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mlrpl-bench"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def _coco_json(split: str, layouts: list[scenes.SceneLayout], image_size: int) -> dict[str, Any]:
    images, annotations = [], []
    for i, layout in enumerate(layouts):
        images.append({"id": i + 1, "file_name": f"{i:06d}.png", "width": image_size, "height": image_size,
                       "scene": layout.scene})
        for obj in layout.objects:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": obj.category + 1,
                                "bbox": obj.bbox, "area": obj.size * obj.size, "iscrowd": 0})
    categories = [{"id": c + 1, "name": name, "supercategory": "digit" if c < 10 else "shape"}
                  for c, name in enumerate(scenes.CLASS_NAMES)]
    return {"info": {"description": f"mlrpl-bench digit-scenes ({split})",
                     "generator_version": scenes.GENERATOR_VERSION},
            "images": images, "annotations": annotations, "categories": categories}


def write_dataset(directory: Path, *, seed: int, sizes: dict[str, int], image_size: int,
                  test_seed: int | None = None, test_draw: str | None = None,
                  difficulty: str = scenes.STANDARD) -> None:
    """Generate the whole dataset into ``directory`` (which must not exist yet), manifest last.

    :param difficulty: a level of :data:`~.scenes.DIFFICULTIES`; a level other than ``standard``
        is named in the manifest's options (``standard`` is not, so its manifest is unchanged).
    :param test_seed: draw the test split from this seed instead of ``seed`` (a private draw,
        see :func:`private_draw`); the manifest names it by ``test_draw`` only, never the seed.
    """
    from PIL import Image

    knobs = scenes.difficulty_of(difficulty)
    (directory / "annotations").mkdir(parents=True)
    files: dict[str, str] = {}
    for split in SPLITS:
        img_dir = directory / "images" / split
        img_dir.mkdir(parents=True)
        split_seed = test_seed if split == "test" and test_seed is not None else seed
        layouts = scenes.sample_layouts(split_seed, split, sizes[split], image_size, knobs)
        for i, layout in enumerate(layouts):
            pixels = scenes.render_layout(layout, image_size, scenes.render_rng(split_seed, split, i), knobs)
            path = img_dir / f"{i:06d}.png"
            # PNG with fixed settings and no metadata: the same pixels give the same bytes.
            Image.fromarray(pixels).save(path, format="PNG", compress_level=6)
            files[f"images/{split}/{path.name}"] = _sha256_file(path)
        ann = directory / "annotations" / f"instances_{split}.json"
        ann.write_text(json.dumps(_coco_json(split, layouts, image_size), separators=(",", ":")))
        files[f"annotations/{ann.name}"] = _sha256_file(ann)
    manifest = {"format": MANIFEST_FORMAT, "dataset": DigitScenes.name,
                "generator_version": scenes.GENERATOR_VERSION,
                "options": {"seed": seed, "train_size": sizes["train"], "test_size": sizes["test"],
                            "image_size": image_size, **difficulty_option(difficulty),
                            **({"test_draw": test_draw} if test_draw else {})},
                "files": dict(sorted(files.items()))}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))


def difficulty_option(difficulty: str) -> dict[str, str]:
    """The ``difficulty`` entries of a generated dataset's options: empty for ``standard``, so that
    the default's manifest, cache key and split fingerprints are those of every earlier run.

    A harder level adds its name and ``difficulty_knobs``, 12 hex digits of the sha256 of its
    knobs (:func:`~.scenes.difficulty_digest`): the split fingerprint, which keys the frozen
    feature cache, covers options and labels but not pixels, so a level whose knobs change must
    not meet the features of its earlier drawings.
    """
    knobs = scenes.difficulty_of(difficulty)  # refuses an unknown level
    if difficulty == scenes.STANDARD:
        return {}
    return {"difficulty": difficulty, "difficulty_knobs": scenes.difficulty_digest(knobs)}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: it exists but belongs to someone else
        return True
    return True


def clean_stale_tmp_dirs(target: Path) -> list[Path]:
    """Remove temporary directories of ``target`` left by generators that died; return them.

    A temporary directory is named ``.<target>.tmp-<host>-<pid>-<token>``. It is removed when its
    process is gone (same host) or when it is older than :data:`STALE_TMP_SECONDS`; a directory
    of a generator that is still running is left alone.
    """
    removed = []
    parent = target.parent
    if not parent.is_dir():
        return removed
    host = socket.gethostname()
    for path in parent.glob(f".{target.name}{_TMP_MARK}*"):
        tail = path.name[len(f".{target.name}{_TMP_MARK}"):]
        parts = tail.rsplit("-", 2)
        stale = False
        if len(parts) == 3 and parts[0] == host and parts[1].isdigit():
            stale = not _pid_alive(int(parts[1]))
        if not stale:
            try:
                stale = time.time() - path.stat().st_mtime > STALE_TMP_SECONDS
            except FileNotFoundError:
                continue
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def materialise(target: Path, *, writer=None, **options: Any) -> bool:
    """Make sure ``target`` holds the dataset; generate it atomically if it does not exist.

    :param writer: ``writer(directory)`` writes a whole generated dataset, manifest last, into a
        directory that does not exist yet; default: digit-scenes' :func:`write_dataset` with
        ``options`` (``seed``, ``sizes``, ``image_size``).
    :return: True if this call generated it, False if it was already there (or another process
        finished first).
    """
    if (target / MANIFEST).is_file():
        return False
    if target.exists() and target.resolve() == Path.cwd().resolve():
        # The dataset is renamed into place, which would take the working folder's place.
        raise BenchError(f"--data-root {target}: is the working folder; the dataset is generated into a folder of "
                         "its own -- point --data-root at a new folder, e.g. --data-root data/digit-scenes")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BenchError(f"{target}: exists but holds no {MANIFEST} (not a complete generated dataset); "
                         f"delete it or point --data-root at an empty or missing directory")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"{target.parent}: cannot create the dataset directory ({exc.strerror}); "
                         f"set {CACHE_ENV} or --data-root to a writable place") from None
    clean_stale_tmp_dirs(target)
    tmp = target.parent / f".{target.name}{_TMP_MARK}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        if writer is None:
            write_dataset(tmp, **options)
        else:
            writer(tmp)
        try:
            # rename() replaces a missing or empty directory and fails on a non-empty one: if
            # another process finished first, its dataset stays and ours is discarded.
            os.rename(tmp, target)
        except OSError:
            if (target / MANIFEST).is_file():
                return False
            raise
        return True
    except OSError as exc:
        raise BenchError(f"{target}: cannot write the generated dataset ({exc.strerror or exc}); "
                         f"set {CACHE_ENV} or --data-root to a writable place with a few MB free") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def verify(directory: Path, expected_options: dict[str, Any], generator_version: Any = None) -> dict[str, Any]:
    """Check ``directory``'s manifest against the options and every file's checksum.

    ``generator_version``: what the manifest's field of that name must be (default: the scene
    renderer's :data:`~.scenes.GENERATOR_VERSION`, digit-scenes' version).

    :return: the manifest.
    :raises BenchError: on a manifest that is unreadable, of other options, or a file that is
        missing or changed — the message tells the user to delete the directory.
    """
    path = directory / MANIFEST
    fix = f"delete {directory} and run again to regenerate it"
    if not path.is_file():
        raise BenchError(f"{path}: missing; {fix}")
    try:
        manifest = read_json_file(path, what="dataset manifest")
    except SchemaError as exc:
        raise BenchError(f"{path}: corrupt manifest ({str(exc).removeprefix(f'{path}: ')}); {fix}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict) \
            or not isinstance(manifest.get("options"), dict):
        raise BenchError(f"{path}: corrupt manifest (fields 'files' and 'options' must be objects); {fix}")
    if generator_version is None:
        generator_version = scenes.GENERATOR_VERSION
    if manifest.get("generator_version") != generator_version:
        raise BenchError(f"{path}: made by generator version {manifest.get('generator_version')!r}, this is "
                         f"{generator_version!r}; {fix}")
    if manifest["options"] != expected_options:
        raise BenchError(f"{path}: field 'options' is {manifest['options']} but the run asks for {expected_options}; "
                         f"pass matching --dataset-option values or use another --data-root")
    for rel, digest in manifest["files"].items():
        file = directory / rel
        if not file.is_file():
            raise BenchError(f"{file}: missing from the generated dataset; {fix}")
        if _sha256_file(file) != digest:
            raise BenchError(f"{file}: checksum differs from {path}; {fix}")
    return manifest


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def _field(obj: Any, key: str, kind, where: str, path: Path):
    if not isinstance(obj, dict) or key not in obj:
        raise BenchError(f"{path}: {where}.{key} is missing; regenerate the file or fix it to the COCO layout")
    value = obj[key]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise BenchError(f"{path}: {where}.{key} must be {getattr(kind, '__name__', kind)}, got {type(value).__name__}")
    return value


def _id_table(data: dict, key: str, value_field: str, path: Path) -> list[tuple[int, str]]:
    """``data[key]``'s ``(id, value_field)`` pairs sorted by id; ids must be unique, the list non-empty."""
    pairs = sorted((_field(item, "id", int, f"{key}[{k}]", path), _field(item, value_field, str, f"{key}[{k}]", path))
                   for k, item in enumerate(data[key]))
    ids = [i for i, _ in pairs]
    if len(set(ids)) != len(ids):
        raise BenchError(f"{path}: {key}[].id values are not unique")
    if not pairs:
        raise BenchError(f"{path}: {key} is empty")
    return pairs


def read_coco_labels(path: Path) -> tuple[list[str], np.ndarray, list[str], list[str]]:
    """Parse a COCO-style instances file into multi-label form.

    :return: ``(class_names, labels, image_ids, file_names)``: classes in category-id order,
        rows in image-id order, labels int8 ``(N, C)`` with 1 where an annotation of the
        category exists and -1 elsewhere.
    :raises BenchError: naming the file and field of anything missing or malformed.
    """
    if not path.is_file():
        raise BenchError(f"{path}: annotation file not found; regenerate the dataset (delete its directory)")
    try:
        data = read_json_file(path, what="annotation file")
    except SchemaError as exc:
        raise BenchError(f"{exc}; regenerate the dataset (delete its directory)") from None
    if not isinstance(data, dict):
        raise BenchError(f"{path}: top level must be a JSON object with images, categories, annotations")
    for key in ("images", "categories", "annotations"):
        _field(data, key, list, "<root>", path)

    cats = _id_table(data, "categories", "name", path)
    column = {cid: j for j, (cid, _) in enumerate(cats)}
    images = _id_table(data, "images", "file_name", path)
    row = {iid: r for r, (iid, _) in enumerate(images)}

    labels = np.full((len(images), len(cats)), -1, dtype=np.int8)
    for k, ann in enumerate(data["annotations"]):
        where = f"annotations[{k}]"
        iid = _field(ann, "image_id", int, where, path)
        cid = _field(ann, "category_id", int, where, path)
        if iid not in row:
            raise BenchError(f"{path}: {where}.image_id {iid} is not an id in images")
        if cid not in column:
            raise BenchError(f"{path}: {where}.category_id {cid} is not an id in categories")
        labels[row[iid], column[cid]] = 1
    names = [n for _, n in cats]
    files = [f for _, f in images]
    return names, labels, [Path(f).stem for f in files], files


# ---------------------------------------------------------------------------------------------
# The dataset plugin
# ---------------------------------------------------------------------------------------------


class DigitScenes(Dataset):
    """Generated multi-label scenes of handwritten digits and shapes (20 categories)."""

    name = "digit-scenes"
    summary = "built-in: 20 categories of sklearn digits and drawn shapes in co-occurring scenes (generated locally)"
    citation = ("mlrpl-bench built-in; digits from the UCI Optical Recognition of Handwritten Digits data "
                "(Alpaydin & Kaynak, 1998) as bundled with scikit-learn")
    needs_data_root = False
    default_image_size = 32
    default_backbone = "small-cnn"
    #: The shipped small-cnn weights, pretrained on single glyphs (see docs/backbone.md).
    default_backbone_weights = "builtin"

    @dataclass
    class Options:
        seed: Annotated[int, Field(ge=0)] = field(default=0, metadata={"help": "generator seed (same options -> identical files)"})
        train_size: Annotated[int, Field(ge=1)] = field(default=1200, metadata={"help": "number of training images"})
        test_size: Annotated[int, Field(ge=1)] = field(default=600, metadata={"help": "number of test images"})
        image_size: Annotated[int, Field(ge=16, le=512)] = field(default=32, metadata={"help": "side of the stored PNG images in pixels"})
        cache_dir: str = field(default="", metadata={"help": f"where to generate ('' = ${CACHE_ENV} or ~/.cache/mlrpl-bench, then datasets/); ignored with --data-root"})
        difficulty: Literal[tuple(scenes.DIFFICULTIES)] = field(default=scenes.STANDARD, metadata={
            "help": "rendering level: standard (default), hard or harder (smaller, overlapping, low-contrast glyphs, "
                    "outsider shapes, clutter; more objects per image; see docs/difficulty.md)"})

    #: Which test split this class draws: the public one (from ``seed``, for development) or a
    #: private one (``private:<id>``, from a secret seed; see :func:`private_draw`).
    test_draw = PUBLIC_DRAW
    #: The secret seed of a private draw (None: the public draw). Set only by :func:`private_draw`.
    _private_test_seed: int | None = None

    def __init__(self, root=None, options=None):
        super().__init__(root, options)  # the options' declared types are checked there
        self._verified = False

    def generator_options(self) -> dict[str, Any]:
        """The options that determine the files (recorded in the manifest): a private draw adds
        its ``test_draw`` id (never the seed)."""
        o = self.options
        out = {"seed": o.seed, "train_size": o.train_size, "test_size": o.test_size, "image_size": o.image_size,
               **difficulty_option(o.difficulty)}
        return out if self._private_test_seed is None else {**out, "test_draw": self.test_draw}

    def split_options(self, split: str) -> dict[str, Any]:
        """The options of one split (part of its fingerprint): the training split is the same in
        every draw, so that masks and training are those of the public draw."""
        options = self.generator_options()
        return options if split == "test" else {k: v for k, v in options.items() if k != "test_draw"}

    def generator_version(self) -> Any:
        """The version of the generator that makes the files (part of the cache key and manifest)."""
        return scenes.GENERATOR_VERSION

    def write(self, directory: Path) -> None:
        """Generate the dataset of these options into ``directory`` (which must not exist yet)."""
        o = self.options
        write_dataset(directory, seed=o.seed, sizes={"train": o.train_size, "test": o.test_size},
                      image_size=o.image_size, test_seed=self._private_test_seed,
                      test_draw=None if self._private_test_seed is None else self.test_draw, difficulty=o.difficulty)

    @property
    def directory(self) -> Path:
        """Where the dataset lives: ``--data-root`` or the cache directory for these options."""
        if self.root is not None:
            return self.root
        key = json.dumps({**self.generator_options(), "generator_version": self.generator_version()}, sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        base = Path(self.options.cache_dir).expanduser() if self.options.cache_dir else default_cache_root()
        return base / "datasets" / f"{self.name}-{digest}"

    def prepare(self) -> Path:
        """Generate the dataset if needed, verify it once, and return its directory."""
        target = self.directory
        if not self._verified:
            materialise(target, writer=self.write)
            verify(target, self.generator_options(), self.generator_version())
            self._verified = True
        return target

    def load_split(self, split: str) -> DatasetSplit:
        """Read ``split`` from the COCO-style files (generating them first if needed)."""
        if split not in SPLITS:
            raise BenchError(f"dataset digit-scenes has splits {', '.join(SPLITS)}, not {split!r}")
        root = self.prepare()
        names, labels, ids, files = read_coco_labels(root / "annotations" / f"instances_{split}.json")
        paths = [root / "images" / split / f for f in files]
        return DatasetSplit(self.name, split, names, labels, ids, paths, options=self.split_options(split))

    def transforms(self, image_size: int, train: bool):
        """Small-image transforms: train = resize, random shift by up to 1/16 of the side,
        mild brightness/contrast jitter; no horizontal flip (digits are not mirror
        symmetric). Test = resize only. Both end with ToTensor and ImageNet normalisation."""
        from torchvision import transforms as T

        from .transforms import IMAGENET_MEAN, IMAGENET_STD

        steps = [T.Resize((image_size, image_size))]
        if train:
            steps += [T.RandomCrop(image_size, padding=max(1, image_size // 16), padding_mode="edge"),
                      # Brightness/contrast only: saturation and hue jitter cost more time per
                      # image on CPU than they add (object colours are random anyway).
                      T.ColorJitter(brightness=0.2, contrast=0.2)]
        steps += [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        return T.Compose(steps)


def private_draw_id(seed: int) -> str:
    """The non-revealing name of the private draw of ``seed``: ``private:`` + 12 hex digits of a
    sha256 (a seed drawn from a large range, e.g. 2**63, cannot be guessed back from it)."""
    digest = hashlib.sha256(f"mlrpl-bench digit-scenes private test draw {int(seed)}".encode()).hexdigest()
    return f"private:{digest[:12]}"


def private_draw(seed: int) -> type[DigitScenes]:
    """A :class:`DigitScenes` whose test split is drawn from the secret ``seed`` (its training
    split, and so every mask, is the public one). Used by ``leaderboard verify --private-seed-file``."""
    seed = int(seed)
    if seed < 0:
        raise BenchError(f"private test seed {seed}: expected a non-negative integer")
    return type("PrivateDigitScenes", (DigitScenes,), {"test_draw": private_draw_id(seed), "_private_test_seed": seed,
                                                      "__doc__": DigitScenes.__doc__})


@hookimpl
def mlrpl_datasets():
    return [DigitScenes]
