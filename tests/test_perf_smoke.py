"""Smoke tests of the speed benchmarks (perf/bench_*.py): each runs its --quick configuration.

They check behaviour only - the script exits 0 and prints every ratio line it promises with a
finite number - never a wall-clock figure (the machine is shared; timings belong in
perf/README.md, measured side by side).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

PERF = Path(__file__).resolve().parent.parent / "perf"
RATIO = re.compile(r"^\s*ratio (?P<what>[^:]+): (?P<label>.+?) = (?P<value>[0-9.]+|inf)x?\b", re.M)


def run_quick(script: str, *extra: str) -> str:
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    proc = subprocess.run([sys.executable, str(PERF / script), "--quick", *extra], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, f"{script} --quick exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def ratios(output: str) -> dict[str, float]:
    found = {f"{m['what']}: {m['label']}": float(m["value"]) for m in RATIO.finditer(output)}
    for key, value in found.items():
        assert math.isfinite(value) and value > 0, f"ratio {key} is {value}"
    return found


def test_harness_overhead_quick_prints_engine_vs_plain_ratios():
    out = run_quick("bench_harness_overhead.py", "--profile")
    found = ratios(out)
    for mode in ("images", "tensors"):
        assert f"{mode}: engine / plain loop" in found, out
        assert f"{mode}: engine (no progress) / plain loop" in found, out
    assert "tensors: plain loop (DataLoader) / slicing" in found, out
    assert "load average" in out and "target <= 1.05" in out
    own = re.findall(r"profile: harness own time ([0-9.]+) ms of a ([0-9.]+) ms profiled epoch = ([0-9.]+)%", out)
    assert len(own) == 2, out  # one profile per mode
    for part, whole, percent in own:
        assert 0 < float(part) < float(whole) and abs(100 * float(part) / float(whole) - float(percent)) < 0.1


def test_feature_cache_quick_prints_cache_ratios():
    out = run_quick("bench_feature_cache.py")
    found = ratios(out)
    for key in ("train epoch: no cache / cache", "epoch incl. validation: no cache / cache",
                "cache build: build / no-cache epoch"):
        assert key in found, out
    assert "cache build (train + test, 64 images)" in out and "load average" in out


def test_data_loading_quick_prints_loader_vs_consumer_ratios():
    out = run_quick("bench_data_loading.py")
    found = ratios(out)
    for name in ("voc", "coco"):
        for workers in (0, 1):
            assert f"{name} 64px {workers} worker(s): loader / consumer" in found, out
    assert "load average" in out and "VOC mean JPEG" in out


def test_score_check_quick_prints_its_ratio():
    out = run_quick("bench_score_check.py")
    assert "score check: checked / unchecked" in ratios(out), out


def test_frozen_step_quick_prints_reference_vs_current_ratios_and_same_records():
    out = run_quick("bench_frozen_step.py")
    found = ratios(out)
    for plugin in ("hst", "partial-bce"):
        assert f"{plugin} step: reference / current" in found, out
        assert f"{plugin} cell: reference / current" in found, out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith(("hst ", "partial-bce "))]
    assert len(rows) == 2 and all(row[-1] == "yes" for row in rows), out  # both variants filed the same records


def test_checksums_quick_prints_checked_vs_plain_ratios():
    found = ratios(run_quick("bench_checksums.py"))
    assert "checkpoint 2 MB: checked / plain" in found and "feature cache 2 MB: checked / plain" in found, found


def test_sarl_cost_quick_prints_cells_growth_and_seeds_per_cpu_hour():
    out = run_quick("bench_sarl_cost.py")
    found = ratios(out)
    for plugin in ("hst", "partial-bce"):
        assert f"{plugin} training: reference / current" in found, out
        assert f"{plugin} cell: reference / current" in found, out
        assert f"{plugin} training vs plain loop: current / plain" in found, out
    for c in (4, 8):
        assert f"hst step at C={c}: reference / current" in found, out
    assert "hst growth: C=8 / C=4" in found and "seeds per CPU-hour: current / reference" in found, out
    assert "load average" in out
