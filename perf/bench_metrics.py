"""Speed of ``compute_metrics`` at MS-COCO val scale, beside a per-class sklearn loop and an argsort floor.

Run:  python perf/bench_metrics.py [--n 40504] [--c 80] [--repeats 5] [--dtype float32] [--check]

Three things are timed side by side in one process, interleaved repeat by repeat (so a
neighbour's load hits all of them alike), and the median of each is reported:

* ``sklearn loop``: ``sklearn.metrics.average_precision_score`` called once per class - what
  most codebases do, and the reference for ``mAP_noninterp``;
* ``argsort floor``: one ``numpy.argsort`` of each class's scores, on a class-major (contiguous
  rows) copy made before the clock starts - the least any sort-based AP can cost;
* ``compute_metrics``: everything this suite reports (input validation, both mAPs, per-class
  AP, OP/OR/OF1/CP/CR/CF1 at the threshold and for the top 3), and ``average_precision`` (the
  two per-class APs alone).

Targets (issue 7): compute_metrics >= 5x faster than the sklearn loop and within 2x of the
floor. ``--check`` exits with status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np


def make_data(n: int, c: int, dtype: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """COCO-like predictions: ~2.9 positives per image, informative but imperfect scores."""
    rng = np.random.default_rng(seed)
    targets = np.where(rng.random((n, c)) < 2.9 / c, 1, -1).astype(np.int8)
    logits = rng.normal(size=(n, c)) + 2.0 * (targets == 1)
    scores = (1.0 / (1.0 + np.exp(-logits))).astype(dtype)
    return scores, targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40504, help="images (MS-COCO val: 40,504)")
    parser.add_argument("--c", type=int, default=80, help="classes (MS-COCO: 80)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--check", action="store_true", help="exit 1 if a speed target is missed")
    args = parser.parse_args(argv)

    from sklearn.metrics import average_precision_score

    from mlrpl_bench.metrics import average_precision, compute_metrics

    scores, targets = make_data(args.n, args.c, args.dtype)
    class_major = np.ascontiguousarray(scores.T)  # made before the clock: the floor is the sort alone
    is_pos = targets == 1

    def sklearn_loop():
        return [average_precision_score(is_pos[:, k], scores[:, k]) for k in range(args.c)]

    def argsort_floor():
        for k in range(args.c):
            np.argsort(class_major[k])

    def ours():
        return compute_metrics(scores, targets)

    def ours_ap_only():
        return average_precision(scores, targets)

    # Agreement first: the fast path must give sklearn's numbers.
    reference = np.array(sklearn_loop())
    result = ours()
    noninterp = np.array(result["per_class_ap_noninterp"], dtype=float) / 100
    assert np.allclose(noninterp, reference, atol=1e-9), "compute_metrics disagrees with sklearn"

    runs = {"sklearn loop": sklearn_loop, "argsort floor": argsort_floor, "compute_metrics": ours,
            "average_precision": ours_ap_only}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(ts) for name, ts in times.items()}

    print(f"metrics speed: {args.n} x {args.c} {args.dtype}, median of {args.repeats} | numpy {np.__version__} | "
          f"python {platform.python_version()} | {os.cpu_count()} cpu(s) | OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '-')}")
    for name, t in med.items():
        print(f"  {name:18s} {t * 1000:8.1f} ms   (min {min(times[name]) * 1000:.1f})")
    speedup = med["sklearn loop"] / med["compute_metrics"]
    vs_floor = med["compute_metrics"] / med["argsort floor"]
    ap_vs_floor = med["average_precision"] / med["argsort floor"]
    ok_speedup, ok_floor = speedup >= 5, vs_floor <= 2
    print(f"  compute_metrics vs sklearn loop: {speedup:.1f}x faster (target >= 5x: {'ok' if ok_speedup else 'MISSED'})")
    print(f"  compute_metrics vs argsort floor: {vs_floor:.2f}x the floor (target <= 2x: {'ok' if ok_floor else 'MISSED'})")
    print(f"  average_precision alone: {ap_vs_floor:.2f}x the floor, {med['sklearn loop'] / med['average_precision']:.1f}x faster than sklearn")
    return 0 if (ok_speedup and ok_floor) or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
