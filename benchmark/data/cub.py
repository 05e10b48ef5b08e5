"""``cub200``: CUB-200-2011 with its 312 binary attributes as labels, official train/test split.

Layout (``--data-root`` may name ``CUB_200_2011`` or the folder holding it)::

    CUB_200_2011/images.txt                         <image_id> <relative path>
    CUB_200_2011/train_test_split.txt               <image_id> <1 train | 0 test>
    CUB_200_2011/attributes/image_attribute_labels.txt
                                                    <image_id> <attribute_id> <is_present> <certainty_id> <time>
    attributes.txt                                  <attribute_id> <name>  (in CUB_200_2011/attributes/,
                                                    CUB_200_2011/ or its parent, as in the archive)
    CUB_200_2011/images/<relative path>

An attribute is 1 when ``is_present`` is 1, else -1. ``--dataset-option not_visible=unknown`` turns entries
whose certainty is 1 ("not visible") into 0 (unknown); an (image, attribute) pair missing from
the file is 0. Rows follow ``images.txt``; columns the attribute ids.
"""

from __future__ import annotations

from typing import Literal
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BenchError
from ..hookspecs import hookimpl
from ._common import check_split, first_existing, read_lines, require_file
from .base import Dataset, DatasetSplit

_FIX = "restore it from CUB_200_2011.tgz"


def resolve_cub_root(root: Path) -> Path:
    """The ``CUB_200_2011`` folder, given it or its parent."""
    for candidate in (root, root / "CUB_200_2011"):
        if (candidate / "images.txt").is_file():
            return candidate
    raise BenchError(f"{root}: no CUB_200_2011 layout here (images.txt not found in it or in CUB_200_2011/); "
                     "pass --data-root pointing at CUB_200_2011 or its parent")


def _id_table(path: Path, what: str) -> list[tuple[int, str, str]]:
    """``(line, id, rest)`` rows of a CUB index file (``<id> <value>``)."""
    rows = []
    for line_no, line in read_lines(path, _FIX):
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not parts[0].isdigit():
            raise BenchError(f"{path}:{line_no}: expected '<id> <{what}>', got {line!r}; {_FIX}")
        rows.append((line_no, parts[0], parts[1].strip()))
    return rows


def _check_label_line(path: Path, line_no: int, line: str, rows: dict, n_attrs: int, attr_file: str):
    """Validate one line of image_attribute_labels.txt; raise the one-line error it deserves."""
    parts = line.split()
    if len(parts) < 4 or not all(p.isdigit() for p in parts[:4]):
        raise BenchError(f"{path}:{line_no}: expected '<image_id> <attribute_id> <is_present> "
                         f"<certainty_id> <time>', got {line!r}")
    attr = int(parts[1])
    if not 1 <= attr <= n_attrs:
        raise BenchError(f"{path}:{line_no}: attribute id {attr} outside 1..{n_attrs} ({attr_file} lists {n_attrs}); {_FIX}")
    if parts[2] not in ("0", "1"):
        raise BenchError(f"{path}:{line_no}: is_present {parts[2]!r}; expected 0 or 1")
    if parts[0] not in rows:
        raise BenchError(f"{path}:{line_no}: image id {parts[0]} is not in images.txt; {_FIX}")
    return rows[parts[0]], attr - 1, parts[2] == "1", parts[3] == "1"


