"""``voc2007-scenes``: the label sets of the real PASCAL VOC 2007 images, drawn as glyph scenes.

The labels are real; the pixels are not. Every image of this dataset carries the 20-class label
vector of one real VOC 2007 image, taken from the original-labels files of the official
SST/HST/DSRB release (HCP-MLR-PL), in the files' row order:

* train = the 5,011 ``trainval`` vectors (``partial-labels/VOC2007/original-labels/train.txt``);
* test = the 4,952 ``test`` vectors (``.../original-labels/val.txt``; the release calls the VOC
  test set ``val``).

So the dataset keeps VOC's real co-occurrence, imbalance and label cardinality (see
:func:`label_statistics`), while its images are the built-in scenes: one glyph per present
class, drawn by the digit-scenes renderer (:mod:`.scenes`). VOC class ``c`` (column ``c`` of the
standard alphabetical order, :data:`~.voc.VOC_CLASSES`) is drawn as built-in glyph ``c``
(:data:`~.scenes.CLASS_NAMES`), so the shipped ``small-cnn`` weights, pretrained on single
glyphs of those 20 categories, fit it unchanged (:data:`GLYPH_OF_CLASS`).

The official files hold only -1 and 1 (no 0): a class present in an image only as "difficult"
objects is -1 there, as in the official code, which skips difficult objects (the ``voc2007``
loader's ``difficult=negative``). This dataset keeps that encoding.

The label matrices ship with the package as packed bits (``voc2007_labels.npz``, pinned by
:data:`LABELS_SHA256`); :func:`official_text` re-encodes a matrix byte for byte as the official
file, whose sha256 and git blob id are in :data:`SOURCE_FILES` (:func:`provenance` is written
into every run record). Because the rows are in the official order, ``--scheme hcp`` masks of
the train split are the official partial-label files ``train_proportion_0.1 ... 0.9.txt``.

Images are generated on first use and cached like digit-scenes (COCO-style JSON + PNGs under
``$MLRPL_BENCH_CACHE/datasets/voc2007-scenes-<hash>/``, written atomically and checksummed; see
:mod:`.builtin`). Image ``i``'s layout and noise come from random streams of ``(seed, split,
i)`` alone, so ``train_size``/``test_size`` below the full sizes give exactly the first rows
(and images) of the full dataset, and the hcp mask of such a prefix is the prefix of the
official mask.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import numpy as np
from pydantic import Field

from ..errors import BenchError
from ..hookspecs import hookimpl
from . import scenes
from .base import SPLITS, DatasetSplit
from .builtin import CACHE_ENV, DigitScenes, _sha256_file, difficulty_option, read_coco_labels
from .voc import VOC_CLASSES

#: The shipped label matrices (packed bits of ``labels == 1``, rows in the official order).
LABELS_FILE = Path(__file__).with_name("voc2007_labels.npz")
#: sha256 of :data:`LABELS_FILE`; loading refuses any other file.
LABELS_SHA256 = "d31cbcb2fcef0e8ae15db91176a4318996df45ff41ea076ae08349ba88de67e4"

SOURCE_REPOSITORY = "https://github.com/HCPLab-SYSU/HCP-MLR-PL"
#: The commit that added ``partial-labels/`` (removed again from the repository's tip later).
SOURCE_COMMIT = "eabb0f662d878b5939177f724f185fc2b7b0928a"


class OfficialFile(NamedTuple):
    """One file of the official release: where it is and what its bytes hash to."""

    path: str
    rows: int
    sha256: str
    git_blob: str  # git's object id of the file (sha1 of "blob <size>\\0" + bytes), as in the commit's tree


#: The original-labels files each split's rows come from.
SOURCE_FILES = {
    "train": OfficialFile("partial-labels/VOC2007/original-labels/train.txt", 5011,
                          "5d0490258a63e0874c3a8ff238168fce3372392cce88a90551422a531ee39378",
                          "01ddf3a4882bd2ef8b31ec32eb40466496994d8f"),
    "test": OfficialFile("partial-labels/VOC2007/original-labels/val.txt", 4952,
                         "325e0b173c30953bf1e623a51dc2c4fcdaf81f54c7efc6a18e828d698a3842bb",
                         "05cf35c01e9cb63099f5c0100b293fb8cc529eb9"),
}

#: VOC class -> the built-in glyph that draws it (column c -> glyph c).
GLYPH_OF_CLASS = dict(zip(VOC_CLASSES, scenes.CLASS_NAMES))

#: Bump when the layouts drawn for the same options change (with the renderer's version, part
#: of the cache key and the manifest).
LAYOUT_VERSION = 1
#: Random-stream codes, distinct from digit-scenes' (1, 2) and the glyph task's parts (3, 4).
LAYOUT_STREAM, RENDER_STREAM = 5, 6
#: Largest overlap (intersection / smaller box) allowed between two glyphs of one image at the
#: standard difficulty (a level's ``max_overlap``).
MAX_OVERLAP = scenes.DIFFICULTY.max_overlap
#: Placement attempts per glyph before the least-overlapping attempt is taken.
PLACEMENT_TRIES = 50


def official_text(labels: np.ndarray) -> bytes:
    """``labels`` encoded exactly as the official files: ``-1,1,...`` per row, ``\\n`` after each."""
    labels = np.asarray(labels)
    return "".join(",".join(str(int(v)) for v in row) + "\n" for row in labels).encode("ascii")


def git_blob_id(data: bytes) -> str:
    """Git's object id of a file with these bytes (what a commit's tree lists)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@functools.lru_cache(maxsize=1)
