"""``mlrpl-bench sweep``: the plan, the local launcher (what runs here), Slurm's submission (checked
through a stand-in ``sbatch``), status from files, preemption and a killed job resumed to the
same record as a plain ``run``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY_SCENES
from mlrpl_bench import plugin_manager as P
from mlrpl_bench import sweep as S
from mlrpl_bench.hookspecs import hookimpl
from mlrpl_bench.results import read_record
from mlrpl_bench.sweep_job import RunJob, read_state, state_path, write_state

FROZEN = ("--track", "frozen", "--lr", "0.01", "--epochs", "2")
IGNORED = ("runtime", "environment")  # wall times, timestamps, library versions


def _env(**extra) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def _comparable(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in IGNORED}


def _plain_record(out: Path, method: str, known: str, *run_args: str) -> dict:
    cmd = [sys.executable, "-m", "mlrpl_bench", "run", "--plugin", method, "--known", known, "--output", str(out),
           *run_args]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return read_record(out / f"{method}__digit-scenes__pal__{known}__seed0" / "record.json")


def _sweep_cmd(out: Path, *args: str, run_args=()) -> list[str]:
    return [sys.executable, "-m", "mlrpl_bench", "sweep", "--output", str(out), *args, "--", *run_args]


# -- the plan -------------------------------------------------------------------------------------


def test_plan_is_every_cell_with_its_run_command(tmp_path):
    opts = S.build_sweep_options({}, {"plugins": "bce,partial-bce", "known": "0.3,0.7", "seeds": "0,1",
                                      "settings": "pal,full", "output": str(tmp_path), "run_args": ["--epochs", "2"]})
    runs, notes = S.plan(opts)
    assert notes == []
    # pal: 2 methods x 2 known x 2 seeds; full: one known (1.0) x 2 seeds per method
    assert len(runs) == 2 * 2 * 2 + 2 * 2
    first = runs[0]
    assert first.key == "bce__digit-scenes__pal__0.3__seed0"
    assert list(first.argv) == ["run", "--plugin", "bce", "--dataset", "digit-scenes", "--setting", "pal", "--known", "0.3",
                                "--seeds", "0", "--output", str(tmp_path.resolve()), "--no-progress", "--epochs", "2",
                                "--resume"]
    assert {r.key for r in runs if r.setting == "full"} == {f"{m}__digit-scenes__full__1__seed{s}" for m in ("bce", "partial-bce")
                                                            for s in (0, 1)}


def test_plan_leaves_out_settings_a_method_does_not_support(tmp_path):
    bce = P.get_method("bce")

    class PalOnly(bce):
        name = "pal-only-test"
        settings = ("pal",)

    class Plugin:
        @hookimpl
        def mlrpl_methods(self):
            return [PalOnly]

    pm = P.get_plugin_manager()
    plugin = Plugin()
    pm.register(plugin, name="pal-only-test")
    P.method_registry.cache_clear()
    try:
        opts = S.build_sweep_options({}, {"plugins": "pal-only-test,bce", "settings": "pal,spl", "known": "0.5",
                                          "output": str(tmp_path)})
        runs, notes = S.plan(opts)
    finally:
        pm.unregister(plugin)
        P.method_registry.cache_clear()
    assert notes == ["pal-only-test does not support setting spl: left out"]
    assert sorted(r.key for r in runs) == ["bce__digit-scenes__pal__0.5__seed0", "bce__digit-scenes__spl__1__seed0",
                                           "pal-only-test__digit-scenes__pal__0.5__seed0"]


def test_dry_run_prints_the_commands_and_submits_nothing(cli, tmp_path):
    res = cli("sweep", "--plugins", "bce", "--known", "0.2,0.4", "--output", tmp_path, "--dry-run", "--", "--epochs", "1")
    assert res.exit_code == 0, res.stderr
    commands = [line.strip() for line in res.output.splitlines() if line.strip().startswith("mlrpl-bench run")]
    assert len(commands) == 2 and all(c.endswith("--epochs 1 --resume") for c in commands)
    assert not (tmp_path / "_sweep").exists()


@pytest.mark.parametrize("run_args, message", [
    (("--known", "0.5"), "run option --known is set by the sweep"),
    (("--output=elsewhere",), "run option --output is set by the sweep"),
    (("--epochs", "two"), "--epochs two: 'two' is not an integer"),
    (("--no-such-option",), "No such option '--no-such-option'"),
])
def test_bad_run_options_are_refused_before_anything_is_submitted(cli, tmp_path, run_args, message):
    res = cli("sweep", "--plugins", "bce", "--known", "0.5", "--output", tmp_path, "--", *run_args)
    assert res.exit_code == 2
    assert message in res.stderr and res.stderr.count("\n") == 1, res.stderr
    assert not (tmp_path / "_sweep").exists()


@pytest.mark.parametrize("values, message", [
    ({"plugins": "bce", "known": "1.5"}, "known"),
    ({"plugins": "bce", "settings": "pal,xyz"}, "one of full, pal, ppl or spl"),
    ({"plugins": "bce", "launcher": "slurm"}, "give the partition"),
    ({"known": "0.5"}, "give the methods to run"),
    ({"plugins": "bce", "launcher": "pbs"}, "one of local or slurm"),
])
def test_sweep_options_are_validated_in_one_line(values, message):
    from mlrpl_bench.errors import BenchError

    with pytest.raises(BenchError, match=message):
        S.build_sweep_options({}, values)


def test_config_file_with_a_slurm_table(tmp_path):
    from mlrpl_bench.cli.sweep_cmd import read_sweep_config

    config = tmp_path / "sweep.toml"
    config.write_text('plugins = ["bce", "hst"]\nknown = [0.1, 0.5]\nseeds = [0, 1, 2]\nlauncher = "slurm"\n'
                      'run_args = ["--epochs", "12"]\n[slurm]\npartition = "gpu"\ntime = 600\ngpus_per_job = 2\n'
                      'array_parallelism = 8\n')
    opts = S.build_sweep_options(read_sweep_config(str(config)), {"seeds": "3"})  # the command line wins
    assert (opts.plugins, opts.known, opts.seeds, opts.partition, opts.time, opts.gpus_per_job, opts.tasks) == (
        ("bce", "hst"), (0.1, 0.5), (3,), "gpu", 600, 2, 2)
    assert opts.run_args == ("--epochs", "12")
    config.write_text('plugins = ["bce"]\n[slurm]\ngpu = 2\n')
    from mlrpl_bench.errors import BenchError

    with pytest.raises(BenchError, match=r"\[slurm\] key 'gpu' is not one of"):
        read_sweep_config(str(config))


# -- status from files ----------------------------------------------------------------------------


def _folder_with_manifest(tmp_path: Path, keys: list[str]) -> Path:
    folder = tmp_path / "_sweep" / "default"
    folder.mkdir(parents=True)
    (folder / "sweep.json").write_text(json.dumps({"runs": {k: ["run"] for k in keys}}))
    return folder


def test_status_reads_done_running_failed_lost_and_pending_from_files(tmp_path):
    keys = ["done", "running", "failed", "lost", "requeued", "queued", "never"]
    folder = _folder_with_manifest(tmp_path, keys)
    record = tmp_path / "done" / "record.json"
    record.parent.mkdir()
    record.write_text("{}")
    run_dir = tmp_path / "running"
    run_dir.mkdir()
    (run_dir / "epochs.jsonl").write_text("{}\n{}\n")
    (run_dir / "checkpoint.pt").write_bytes(b"x")
    here = {"host": socket.gethostname()}
    write_state(state_path(folder, "done"), {"state": "done", "record": str(record), **here})
    write_state(state_path(folder, "running"), {"state": "running", "pid": os.getpid(), "run_dir": str(run_dir), **here})
    write_state(state_path(folder, "failed"), {"state": "failed", "error": "BenchError: bad backbone", "log": "x.log", **here})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_state(state_path(folder, "lost"), {"state": "running", "pid": dead.pid, **here})
    write_state(state_path(folder, "requeued"), {"state": "requeued", "requeued": "t", **here})
    with (folder / "submitted.jsonl").open("w") as handle:
        handle.write(json.dumps({"key": "queued", "job_id": "777", "launcher": "slurm", "time": "t", "host": "h"}) + "\n")
    got = {s.key: s for s in S.status(folder)}
    assert {k: got[k].state for k in keys} == {"done": "done", "running": "running", "failed": "failed", "lost": "failed",
                                                 "requeued": "pending", "queued": "pending", "never": "pending"}
    assert "2 epoch(s) done (checkpointed)" in got["running"].detail
    assert "bad backbone" in got["failed"].detail and "x.log" in got["failed"].detail
    assert got["lost"].detail.startswith("lost")
    assert "queued as job 777" in got["queued"].detail
    todo, _ = S.to_submit(folder, [S.PlannedRun(k, "m", "d", "pal", 0.5, 0, ("run",)) for k in keys], False)
    assert sorted(r.key for r in todo) == ["failed", "lost", "never"]
    todo, _ = S.to_submit(folder, [S.PlannedRun(k, "m", "d", "pal", 0.5, 0, ("run",)) for k in keys], True)
    assert sorted(r.key for r in todo) == ["failed", "lost", "never", "queued", "requeued"]


def test_status_of_a_missing_sweep_says_how_to_start_one(cli, tmp_path):
    res = cli("sweep", "status", "--output", tmp_path)
    assert res.exit_code == 2 and "run `mlrpl-bench sweep` first" in res.stderr


# -- Slurm, through a stand-in sbatch --------------------------------------------------------------


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """``sbatch`` that keeps the script it is given and answers like Slurm; ``srun`` that exists."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = tmp_path / "sbatch-scripts"
    scripts.mkdir()
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\nn=$(ls {scripts} | wc -l)\ncp "$1" {scripts}/script$n.sh\n'
                                    'echo "Submitted batch job $((4242 + n))"\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return scripts


