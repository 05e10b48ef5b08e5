"""Frozen-track step cost: training steps of real runs, the current code against the code it replaced.

Run:  python perf/bench_frozen_step.py [--plugins hst,sst,dsrb,ssgrl,partial-bce] [--known 0.5] [--epochs 3]
                                      [--repeats 3] [--feature-dim 64] [--quick]

Each variant is a complete ``mlrpl-bench run --track frozen`` cell (``runner.run_sweep``, one known
proportion, seed 0, ``--jobs 1``, one torch thread) on the built-in ``digit-scenes`` with the
shipped pretrained ``small-cnn``; ``-o feature_dim=N`` for the plugins that have it. Timed: the
CPU seconds (``time.process_time``, far less sensitive to other jobs than wall time) of every
``Engine._train_epoch`` call (timed by wrapping it in this process), divided by its steps -- the
per-step cost of loader + forward + losses + backward + optimiser -- and of the whole cell
(``train_cell``: protocol, model, every epoch with its validation, prototypes, checkpoints, test).

Variants, interleaved repeat by repeat (medians reported):

* ``current`` -- the code as it is;
* ``reference`` -- what the current code replaced, restored in this process only: cached features
  served row by row through a ``torch`` DataLoader with collate (``make_loader`` before the
  batched ``ArrayRows.take``), the sampled contrastive loss on the cosines of every (pair,
  category) entry of the batch (before: only the entries with both labels known), and SST's
  bank updated class by class.

The script also checks the promise behind the speed-up: both variants must file the same record
(metrics, per-class AP, epoch log: every loss of every epoch); it stops with an error otherwise.
The dataset is read from (or generated into) the usual cache; outputs go to a temporary directory.
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
from pathlib import Path

# Spin-waiting OpenMP threads are ~13x slower on an oversubscribed machine (see README).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import instrument_run_path, interleave, load_note, machine_note, median, paired_ratio, quick_cache_for  # noqa: E402

_EPOCHS: list[tuple[float, int]] = []  # (CPU seconds, steps) of every timed _train_epoch
_CELLS: list[float] = []  # CPU seconds of every train_cell
FEATURE_DIM_PLUGINS = {"hst", "sst", "dsrb"}


def _instrument() -> None:
    """Record the CPU seconds of every ``Engine._train_epoch`` and ``train_cell`` (code unchanged)."""
    instrument_run_path(lambda eng, s: _EPOCHS.append((s, -(-len(eng.train_rows) // eng.local_batch))), _CELLS.append)


@torch.no_grad()
def _reference_update_bank(self, features, labels):
    """SST's bank updated class by class (the replaced loop)."""
    c, d = features.shape[1], features.shape[2]
    size = self.opts.bank_size
    if self.bank is None:
        self.bank = features.new_zeros((c, size, d))
    pos = labels > 0
    for cls in pos.any(dim=0).nonzero(as_tuple=True)[0].tolist():
        new = features[pos[:, cls], cls].detach().to(self.bank.dtype).flip(0)
        self.bank[cls] = torch.cat([new, self.bank[cls]])[:size]


def _reference_make_loader(rows, sampler, batch_size, *, workers=0, pin_memory=False, drop_last=False):
    """Every row through a DataLoader's ``__getitem__`` + collate (the replaced loader)."""
    from torch.utils.data import DataLoader

    from mlrpl_bench.data.loading import collate_batch

    return DataLoader(rows, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate_batch,
                      pin_memory=pin_memory, drop_last=drop_last, persistent_workers=False)


