"""Checksummed artefacts: what verifying a sha256 on load costs, beside the load it guards.

Run:  python perf/bench_checksums.py [--repeats 5] [--sizes-mb 20,200] [--quick]

Two artefacts a run reuses, each at the sizes given (MB), written once into a temporary folder
the way the suite writes them:

* ``checkpoint``: a state dict of float32 tensors saved by ``checkpoint.save_checkpoint`` (with
  its ``.sha256`` sidecar); *plain* = ``torch.load(path, weights_only=True)``, *checked* =
  ``checkpoint.load_checkpoint`` (read the bytes, sha256 against the sidecar, ``torch.load``);
* ``feature cache``: a float32 array saved by the cache's own writer (``feature_cache._compute``'s
  ``np.save`` through the hashing handle, manifest with the sha256); *plain* = ``np.load(mmap)``
  and one pass over every row (what one epoch does), *checked* = ``feature_cache._open_checked``
  (sha256 of the file, then the same mmap) and the same pass.

Variants are interleaved repeat by repeat after a warm-up round (the files are in the page cache:
the cost shown is the hashing, not the disk); medians and the median of per-repeat ratios are
printed. The feature cache is verified once per run, while a run reads it once per epoch.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleave, load_note, machine_note, median, paired_ratio, spread  # noqa: E402


def _checkpoint(folder: Path, mb: int) -> Path:
    from mlrpl_bench.checkpoint import save_checkpoint

    n = mb * 1_000_000 // 4
    parts = {f"layer{i}.weight": torch.randn(n // 8) for i in range(8)}
    path = folder / f"ckpt{mb}.pt"
    save_checkpoint(path, {"model": parts, "epoch": 1})
    return path


def _cache(folder: Path, mb: int) -> tuple[Path, Path, int]:
    from mlrpl_bench.atomic import atomic_open, atomic_write_bytes
    from mlrpl_bench.feature_cache import _Hashing

    rows = 1000
    features = np.random.default_rng(0).random((rows, mb * 1_000_000 // 4 // rows), dtype=np.float32)
    array, manifest = folder / f"cache{mb}.npy", folder / f"cache{mb}.json"
    digest = hashlib.sha256()
    with atomic_open(array) as handle:
        np.save(_Hashing(handle, digest), features)
    atomic_write_bytes(manifest, json.dumps({"shape": list(features.shape), "sha256": digest.hexdigest()}).encode())
    return array, manifest, rows


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes-mb", default="20,200")
    parser.add_argument("--quick", action="store_true", help="one small size, two repeats (the smoke test)")
    args = parser.parse_args(argv)
    sizes = [2] if args.quick else [int(s) for s in args.sizes_mb.split(",")]
    repeats = 2 if args.quick else args.repeats
    torch.set_num_threads(1)
    from mlrpl_bench.checkpoint import load_checkpoint
    from mlrpl_bench.feature_cache import _open_checked

    print(f"{machine_note()}; {load_note()}; {repeats} repeats after one warm-up, files in the page cache")
    folder = Path(tempfile.mkdtemp(prefix="bench-checksums-"))
    try:
        for mb in sizes:
            ckpt = _checkpoint(folder, mb)
            times = interleave({
                "plain": lambda: _timed(lambda: torch.load(ckpt, map_location="cpu", weights_only=True)),
                "checked": lambda: _timed(lambda: load_checkpoint(ckpt)),
            }, repeats)
            print(f"checkpoint {mb} MB: plain torch.load {median(times['plain']) * 1000:.1f} ms ({spread(times['plain'])}), "
                  f"checked {median(times['checked']) * 1000:.1f} ms ({spread(times['checked'])})")
            print(f"  ratio checkpoint {mb} MB: checked / plain = {paired_ratio(times['checked'], times['plain']):.2f}x")

            array, manifest, rows = _cache(folder, mb)

            def epoch(features):
                total = 0.0
                for start in range(0, rows, 64):  # one pass in batches, as an epoch reads the cache
                    total += float(np.asarray(features[start:start + 64]).sum())
                return total

            times = interleave({
                "plain": lambda: _timed(lambda: epoch(np.load(array, mmap_mode="r"))),
                "checked": lambda: _timed(lambda: epoch(_open_checked(array, manifest, rows))),
            }, repeats)
            print(f"feature cache {mb} MB: open + one epoch's pass {median(times['plain']) * 1000:.1f} ms, with the sha256 "
                  f"check {median(times['checked']) * 1000:.1f} ms")
            print(f"  ratio feature cache {mb} MB: checked / plain = {paired_ratio(times['checked'], times['plain']):.2f}x")
            hashing = interleave({"sha256": lambda: _timed(lambda: hashlib.sha256(array.read_bytes()).hexdigest())}, repeats)
            print(f"  sha256 throughput: {mb / median(hashing['sha256']):.0f} MB/s")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