def read_attribute_labels(path: Path, rows: dict, n_attrs: int, attr_file: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse ``image_attribute_labels.txt`` for every image of ``images.txt``.

    :param rows: image id -> row (all images, ``images.txt`` order).
    :return: ``present`` (N, A) int8 (1 present, -1 absent, 0 not in the file) and ``not_visible``
        (N, A) bool (certainty 1).
    """
    present = np.zeros((len(rows), n_attrs), dtype=np.int8)
    not_visible = np.zeros((len(rows), n_attrs), dtype=bool)
    import pandas as pd

    try:
        # The fast path: the C parser reading integers (a few released lines carry a sixth
        # field, hence 6 column names); anything odd falls through to the checking path.
        df = pd.read_csv(path, sep=" ", header=None, names=range(6), engine="c",
                         dtype={0: np.int64, 1: np.int64, 2: np.int64, 3: np.int64}, skipinitialspace=True)
        ids = np.fromiter((int(k) for k in rows), np.int64, len(rows))
        lut = np.full(int(max(ids.max(), df[0].max())) + 1, -1, dtype=np.int64)
        lut[ids] = np.fromiter(rows.values(), np.int64, len(rows))
        img_ids, attr, pres, cert = (df[k].to_numpy() for k in range(4))
        r = lut[np.clip(img_ids, 0, None)]
        ok = (img_ids >= 0) & (r >= 0) & (attr >= 1) & (attr <= n_attrs) & ((pres == 0) | (pres == 1)) & (cert >= 0)
        if len(df) and bool(ok.all()):
            present[r, attr - 1] = np.where(pres == 1, 1, -1)
            not_visible[r, attr - 1] = cert == 1
            return present, not_visible
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError):
        pass
    # The slow path finds and names the first bad line (or parses an odd but valid file).
    for line_no, line in read_lines(path, _FIX):
        r, c, is_present, invisible = _check_label_line(path, line_no, line, rows, n_attrs, attr_file)
        present[r, c] = 1 if is_present else -1
        not_visible[r, c] = invisible
    return present, not_visible


class CUB200(Dataset):
    name = "cub200"
    summary = "CUB-200-2011, 312 binary attributes as labels (train 5,994 / test 5,794)"
    citation = "Wah, Branson, Welinder, Perona, Belongie. The Caltech-UCSD Birds-200-2011 Dataset. Caltech 2011"
    default_image_size = 448
    default_backbone = "resnet101"

    @dataclass
    class Options:
        not_visible: Literal["negative", "unknown"] = field(default="negative", metadata={
            "help": "attributes annotated with certainty 1 (not visible): negative (as is_present says) or unknown (0)"})

    def __init__(self, root, options=None):
        super().__init__(root, options)

    def load_split(self, split: str) -> DatasetSplit:
        """Read one split (official ``train_test_split.txt``) with the attribute matrix."""
        check_split(self.name, split)
        cub = resolve_cub_root(self.root)
        attr_file = first_existing([cub / "attributes" / "attributes.txt", cub / "attributes.txt",
                                    cub.parent / "attributes.txt"])
        if attr_file is None:
            raise BenchError(f"{cub.parent / 'attributes.txt'}: attribute names not found (also looked in "
                             f"{cub} and {cub / 'attributes'}); {_FIX}")
        attributes = _id_table(attr_file, "attribute name")
        attr_ids = [int(a) for _, a, _ in attributes]
        if attr_ids != list(range(1, len(attr_ids) + 1)):
            raise BenchError(f"{attr_file}: attribute ids must be 1..{len(attr_ids)} in order; {_FIX}")
        names = [name for _, _, name in attributes]

        images = _id_table(cub / "images.txt", "relative image path")
        split_file = require_file(cub / "train_test_split.txt", "CUB train/test split", _FIX)
        is_train = {}
        for line_no, image_id, flag in _id_table(split_file, "1 or 0"):
            if flag not in ("0", "1"):
                raise BenchError(f"{split_file}:{line_no}: is_training_image {flag!r}; expected 1 or 0")
            is_train[image_id] = flag == "1"
        for line_no, image_id, _ in images:
            if image_id not in is_train:
                raise BenchError(f"{split_file}: image {image_id} (images.txt line {line_no}) has no split entry; {_FIX}")
        selected = [(image_id, rel) for _, image_id, rel in images if is_train[image_id] == (split == "train")]
        if not selected:
            raise BenchError(f"{split_file}: no {split} images; {_FIX}")

        all_rows = {image_id: i for i, (_, image_id, _) in enumerate(images)}
        label_file = require_file(cub / "attributes" / "image_attribute_labels.txt", "CUB attribute labels", _FIX)
        key = (str(label_file), label_file.stat().st_mtime_ns, len(names))
        if getattr(self, "_parsed", (None,))[0] != key:  # both splits share one parse of the 3.7M lines
            self._parsed = (key, read_attribute_labels(label_file, all_rows, len(names), attr_file.name))
        present, not_visible = self._parsed[1]
        take = np.array([all_rows[image_id] for image_id, _ in selected], dtype=np.int64)
        labels = present[take].copy()
        if self.options.not_visible == "unknown":
            labels[not_visible[take]] = 0
        image_dir = cub / "images"
        return DatasetSplit(dataset=self.name, split=split, class_names=names, labels=labels,
                            image_ids=[i for i, _ in selected], image_paths=[image_dir / p for _, p in selected],
                            options=self.options_dict())


@hookimpl
def mlrpl_datasets():
    return [CUB200]
