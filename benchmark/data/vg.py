"""``vg200``: Visual Genome with its 200 most frequent object categories.

Two accepted layouts under ``--data-root`` (``--dataset-option source=auto`` picks SSGRL files when present):

* **objects** (Visual Genome v1.4 release)::

      objects.json          [{"image_id": 1, "objects": [{"names": ["tree"], ...}, ...]}, ...]
      VG_100K/<image_id>.jpg   VG_100K_2/<image_id>.jpg

  An object's category is its first name, lower-cased and stripped (``"name"`` is accepted for
  ``"names"``). The C (``num_classes``, 200) categories are the most frequent by number of object
  instances, ties broken by name. The test split is ``test_size`` (10,000) images drawn with
  ``numpy.random.default_rng(seed)`` from all images sorted by id; the rest is train; rows are in
  image-id order. Images with none of the C categories are kept (all -1). The category list,
  both split lists and the label matrices are saved under ``<data root>/mlrpl_bench_cache/vg200/``
  (or ``--dataset-option cache_dir=DIR``) and reused, so every run sees the same split.

* **ssgrl** (the split files of SSGRL used by the official SST/HST code), in the data root or
  its ``ssgrl_partition/`` folder::

      train_list_500.txt  test_list_500.txt      one image file name per line (e.g. 2345.jpg)
      vg_category_200_labels_index.json          {"2345.jpg": [3, 17, ...], ...} (0-based)
      vg_category_200.json  (optional)           category names: a list, or {name: index}

  Without the names file the categories are called ``vg_category_000`` ... ``vg_category_199``.

Images are looked up in ``VG_100K`` then ``VG_100K_2``.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Annotated, Literal
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import Field

from ..errors import BenchError
from ..hookspecs import hookimpl
from ..labels import write_label_file
from ._common import (atomic_write_text, check_split, derived_dir, file_identity, file_key,
                      read_json, read_lines, require_dir)
from .base import Dataset, DatasetSplit

IMAGE_DIRS = ("VG_100K", "VG_100K_2")
_FIX = "use objects.json of the Visual Genome v1.4 release"


class ImageLocator:
    """Finds ``<name>`` in ``VG_100K`` or ``VG_100K_2`` (each directory listed once)."""

    def __init__(self, root: Path):
        self.dirs = [root / d for d in IMAGE_DIRS if (root / d).is_dir()]
        if not self.dirs:
            raise BenchError(f"{root}: neither {IMAGE_DIRS[0]}/ nor {IMAGE_DIRS[1]}/ found; "
                             "extract the Visual Genome image archives into the data root")
        self.listing = [set(os.listdir(d)) for d in self.dirs]

    def __call__(self, file_name: str) -> Path:
        for directory, names in zip(self.dirs, self.listing):
            if file_name in names:
                return directory / file_name
        return self.dirs[0] / file_name  # missing: open_image / verify report this path


def _ssgrl_dir(root: Path, num_classes: int) -> Path | None:
    for d in (root, root / "ssgrl_partition"):
        if (d / "train_list_500.txt").is_file() and (d / f"vg_category_{num_classes}_labels_index.json").is_file():
            return d
    return None


def top_categories(objects_file: Path, entries: list, num_classes: int) -> list[str]:
    """The ``num_classes`` most frequent first object names (instances), ties broken by name."""
    counts: Counter = Counter()
    for names in entries:
        counts.update(names)
    if len(counts) < num_classes:
        raise BenchError(f"{objects_file}: only {len(counts)} distinct object names, fewer than "
                         f"num_classes={num_classes}; lower --dataset-option num_classes")
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [name for name, _ in ranked[:num_classes]]


def read_objects(objects_file: Path) -> tuple[list[int], list[list[str]]]:
    """Image ids and, per image, the first name of every object (lower-cased)."""
    data = read_json(objects_file, _FIX)
    if not isinstance(data, list):
        raise BenchError(f"{objects_file}: expected a JSON list of images with 'image_id' and 'objects'; {_FIX}")
    ids, names = [], []
    for k, entry in enumerate(data):
        try:
            image_id = int(entry["image_id"])
            objs = entry["objects"]
        except (KeyError, TypeError, ValueError) as exc:
            raise BenchError(f"{objects_file}: entry [{k}] lacks a valid field {exc}; {_FIX}") from None
        per_image = []
        for j, obj in enumerate(objs or []):
            raw = obj.get("names", obj.get("name")) if isinstance(obj, dict) else None
            if isinstance(raw, list):
                raw = raw[0] if raw else None
            if not isinstance(raw, str) or not raw.strip():
                raise BenchError(f"{objects_file}: entry [{k}] (image {image_id}) objects[{j}] has no 'names'; {_FIX}")
            per_image.append(raw.strip().lower())
        ids.append(image_id)
        names.append(per_image)
    if len(set(ids)) != len(ids):
        raise BenchError(f"{objects_file}: an image_id appears twice; {_FIX}")
    return ids, names


class VG200(Dataset):
    name = "vg200"
    summary = "Visual Genome, 200 most frequent object categories, seeded 10,000-image test split"
    citation = "Krishna et al. Visual Genome. IJCV 2017; VG-200 split as in Chen et al., SSGRL (ICCV 2019)"
    default_image_size = 448
    default_backbone = "resnet101"

    @dataclass
    class Options:
        source: Literal["auto", "objects", "ssgrl"] = field(default="auto", metadata={
            "help": "auto (ssgrl files when present, else objects.json), objects or ssgrl"})
        num_classes: Annotated[int, Field(ge=1)] = field(default=200, metadata={"help": "number of most frequent categories kept"})
        test_size: Annotated[int, Field(ge=1)] = field(default=10000, metadata={"help": "images in the seeded test split (objects source)"})
        seed: Annotated[int, Field(ge=0)] = field(default=0, metadata={"help": "seed of the test split (objects source)"})
        objects_file: str = field(default="objects.json", metadata={"help": "objects json, relative to the data root"})
        cache_dir: str = field(default="", metadata={
            "help": "where split files and the category list are saved (default <data root>/mlrpl_bench_cache)"})

    def __init__(self, root, options=None):
        super().__init__(root, options)  # the options' declared types are checked there

    def load_split(self, split: str) -> DatasetSplit:
        """Read one split (see the module docstring for the layouts)."""
        check_split(self.name, split)
        require_dir(self.root, "Visual Genome data root", "pass --data-root pointing at the folder with objects.json")
        source = self.options.source
        ssgrl = _ssgrl_dir(self.root, self.options.num_classes)
        if source == "ssgrl" and ssgrl is None:
            raise BenchError(f"{self.root}: train_list_500.txt / vg_category_{self.options.num_classes}"
                             "_labels_index.json not found here or in ssgrl_partition/; use --dataset-option source=objects")
        locate = ImageLocator(self.root)
        if source == "ssgrl" or (source == "auto" and ssgrl is not None):
            names, ids, labels = self._load_ssgrl(ssgrl, split)
            files = ids
        else:
            names, ids, labels = self._load_objects(split)
            files = [f"{i}.jpg" for i in ids]
        options = self.options_dict()
        options["source"] = "ssgrl" if (source == "ssgrl" or (source == "auto" and ssgrl is not None)) else "objects"
        options.pop("cache_dir")  # where the cache lives does not change the labels
        return DatasetSplit(dataset=self.name, split=split, class_names=names, labels=labels, image_ids=ids,
                            image_paths=[locate(f) for f in files], options=options)

    # -- objects.json ----------------------------------------------------------------------

    def _load_objects(self, split: str) -> tuple[list[str], list[str], np.ndarray]:
        objects_file = self.root / self.options.objects_file
        if not objects_file.is_file():
            raise BenchError(f"{objects_file}: Visual Genome objects file not found; put objects.json (v1.4) in the "
                             "data root, or the SSGRL split files (train_list_500.txt, test_list_500.txt, "
                             "vg_category_200_labels_index.json)")
        o = self.options
        key = file_key(file_identity(objects_file), o.num_classes, o.test_size, o.seed)
        cache = derived_dir(self.root, self.name, key, o.cache_dir)
        wanted = [cache / "categories.txt", cache / f"{split}_list.txt", cache / f"{split}_labels.npy"]
        if not all(p.is_file() for p in wanted):
            self._build_cache(objects_file, cache)
        names = [line for _, line in read_lines(cache / "categories.txt")]
        ids = [line for _, line in read_lines(cache / f"{split}_list.txt")]
        labels = np.load(cache / f"{split}_labels.npy", allow_pickle=False)
        if labels.shape != (len(ids), len(names)):
            raise BenchError(f"{cache}: cached files disagree ({labels.shape} labels for {len(ids)} ids); delete this folder")
        return names, ids, labels

    def _build_cache(self, objects_file: Path, cache: Path) -> None:
        o = self.options
        ids, per_image = read_objects(objects_file)
        if len(ids) <= o.test_size:
            raise BenchError(f"{objects_file}: {len(ids)} images, not more than test_size={o.test_size}; "
                             "lower --dataset-option test_size")
        names = top_categories(objects_file, per_image, o.num_classes)
        col = {n: i for i, n in enumerate(names)}
        order = np.argsort(np.asarray(ids, dtype=np.int64), kind="stable")
        # Drawn over the id-sorted list, so the split does not depend on the json's order.
        test_rows = order[np.random.default_rng(o.seed).permutation(len(ids))[: o.test_size]]
        is_test = np.zeros(len(ids), dtype=bool)
        is_test[test_rows] = True
        for split, mask in (("train", ~is_test), ("test", is_test)):
            rows = [r for r in order if mask[r]]
            labels = np.full((len(rows), len(names)), -1, dtype=np.int8)
            for i, r in enumerate(rows):
                for n in per_image[r]:
                    if n in col:
                        labels[i, col[n]] = 1
            write_label_file(cache / f"{split}_labels.npy", labels)
            atomic_write_text(cache / f"{split}_list.txt", "".join(f"{ids[r]}\n" for r in rows))
        # Written last: its presence (with the lists) marks a complete cache.
        atomic_write_text(cache / "categories.txt", "".join(f"{n}\n" for n in names))

    # -- SSGRL split files -----------------------------------------------------------------

    def _load_ssgrl(self, folder: Path, split: str) -> tuple[list[str], list[str], np.ndarray]:
        n_cls = self.options.num_classes
        list_file = folder / f"{split}_list_500.txt"
        label_file = folder / f"vg_category_{n_cls}_labels_index.json"
        if not list_file.is_file():
            raise BenchError(f"{list_file}: SSGRL {split} list not found; put it beside {label_file.name}")
        index = read_json(label_file, "use SSGRL's labels index json")
        if not isinstance(index, dict):
            raise BenchError(f"{label_file}: expected an object mapping image file names to lists of category indices")
        names_file = folder / f"vg_category_{n_cls}.json"
        names = self._ssgrl_names(names_file) if names_file.is_file() else [f"vg_category_{i:03d}" for i in range(n_cls)]
        lines = read_lines(list_file)
        labels = np.full((len(lines), n_cls), -1, dtype=np.int8)
        ids = []
        for row, (line_no, file_name) in enumerate(lines):
            if file_name not in index:
                raise BenchError(f"{list_file}:{line_no}: image {file_name!r} has no entry in {label_file}; "
                                 "use the list and labels files of the same SSGRL release")
            for value in index[file_name] or []:
                if not isinstance(value, int) or not 0 <= value < n_cls:
                    raise BenchError(f"{label_file}: image {file_name!r} has label index {value!r} outside "
                                     f"0..{n_cls - 1}; set --dataset-option num_classes to the file's category count")
                labels[row, value] = 1
            ids.append(file_name)
        return names, ids, labels

    def _ssgrl_names(self, names_file: Path) -> list[str]:
        n_cls = self.options.num_classes
        data = read_json(names_file, "expected a list of names or {name: index}")
        if isinstance(data, dict):
            names = [""] * n_cls
            for name, idx in data.items():
                if not isinstance(idx, int) or not 0 <= idx < n_cls:
                    raise BenchError(f"{names_file}: category {name!r} has index {idx!r} outside 0..{n_cls - 1}")
                names[idx] = str(name)
        elif isinstance(data, list):
            names = [str(n) for n in data]
        else:
            raise BenchError(f"{names_file}: expected a list of names or {{name: index}}")
        if len(names) != n_cls or not all(names):
            raise BenchError(f"{names_file}: expected {n_cls} category names, each index once")
        return names


@hookimpl
def mlrpl_datasets():
    return [VG200]
