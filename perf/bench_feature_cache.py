"""Feature cache: per-epoch time of ``--track frozen`` on the cache against recomputing the frozen backbone.

Run:  python perf/bench_feature_cache.py [--repeats 3] [--epochs 2] [--frozen-features maps|pooled] [--quick]

Both variants are complete ``mlrpl-bench run --plugin partial-bce --track frozen`` runs on the
built-in ``digit-scenes`` dataset, made through ``runner.run_sweep`` (what the CLI calls), one
with the feature cache (``TrainConfig.feature_cache=True``, the default) and one recomputing the
frozen backbone at every step (``feature_cache=False``). A third variant builds the cache from
scratch, the one-off cost: ``feature_cache.load_or_compute`` for the train and test splits into
an empty directory with the backbone the runner freezes - exactly what the first cached run does.

Variants are interleaved repeat by repeat (one warm-up round first, which also builds the cache
the cached runs then reuse); medians are reported. Two per-epoch figures:

* ``train epoch``: ``Engine._train_epoch`` alone (timed by wrapping it in this process);
* ``epoch``: the ``time`` of the run's epoch log - training plus validation, which also reads
  the cache (or recomputes the backbone).

The dataset is read from (or generated into) the usual cache directory; feature caches and run
outputs go to a temporary directory that is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# Spin-waiting OpenMP threads are ~13x slower on an oversubscribed machine (see README).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleave, load_note, machine_note, median, paired_ratio, quick_cache_for, spread  # noqa: E402

_TRAIN_EPOCHS: list[float] = []


def _instrument_engine() -> None:
    """Record the seconds of every ``Engine._train_epoch`` call (the engine itself is unchanged)."""
    from mlrpl_bench.engine import Engine

    original = Engine._train_epoch
    if getattr(original, "_bench_wrapped", False):
        return

    def timed_train_epoch(self, epoch):
        t0 = time.perf_counter()
        out = original(self, epoch)
        _TRAIN_EPOCHS.append(time.perf_counter() - t0)
        return out

    timed_train_epoch._bench_wrapped = True
    Engine._train_epoch = timed_train_epoch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant (after one warm-up round)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-size", type=int, default=1200, help="digit-scenes train_size (default: the dataset's)")
    parser.add_argument("--test-size", type=int, default=600)
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--frozen-features", default="maps", choices=["maps", "pooled"])
    parser.add_argument("--quick", action="store_true", help="tiny configuration (a few seconds; for the smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.epochs, args.train_size, args.test_size, args.image_size = 1, 1, 48, 16, 32
        args.warmup = 0  # the first cached run still trains on a finished cache (built before its epochs)

    from mlrpl_bench import plugin_manager as P
    from mlrpl_bench.data.builtin import DigitScenes, default_cache_root
    from mlrpl_bench.data.loading import SplitRows
    from mlrpl_bench.data.transforms import describe
    from mlrpl_bench.feature_cache import cache_key, load_or_compute, module_fingerprint
    from mlrpl_bench.models.backbones import FrozenBackbone
    from mlrpl_bench.run_config import make_run_config
    from mlrpl_bench.runner import run_sweep

    _instrument_engine()
    work = Path(tempfile.mkdtemp(prefix="mlrpl-bench-feature-cache-"))
    # The dataset stays where it always is; only feature caches and outputs go to `work`.
    dataset_options = {"train_size": args.train_size, "test_size": args.test_size, "image_size": args.image_size,
                       "cache_dir": str(default_cache_root())}
    warm_cache = work / "warm"
    counter = {"n": 0}

    def run(feature_cache: bool) -> tuple[list[float], list[float]]:
        """One run; returns (train-epoch seconds, epoch-log seconds)."""
        counter["n"] += 1
        os.environ["MLRPL_BENCH_CACHE"] = str(warm_cache)
        request = make_run_config(file={
            "plugin": "partial-bce", "dataset": "digit-scenes", "dataset_options": dict(dataset_options),
            "known": [0.5], "seeds": [0], "device": "cpu", "output": str(work / f"out{counter['n']}"),
            "train": {"track": "frozen", "feature_cache": feature_cache, "epochs": args.epochs,
                      "batch_size": args.batch_size, "image_size": args.image_size,
                      "frozen_features": args.frozen_features}})
        request.progress = False
        first = len(_TRAIN_EPOCHS)
        with contextlib.redirect_stdout(io.StringIO()):  # the run's one-line summary
            (record,) = run_sweep(request)
        logs = [json.loads(line) for line in (request.output_dir / record["run_id"] / "epochs.jsonl").read_text().splitlines()]
        shutil.rmtree(request.output_dir, ignore_errors=True)
        return _TRAIN_EPOCHS[first:], [float(e["time"]) for e in logs]

    epochs: dict[str, dict[str, list[float]]] = {"cache": {"train": [], "epoch": []},
                                                 "no cache": {"train": [], "epoch": []}}

    def variant(name: str, feature_cache: bool):
        def go() -> float:
            train, full = run(feature_cache)
            epochs[name]["train"].append(float(np.median(train)))
            epochs[name]["epoch"].append(float(np.median(full)))
            return float(np.median(train))
        return go

    # The one-off build, as the runner's _cached_rows does it (train and test split, every row).
    dataset = DigitScenes(None, DigitScenes.Options(**dataset_options))
    splits = [dataset.load_split("train"), dataset.load_split("test")]
    eval_tf = dataset.transforms(args.image_size, False)
    backbone = FrozenBackbone(P.get_backbone("small-cnn").build("none", "all"))

    def build() -> float:
        fresh = Path(tempfile.mkdtemp(dir=work, prefix="build-"))
        t0 = time.perf_counter()
        for split in splits:
            rows = np.arange(len(split))
            key = cache_key(split_fingerprint=split.fingerprint(), rows=rows, backbone_fingerprint=module_fingerprint(backbone),
                            transform=describe(eval_tf), pooled=args.frozen_features == "pooled", dtype="float32")
            _, hit = load_or_compute(fresh, key, SplitRows(split, rows, split.labels, eval_tf), backbone,
                                     batch_size=args.batch_size, device=torch.device("cpu"),
                                     pooled=args.frozen_features == "pooled")
            assert not hit
        seconds = time.perf_counter() - t0
        shutil.rmtree(fresh, ignore_errors=True)
        return seconds

    print(f"feature cache: partial-bce --track frozen ({args.frozen_features}), digit-scenes train_size={args.train_size} "
          f"test_size={args.test_size} image_size={args.image_size}, small-cnn, batch {args.batch_size}, "
          f"{args.epochs} epoch(s) per run, median of {args.repeats} runs (+{args.warmup} warm-up) per variant, interleaved")
    print(f"  {machine_note()}")
    print(f"  before: {load_note()}")
    try:
        times = interleave({"cache": variant("cache", True), "no cache": variant("no cache", False),
                            "cache build": build}, args.repeats, args.warmup)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # interleave() dropped the warm-up round from `times`; drop it from the per-run lists too.
    for name in epochs:
        for kind in epochs[name]:
            epochs[name][kind] = epochs[name][kind][args.warmup:]
    cached, recomputed = epochs["cache"], epochs["no cache"]
    print(f"  {'':28s} {'cache':>10s} {'no cache':>10s}")
    for kind, label in (("train", "train epoch (ms)"), ("epoch", "epoch incl. validation (ms)")):
        print(f"  {label:28s} {median(cached[kind]) * 1000:10.1f} {median(recomputed[kind]) * 1000:10.1f}   "
              f"(cache {spread(cached[kind])}; no cache {spread(recomputed[kind])})")
    build_s = median(times["cache build"])
    n_images = sum(len(s) for s in splits)
    print(f"  cache build (train + test, {n_images} images): {build_s * 1000:.1f} ms  ({spread(times['cache build'])})")
    train_ratio = median(recomputed["train"]) / median(cached["train"])
    epoch_ratio = median(recomputed["epoch"]) / median(cached["epoch"])
    print(f"  ratio train epoch: no cache / cache = {train_ratio:.2f}x "
          f"(median of paired runs {paired_ratio(recomputed['train'], cached['train']):.2f}x)")
    print(f"  ratio epoch incl. validation: no cache / cache = {epoch_ratio:.2f}x")
    saved = median(recomputed["epoch"]) - median(cached["epoch"])
    print(f"  ratio cache build: build / no-cache epoch = {build_s / median(recomputed['epoch']):.2f}x "
          f"(the build pays for itself after {build_s / saved if saved > 0 else float('inf'):.1f} epochs of one run; "
          f"every further method, proportion and seed reuses it)")
    print(f"  after: {load_note()}")
    return 0


if __name__ == "__main__":
    quick_cache_for(sys.argv)
    sys.exit(main())