def _submitted_jobs(folder: Path) -> list[RunJob]:
    from submitit.core.utils import DelayedSubmission

    return [DelayedSubmission.load(p).function for p in sorted(folder.rglob("*_submitted.pkl"))]


def test_slurm_array_script_parameters_and_requeue_with_resume(cli, tmp_path, fake_slurm):
    out = tmp_path / "runs"
    res = cli("sweep", "--launcher", "slurm", "--partition", "gpu", "--time", "600", "--gpus-per-job", "2",
              "--cpus-per-task", "8", "--array-parallelism", "2", "--plugins", "bce,partial-bce", "--known", "0.3,0.7",
              "--output", out, "--", "--epochs", "2")
    assert res.exit_code == 0, res.stderr
    (script,) = fake_slurm.iterdir()  # one sbatch: a job array of the 4 runs
    text = script.read_text()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=600", "#SBATCH --gpus-per-node=2",
                 "#SBATCH --ntasks-per-node=2", "#SBATCH --cpus-per-task=8", "#SBATCH --array=0-3%2",
                 "#SBATCH --signal=USR2@120", "#SBATCH --nodes=1"):
        assert line in text, text
    assert "srun" in text and "submitit.core._submit" in text
    (folder,) = (out / "_sweep").iterdir()
    jobs = _submitted_jobs(folder)
    assert sorted(j.key for j in jobs) == ["bce__digit-scenes__pal__0.3__seed0", "bce__digit-scenes__pal__0.7__seed0",
                                           "partial-bce__digit-scenes__pal__0.3__seed0",
                                           "partial-bce__digit-scenes__pal__0.7__seed0"]
    assert all(j.argv[-1] == "--resume" and "--epochs" in j.argv for j in jobs)
    statuses = S.status(folder)
    assert {s.state for s in statuses} == {"pending"} and {s.job_id for s in statuses} == {f"4242_{i}" for i in range(4)}
    # preemption: submitit calls the job's checkpoint hook; the new submission is the same run with --resume
    job = jobs[0]
    again = job.checkpoint()
    assert again.function.argv == job.argv and again.function.attempt == 2 and again.function.key == job.key
    assert read_state(state_path(folder, job.key))["state"] == "requeued"
    # a second sweep submits nothing while the array is queued; --resubmit-queued resubmits
    res = cli("sweep", "--launcher", "slurm", "--partition", "gpu", "--plugins", "bce,partial-bce", "--known", "0.3,0.7",
              "--output", out, "--", "--epochs", "2")
    assert res.exit_code == 0 and "submitting 0" in res.output, res.output
    res = cli("sweep", "--launcher", "slurm", "--partition", "gpu", "--no-array", "--resubmit-queued", "--plugins",
              "bce,partial-bce", "--known", "0.3,0.7", "--output", out, "--", "--epochs", "2")
    assert res.exit_code == 0 and "submitting 4" in res.output, res.output
    assert len(list(fake_slurm.iterdir())) == 1 + 4  # one job per run this time
    assert "--array" not in (fake_slurm / "script4.sh").read_text()