def _packed() -> dict[str, np.ndarray]:
    if not LABELS_FILE.is_file():
        raise BenchError(f"{LABELS_FILE}: the shipped VOC 2007 label file is missing; reinstall mlrpl-bench")
    digest = _sha256_file(LABELS_FILE)
    if digest != LABELS_SHA256:
        raise BenchError(f"{LABELS_FILE}: sha256 {digest[:12]} is not the pinned {LABELS_SHA256[:12]} "
                         f"(file changed or corrupt); reinstall mlrpl-bench")
    with np.load(LABELS_FILE, allow_pickle=False) as data:
        return {split: data[split] for split in SPLITS}


def voc_labels(split: str) -> np.ndarray:
    """The full ``(N, 20)`` int8 label matrix (1 / -1) of ``split``, rows in the official order."""
    if split not in SOURCE_FILES:
        raise BenchError(f"dataset voc2007-scenes has splits {', '.join(SPLITS)}, not {split!r}")
    bits = np.unpackbits(_packed()[split], axis=1, count=len(VOC_CLASSES)).astype(bool)
    labels = np.where(bits, 1, -1).astype(np.int8)
    labels.setflags(write=False)
    return labels


def provenance() -> dict[str, Any]:
    """Where the labels come from (recorded in every run record's ``dataset.provenance``)."""
    return {"labels": "PASCAL VOC 2007 image label sets (official SST/HST/DSRB release)",
            "repository": SOURCE_REPOSITORY, "commit": SOURCE_COMMIT,
            "files": {split: {"path": f.path, "rows": f.rows, "sha256": f.sha256, "git_blob": f.git_blob}
                      for split, f in SOURCE_FILES.items()},
            "package_file": LABELS_FILE.name, "package_sha256": LABELS_SHA256,
            "difficult": "negative (the official files hold only -1/1)",
            "glyphs": dict(GLYPH_OF_CLASS)}


def label_statistics(labels: np.ndarray) -> dict[str, Any]:
    """Imbalance and cardinality of a full label matrix (1 present).

    :return: ``class_frequency`` (share of images per class), ``most_frequent`` /
        ``rarest`` (class index and share), ``imbalance`` (max / min class frequency over
        classes present at all), ``labels_per_image`` (mean positives per image) and
        ``max_labels`` (most positives in one image).
    """
    positive = np.asarray(labels) == 1
    freq = positive.mean(axis=0)
    present = freq > 0
    top, low = int(np.argmax(freq)), int(np.argmin(np.where(present, freq, np.inf)))
    counts = positive.sum(axis=1)
    return {"images": int(positive.shape[0]), "class_frequency": freq.tolist(),
            "most_frequent": (top, float(freq[top])), "rarest": (low, float(freq[low])),
            "imbalance": float(freq[top] / freq[low]), "labels_per_image": float(counts.mean()),
            "max_labels": int(counts.max())}


# ---------------------------------------------------------------------------------------------
# Layouts: one glyph per present class
# ---------------------------------------------------------------------------------------------


def glyph_size_range(count: int, difficulty: scenes.Difficulty = scenes.DIFFICULTY) -> tuple[float, float]:
    """Glyph side as a fraction of the image side for an image of ``count`` glyphs.

    Up to two glyphs use the level's range (standard: digit-scenes' 0.36-0.5); more shrink so
    that they still fit without overlapping much: the upper end is ``sqrt(0.5 / count)`` (the
    glyphs' boxes cover at most about half the image), scaled by the level's upper end / 0.5,
    and the lower end 0.8 of it.
    """
    lo, hi = difficulty.size_range
    hi = min(hi, float(np.sqrt(0.5 / max(count, 1))) * (hi / 0.5))
    return min(lo, 0.8 * hi), hi


