"""Digest the records of a fixed handful of tiny runs, to show a restructuring changed no numbers.

Usage::

    python tools/records_identity.py OUT.json            # run the tiny runs, write their digests
    python tools/records_identity.py OUT.json --compare BASE.json   # ... and compare with a base

Each run is ``mlrpl-bench run`` in a fresh subprocess (single-run, parallel, tuned and resumed
paths); every ``record.json`` it files is normalised -- the wall-clock facts (``runtime``,
``started``/``finished`` stamps), the code version and the temporary folder's path are dropped --
and hashed. Two trees of code that train the same numbers give the same digests. Exit 1 when a
comparison finds a difference (each differing record is named, with its first differing keys).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

TINY = ["--epochs", "2", "--known", "0.1,0.5", "--seeds", "0,1",
        "--dataset-option", "train_size=200", "--dataset-option", "test_size=60", "--threads", "1"]

#: name -> (list of argument lists run one after the other into one output folder, files to delete between them)
RUNS: dict[str, list[list[str]]] = {
    **{m: [["--plugin", m, *TINY, "--jobs", "1"]] for m in ("partial-bce", "hst", "sst", "dsrb", "ipl")},
    "partial-bce-parallel": [["--plugin", "partial-bce", *TINY, "--jobs", "2", "--setting", "ppl"]],
    "tuned": [["--plugin", "partial-bce", *TINY, "--jobs", "1", "--tune", "lr=1e-3,1e-2", "--tune-seed", "0"]],
    "resumed": [["--plugin", "hst", *TINY, "--jobs", "1"], ["RESUME"]],
}

#: keys dropped wherever they appear: wall-clock facts and the code version
VOLATILE = {"seconds", "started", "finished", "code_version", "timestamp", "created", "hostname", "python",
            "torch", "numpy", "platform", "cpu", "wall_seconds"}


def normalise(value, root: str):
    """``value`` without volatile keys, with the temporary ``root`` path replaced by ``ROOT``."""
    if isinstance(value, dict):
        return {k: normalise(v, root) for k, v in sorted(value.items()) if k not in VOLATILE}
    if isinstance(value, list):
        return [normalise(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(root, "ROOT")
    return value


def run_all(work: Path) -> dict[str, dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE",
           "MLRPL_BENCH_CACHE": str(work / "cache")}
    found: dict[str, dict] = {}
    for name, steps in RUNS.items():
        out = work / name
        last: list[str] = []
        for args in steps:
            if args == ["RESUME"]:  # as if interrupted after the last checkpoint of each run
                for record in out.glob("*/record.json"):
                    record.unlink()
                args = [*last, "--resume"]
            last = args
            cmd = [sys.executable, "-m", "mlrpl_bench", "run", *args, "--output", str(out), "--no-progress"]
            res = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if res.returncode != 0:
                raise SystemExit(f"{name}: {' '.join(cmd)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        for path in sorted(out.rglob("record.json")):
            record = normalise(json.loads(path.read_text()), str(work))
            found[f"{name}/{path.parent.relative_to(out)}"] = record
    return found


def digest(record: dict) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def first_differences(a, b, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += first_differences(a.get(k), b.get(k), f"{where}.{k}" if where else k)
        return out
    return [] if a == b else [f"{where}: {str(a)[:60]} vs {str(b)[:60]}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--compare", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        records = run_all(Path(tmp))
    args.out.write_text(json.dumps({k: {"sha256": digest(r), "record": r} for k, r in records.items()},
                                   indent=1, sort_keys=True))
    print(f"{len(records)} records digested -> {args.out}")
    if args.compare is None:
        return 0
    base = json.loads(args.compare.read_text())
    bad = 0
    for key in sorted(set(base) | set(records)):
        if key not in base or key not in records:
            print(f"{key}: only in {'this run' if key in records else 'the base'}")
            bad += 1
        elif base[key]["sha256"] != digest(records[key]):
            print(f"{key}: differs: " + "; ".join(first_differences(base[key]["record"], records[key])[:4]))
            bad += 1
    print(f"{len(records) - bad} of {len(set(base) | set(records))} records identical")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