# -- real jobs with the local launcher -----------------------------------------------------------


@pytest.mark.slow
def test_local_sweep_records_equal_plain_runs_and_a_second_sweep_submits_nothing(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the jobs' thread count, the same as the plain runs'
    out = tmp_path / "sweep"
    run_args = (*FROZEN, *TINY_SCENES)
    res = cli("sweep", "--plugins", "bce,partial-bce", "--known", "0.3,0.7", "--array-parallelism", "2", "--output", out,
              "--", *run_args)
    assert res.exit_code == 0, res.stderr + res.output
    assert "4 done, 0 running, 0 failed, 0 pending" in res.output
    for method in ("bce", "partial-bce"):
        for known in ("0.3", "0.7"):
            plain = _plain_record(tmp_path / "plain", method, known, *run_args)
            swept = read_record(out / f"{method}__digit-scenes__pal__{known}__seed0" / "record.json")
            assert _comparable(swept) == _comparable(plain), (method, known)
    res = cli("sweep", "--plugins", "bce,partial-bce", "--known", "0.3,0.7", "--output", out, "--", *run_args)
    assert res.exit_code == 0 and "submitting 0" in res.output
    status = cli("sweep", "status", "--output", out)
    assert "4 done, 0 running, 0 failed, 0 pending" in status.output


def _wait_for(predicate, proc, what: str, timeout: float = 300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        assert proc.poll() is None, f"the sweep ended before {what}: {proc.stdout.read() if proc.stdout else ''}"
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# Long enough that a signal sent after the first checkpoint lands before the last epoch, even on a busy machine.
LONGER = ("--dataset-option", "train_size=400", "--epochs", "12")
KEY = "partial-bce__digit-scenes__pal__0.5__seed0"


def _task_pid_after_first_checkpoint(out: Path, proc) -> int:
    folder = _wait_for(lambda: next((out / "_sweep").glob("*/sweep.json"), None), proc, "the sweep started").parent
    checkpoint = out / KEY / "checkpoint.pt"
    _wait_for(checkpoint.exists, proc, "the first checkpoint")
    state = read_state(state_path(folder, KEY))
    assert state["state"] == "running"
    (st,) = S.status(folder)
    assert st.state == "running" and "(checkpointed)" in st.detail  # checkpoint present + live job
    return int(state["pid"])


def _start_sweep(out: Path, run_args: tuple) -> subprocess.Popen:
    """The one-job sweep (partial-bce at known 0.5) the kill and preemption tests interrupt."""
    return subprocess.Popen(_sweep_cmd(out, "--plugins", "partial-bce", "--known", "0.5", run_args=run_args), env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_killed_job_shows_failed_then_a_second_sweep_resumes_it_to_the_plain_record(tmp_path):
    out = tmp_path / "sweep"
    run_args = (*TINY_SCENES, *LONGER)
    proc = _start_sweep(out, run_args)
    try:
        os.kill(_task_pid_after_first_checkpoint(out, proc), signal.SIGKILL)
        output, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 1, output  # the local launcher reports the failure
    assert not (out / KEY / "record.json").exists()
    folder = next((out / "_sweep").glob("*/sweep.json")).parent
    (st,) = S.status(folder)
    assert st.state == "failed" and st.detail.startswith("lost"), st
    again = subprocess.run(_sweep_cmd(out, "--plugins", "partial-bce", "--known", "0.5", run_args=run_args), env=_env(),
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "submitting 1" in again.stdout
    swept = read_record(out / KEY / "record.json")
    assert 1 <= swept["runtime"]["resumed_from_epoch"] < 12
    assert read_state(state_path(folder, KEY))["attempt"] == 2
    plain = _plain_record(tmp_path / "plain", "partial-bce", "0.5", *run_args)
    assert _comparable(swept) == _comparable(plain)


@pytest.mark.slow
def test_preempted_job_is_requeued_by_submitit_and_resumes_to_the_plain_record(tmp_path):
    out = tmp_path / "sweep"
    run_args = (*TINY_SCENES, *LONGER)
    proc = _start_sweep(out, run_args)
    try:
        pid = _task_pid_after_first_checkpoint(out, proc)
        os.kill(pid, signal.SIGUSR2)  # what Slurm sends before preempting, and the local launcher at its time limit
        output, _ = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert proc.returncode == 0, output
    folder = next((out / "_sweep").glob("*/sweep.json")).parent
    state = read_state(state_path(folder, KEY))
    assert state["state"] == "done" and state["attempt"] == 2 and state["pid"] != pid, state
    swept = read_record(out / KEY / "record.json")
    assert 1 <= swept["runtime"]["resumed_from_epoch"] < 12
    plain = _plain_record(tmp_path / "plain", "partial-bce", "0.5", *run_args)
    assert _comparable(swept) == _comparable(plain)


@pytest.mark.slow
def test_a_job_with_two_tasks_trains_as_one_ddp_group(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "sweep"
    res = cli("sweep", "--plugins", "partial-bce", "--known", "0.5", "--tasks-per-job", "2", "--output", out,
              "--", *FROZEN, *TINY_SCENES, "--device", "cpu")
    assert res.exit_code == 0, res.output + res.stderr
    record = read_record(out / KEY / "record.json")
    assert record["train"]["world_size"] == 2
    assert record["dataset"]["sizes"]["test"] == 30  # every test image scored once across the two processes