def layout_of(row: np.ndarray, seed: int, split: str, index: int, image_size: int,
              difficulty: scenes.Difficulty = scenes.DIFFICULTY) -> scenes.SceneLayout:
    """The layout of image ``index`` of ``split``: a glyph for every class that is 1 in ``row``.

    Glyphs are placed in a random order; each gets up to :data:`PLACEMENT_TRIES` random
    positions and keeps the first within the level's ``max_overlap`` (standard:
    :data:`MAX_OVERLAP`) of the others, else the attempt with the least overlap, so every present
    class is drawn. Size, rotation, colour, opacity and handwriting sample follow the level's
    ranges (standard: digit-scenes'; dark background, uniform hue: no scene cue). The level's
    object-count and off-scene knobs do not apply: the label sets are the real ones.
    Random stream: ``(seed, split, LAYOUT_STREAM, index)``.
    """
    rng = np.random.default_rng([seed, scenes.SPLIT_CODES[split], LAYOUT_STREAM, index])
    pools = scenes.digit_pools(seed, split)
    classes = rng.permutation(np.flatnonzero(np.asarray(row) == 1))
    d = difficulty
    lo, hi = glyph_size_range(len(classes), d)
    background = scenes._hsv_to_rgb(rng.random(), rng.uniform(0.15, 0.45), rng.uniform(*d.background_value))
    boxes: list[tuple[int, int, int]] = []
    objects = []
    for cat in classes:
        cat = int(cat)
        size = max(4, min(int(round(rng.uniform(lo, hi) * image_size)), image_size))
        best, best_overlap = None, np.inf
        for _try in range(PLACEMENT_TRIES):
            x = int(rng.integers(0, image_size - size + 1))
            y = int(rng.integers(0, image_size - size + 1))
            overlap = max((scenes._overlap((x, y, size), b) for b in boxes), default=0.0)
            if overlap < best_overlap:
                best, best_overlap = (x, y, size), overlap
            if overlap <= d.max_overlap:
                break
        angle = float(rng.uniform(-d.max_rotation, d.max_rotation))
        colour = scenes._hsv_to_rgb(rng.random(), rng.uniform(0.45, 1.0), rng.uniform(*d.object_value))
        opacity = float(rng.uniform(*d.opacity))
        sample = int(pools[cat][rng.integers(len(pools[cat]))]) if cat < 10 else -1
        boxes.append(best)
        objects.append(scenes.SceneObject(cat, best[0], best[1], best[2], angle, colour, opacity, sample))
    return scenes.SceneLayout("voc2007", background, tuple(objects))


def render_image(layout: scenes.SceneLayout, seed: int, split: str, index: int, image_size: int,
                 difficulty: scenes.Difficulty = scenes.DIFFICULTY) -> np.ndarray:
    """Image ``index`` of ``split`` as ``(image_size, image_size, 3)`` uint8 (what its PNG holds).

    The renderer's noise (texture, clutter, outsider shapes, pixel noise) comes from the stream
    ``(seed, split, RENDER_STREAM, index)``.
    """
    noise = np.random.default_rng([seed, scenes.SPLIT_CODES[split], RENDER_STREAM, index])
    return scenes.render_layout(layout, image_size, noise, difficulty)


