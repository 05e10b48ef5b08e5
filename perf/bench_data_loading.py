"""Data loading: images/s of the VOC and COCO loaders with the paper transforms against the backbone's appetite.

Run:  python perf/bench_data_loading.py [--sizes 448,224] [--workers 0,1,2] [--images 160] [--repeats 3] [--quick]

A synthetic VOC2007 tree (``VOCdevkit/VOC2007``: Annotations, ImageSets/Main, JPEGImages) and a
COCO 2014 tree (``annotations/instances_train2014.json``, ``train2014/``) are written into a
temporary directory: JPEGs of the releases' typical sizes (VOC mostly 500x375, some portrait and
500x333; COCO mostly 640x480, some 640x427 and portrait), textured so that they compress to
about the releases' mean file sizes (VOC ~100 KB, COCO ~160 KB per image; the script prints
the fixture's) - solid-colour images would decode unrealistically fast. Nothing is downloaded. The files sit in the OS page cache
(they were just written), so this measures decoding and transforming, not the disk.

Measured, interleaved repeat by repeat (one warm-up round), medians reported:

* ``loader``: one epoch over the training split through the suite's own path - ``voc2007`` /
  ``coco2014`` ``load_split``, ``SplitRows`` with ``paper_transform(size, train=True)`` (resize,
  random side crop, resize, flip, normalise), ``make_loader`` with batch 8 and 0/1/2 worker
  processes; the time includes starting the workers (``persistent_workers=False`` in the suite,
  so every epoch pays it);
* ``consumer``: the papers' backbone, ResNet-101 under ``PooledLinearClassifier``, forward +
  partial-BCE + backward on a batch of 8 at the same size, on this CPU.

Ratio lines give loader images/s / consumer images/s (>= 1: the loader keeps up). On a GPU the
consumer is one to two orders of magnitude faster than on this CPU, so the per-worker rate is
also printed: the workers a GPU needs is its images/s divided by that rate.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

# Spin-waiting OpenMP threads are ~13x slower on an oversubscribed machine (see README).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleave, load_note, machine_note, median, spread, timed  # noqa: E402

VOC_SIZES = ((500, 375),) * 6 + ((375, 500), (500, 333))  # (width, height), in proportion
COCO_SIZES = ((640, 480),) * 5 + ((640, 427), (480, 640))


def textured_jpeg(path: Path, width: int, height: int, rng: np.random.Generator, quality: int = 90,
                  noise: float = 20.0) -> int:
    """A photo-like JPEG: smooth colour fields, a few shapes and sensor-like noise. Returns bytes written."""
    from PIL import Image, ImageDraw, ImageFilter

    coarse = rng.integers(0, 256, (max(2, height // 60), max(2, width // 60), 3), dtype=np.uint8)
    img = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 9))):
        x0, y0 = int(rng.integers(0, width - 20)), int(rng.integers(0, height - 20))
        x1, y1 = x0 + int(rng.integers(10, width // 2)), y0 + int(rng.integers(10, height // 2))
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
    img = img.filter(ImageFilter.GaussianBlur(0.8))
    pixels = np.asarray(img, dtype=np.int16) + rng.normal(0, noise, (height, width, 3)).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, format="JPEG", quality=quality)
    return path.stat().st_size


def write_voc_tree(root: Path, n_train: int, n_test: int, seed: int = 0, scale: float = 1.0) -> tuple[Path, float]:
    """A VOC2007 tree with realistic JPEG sizes; returns ``(VOCdevkit, mean KB per image)``."""
    from mlrpl_bench.data.voc import VOC_CLASSES

    rng = np.random.default_rng(seed)
    voc = root / "VOCdevkit" / "VOC2007"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    sizes, counter = [], 0
    for set_name, n in (("trainval", n_train), ("test", n_test)):
        ids = []
        for _ in range(n):
            counter += 1
            image_id = f"{counter:06d}"
            ids.append(image_id)
            w, h = VOC_SIZES[counter % len(VOC_SIZES)]
            w, h = max(32, round(w * scale)), max(32, round(h * scale))
            sizes.append(textured_jpeg(voc / "JPEGImages" / f"{image_id}.jpg", w, h, rng))
            objects = "".join(
                f"<object><name>{VOC_CLASSES[c]}</name><difficult>{int(rng.random() < 0.15)}</difficult>"
                f"<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>{w}</xmax><ymax>{h}</ymax></bndbox></object>"
                for c in rng.choice(len(VOC_CLASSES), size=int(rng.integers(1, 4)), replace=False))
            (voc / "Annotations" / f"{image_id}.xml").write_text(
                f"<annotation><filename>{image_id}.jpg</filename><size><width>{w}</width><height>{h}</height>"
                f"<depth>3</depth></size>{objects}</annotation>")
        (voc / "ImageSets" / "Main" / f"{set_name}.txt").write_text("".join(f"{i}\n" for i in ids))
    return voc.parent, float(np.mean(sizes)) / 1024


def write_coco_tree(root: Path, n_train: int, n_test: int, seed: int = 1, scale: float = 1.0) -> tuple[Path, float]:
    """A COCO 2014 tree (80 categories, ~2.9 per image) with realistic JPEG sizes."""
    rng = np.random.default_rng(seed)
    (root / "annotations").mkdir(parents=True)
    categories = [{"id": i + 1 + i // 10, "name": f"category{i}", "supercategory": "thing"} for i in range(80)]
    sizes, image_id, ann_id = [], 0, 0
    for split, n in (("train2014", n_train), ("val2014", n_test)):
        images, anns = [], []
        for _ in range(n):
            image_id += 1
            w, h = COCO_SIZES[image_id % len(COCO_SIZES)]
            w, h = max(32, round(w * scale)), max(32, round(h * scale))
            name = f"COCO_{split}_{image_id:012d}.jpg"
            sizes.append(textured_jpeg(root / split / name, w, h, rng))
            images.append({"id": image_id, "file_name": name, "width": w, "height": h})
            for c in rng.choice(80, size=int(rng.integers(1, 6)), replace=False):
                ann_id += 1
                anns.append({"id": ann_id, "image_id": image_id, "category_id": categories[c]["id"], "iscrowd": 0,
                             "area": 100.0, "bbox": [1, 1, 10, 10], "segmentation": [[1, 1, 11, 1, 11, 11]]})
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(
            {"info": {"description": "synthetic benchmark fixture"}, "licenses": [], "images": images,
             "annotations": anns, "categories": categories}))
    return root, float(np.mean(sizes)) / 1024


def loader_epoch(rows, batch_size: int, workers: int, seed: int) -> float:
    """Seconds of one epoch through ``make_loader`` (worker start-up included)."""
    from mlrpl_bench.data.loading import EpochShuffleSampler, make_loader

    def go():
        loader = make_loader(rows, EpochShuffleSampler(len(rows), seed), batch_size, workers=workers)
        n = 0
        for batch, _ in loader:
            n += len(batch.indices)
        assert n == len(rows)

    return timed(go)


def consumer(backbone_name: str, image_size: int, batch_size: int, num_classes: int):
    """``() -> seconds`` of one forward + partial-BCE + backward of the papers' model on a batch."""
    from mlrpl_bench import plugin_manager as P
    from mlrpl_bench.losses import partial_bce
    from mlrpl_bench.models.heads import PooledLinearClassifier

    torch.manual_seed(0)
    model = PooledLinearClassifier(P.get_backbone(backbone_name).build("none", "none"), num_classes).train()
    x = torch.randn(batch_size, 3, image_size, image_size)
    y = torch.randint(-1, 2, (batch_size, num_classes)).float()

    def step() -> float:
        def go():
            model.zero_grad(set_to_none=True)
            partial_bce(model(x), y).backward()
        return timed(go)

    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="448,224", help="comma list of image sizes (paper: 448)")
    parser.add_argument("--workers", default="0,1,2", help="comma list of DataLoader worker counts")
    parser.add_argument("--images", type=int, default=160, help="training images per synthetic dataset")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (after one warm-up round)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--backbone", default="resnet101", help="the consumer's backbone (papers: resnet101)")
    parser.add_argument("--keep", type=Path, default=None, help="write the fixtures here and keep them")
    parser.add_argument("--quick", action="store_true", help="tiny configuration (a few seconds; for the smoke test)")
    args = parser.parse_args(argv)
    scale = 1.0
    if args.quick:
        args.sizes, args.workers, args.images, args.batch_size, args.repeats, scale = "64", "0,1", 8, 2, 1, 0.2
        args.warmup = 0
        args.backbone = "small-cnn"  # the same code path without building a 44M-parameter model

    from mlrpl_bench.data.coco import COCO2014
    from mlrpl_bench.data.loading import SplitRows
    from mlrpl_bench.data.transforms import paper_transform
    from mlrpl_bench.data.voc import VOC2007

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
    work = args.keep or Path(tempfile.mkdtemp(prefix="mlrpl-bench-loading-"))
    # The COCO loader caches parsed labels in the user cache; keep this throw-away fixture's out of it.
    os.environ["MLRPL_BENCH_CACHE"] = str(work / "cache")
    print(f"data loading: {args.images} training images per dataset, batch {args.batch_size}, workers "
          f"{worker_counts}, sizes {sizes}, consumer {args.backbone} forward+backward, median of {args.repeats} "
          f"rounds (+{args.warmup} warm-up), interleaved")
    print(f"  {machine_note()}")
    print(f"  before: {load_note()}")
    try:
        devkit, voc_kb = write_voc_tree(work / "voc", args.images, 2, scale=scale)
        coco_root, coco_kb = write_coco_tree(work / "coco", args.images, 2, scale=scale)
        print(f"  fixtures in {work}: VOC mean JPEG {voc_kb:.0f} KB, COCO mean JPEG {coco_kb:.0f} KB")
        splits = {"voc": VOC2007(devkit).load_split("train"), "coco": COCO2014(coco_root).load_split("train")}
        for size in sizes:
            variants = {}
            for name, split in splits.items():
                rows = SplitRows(split, np.arange(len(split)), split.labels, paper_transform(size, train=True))
                for w in worker_counts:
                    variants[f"{name} loader, {w} worker(s)"] = (lambda r=rows, w=w: loader_epoch(r, args.batch_size, w, 0))
            variants["consumer"] = consumer(args.backbone, size, args.batch_size, 80)
            times = interleave(variants, args.repeats, args.warmup)
            consumer_rate = args.batch_size / median(times["consumer"])
            print(f"\n  size {size}px:")
            rates = {}
            for name, ts in times.items():
                n = args.batch_size if name == "consumer" else args.images
                rates[name] = n / median(ts)
                print(f"    {name:26s} {rates[name]:8.1f} images/s  ({spread(ts)} per {'batch' if name == 'consumer' else 'epoch'})")
            for name in splits:
                for w in worker_counts:
                    key = f"{name} loader, {w} worker(s)"
                    ratio = rates[key] / consumer_rate
                    print(f"    ratio {name} {size}px {w} worker(s): loader / consumer = {ratio:.1f}x "
                          f"({'keeps up' if ratio >= 1 else 'BOTTLENECK'})")
                per_worker = rates[f"{name} loader, {min(worker_counts)} worker(s)"] if min(worker_counts) == 0 else None
                if per_worker:
                    print(f"    {name} {size}px: one process decodes {per_worker:.0f} images/s -> a consumer of R images/s "
                          f"needs about R / {per_worker:.0f} workers (and as many free cores)")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n  after: {load_note()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
