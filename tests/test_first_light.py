"""perf/gpu_first_light.sh: without CUDA it says so, runs its CPU smoke end to end (the same
code path as on a GPU: synthetic VOC data, sst, hst and dsrb at their paper profile -- the official
training on the image track -- in fp32 and bf16, a torchrun check) and writes its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "perf" / "gpu_first_light.sh"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine runs the real first light, not the smoke")
def test_first_light_without_cuda_runs_its_cpu_smoke_and_writes_the_json(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable, "OUT": str(tmp_path / "from-env")}
    proc = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out")], env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "no CUDA device here: running the CPU smoke" in proc.stdout
    result = json.loads((tmp_path / "out" / "first_light.json").read_text())  # the argument wins over $OUT
    assert result["mode"] == "cpu-smoke"
    runs = {(r["method"], r["precision"]): r for r in result["runs"]}
    assert set(runs) == {(m, p) for m in ("sst", "hst", "dsrb") for p in ("fp32", "bf16")}
    for (method, precision), r in runs.items():
        assert r["status"] == "ok", r
        assert r["precision_used"] == precision
        # the profile's training, not the frozen feature track
        assert (r["track"], r["backbone"], r["freeze_backbone"]) == ("finetune", "resnet50-pool2", "official")  # smoke size
        assert r["images_per_s"] > 0 and 0 <= r["data_wait_fraction"] < 1
        assert r["peak_gpu_memory_gb"] is None  # no GPU: not made up
    assert result["ddp"]["status"] == "ok" and result["ddp"]["world_size"] == 1 and result["ddp"]["steps"] == 2
    assert "| dsrb     | bf16" in proc.stdout and "torchrun, 1 process: ok" in proc.stdout
    assert not list((tmp_path / "out").glob("first-light-*"))  # the synthetic data is cleaned up


def test_first_light_says_what_to_install_when_the_package_is_missing(tmp_path):
    env = {**os.environ, "PYTHON": "/usr/bin/false"}
    proc = subprocess.run(["bash", str(SCRIPT), str(tmp_path)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "run the README's install command first" in proc.stderr