@contextlib.contextmanager
def _reference_code():
    """The replaced implementations, swapped in for the duration of one run."""
    from mlrpl_bench import engine, feature_cache
    from mlrpl_bench.data import loading
    from mlrpl_bench.plugins._sarl import losses
    from mlrpl_bench.plugins._semantic_transfer import method

    saved = [(engine, "make_loader"), (loading, "make_loader"), (feature_cache, "make_loader"),
             (losses, "_sampled_contrastive"), (method.SemanticTransferMethod, "update_bank")]
    originals = [getattr(owner, name) for owner, name in saved]
    replacements = [_reference_make_loader] * 3 + [losses.full_grid_sampled_contrastive, _reference_update_bank]
    try:
        for (owner, name), new in zip(saved, replacements):
            setattr(owner, name, new)
        yield
    finally:
        for (owner, name), old in zip(saved, originals):
            setattr(owner, name, old)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plugins", default="hst,sst,dsrb,ssgrl,partial-bce")
    parser.add_argument("--known", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (hst/sst pseudo labels start at a quarter)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant (after one warm-up round)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--feature-dim", type=int, default=64, help="-o feature_dim for hst, sst, dsrb")
    parser.add_argument("--quick", action="store_true", help="tiny configuration (seconds; for the smoke test)")
    args = parser.parse_args(argv)
    dataset_options: dict = {}
    train = {"track": "frozen", "epochs": args.epochs}
    if args.quick:
        args.plugins, args.repeats, args.warmup, args.epochs = "hst,partial-bce", 1, 0, 2
        dataset_options = {"train_size": 60, "test_size": 30, "image_size": 32}
        train = {"track": "frozen", "epochs": args.epochs, "image_size": 32, "batch_size": 16}
    plugins = [p.strip() for p in args.plugins.split(",") if p.strip()]

    from mlrpl_bench.run_config import make_run_config
    from mlrpl_bench.runner import run_sweep

    torch.set_num_threads(1)
    _instrument()
    work = Path(tempfile.mkdtemp(prefix="mlrpl-bench-frozen-step-"))
    records: dict[tuple[str, str], list[dict]] = {}
    per_step: dict[tuple[str, str], list[float]] = {}
    per_cell: dict[tuple[str, str], list[float]] = {}

    def variant(plugin: str, name: str):
        def go() -> float:
            options = {"feature_dim": args.feature_dim} if plugin in FEATURE_DIM_PLUGINS and not args.quick else {}
            if args.quick and plugin in FEATURE_DIM_PLUGINS:
                options = {"feature_dim": 8, "num_prototypes": 2} if plugin == "hst" else {"feature_dim": 8}
            request = make_run_config(file={
                "plugin": plugin, "dataset_options": dict(dataset_options), "known": [args.known], "seeds": [0],
                "device": "cpu", "output": str(work / f"{plugin}-{name}"), "method_options": options, "train": dict(train)})
            request.progress, request.overwrite, request.jobs, request.threads = False, True, 1, 1
            first = len(_EPOCHS)
            context = _reference_code() if name == "reference" else contextlib.nullcontext()
            with context, contextlib.redirect_stdout(io.StringIO()):
                (record,) = run_sweep(request)
            epochs = _EPOCHS[first:]
            per_step.setdefault((plugin, name), []).append(sum(c for c, _ in epochs) / sum(s for _, s in epochs))
            per_cell.setdefault((plugin, name), []).append(_CELLS[-1])
            (log,) = request.output_dir.glob("*/epochs.jsonl")
            records.setdefault((plugin, name), []).append(_comparable(record, log))
            return per_step[(plugin, name)][-1]
        return go

    print(f"frozen-track step cost: {', '.join(plugins)} at known {args.known}, {args.epochs} epochs, seed 0, "
          f"digit-scenes{' (tiny)' if args.quick else ''}, shipped small-cnn, one torch thread; CPU seconds; "
          f"median of {args.repeats} runs (+{args.warmup} warm-up) per variant, interleaved")
    print(f"  {machine_note()}")
    print(f"  before: {load_note()}")
    try:
        variants = {f"{p} {v}": variant(p, v) for p in plugins for v in ("reference", "current")}
        interleave(variants, args.repeats, args.warmup)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"  {'plugin':12s} {'ms/step ref':>12s} {'ms/step now':>12s} {'cell s ref':>11s} {'cell s now':>11s}  same records")
    status = 0
    for p in plugins:
        ref_steps, now_steps = per_step[(p, "reference")][args.warmup:], per_step[(p, "current")][args.warmup:]
        ref_cell, now_cell = per_cell[(p, "reference")][args.warmup:], per_cell[(p, "current")][args.warmup:]
        same = all(r == records[(p, "current")][0] for r in records[(p, "reference")] + records[(p, "current")])
        status |= 0 if same else 1
        print(f"  {p:12s} {median(ref_steps) * 1000:12.2f} {median(now_steps) * 1000:12.2f} {median(ref_cell):11.2f} "
              f"{median(now_cell):11.2f}  {'yes' if same else 'NO'}")
    for p in plugins:
        ref_steps, now_steps = per_step[(p, "reference")][args.warmup:], per_step[(p, "current")][args.warmup:]
        ref_cell, now_cell = per_cell[(p, "reference")][args.warmup:], per_cell[(p, "current")][args.warmup:]
        print(f"  ratio {p} step: reference / current = {median(ref_steps) / median(now_steps):.2f}x "
              f"(median of paired runs {paired_ratio(ref_steps, now_steps):.2f}x)")
        print(f"  ratio {p} cell: reference / current = {median(ref_cell) / median(now_cell):.2f}x")
    print(f"  after: {load_note()}")
    if status:
        print("error: the variants filed different records: a speed-up changed a result", file=sys.stderr)
    return status


def _comparable(record: dict, epoch_log: Path) -> str:
    """The record and its epoch log (every logged loss) without what differs between two
    executions of the same run (times, environment)."""
    from mlrpl_bench.engine import WALL_CLOCK_KEYS

    kept = {k: v for k, v in record.items() if k not in ("runtime", "environment")}
    kept["epochs"] = [{k: v for k, v in json.loads(line).items() if k not in WALL_CLOCK_KEYS}
                      for line in epoch_log.read_text().splitlines()]
    return json.dumps(kept, sort_keys=True, default=str)


if __name__ == "__main__":
    quick_cache_for(sys.argv)
    sys.exit(main())
