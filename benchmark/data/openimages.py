"""``openimages``: Open Images V6 human-verified image-level labels (natively partial).

Layout under ``--data-root`` (file names of the official release; each one is an option)::

    class-descriptions-boxable.csv                  LabelName,DisplayName (the 600 boxable classes,
                                                    no header) -- or oidv6-class-descriptions.csv
    oidv6-train-annotations-human-imagelabels.csv   ImageID,Source,LabelName,Confidence
    test-annotations-human-imagelabels.csv          the same for the test split
    train/<ImageID>.jpg   test/<ImageID>.jpg
    train_list.txt / test_list.txt (optional)       ImageIDs to use, one a line (e.g. the images you have)

Only human-verified labels are used: Confidence 1 is positive (1), 0 negative (-1); a class that
was not verified for an image stays 0 on both sides, and evaluation leaves those entries out.
If a pair is verified both ways, positive wins. The classes are those of the class file that have
at least one positive in the train annotations ("trainable"), in the class file's order; labels
of classes outside the file are an error, except with the boxable subset file, where they are
out of scope and ignored (``--dataset-option unknown_labels=error|ignore`` decides explicitly);
``--dataset-option num_classes=N`` keeps the N most frequent of them (train positives, ties by LabelName).
Rows follow the split list when given (listed images without a verified label are all 0), else
the images with a verified label of a selected class, in order of first appearance in the csv.
The class list is saved under ``<data root>/mlrpl_bench_cache/openimages/`` and reused.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Literal
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import Field

from ..errors import BenchError
from ..hookspecs import hookimpl
from ._common import (PathList, atomic_write_text, check_split, derived_dir, file_identity, file_key, first_existing,
                      read_lines)
from .base import Dataset, DatasetSplit

COLUMNS = ("ImageID", "Source", "LabelName", "Confidence")
CLASS_FILES = ("class-descriptions-boxable.csv", "oidv6-class-descriptions.csv", "class-descriptions.csv")
_CHUNK = 2_000_000


def read_class_descriptions(path: Path) -> list[tuple[str, str]]:
    """``(LabelName, DisplayName)`` pairs in file order (with or without the V6 header row)."""
    import csv
    import io

    from ._common import read_text

    text = read_text(path, "use the class descriptions csv of the Open Images release")
    out = []
    seen = set()
    for line_no, row in enumerate(csv.reader(io.StringIO(text)), 1):
        if not row or (line_no == 1 and row[0].strip() == "LabelName"):
            continue
        if len(row) != 2 or not row[0].strip():
            raise BenchError(f"{path}:{line_no}: expected 'LabelName,DisplayName', got {row!r}")
        mid = row[0].strip()
        if mid in seen:
            raise BenchError(f"{path}:{line_no}: LabelName {mid!r} listed twice")
        seen.add(mid)
        out.append((mid, row[1].strip()))
    if not out:
        raise BenchError(f"{path}: no classes; use the class descriptions csv of the Open Images release")
    return out


def iter_verified(path: Path):
    """Yield ``(chunk DataFrame, first line number)`` of a human-labels csv, validated."""
    import pandas as pd

    try:
        reader = pd.read_csv(path, dtype=str, chunksize=_CHUNK, keep_default_na=False)
        line = 2
        for chunk in reader:
            if line == 2:
                missing = [c for c in COLUMNS if c not in chunk.columns]
                if missing:
                    raise BenchError(f"{path}:1: missing column {missing[0]!r}; the header must be {','.join(COLUMNS)}")
            conf = chunk["Confidence"].str.strip()
            bad = ~conf.isin(["0", "1", "0.0", "1.0"])
            if bad.any():
                k = int(np.flatnonzero(bad.to_numpy())[0])
                raise BenchError(f"{path}:{line + k}: field Confidence is {chunk['Confidence'].iloc[k]!r}; expected 1 or 0")
            empty = (chunk["ImageID"].str.strip() == "") | (chunk["LabelName"].str.strip() == "")
            if empty.any():
                k = int(np.flatnonzero(empty.to_numpy())[0])
                raise BenchError(f"{path}:{line + k}: empty ImageID or LabelName")
            yield chunk.assign(positive=conf.str.startswith("1")), line
            line += len(chunk)
    except FileNotFoundError:
        raise BenchError(f"{path}: Open Images labels file not found; put the human-verified image labels csv "
                         "in the data root or name it with --dataset-option train_labels=/test_labels=") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BenchError(f"{path}: malformed CSV ({first}); expected columns {','.join(COLUMNS)}") from None


class OpenImages(Dataset):
    name = "openimages"
    summary = "Open Images V6 human-verified image-level labels; natively partial (unverified = 0)"
    citation = ("Kuznetsova et al. The Open Images Dataset V4: Unified image classification, object detection, "
                "and visual relationship detection at scale. IJCV 2020")
    default_image_size = 448
    default_backbone = "resnet101"

    @dataclass
    class Options:
        train_labels: str = field(default="oidv6-train-annotations-human-imagelabels.csv", metadata={
            "help": "human-verified labels csv of the train split, relative to the data root"})
        test_labels: str = field(default="test-annotations-human-imagelabels.csv", metadata={
            "help": "human-verified labels csv of the test split (validation-...csv works too)"})
        classes_file: str = field(default="", metadata={
            "help": "class descriptions csv (default: the first of " + ", ".join(CLASS_FILES) + " found)"})
        num_classes: Annotated[int, Field(ge=0)] = field(default=0, metadata={"help": "keep the N most frequent trainable classes (0: all)"})
        train_list: str = field(default="", metadata={"help": "file of train ImageIDs to use (default train_list.txt if present)"})
        test_list: str = field(default="", metadata={"help": "file of test ImageIDs to use (default test_list.txt if present)"})
        unknown_labels: Literal["auto", "error", "ignore"] = field(default="auto", metadata={
            "help": "train labels whose class is not in the class file: error, ignore, or auto (ignore with the "
                    "boxable subset, error otherwise)"})
        cache_dir: str = field(default="", metadata={"help": "where the class list is saved"})

    def __init__(self, root, options=None):
        super().__init__(root, options)

    def _classes_file(self) -> Path:
        if self.options.classes_file:
            path = self.root / self.options.classes_file
            if not path.is_file():
                raise BenchError(f"{path}: class descriptions file not found; fix --dataset-option classes_file")
            return path
        path = first_existing([self.root / f for f in CLASS_FILES])
        if path is None:
            raise BenchError(f"{self.root}: no class descriptions csv ({', '.join(CLASS_FILES)}); "
                             "put one in the data root or pass --dataset-option classes_file=FILE")
        return path

    def classes(self) -> list[tuple[str, str]]:
        """The selected ``(LabelName, DisplayName)`` columns (computed once, then cached)."""
        classes_file = self._classes_file()
        train_file = self.root / self.options.train_labels
        if not train_file.is_file():
            raise BenchError(f"{train_file}: Open Images train labels not found (needed for the class list); "
                             "name it with --dataset-option train_labels=FILE")
        key = file_key(file_identity(classes_file), file_identity(train_file), self.options.num_classes,
                       self.options.unknown_labels)
        cache = derived_dir(self.root, self.name, key, self.options.cache_dir) / "classes.csv"
        described = read_class_descriptions(classes_file)
        mode = self.options.unknown_labels
        # The boxable list is a subset by design: labels of the other ~19k classes are out of scope.
        strict = mode == "error" or (mode == "auto" and classes_file.name != CLASS_FILES[0])
        display = dict(described)
        if cache.is_file():
            mids = [line for _, line in read_lines(cache)]
        else:
            counts: Counter = Counter()
            for chunk, line in iter_verified(train_file):
                unknown = ~chunk["LabelName"].isin(display)
                if strict and unknown.any():
                    k = int(np.flatnonzero(unknown.to_numpy())[0])
                    raise BenchError(f"{train_file}:{line + k}: unknown category {chunk['LabelName'].iloc[k]!r} "
                                     f"(not in {classes_file.name}); use the class file of the same release, "
                                     "or --dataset-option unknown_labels=ignore to keep only the file's classes")
                counts.update(chunk.loc[chunk["positive"], "LabelName"].value_counts().to_dict())
            trainable = [mid for mid, _ in described if counts.get(mid, 0) > 0]
            if not trainable:
                raise BenchError(f"{train_file}: no positive (Confidence 1) label for any class of {classes_file.name}")
            if self.options.num_classes > 0:
                top = sorted(trainable, key=lambda m: (-counts[m], m))[: self.options.num_classes]
                keep = set(top)
                trainable = [m for m in trainable if m in keep]
            mids = trainable
            atomic_write_text(cache, "".join(f"{m}\n" for m in mids))
        names = [display.get(m, m) for m in mids]
        dup = {n for n in names if names.count(n) > 1}
        return [(m, f"{n} ({m})" if n in dup else n) for m, n in zip(mids, names)]

    def load_split(self, split: str) -> DatasetSplit:
        """Read one split: verified labels as 1/-1, every other entry 0."""
        import pandas as pd

        check_split(self.name, split)
        if not self.root.is_dir():
            raise BenchError(f"{self.root}: Open Images data root not found; pass --data-root pointing at it")
        classes = self.classes()
        col = {mid: i for i, (mid, _) in enumerate(classes)}
        label_file = self.root / (self.options.train_labels if split == "train" else self.options.test_labels)
        list_opt = self.options.train_list if split == "train" else self.options.test_list
        list_file = self.root / (list_opt or f"{split}_list.txt")
        if list_opt and not list_file.is_file():
            raise BenchError(f"{list_file}: image list not found; fix --dataset-option {split}_list=FILE")
        listed = [line for _, line in read_lines(list_file)] if list_file.is_file() else None
        chunks_ids, chunks_c, chunks_v = [], [], []
        for chunk, _ in iter_verified(label_file):
            c = chunk["LabelName"].map(col)
            keep = c.notna().to_numpy()
            chunks_ids.append(chunk["ImageID"].str.strip().to_numpy()[keep])
            chunks_c.append(c.to_numpy()[keep].astype(np.int64))
            chunks_v.append(np.where(chunk["positive"].to_numpy()[keep], 1, -1).astype(np.int8))
        all_ids = np.concatenate(chunks_ids) if chunks_ids else np.empty(0, dtype=object)
        if listed is not None:
            if len(set(listed)) != len(listed):
                raise BenchError(f"{list_file}: an ImageID is listed twice; list each image once")
            ids = listed
            r = pd.Index(ids).get_indexer(all_ids)  # -1: an image not in the list
        else:
            r, uniques = pd.factorize(all_ids, sort=False)  # first-appearance order
            ids = [str(u) for u in uniques]
        if not ids:
            raise BenchError(f"{label_file}: no image has a verified label for the selected classes")
        labels = np.zeros((len(ids), len(classes)), dtype=np.int8)
        if len(all_ids):
            c, v = np.concatenate(chunks_c), np.concatenate(chunks_v)
            inside = r >= 0
            r, c, v = r[inside], c[inside], v[inside]
            labels[r[v == -1], c[v == -1]] = -1
            labels[r[v == 1], c[v == 1]] = 1  # written last: a positive verification wins
        image_dir = self.root / split
        options = self.options_dict()
        options.pop("cache_dir")
        return DatasetSplit(dataset=self.name, split=split, class_names=[n for _, n in classes], labels=labels,
                            image_ids=ids, image_paths=PathList(image_dir, ids, ".jpg"), options=options)


@hookimpl
def mlrpl_datasets():
    return [OpenImages]