def write_voc_scenes(directory: Path, *, seed: int, sizes: dict[str, int], image_size: int,
                     generator_version: str, difficulty: str = scenes.STANDARD) -> None:
    """Render the dataset (the first ``sizes[split]`` rows of each split) into ``directory``.

    :param difficulty: a level of :data:`~.scenes.DIFFICULTIES` (named in the manifest's options
        unless ``standard``).
    """
    from PIL import Image

    knobs = scenes.difficulty_of(difficulty)
    (directory / "annotations").mkdir(parents=True)
    files: dict[str, str] = {}
    categories = [{"id": c + 1, "name": name, "glyph": GLYPH_OF_CLASS[name]} for c, name in enumerate(VOC_CLASSES)]
    for split in SPLITS:
        img_dir = directory / "images" / split
        img_dir.mkdir(parents=True)
        labels = voc_labels(split)[: sizes[split]]
        images, annotations = [], []
        for i, row in enumerate(labels):
            layout = layout_of(row, seed, split, i, image_size, knobs)
            path = img_dir / f"{i:06d}.png"
            # PNG with fixed settings and no metadata: the same pixels give the same bytes.
            Image.fromarray(render_image(layout, seed, split, i, image_size, knobs)).save(path, format="PNG", compress_level=6)
            files[f"images/{split}/{path.name}"] = _sha256_file(path)
            images.append({"id": i + 1, "file_name": path.name, "width": image_size, "height": image_size,
                           "voc_row": i})
            for obj in layout.objects:
                annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": obj.category + 1,
                                    "bbox": obj.bbox, "area": obj.size * obj.size, "iscrowd": 0})
        ann = directory / "annotations" / f"instances_{split}.json"
        ann.write_text(json.dumps({"info": {"description": f"mlrpl-bench voc2007-scenes ({split})",
                                            "generator_version": generator_version,
                                            "labels_source": {"repository": SOURCE_REPOSITORY, "commit": SOURCE_COMMIT,
                                                              "path": SOURCE_FILES[split].path}},
                                   "images": images, "annotations": annotations, "categories": categories},
                                  separators=(",", ":")))
        files[f"annotations/{ann.name}"] = _sha256_file(ann)
    manifest = {"format": 1, "dataset": VocScenes.name, "generator_version": generator_version,
                "options": {"seed": seed, "train_size": sizes["train"], "test_size": sizes["test"],
                            "image_size": image_size, **difficulty_option(difficulty)},
                "files": dict(sorted(files.items()))}
    (directory / "DONE.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))


# ---------------------------------------------------------------------------------------------
# The dataset plugin
# ---------------------------------------------------------------------------------------------


class VocScenes(DigitScenes):
    """The real VOC 2007 label sets (trainval 5,011 / test 4,952) drawn as built-in glyph scenes."""

    name = "voc2007-scenes"
    summary = "built-in: the real VOC 2007 label sets (trainval 5,011 / test 4,952) drawn as glyph scenes (generated locally)"
    citation = ("labels: PASCAL VOC 2007 (Everingham et al., IJCV 2010) as released by HCP-MLR-PL "
                f"({SOURCE_REPOSITORY}, commit {SOURCE_COMMIT[:12]}); glyphs: mlrpl-bench digit-scenes")

    @dataclass
    class Options:
        seed: Annotated[int, Field(ge=0)] = field(default=0, metadata={"help": "generator seed for the drawings (labels are fixed)"})
        train_size: Annotated[int, Field(ge=1, le=SOURCE_FILES["train"].rows)] = field(
            default=SOURCE_FILES["train"].rows, metadata={"help": "first N trainval rows (default all 5011; fewer for smoke tests)"})
        test_size: Annotated[int, Field(ge=1, le=SOURCE_FILES["test"].rows)] = field(
            default=SOURCE_FILES["test"].rows, metadata={"help": "first N test rows (default all 4952)"})
        image_size: Annotated[int, Field(ge=16, le=512)] = field(default=32, metadata={"help": "side of the stored PNG images in pixels"})
        cache_dir: str = field(default="", metadata={"help": f"where to generate ('' = ${CACHE_ENV} or ~/.cache/mlrpl-bench, then datasets/); ignored with --data-root"})
        difficulty: Literal[tuple(scenes.DIFFICULTIES)] = field(default=scenes.STANDARD, metadata={
            "help": "rendering level: standard (default), hard or harder (smaller, overlapping, low-contrast glyphs, "
                    "outsider shapes, clutter; the label sets stay the real ones; see docs/difficulty.md)"})

    @classmethod
    def record_info(cls) -> dict[str, Any]:
        """Extra facts for the run record's ``dataset`` block: the labels' provenance."""
        return {"provenance": provenance()}

    def generator_version(self) -> str:
        return f"voc2007-scenes-{LAYOUT_VERSION}/render-{scenes.GENERATOR_VERSION}"

    def write(self, directory: Path) -> None:
        o = self.options
        write_voc_scenes(directory, seed=o.seed, sizes={"train": o.train_size, "test": o.test_size},
                         image_size=o.image_size, generator_version=self.generator_version(),
                         difficulty=o.difficulty)

    def load_split(self, split: str) -> DatasetSplit:
        """Read ``split`` from the generated files; its labels must be the official rows."""
        if split not in SPLITS:
            raise BenchError(f"dataset {self.name} has splits {', '.join(SPLITS)}, not {split!r}")
        root = self.prepare()
        path = root / "annotations" / f"instances_{split}.json"
        names, labels, ids, files = read_coco_labels(path)
        expected = voc_labels(split)[: labels.shape[0]]
        if names != list(VOC_CLASSES) or labels.shape[0] != getattr(self.options, f"{split}_size") \
                or not np.array_equal(labels, expected):
            raise BenchError(f"{path}: labels differ from the official VOC 2007 rows; delete {root} and run again "
                             f"to regenerate it")
        paths = [root / "images" / split / f for f in files]
        options = {**self.generator_options(), "labels_sha256": LABELS_SHA256, "labels_commit": SOURCE_COMMIT}
        return DatasetSplit(self.name, split, names, labels, ids, paths, options=options)


@hookimpl
def mlrpl_datasets():
    return [VocScenes]
