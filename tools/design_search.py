"""Measure the resolving power of candidate built-in track designs (issue: a leaderboard that can
resolve what it ranks).

For each design (dataset, loader options, train settings) the script trains a few methods at one
known proportion over many seeds through the real CLI (``mlrpl-bench run``), then reports for each
method paired against each baseline: the mean paired difference of test mAP, the standard
deviation of the per-seed differences, the minimum detectable effect (alpha 0.05, power 0.8,
paired t) at the seeds measured, the seeds a 1- and a 2-point MDE would need, and the CPU
seconds per cell, so designs can be compared by resolution per CPU-hour.

    python tools/design_search.py run  --designs base,large --seeds 0-9 --out runs-design
    python tools/design_search.py report --out runs-design [--json design.json]

Learning rates are fixed per method (the values chosen on the validation split of the filed
3-seed track at 10 % known); the design, not the tuning, is what is compared here.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

#: The candidate designs: loader options of the dataset and train settings.
DESIGNS: dict[str, dict] = {
    "base": {"dataset": "digit-scenes", "options": {}, "train": {}},
    "large": {"dataset": "digit-scenes", "options": {"train_size": 4800, "test_size": 3000}, "train": {}},
    "large-val": {"dataset": "digit-scenes", "options": {"train_size": 4800, "test_size": 3000},
                  "train": {"val_fraction": 0.25}},
    "voc": {"dataset": "voc2007-scenes", "options": {}, "train": {}},
    "voc-hard": {"dataset": "voc2007-scenes", "options": {"difficulty": "hard"}, "train": {}},
}
#: Learning rate of each method (validation-chosen on the filed 3-seed track at 10 % known).
LR = {"partial-bce": 3e-2, "ssgrl": 1e-2, "sst": 3e-3, "hst": 3e-3, "dsrb": 3e-3}
BASELINES = ("ssgrl", "partial-bce")


def seeds_of(text: str) -> list[int]:
    if "-" in text:
        lo, hi = (int(v) for v in text.split("-"))
        return list(range(lo, hi + 1))
    return [int(v) for v in text.split(",")]


def run(args: argparse.Namespace) -> None:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    for name in args.designs.split(","):
        design = DESIGNS[name]
        for method in args.methods.split(","):
            cmd = [sys.executable, "-m", "mlrpl_bench", "run", "--plugin", method, "--dataset", design["dataset"],
                   "--known", args.known, "--seeds", ",".join(map(str, seeds_of(args.seeds))),
                   "--lr", str(LR[method]), "--jobs", str(args.jobs), "--threads", "1", "--no-progress",
                   "--output", str(Path(args.out) / name)]
            for key, value in design["options"].items():
                cmd += ["--dataset-option", f"{key}={value}"]
            for key, value in design["train"].items():
                cmd += [f"--{key.replace('_', '-')}", str(value)]
            print(" ".join(cmd[2:]), flush=True)
            subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)


def records(root: Path) -> dict[tuple[str, int], dict]:
    out = {}
    for path in root.rglob("record.json"):
        record = json.loads(path.read_text())
        out[(record["method"]["name"], int(record["protocol"]["seed"]))] = record
    return out


def report(args: argparse.Namespace) -> None:
    import numpy as np

    from mlrpl_bench.leaderboard.stats import mde, seeds_needed

    rows = []
    for design_dir in sorted(p for p in Path(args.out).iterdir() if p.is_dir()):
        recs = records(design_dir)
        methods = sorted({m for m, _ in recs})
        for method in methods:
            seeds = sorted(s for m, s in recs if m == method)
            m_ap = np.array([recs[(method, s)]["metrics"]["test"]["mAP"] for s in seeds])
            cpu = np.mean([recs[(method, s)]["runtime"]["seconds"] for s in seeds])
            best = [recs[(method, s)]["selection"].get("best_epoch") for s in seeds]
            rows.append({"design": design_dir.name, "method": method, "vs": "", "n": len(seeds),
                         "mean": float(m_ap.mean()), "sd": float(m_ap.std(ddof=1)) if len(seeds) > 1 else math.nan,
                         "cpu_s": float(cpu), "best_epochs": best})
            for base in BASELINES:
                if base == method:
                    continue
                common = sorted(set(seeds) & {s for m, s in recs if m == base})
                if len(common) < 2:
                    continue
                d = np.array([recs[(method, s)]["metrics"]["test"]["mAP"] - recs[(base, s)]["metrics"]["test"]["mAP"]
                              for s in common])
                sd = float(d.std(ddof=1))
                rows.append({"design": design_dir.name, "method": method, "vs": base, "n": len(common),
                             "mean": float(d.mean()), "sd": sd, "mde": mde(sd, len(common)),
                             "seeds_for_mde_2": seeds_needed(sd, len(common), target=2.0),
                             "seeds_for_mde_1": seeds_needed(sd, len(common), target=1.0)})
    print("| design | method | vs | n | mean | SD | MDE | seeds for MDE 2 | seeds for MDE 1 | CPU s/cell |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['design']} | {r['method']} | {r['vs'] or '—'} | {r['n']} | {r['mean']:.2f} | {r['sd']:.2f} | "
              f"{r.get('mde', math.nan):.2f} | {r.get('seeds_for_mde_2', '')} | {r.get('seeds_for_mde_1', '')} | "
              f"{r.get('cpu_s', math.nan):.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run")
    p.add_argument("--designs", default="base,large")
    p.add_argument("--methods", default="partial-bce,ssgrl,sst")
    p.add_argument("--known", default="0.1")
    p.add_argument("--seeds", default="0-9")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--out", default="runs-design")
    q = sub.add_parser("report")
    q.add_argument("--out", default="runs-design")
    q.add_argument("--json", default="")
    args = parser.parse_args()
    run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    main()
