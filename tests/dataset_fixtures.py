"""Tiny, format-faithful copies of the real datasets' on-disk layouts, written into a folder.

Each writer produces the files the real release has (same names, same syntax) with a handful of
images, so the loaders are tested against the formats they will meet. ``write_voc_fixture`` is
also used by the end-to-end ``mlrpl-bench run`` test.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from mlrpl_bench.data.voc import VOC_CLASSES


def write_image(path: Path, size: int = 16, color=(128, 64, 32), fmt: str | None = None) -> Path:
    """A small solid-colour image (JPEG or PNG by suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), tuple(int(c) for c in color)).save(path, format=fmt)
    return path


# -- PASCAL VOC 2007 -------------------------------------------------------------------------


def voc_xml(image_id: str, objects, size: int = 16) -> str:
    """One annotation in the VOC 2007 XML format; ``objects`` are ``(name, difficult)`` pairs."""
    objs = "".join(
        f"\t<object>\n\t\t<name>{name}</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>\n"
        f"\t\t<difficult>{int(difficult)}</difficult>\n\t\t<bndbox>\n\t\t\t<xmin>1</xmin>\n\t\t\t<ymin>1</ymin>\n"
        f"\t\t\t<xmax>{size}</xmax>\n\t\t\t<ymax>{size}</ymax>\n\t\t</bndbox>\n\t</object>\n"
        for name, difficult in objects)
    return (f"<annotation>\n\t<folder>VOC2007</folder>\n\t<filename>{image_id}.jpg</filename>\n"
            f"\t<source>\n\t\t<database>The VOC2007 Database</database>\n\t</source>\n"
            f"\t<size>\n\t\t<width>{size}</width>\n\t\t<height>{size}</height>\n\t\t<depth>3</depth>\n\t</size>\n"
            f"\t<segmented>0</segmented>\n{objs}</annotation>\n")


