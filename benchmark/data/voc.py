"""``voc2007``: PASCAL VOC 2007 in the official VOCdevkit layout.

Layout (``--data-root`` may name ``VOCdevkit``, the ``VOC2007`` folder, or a folder holding
``VOCdevkit``)::

    VOC2007/Annotations/<id>.xml
    VOC2007/ImageSets/Main/trainval.txt   (train split; rows in this file's order)
    VOC2007/ImageSets/Main/test.txt       (test split)
    VOC2007/JPEGImages/<id>.jpg

Labels come from the ``<object>`` entries of each annotation. A class present in an image only
as ``difficult`` objects is handled by the ``difficult`` option: ``negative`` (the official
SST/HST/DSRB convention: such objects are skipped, so the class is -1), ``ignore`` (0: unknown
on train, left out of the metrics on test) or ``positive``.
"""

from __future__ import annotations

from typing import Literal
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BenchError
from ..hookspecs import hookimpl
from ._common import check_split, parse_xml, read_lines, require_dir, require_file
from .base import Dataset, DatasetSplit

#: The 20 VOC classes in the standard (alphabetical) order used by every published table.
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)
DIFFICULT_CHOICES = ("negative", "ignore", "positive")
_FIX = "restore VOC2007 from the VOCtrainval/VOCtest archives"


def resolve_voc_root(root: Path) -> Path:
    """Find the ``VOC2007`` folder from a data root naming it, ``VOCdevkit`` or their parent."""
    for candidate in (root, root / "VOC2007", root / "VOCdevkit" / "VOC2007"):
        if (candidate / "Annotations").is_dir() or (candidate / "ImageSets").is_dir():
            return candidate
    require_dir(root, "VOC2007 data root", "pass --data-root pointing at VOCdevkit or VOCdevkit/VOC2007")
    raise BenchError(f"{root}: no VOC2007 layout here (expected Annotations/ and ImageSets/Main/ in {root}, "
                     f"{root / 'VOC2007'} or {root / 'VOCdevkit' / 'VOC2007'}); "
                     "pass --data-root pointing at VOCdevkit or VOCdevkit/VOC2007")


def parse_voc_annotation(path: Path) -> list[tuple[str, bool]]:
    """The ``(class name, difficult)`` pairs of the objects in one VOC annotation file."""
    root = parse_xml(path, _FIX)
    objects = []
    for obj in root.iter("object"):
        name_el = obj.find("name")
        if name_el is None or not (name_el.text or "").strip():
            raise BenchError(f"{path}: an <object> without a <name>; {_FIX}")
        difficult_el = obj.find("difficult")
        text = (difficult_el.text or "0").strip() if difficult_el is not None else "0"
        if text not in ("0", "1"):
            raise BenchError(f"{path}: <difficult> is {text!r} for object {name_el.text.strip()!r}; expected 0 or 1")
        objects.append((name_el.text.strip(), text == "1"))
    return objects


class VOC2007(Dataset):
    name = "voc2007"
    summary = "PASCAL VOC 2007, 20 classes (trainval 5,011 / test 4,952), official VOCdevkit layout"
    citation = ("Everingham, Van Gool, Williams, Winn, Zisserman. The PASCAL Visual Object Classes (VOC) "
                "Challenge. IJCV 2010")
    default_image_size = 448
    default_backbone = "resnet101"

    @dataclass
    class Options:
        difficult: Literal[DIFFICULT_CHOICES] = field(default="negative", metadata={
            "help": "classes present only as difficult objects: negative (official, -1), ignore (0, left out "
                    "of the metrics) or positive"})
        train_set: str = field(default="trainval", metadata={
            "help": "image set of the train split (ImageSets/Main/<name>.txt): trainval (papers) or train"})
        test_set: str = field(default="test", metadata={
            "help": "image set of the test split (ImageSets/Main/<name>.txt): test (papers) or val"})

    def __init__(self, root, options=None):
        super().__init__(root, options)

    def load_split(self, split: str) -> DatasetSplit:
        """Read one split: rows in the image-set file's order, the 20 classes in standard order."""
        check_split(self.name, split)
        voc = resolve_voc_root(self.root)
        image_set = self.options.train_set if split == "train" else self.options.test_set
        list_file = require_file(voc / "ImageSets" / "Main" / f"{image_set}.txt", f"VOC image set {image_set!r}",
                                 f"extract the ImageSets folder of the VOC2007 {split} archive")
        ann_dir = require_dir(voc / "Annotations", "VOC Annotations folder", _FIX)
        ids = [line.split()[0] for _, line in read_lines(list_file)]
        if not ids:
            raise BenchError(f"{list_file}: no image ids; {_FIX}")
        index = {c: i for i, c in enumerate(VOC_CLASSES)}
        difficult_value = {"negative": -1, "ignore": 0, "positive": 1}[self.options.difficult]
        labels = np.full((len(ids), len(VOC_CLASSES)), -1, dtype=np.int8)
        for row, image_id in enumerate(ids):
            path = ann_dir / f"{image_id}.xml"
            if not path.is_file():
                raise BenchError(f"{path}: annotation of image {image_id!r} (listed in {list_file}) not found; {_FIX}")
            seen_difficult = set()
            for cls, difficult in parse_voc_annotation(path):
                if cls not in index:
                    raise BenchError(f"{path}: unknown category {cls!r}; VOC2007 classes are {', '.join(VOC_CLASSES)}")
                if difficult:
                    seen_difficult.add(index[cls])
                else:
                    labels[row, index[cls]] = 1
            for col in seen_difficult:
                if labels[row, col] != 1:  # a non-difficult instance makes the class plainly positive
                    labels[row, col] = difficult_value
        image_dir = voc / "JPEGImages"
        return DatasetSplit(dataset=self.name, split=split, class_names=list(VOC_CLASSES), labels=labels,
                            image_ids=ids, image_paths=[image_dir / f"{i}.jpg" for i in ids],
                            options=self.options_dict())


@hookimpl
def mlrpl_datasets():
    return [VOC2007]
