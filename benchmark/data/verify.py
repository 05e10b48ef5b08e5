"""What ``mlrpl-bench datasets verify / stats / labels`` compute (pure functions over loaded splits).

* :func:`verify` loads both splits (any layout problem is a one-line :class:`BenchError`) and
  reports, per split, image and class counts, positives per image, images without positives or
  without any known label, classes without positives, and missing/unreadable image files.
* :func:`label_stats` summarises a label matrix: cardinality, density, class frequencies and the
  most frequent co-occurring pairs with their conditional probabilities.
* :func:`export_labels` writes a split's full label matrix, its class list and its image ids.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BenchError
from ..labels import write_label_file
from .base import SPLITS, Dataset, DatasetSplit

#: How many missing/unreadable files a report lists by name (all are counted).
MAX_LISTED = 10
#: Rows per block when counting co-occurrences.
_BLOCK = 65536


def open_dataset(name: str, root: str | Path | None, options: dict[str, Any] | None = None) -> Dataset:
    """Instantiate the registered dataset ``name`` with loader ``options`` (strings are converted)."""
    from ..method import make_dataclass_options
    from ..plugin_manager import get_dataset

    cls = get_dataset(name)
    opts = make_dataclass_options(cls.Options, dict(options or {}), owner=f"dataset {name!r}")
    return cls(root, opts)


def check_image_files(split: DatasetSplit, decode: bool = False, progress: bool = False) -> dict[str, Any]:
    """Count missing and unreadable image files of ``split``.

    Without ``decode`` a file must exist and have a readable image header (fast); with it every
    image is fully decoded (what training will do). ``progress`` shows a bar on a terminal.
    """
    from PIL import Image, UnidentifiedImageError
    from tqdm import tqdm

    missing, unreadable = [], []
    # disable=None: a bar only when stderr is a terminal.
    bar = tqdm(split.image_paths, desc=f"checking {split.split} images", unit="img", leave=False,
               disable=None if progress else True)
    for path in bar:
        if not Path(path).is_file():
            missing.append(str(path))
            continue
        try:
            with Image.open(path) as img:
                if decode:
                    img.load()
                else:
                    img.size  # noqa: B018 - parsing the header is the check
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            unreadable.append(f"{path} ({type(exc).__name__})")
    return {"missing": len(missing), "unreadable": len(unreadable),
            "missing_examples": missing[:MAX_LISTED], "unreadable_examples": unreadable[:MAX_LISTED]}


def split_summary(split: DatasetSplit) -> dict[str, Any]:
    """Counts that tell whether a split looks right (no image access)."""
    labels = split.labels
    pos = (labels == 1).sum(axis=1)
    known = (labels != 0).sum(axis=1)
    class_pos = (labels == 1).sum(axis=0)
    duplicates = len(split.image_ids) - len(set(split.image_ids))
    return {
        "images": len(split),
        "classes": split.num_classes,
        "positives_per_image": {"mean": float(pos.mean()), "min": int(pos.min()), "max": int(pos.max())},
        "images_without_positive": int((pos == 0).sum()),
        "images_without_known_label": int((known == 0).sum()),
        "unknown_entries": int((labels == 0).sum()),
        "classes_without_positive": [split.class_names[c] for c in np.flatnonzero(class_pos == 0)],
        "duplicate_image_ids": duplicates,
        "fingerprint": split.fingerprint(),
    }


def verify(name: str, root, options: dict | None = None, *, check_images: bool = True,
           decode: bool = False, progress: bool = False) -> dict[str, Any]:
    """Load both splits of ``name`` and report on them (see the module docstring).

    ``report["ok"]`` is False when an image is missing or unreadable, an id is duplicated or the
    splits disagree on the classes.
    """
    dataset = open_dataset(name, root, options)
    splits = {s: dataset.load_split(s) for s in SPLITS}
    report: dict[str, Any] = {"dataset": name, "data_root": str(root) if root is not None else None,
                              "options": dataset.options_dict(), "class_names": splits["train"].class_names,
                              "splits": {}}
    ok = splits["train"].class_names == splits["test"].class_names
    report["same_classes"] = ok
    for s, split in splits.items():
        entry = split_summary(split)
        if check_images:
            entry["files"] = check_image_files(split, decode, progress)
            ok &= entry["files"]["missing"] == 0 and entry["files"]["unreadable"] == 0
        ok &= entry["duplicate_image_ids"] == 0
        report["splits"][s] = entry
    report["ok"] = bool(ok)
    return report


def format_verify(report: dict[str, Any]) -> str:
    """The human-readable form of a :func:`verify` report."""
    where = f" at {report['data_root']}" if report["data_root"] else ""
    lines = [f"dataset {report['dataset']}{where}: {len(report['class_names'])} classes"]
    if not report["same_classes"]:
        lines.append("  PROBLEM: train and test splits have different class lists")
    for s, e in report["splits"].items():
        ppi = e["positives_per_image"]
        lines.append(f"  {s}: {e['images']} images, {e['classes']} classes; positives per image "
                     f"{ppi['mean']:.2f} (min {ppi['min']}, max {ppi['max']})")
        lines.append(f"    images without a positive: {e['images_without_positive']}; without any known label: "
                     f"{e['images_without_known_label']}; unknown entries: {e['unknown_entries']}")
        if e["classes_without_positive"]:
            names = e["classes_without_positive"]
            lines.append(f"    classes without a positive: {len(names)} ({', '.join(names[:MAX_LISTED])}"
                         + (", ..." if len(names) > MAX_LISTED else "") + ")")
        if e["duplicate_image_ids"]:
            lines.append(f"    PROBLEM: {e['duplicate_image_ids']} duplicate image ids")
        files = e.get("files")
        if files is not None:
            lines.append(f"    missing image files: {files['missing']}; unreadable: {files['unreadable']}")
            for p in files["missing_examples"]:
                lines.append(f"      missing: {p}")
            for p in files["unreadable_examples"]:
                lines.append(f"      unreadable: {p}")
    lines.append("OK" if report["ok"] else "PROBLEMS FOUND (see above)")
    return "\n".join(lines)


def label_stats(split: DatasetSplit, top: int = 10) -> dict[str, Any]:
    """Label co-occurrence summary of one split (positives only; unknown entries ignored).

    Works block by block, so a split of millions of images never needs more than a block of
    float32 positives in memory (counts are exact: each block is far below float32's 2**24).
    """
    labels = split.labels
    n, c = labels.shape
    counts = np.zeros(c, dtype=np.int64)
    co = np.zeros((c, c), dtype=np.int64)
    per_image = 0
    for start in range(0, n, _BLOCK):
        block = (labels[start:start + _BLOCK] == 1).astype(np.float32)
        counts += block.sum(axis=0).astype(np.int64)
        co += np.rint(block.T @ block).astype(np.int64)
        per_image += int(block.sum())
    iu, ju = np.triu_indices(c, k=1)
    pair_counts = co[iu, ju]
    # Most frequent pairs first; ties by class index so the summary is stable.
    order = np.lexsort((ju, iu, -pair_counts))
    pairs = []
    for k in order[:top]:
        i, j, m = int(iu[k]), int(ju[k]), int(pair_counts[k])
        if m == 0:
            break
        pairs.append({"a": split.class_names[i], "b": split.class_names[j], "count": m,
                      "p_b_given_a": m / int(counts[i]), "p_a_given_b": m / int(counts[j])})
    by_freq = np.lexsort((np.arange(c), -counts))
    nonzero = counts[counts > 0]
    distinct = len(np.unique(np.packbits(labels == 1, axis=1), axis=0))
    return {
        "split": split.split, "images": n, "classes": c,
        "cardinality": per_image / n,
        "density": per_image / (n * c),
        "distinct_label_sets": distinct,
        "imbalance_ratio": float(nonzero.max() / nonzero.min()) if nonzero.size else None,
        "most_frequent": [{"class": split.class_names[k], "positives": int(counts[k])} for k in by_freq[:top]],
        "least_frequent": [{"class": split.class_names[k], "positives": int(counts[k])} for k in by_freq[::-1][:top]],
        "top_pairs": pairs,
        "pairs_cooccurring": int((pair_counts > 0).sum()),
    }


def format_stats(stats: dict[str, Any]) -> str:
    """The human-readable form of :func:`label_stats`."""
    from tabulate import tabulate

    ratio = "n/a" if stats["imbalance_ratio"] is None else f"{stats['imbalance_ratio']:.1f}"
    out = [f"{stats['split']}: {stats['images']} images, {stats['classes']} classes; label cardinality "
           f"{stats['cardinality']:.2f}, density {stats['density']:.4f}, {stats['distinct_label_sets']} distinct "
           f"label sets, imbalance (max/min positives) {ratio}; {stats['pairs_cooccurring']} class pairs co-occur"]
    out.append(tabulate([(r["class"], r["positives"]) for r in stats["most_frequent"]],
                        headers=["most frequent class", "positives"]))
    out.append(tabulate([(r["class"], r["positives"]) for r in stats["least_frequent"]],
                        headers=["least frequent class", "positives"]))
    if stats["top_pairs"]:
        out.append(tabulate([(p["a"], p["b"], p["count"], f"{p['p_b_given_a']:.2f}", f"{p['p_a_given_b']:.2f}")
                             for p in stats["top_pairs"]],
                            headers=["class a", "class b", "together", "P(b|a)", "P(a|b)"]))
    return "\n\n".join(out)


def export_labels(name: str, root, options: dict | None, split: str, out: str | Path,
                  classes_out: str | Path | None = None, *, replace: bool = False) -> dict[str, str]:
    """Write ``split``'s label matrix to ``out`` (``.npy`` or comma-separated text, loader row order).

    Beside it: the class list (``<out stem>.classes.txt``, one a line, column order) and the image
    ids (``<out stem>.ids.txt``, row order). Every file is written atomically; an existing one is
    refused unless ``replace`` (``--replace``), before the dataset is read.
    """
    from ..atomic import refuse_existing_outputs
    from ._common import atomic_write_text

    if split not in SPLITS:
        raise BenchError(f"unknown split {split!r}; use train or test")
    out = Path(out).expanduser()
    stem = out.with_suffix("") if out.suffix else out
    classes_path = Path(classes_out).expanduser() if classes_out else stem.with_name(stem.name + ".classes.txt")
    ids_path = stem.with_name(stem.name + ".ids.txt")
    refuse_existing_outputs({"--out": out, "--classes-out": classes_path, "--out (image ids)": ids_path}, replace=replace)
    data = open_dataset(name, root, options).load_split(split)
    _refuse_clobbering(out, classes_path, ids_path, data)
    write_label_file(out, data.labels)
    atomic_write_text(classes_path, "".join(f"{c}\n" for c in data.class_names))
    atomic_write_text(ids_path, "".join(f"{i}\n" for i in data.image_ids))
    return {"labels": str(out), "classes": str(classes_path), "ids": str(ids_path),
            "shape": list(data.labels.shape), "fingerprint": data.fingerprint()}


def _refuse_clobbering(out: Path, classes_path: Path, ids_path: Path, data) -> None:
    """The three outputs are three files, and none of them is one of the dataset's own files."""
    from ..atomic import same_file

    if same_file(classes_path, out) or same_file(ids_path, out) or same_file(classes_path, ids_path):
        raise BenchError(f"--classes-out {classes_path} would overwrite another output ({out} / {ids_path}); "
                         "choose another --classes-out")
    # An existing file among the dataset's images is one of its inputs (the annotation files a
    # loader reads are not listed, so a path outside the dataset is the safe advice).
    folders = {Path(p).parent.resolve() for p in data.image_paths}
    for path, flag in ((out, "--out"), (classes_path, "--classes-out"), (ids_path, "--out")):
        if path.exists() and path.resolve().parent in folders:
            raise BenchError(f"{flag} {path} is a file in the dataset's image folder; choose a path outside the dataset")


def describe_datasets() -> list[dict[str, Any]]:
    """Every registered dataset with its summary, defaults, options and source plugin."""
    from ..plugin_manager import dataset_registry

    rows = []
    for name, entry in dataset_registry().items():
        cls = entry.obj
        options = []
        if dataclasses.is_dataclass(getattr(cls, "Options", None)):
            for f in dataclasses.fields(cls.Options):
                default = f.default if f.default is not dataclasses.MISSING else None
                options.append({"name": f.name, "default": default, "help": f.metadata.get("help", "")})
        module = sys.modules.get(cls.__module__)
        layout = inspect.cleandoc(module.__doc__) if module is not None and module.__doc__ else ""
        rows.append({"name": name, "summary": cls.summary, "citation": cls.citation, "layout": layout,
                     "needs_data_root": bool(cls.needs_data_root), "default_image_size": cls.default_image_size,
                     "default_backbone": cls.default_backbone, "options": options,
                     "plugin": entry.plugin, "distribution": entry.distribution, "version": entry.version})
    return rows
