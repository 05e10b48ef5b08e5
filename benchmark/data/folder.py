"""``folder``: your own images plus a CSV — the simplest way to bring your own data.

Layout under ``--data-root DIR``::

    labels.csv      header ``image,labels[,split]``; one image a row:
                        photos/001.jpg,cat;dog,train
                        photos/002.jpg,,test          (empty labels: no class present)
    classes.txt     optional: the class names in column order, one a line
    <images>        paths in ``image`` are relative to DIR (absolute paths work too)

``labels`` holds the classes present, separated by ``;``; every other class is negative. The
classes are ``classes.txt`` when it exists (a label not in it is an error), else the sorted union
of all labels. ``split`` is ``train`` or ``test``; without the column, a seeded random
``test_fraction`` of the rows (``--dataset-option test_fraction=0.2 --dataset-option seed=0``) is the test split. Rows keep
the CSV order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import Field

from ..errors import BenchError
from ..hookspecs import hookimpl
from ._common import check_split, read_csv, read_lines, require_dir
from .base import Dataset, DatasetSplit

_FIX = "see `mlrpl-bench datasets` for the folder layout"


class FolderDataset(Dataset):
    name = "folder"
    summary = "Images in a folder plus labels.csv (image,labels[,split]; labels separated by ';')"
    citation = ""
    default_image_size = 224
    default_backbone = "resnet50"

    @dataclass
    class Options:
        csv: str = field(default="labels.csv", metadata={"help": "the labels file, relative to the data root"})
        test_fraction: Annotated[float, Field(gt=0, lt=1)] = field(
            default=0.2, metadata={"help": "test share when the CSV has no split column"})
        seed: Annotated[int, Field(ge=0)] = field(default=0, metadata={"help": "seed of that split"})

    def __init__(self, root, options=None):
        super().__init__(root, options)  # the options' declared types are checked there
        self._table = None

    def table(self) -> tuple[list[str], list[tuple[str, list[str], str]]]:
        """Class names and ``(image, labels, split)`` rows, validated (read once)."""
        if self._table is not None:
            return self._table
        root = require_dir(self.root, "folder data root", "pass --data-root pointing at the folder with labels.csv")
        csv_path = root / self.options.csv
        if not csv_path.is_file():
            raise BenchError(f"{csv_path}: labels file not found; write a CSV with header image,labels[,split] "
                             "(labels separated by ';')")
        raw = read_csv(csv_path, ["image", "labels"], _FIX)
        if not raw:
            raise BenchError(f"{csv_path}: no rows; add one line per image")
        has_split = "split" in raw[0][1]
        classes_file = root / "classes.txt"
        classes = [line for _, line in read_lines(classes_file)] if classes_file.is_file() else None
        if classes is not None and len(set(classes)) != len(classes):
            raise BenchError(f"{classes_file}: a class is listed twice")
        known = set(classes) if classes is not None else None
        rows, seen, union = [], {}, set()
        for line, rec in raw:
            image = rec["image"]
            if not image:
                raise BenchError(f"{csv_path}:{line}: field image is empty; give the image path relative to {root}")
            names = [n.strip() for n in rec["labels"].split(";") if n.strip()]
            for n in names:
                if known is not None and n not in known:
                    raise BenchError(f"{csv_path}:{line}: unknown category {n!r} (not in {classes_file}); "
                                     "add it to classes.txt or fix the label")
            split = rec.get("split", "").strip().lower() if has_split else ""
            if has_split and split not in ("train", "test"):
                raise BenchError(f"{csv_path}:{line}: field split is {rec.get('split')!r}; use train or test")
            key = (image, split)
            if key in seen:
                raise BenchError(f"{csv_path}:{line}: image {image!r} already listed on line {seen[key]}; "
                                 "give each image one row with all its labels")
            seen[key] = line
            union.update(names)
            rows.append((image, names, split))
        if not has_split:
            n_test = max(1, int(round(len(rows) * self.options.test_fraction)))
            if n_test >= len(rows):
                raise BenchError(f"{csv_path}: {len(rows)} rows are too few to split; add a split column or more rows")
            test = set(np.random.default_rng(self.options.seed).permutation(len(rows))[:n_test].tolist())
            rows = [(img, names, "test" if i in test else "train") for i, (img, names, _) in enumerate(rows)]
        if classes is None:
            classes = sorted(union)
            if not classes:
                raise BenchError(f"{csv_path}: no labels at all; fill the labels column (names separated by ';')")
        self._table = (classes, rows)
        return self._table

    def load_split(self, split: str) -> DatasetSplit:
        """Read one split: rows in CSV order, classes from classes.txt or the sorted union."""
        check_split(self.name, split)
        classes, rows = self.table()
        col = {c: i for i, c in enumerate(classes)}
        mine = [(img, names) for img, names, s in rows if s == split]
        if not mine:
            raise BenchError(f"{self.root / self.options.csv}: no {split} rows; mark some rows {split} in the split column")
        labels = np.full((len(mine), len(classes)), -1, dtype=np.int8)
        for i, (_, names) in enumerate(mine):
            for n in names:
                labels[i, col[n]] = 1
        options = self.options_dict()
        return DatasetSplit(dataset=self.name, split=split, class_names=list(classes), labels=labels,
                            image_ids=[img for img, _ in mine],
                            image_paths=[Path(img) if Path(img).is_absolute() else self.root / img for img, _ in mine],
                            options=options)


@hookimpl
def mlrpl_datasets():
    return [FolderDataset]