def write_voc(root: Path, train: dict, test: dict, image_size: int = 16) -> Path:
    """Write ``root/VOCdevkit/VOC2007``; ``train``/``test`` map image ids to ``(name, difficult)`` lists.

    The image-set files list ids in the dicts' order. Returns the ``VOCdevkit`` folder.
    """
    voc = Path(root) / "VOCdevkit" / "VOC2007"
    (voc / "Annotations").mkdir(parents=True, exist_ok=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for set_name, items in (("trainval", train), ("test", test)):
        (voc / "ImageSets" / "Main" / f"{set_name}.txt").write_text("".join(f"{i}\n" for i in items))
        for image_id, objects in items.items():
            (voc / "Annotations" / f"{image_id}.xml").write_text(voc_xml(image_id, objects, image_size))
            write_image(voc / "JPEGImages" / f"{image_id}.jpg", image_size, rng.integers(0, 256, 3))
    return voc.parent


def write_voc_fixture(root, n_train: int = 8, n_test: int = 4, image_size: int = 32, seed: int = 0) -> Path:
    """A random but deterministic VOC2007 tree with ``n_train`` trainval and ``n_test`` test images.

    Each image gets 1-3 objects (about one in six difficult); its pixels are the mean colour of
    its classes so that a model has something to learn. Returns the ``VOCdevkit`` folder.
    """
    rng = np.random.default_rng(seed)
    colors = rng.integers(0, 256, (len(VOC_CLASSES), 3))
    splits = {}
    counter = 0
    for split, n in (("train", n_train), ("test", n_test)):
        items = {}
        for _ in range(n):
            counter += 1
            picks = rng.choice(len(VOC_CLASSES), size=int(rng.integers(1, 4)), replace=False)
            items[f"{counter:06d}"] = [(VOC_CLASSES[c], bool(rng.random() < 1 / 6)) for c in picks]
        splits[split] = items
    devkit = write_voc(Path(root), splits["train"], splits["test"], image_size)
    voc = devkit / "VOC2007"
    for items in splits.values():
        for image_id, objects in items.items():
            color = np.mean([colors[VOC_CLASSES.index(n)] for n, _ in objects], axis=0)
            write_image(voc / "JPEGImages" / f"{image_id}.jpg", image_size, color)
    return devkit


# -- MS-COCO 2014 ----------------------------------------------------------------------------


def write_coco(root: Path, categories, splits: dict, image_size: int = 16) -> Path:
    """Write ``annotations/instances_<split>.json`` and images for each of ``splits``.

    :param categories: ``(id, name)`` pairs, in any order (as in the release, ids are not contiguous).
    :param splits: ``{"train2014": (images, annotations), ...}`` with images ``(id, file_name)`` and
        annotations ``(image_id, category_id)``.
    """
    root = Path(root)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    ann_id = 0
    for split, (images, pairs) in splits.items():
        anns = []
        for image_id, cat_id in pairs:
            ann_id += 1
            anns.append({"id": ann_id, "image_id": image_id, "category_id": cat_id, "iscrowd": 0,
                         "area": 4.0, "bbox": [1, 1, 2, 2], "segmentation": [[1, 1, 3, 1, 3, 3]]})
        data = {"info": {"description": "fixture"}, "licenses": [],
                "images": [{"id": i, "file_name": f, "width": image_size, "height": image_size} for i, f in images],
                "annotations": anns,
                "categories": [{"id": c, "name": n, "supercategory": "thing"} for c, n in categories]}
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
        for _, file_name in images:
            write_image(root / split / file_name, image_size)
    return root


# -- Visual Genome ---------------------------------------------------------------------------


def write_vg_objects(root: Path, images: dict, image_size: int = 8, second_dir: set | None = None) -> Path:
    """Write ``objects.json`` (v1.4 format) and ``VG_100K``/``VG_100K_2`` images.

    :param images: ``{image_id: [object name, ...]}``.
    :param second_dir: image ids whose file goes to ``VG_100K_2`` (the rest to ``VG_100K``).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    data, obj_id = [], 0
    for image_id, names in images.items():
        objs = []
        for n in names:
            obj_id += 1
            objs.append({"object_id": obj_id, "x": 0, "y": 0, "w": 2, "h": 2, "names": [n], "synsets": []})
        data.append({"image_id": image_id, "image_url": f"https://example/{image_id}.jpg", "objects": objs})
    (root / "objects.json").write_text(json.dumps(data))
    second_dir = second_dir or set()
    (root / "VG_100K").mkdir(exist_ok=True)
    (root / "VG_100K_2").mkdir(exist_ok=True)
    for image_id in images:
        folder = "VG_100K_2" if image_id in second_dir else "VG_100K"
        write_image(root / folder / f"{image_id}.jpg", image_size)
    return root


# -- NUS-WIDE --------------------------------------------------------------------------------


def write_nuswide(root: Path, concepts, train, test, image_size: int = 8, missing: set | None = None) -> Path:
    """Write the official NUS-WIDE text files; ``train``/``test`` are ``(folder\\file, {concepts})``."""
    root = Path(root)
    (root / "ImageList").mkdir(parents=True, exist_ok=True)
    gt = root / "Groundtruth" / "TrainTestLabels"
    gt.mkdir(parents=True, exist_ok=True)
    (root / "Concepts81.txt").write_text("".join(f"{c}\n" for c in concepts))
    missing = missing or set()
    for tag, rows in (("Train", train), ("Test", test)):
        # The release uses Windows line endings and backslashes in the image lists.
        (root / "ImageList" / f"{tag}Imagelist.txt").write_bytes("".join(f"{p}\r\n" for p, _ in rows).encode())
        for c in concepts:
            (gt / f"Labels_{c}_{tag}.txt").write_text("".join(f"{int(c in s)}\n" for _, s in rows))
        for p, _ in rows:
            if p not in missing:
                write_image(root / "Flickr" / p.replace("\\", "/").rsplit("Flickr/", 1)[-1], image_size)
    return root


# -- CUB-200-2011 ----------------------------------------------------------------------------


def write_cub(root: Path, attributes, images, labels, image_size: int = 8, extra_field_lines: int = 0) -> Path:
    """Write ``attributes.txt`` (beside ``CUB_200_2011/``, as in the archive) and the CUB index files.

    :param images: ``(image_id, relative path, is_train)``.
    :param labels: ``(image_id, attribute_id, is_present, certainty_id)`` rows.
    :param extra_field_lines: how many label lines get the stray sixth field the release has.
    """
    root = Path(root)
    cub = root / "CUB_200_2011"
    (cub / "attributes").mkdir(parents=True, exist_ok=True)
    (root / "attributes.txt").write_text("".join(f"{i} {a}\n" for i, a in enumerate(attributes, 1)))
    (cub / "images.txt").write_text("".join(f"{i} {p}\n" for i, p, _ in images))
    (cub / "train_test_split.txt").write_text("".join(f"{i} {int(t)}\n" for i, _, t in images))
    lines = []
    for k, (img, attr, present, certainty) in enumerate(labels):
        extra = " 0" if k < extra_field_lines else ""
        lines.append(f"{img} {attr} {present} {certainty} 12.5{extra}\n")
    (cub / "attributes" / "image_attribute_labels.txt").write_text("".join(lines))
    for _, p, _ in images:
        write_image(cub / "images" / p, image_size)
    return root


# -- Open Images V6 --------------------------------------------------------------------------


def write_openimages(root: Path, classes, train_rows, test_rows, image_size: int = 8, header: bool = False) -> Path:
    """Write the class descriptions and human-verified label csvs of Open Images V6.

    :param classes: ``(LabelName, DisplayName)`` pairs (``class-descriptions-boxable.csv``, no header
        unless ``header``).
    :param train_rows: ``(ImageID, LabelName, Confidence)`` rows.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "class-descriptions-boxable.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        if header:
            w.writerow(["LabelName", "DisplayName"])
        w.writerows(classes)
    for name, rows, split in (("oidv6-train-annotations-human-imagelabels.csv", train_rows, "train"),
                              ("test-annotations-human-imagelabels.csv", test_rows, "test")):
        with open(root / name, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["ImageID", "Source", "LabelName", "Confidence"])
            for image_id, mid, conf in rows:
                w.writerow([image_id, "verification", mid, conf])
        for image_id in dict.fromkeys(r[0] for r in rows):
            write_image(root / split / f"{image_id}.jpg", image_size)
    return root


# -- Hugging Face datasets -------------------------------------------------------------------


def write_hf(root: Path, class_names, train_labels, test_labels, *, multihot: bool = False,
             image_size: int = 8, label_column: str = "labels") -> Path:
    """Save a ``DatasetDict`` (train/test) with an ``Image`` column and a multi-label column.

    ``*_labels`` are lists of class-index lists; with ``multihot`` they are stored as 0/1 vectors
    (a plain integer list feature) instead of ``List(ClassLabel)``.
    """
    import datasets

    rng = np.random.default_rng(0)

    def make(rows):
        images = [Image.new("RGB", (image_size, image_size), tuple(int(c) for c in rng.integers(0, 256, 3)))
                  for _ in rows]
        if multihot:
            values = [[int(i in r) for i in range(len(class_names))] for r in rows]
            feature = datasets.List(datasets.Value("int32"))
        else:
            values = [list(r) for r in rows]
            feature = datasets.List(datasets.ClassLabel(names=list(class_names)))
        features = datasets.Features({"image": datasets.Image(), label_column: feature})
        return datasets.Dataset.from_dict({"image": images, label_column: values}, features=features)

    dd = datasets.DatasetDict({"train": make(train_labels), "test": make(test_labels)})
    dd.save_to_disk(str(root))
    return Path(root)


# -- folder ----------------------------------------------------------------------------------


def write_folder(root: Path, rows, classes=None, image_size: int = 8, with_split: bool = True) -> Path:
    """Write ``labels.csv`` (image,labels[,split]) and the images; ``rows`` are ``(image, labels, split)``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "labels", "split"] if with_split else ["image", "labels"])
        for image, labels, split in rows:
            w.writerow([image, ";".join(labels), split] if with_split else [image, ";".join(labels)])
            write_image(root / image, image_size)
    if classes is not None:
        (root / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    return root
