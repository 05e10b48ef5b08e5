"""``mlrpl-bench run --jobs N``: the cells of a CPU sweep in worker processes give the records a
sequential run gives; a failing cell reports one line while the others finish; an interrupt stops
every worker; where the cells cannot run side by side (GPU, torchrun) the sweep is sequential."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY_SCENES
from mlrpl_bench.engine import WALL_CLOCK_KEYS
from mlrpl_bench.errors import BenchError
from mlrpl_bench.parallel import resolve_jobs, resolve_threads

SWEEP = ["--known", "0.3,0.7", "--seeds", "0,1", "--epochs", "2", "--track", "frozen"]


def _records(out: Path) -> dict[str, dict]:
    """Every record under ``out`` by run directory, without what may differ between two
    executions of the same run (wall time, timestamps, environment)."""
    found = {}
    for path in sorted(out.glob("*/record.json")):
        record = json.loads(path.read_text())
        runtime = record.pop("runtime")
        record.pop("environment")
        found[path.parent.name] = (record, runtime["device"])
    return found


def _epoch_logs(out: Path) -> dict[str, list]:
    logs = {}
    for path in sorted(out.glob("*/epochs.jsonl")):
        logs[path.parent.name] = [{k: v for k, v in json.loads(line).items() if k not in WALL_CLOCK_KEYS}
                                  for line in path.read_text().splitlines()]
    return logs


@pytest.mark.parametrize("plugin", ["hst", "partial-bce"])
def test_jobs_2_files_the_records_of_a_sequential_run(cli, tmp_path, plugin):
    extra = ["-o", "feature_dim=8", "-o", "num_prototypes=2"] if plugin == "hst" else []
    sequential = cli("run", "--plugin", plugin, *SWEEP, *extra, "--jobs", "1", "--output", tmp_path / "seq", *TINY_SCENES)
    assert sequential.exit_code == 0, sequential.stderr
    parallel = cli("run", "--plugin", plugin, *SWEEP, *extra, "--jobs", "2", "--output", tmp_path / "par", *TINY_SCENES)
    assert parallel.exit_code == 0, parallel.stderr
    seq, par = _records(tmp_path / "seq"), _records(tmp_path / "par")
    assert len(seq) == 4 and seq.keys() == par.keys()
    for name in seq:
        assert par[name][0] == seq[name][0], name  # metrics, per-class AP, selection, epoch log, config
        assert par[name][1] == seq[name][1] and "1 threads" in seq[name][1]  # the thread count is recorded
    assert _epoch_logs(tmp_path / "par") == _epoch_logs(tmp_path / "seq")
    # one line per finished run, then the table
    assert "4 runs in 2 worker processes x 1 torch thread(s)" in parallel.output
    assert sum(line.startswith(f"{plugin}__digit-scenes__pal__") for line in parallel.output.splitlines()) == 4
    assert "Ave." in parallel.output
    again = cli("run", "--plugin", plugin, *SWEEP, *extra, "--jobs", "2", "--output", tmp_path / "par", *TINY_SCENES)
    assert again.exit_code == 0 and "runs in" not in again.output  # every cell done: no worker is started
    assert again.output.count("already done") == 4


def test_a_failing_cell_reports_one_line_and_the_others_finish(cli, tmp_path):
    out = tmp_path / "runs"
    broken = out / "partial-bce__digit-scenes__pal__0.3__seed1"
    broken.mkdir(parents=True)
    (broken / "checkpoint.pt").write_bytes(b"not a checkpoint")
    res = cli("run", "--plugin", "partial-bce", *SWEEP, "--jobs", "2", "--resume", "--output", out, *TINY_SCENES)
    assert res.exit_code == 2
    errors = [line for line in res.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: partial-bce__digit-scenes__pal__0.3__seed1: ")
    assert "checkpoint" in errors[0]
    assert sorted(p.parent.name for p in out.glob("*/record.json")) == [
        "partial-bce__digit-scenes__pal__0.3__seed0", "partial-bce__digit-scenes__pal__0.7__seed0",
        "partial-bce__digit-scenes__pal__0.7__seed1"]
    assert "1 of 4 runs failed" in res.stderr


def test_an_interrupt_stops_every_worker_and_keeps_finished_records(tmp_path):
    """SIGINT to the whole process group (what Ctrl-C sends): exit 130, no process left behind."""
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    cmd = [sys.executable, "-m", "mlrpl_bench", "run", "--plugin", "partial-bce", "--known", "0.3,0.7", "--epochs", "5000",
           "--track", "frozen", "--jobs", "2", "--output", str(tmp_path / "runs"), *TINY_SCENES]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        header = proc.stdout.readline()
        assert "runs in 2 worker processes" in header, header + proc.stderr.read()
        deadline = time.time() + 120
        while not list((tmp_path / "runs").glob("*/epochs.jsonl")) and time.time() < deadline:
            time.sleep(0.2)  # both cells are training
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "error: interrupted" in err and "leaked" not in err and "Traceback" not in err
    time.sleep(0.5)
    ps = subprocess.run(["ps", "-eo", "pgid=,stat="], capture_output=True, text=True).stdout.split("\n")
    alive = [line for line in ps if line.split()[:1] == [str(proc.pid)] and not line.split()[1].startswith("Z")]
    assert alive == []
    assert not list((tmp_path / "runs").glob("*/record.json"))  # nothing half-filed


def test_jobs_and_threads_defaults(monkeypatch):
    from mlrpl_bench import parallel

    monkeypatch.setattr(parallel, "available_cores", lambda: 2)
    assert resolve_jobs(0, 9, device_type="cpu", distributed=False) == 2  # one per core
    assert resolve_jobs(0, 1, device_type="cpu", distributed=False) == 1  # at most one per cell
    assert resolve_jobs(4, 3, device_type="cpu", distributed=False) == 3
    assert resolve_jobs(0, 9, device_type="cuda", distributed=False) == 1
    assert resolve_jobs(0, 9, device_type="cpu", distributed=True) == 1
    with pytest.raises(BenchError, match="--jobs 2: parallel cells run on the CPU only; under torchrun"):
        resolve_jobs(2, 9, device_type="cpu", distributed=True)
    with pytest.raises(BenchError, match="on a cuda device"):
        resolve_jobs(2, 9, device_type="cuda", distributed=False)
    assert resolve_threads(0, "cpu") == 1 and resolve_threads(3, "cpu") == 3 and resolve_threads(0, "cuda") is None


def test_bad_jobs_value_is_one_line(cli, tmp_path):
    res = cli("run", "--plugin", "partial-bce", "--jobs", "-1", "--output", tmp_path)
    assert res.exit_code == 2 and "--jobs -1" in res.stderr and len(res.stderr.strip().splitlines()) == 1
