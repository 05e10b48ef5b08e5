"""Diagnostics of ``ipl`` runs that a results record cannot hold (docs/ipl.md's measurements).

Trains one cell per (variant, known, seed) through the harness's own ``train_cell`` (the same
protocol, model initialisation and engine as ``mlrpl-bench run``) and prints one JSON line per
cell with what the docs quote:

* ``val_mAP`` -- the validation mAP of the epoch the engine selected (what decides a choice);
* ``pseudo_mAP`` / ``pseudo_pos`` -- after training, the pseudo-label table's mAP against the
  hidden truth on the unknown entries, and the share of unknown entries with ỹ >= 0.5 (the truth
  is read here, after training, never by the method);
* ``test_mAP``, ``test_OF1``, ``test_CF1`` and ``test_pos`` (share of test scores >= 0.5) and
  ``true_pos`` (share of test labels that are positive), quoted only, never used to choose;
* the last epoch's logged ``alpha``, ``beta``, ``penalised`` and pseudo-label counts.

Usage (a variant is ``name:key=value,key=value``; an empty option list is the defaults)::

    python tools/ipl_probe.py --known 0.1,0.5 --seeds 0 default: literal:alpha_beta_scope=all
    python tools/ipl_probe.py --setting ppl --known 0.5 known-T:ratio_denominator=known
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from mlrpl_bench.metrics import compute_metrics, mean_average_precision
from mlrpl_bench.run_config import RunConfig, prepare_run
from mlrpl_bench.runner import load_sweep_data
from mlrpl_bench.cell import Cell, Station
from mlrpl_bench.training import train_cell

import torch


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, rest = text.partition(":")
    options = {}
    for key, _, value in (kv.partition("=") for kv in rest.split(",") if kv):
        try:
            options[key] = json.loads(value)  # numbers and true/false
        except json.JSONDecodeError:
            options[key] = value
    return name, options


def probe(variant: str, options: dict[str, str], *, setting: str, known: float, seed: int, profile: str,
          epochs: int | None, output: Path) -> dict:
    train = {"epochs": epochs} if epochs else {}
    config = RunConfig(plugin="ipl", setting=setting, known=(known,), seeds=(seed,), profile=profile,
                       method_options=options, train=train, output=str(output), progress=False)
    prepared = prepare_run(config)
    data = load_sweep_data(prepared)
    seen: dict = {}
    station = Station(torch.device("cpu"), output=output, log=lambda _: None)
    cell = train_cell(Cell.of(prepared, data, known, seed, station, observe=lambda method, hidden: seen.update(method=method)))
    method, protocol, result = seen["method"], cell.protocol, cell.result
    truth = data.train_split.labels[protocol.train_idx]
    unknown = method.ctx.train_labels == 0
    table = method.pseudo_labels.numpy()
    # mAP of the pseudo labels over the unknown entries (the known ones are 0 = ignored)
    pseudo_scores = table
    pseudo_targets = np.where(unknown, truth, 0)
    test_scores = np.asarray(result.test_scores)
    test_targets = data.test_split.labels
    metrics = compute_metrics(test_scores, test_targets)
    last = result.epoch_logs[-1]
    return {
        "variant": variant, "options": options, "profile": profile, "setting": setting, "known": known, "seed": seed,
        "best_epoch": result.best_epoch, "val_mAP": round(result.val_metrics["mAP"], 2),
        "val_OF1": round(result.val_metrics["OF1"], 2), "score_shift": round(method.score_shift, 3),
        "pseudo_mAP": round(mean_average_precision(pseudo_scores, pseudo_targets) or float("nan"), 2),
        "pseudo_pos": round(float((table[unknown] >= 0.5).mean()) if unknown.any() else float("nan"), 4),
        "test_mAP": round(metrics["mAP"], 2), "test_OF1": round(metrics["OF1"], 2), "test_CF1": round(metrics["CF1"], 2),
        "test_pos": round(float((test_scores >= 0.5).mean()), 4), "true_pos": round(float((test_targets > 0).mean()), 4),
        "last_epoch": {k.removeprefix("train/"): round(v, 4) for k, v in last.items()
                       if k.startswith("train/") and k != "train/loss"},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help="name:key=value,... (method options)")
    parser.add_argument("--known", default="0.1,0.5")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--setting", default="pal")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        for text in args.variants:
            name, options = parse_variant(text)
            for known in (float(k) for k in args.known.split(",")):
                for seed in (int(s) for s in args.seeds.split(",")):
                    out = Path(tmp) / f"{name}-{known}-{seed}"
                    row = probe(name, options, setting=args.setting, known=known, seed=seed, profile=args.profile,
                                epochs=args.epochs, output=out)
                    print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
