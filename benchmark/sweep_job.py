"""One job of a sweep: one ``mlrpl-bench run`` command line, run inside a submitit job.

A :class:`RunJob` is what ``mlrpl-bench sweep`` hands to submitit: the argument list of one run
(one method, dataset, setting, known proportion and seed, the user's extra run options, always
``--resume``). Inside the job it

* maps submitit's job environment onto the variables ``torch.distributed`` reads (``RANK``,
  ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) when the job has several tasks,
  so a job with one task per GPU trains through the same DDP path as ``torchrun``;
* runs the command in-process, as ``mlrpl-bench run`` would;
* keeps a small state file, ``<sweep dir>/jobs/<run key>.json``, that ``sweep status`` reads:
  ``running`` (with host, pid and a heartbeat: the file's modification time, renewed every
  :data:`HEARTBEAT_SECONDS`), ``done`` (with the record's path), ``failed`` (with the error line),
  ``requeued``;
* is checkpointable: on preemption or time-out submitit calls :meth:`RunJob.checkpoint`, which
  returns the same command as a new submission (it already carries ``--resume``, so the requeued
  job continues from the run's last epoch checkpoint) and marks the run ``requeued``.

This module must stay importable without torch: submitit unpickles the job before anything runs.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import BenchError
from .hookspecs import hookimpl

#: How often a running job renews its state file's modification time.
HEARTBEAT_SECONDS = float(os.environ.get("MLRPL_BENCH_SWEEP_HEARTBEAT", "30"))
#: A state file not renewed for this many heartbeats belongs to a job that is gone.
STALE_HEARTBEATS = 4

STATES = ("pending", "running", "done", "failed")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def state_path(sweep_dir: str | Path, key: str) -> Path:
    """Where the job of run ``key`` keeps its state."""
    return Path(sweep_dir) / "jobs" / f"{key}.json"


def read_state(path: Path) -> dict[str, Any] | None:
    """The state file's content, or None when there is none (it is replaced atomically, never half-written).

    :raises BenchError: one line naming a damaged state file (and how to start that run's bookkeeping over).
    """
    from .schema import SchemaError, read_config

    if not path.is_file():
        return None
    try:
        state = read_config(path, source=str(path), what="sweep job state")
    except SchemaError as exc:
        raise BenchError(f"{exc}; delete it and run the sweep again to resubmit that run") from None
    if not isinstance(state, dict):
        raise BenchError(f"{path}: expected a JSON object; delete it and run the sweep again to resubmit that run")
    return state


def write_state(path: Path, state: dict[str, Any]) -> None:
    from .atomic import atomic_write_text

    atomic_write_text(path, json.dumps({**state, "updated": now_iso()}, indent=1, sort_keys=True) + "\n")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def is_live(state: dict[str, Any], path: Path) -> bool:
    """Whether the job that wrote a ``running`` state is still alive.

    On the job's own host the process id tells; elsewhere (a cluster node) the heartbeat does:
    the file must have been renewed within :data:`STALE_HEARTBEATS` heartbeats.
    """
    try:
        age = time.time() - path.stat().st_mtime
    except OSError:
        return False
    fresh = age < STALE_HEARTBEATS * max(HEARTBEAT_SECONDS, 1.0)
    if state.get("host") == socket.gethostname() and state.get("pid"):
        return _pid_alive(int(state["pid"])) and fresh
    return fresh


class _Heartbeat(threading.Thread):
    """Renews the state file's modification time until stopped (a daemon: it dies with the job)."""

    def __init__(self, path: Path):
        super().__init__(daemon=True, name="mlrpl-sweep-heartbeat")
        self.path, self.stop = path, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(HEARTBEAT_SECONDS):
            try:
                os.utime(self.path)
            except OSError:
                pass


class _RunWatcher:
    """A plugin registered inside the job: learns the run directory and the record's path."""

    def __init__(self, job: RunJob):
        self.job = job
        self.run_dir: str | None = None
        self.record: str | None = None

    @hookimpl
    def mlrpl_run_start(self, run):
        self.run_dir = run["output_dir"]
        self.job._update(run_dir=self.run_dir)

    @hookimpl
    def mlrpl_run_end(self, run, record, path):
        self.record = path

    @hookimpl
    def mlrpl_sweep_end(self, records):
        if self.record is None and records:  # the run was already done: find the record it kept
            self.record = find_record(self.job.output, records[0])


def find_record(output: str | Path, record: dict[str, Any]) -> str | None:
    """The ``record.json`` under ``output`` holding ``record`` (same run id and configuration hash)."""
    for path in sorted(Path(output).glob(f"{record['run_id']}*/record.json")):
        found = read_state(path)  # any JSON file
        if found and found.get("config_hash") == record.get("config_hash"):
            return str(path)
    return None


def _export_torch_distributed() -> tuple[int, int]:
    """``(global rank, number of tasks)`` of this submitit task; with several tasks, also the
    environment ``torch.distributed``'s ``env://`` initialisation reads."""
    try:
        import submitit

        env = submitit.JobEnvironment()
    except RuntimeError:  # not inside a submitit job (a job called directly)
        return 0, 1
    if env.num_tasks > 1:
        # Every task sees all of the node's GPUs; the runner picks cuda:LOCAL_RANK itself.
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        if os.environ.get("SUBMITIT_EXECUTOR") == "local":  # one machine: no need to resolve its host name
            os.environ["MASTER_ADDR"] = "127.0.0.1"
    return env.global_rank, env.num_tasks


def _job_id_and_log() -> tuple[str | None, str | None]:
    try:
        import submitit

        env = submitit.JobEnvironment()
        return env.job_id, str(env.paths.stdout)
    except (RuntimeError, KeyError):
        return None, None


@dataclass
class RunJob:
    """The submitit callable of one run of a sweep.

    :param key: the run's id (``method__dataset__setting__known__seedN``), the state file's name.
    :param argv: the ``mlrpl-bench`` arguments, starting with ``run``.
    :param sweep_dir: the sweep's state directory.
    :param output: the runs tree (``--output`` of the run).
    :param attempt: 1 for the first submission, +1 at each requeue or resubmission.
    """

    key: str
    argv: list[str]
    sweep_dir: str
    output: str
    attempt: int = 1

    def __post_init__(self):
        self._requeueing = False
        self._state: dict[str, Any] = {}
        self._rank = 0

    def __getstate__(self):  # what submitit pickles: the arguments only
        return {"key": self.key, "argv": self.argv, "sweep_dir": self.sweep_dir, "output": self.output,
                "attempt": self.attempt}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.__post_init__()

    @property
    def state_file(self) -> Path:
        return state_path(self.sweep_dir, self.key)

    def _update(self, **fields: Any) -> None:
        if self._rank != 0:
            return
        self._state.update(fields)
        write_state(self.state_file, self._state)

    def __call__(self) -> dict[str, Any]:
        """Run the command; return ``{"key", "record"}`` (what submitit keeps as the job's result)."""
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (see cli.main)
        self._rank, tasks = _export_torch_distributed()
        job_id, log = _job_id_and_log()
        self._state = {"key": self.key, "argv": self.argv, "attempt": self.attempt, "job_id": job_id, "log": log,
                       "tasks": tasks, "host": socket.gethostname(), "pid": os.getpid(), "started": now_iso()}
        self._update(state="running")
        heartbeat = _Heartbeat(self.state_file)
        if self._rank == 0:
            heartbeat.start()
        from . import plugin_manager as P

        watcher = _RunWatcher(self)
        pm = P.get_plugin_manager()
        pm.register(watcher, name="mlrpl-sweep-job")
        try:
            from .cli import cli

            cli.main(args=list(self.argv), prog_name="mlrpl-bench", standalone_mode=False)
        except BaseException as exc:
            if not self._requeueing:  # a requeue leaves through SystemExit and keeps its "requeued" state
                line = str(exc).splitlines()[0] if str(exc) else ""
                self._update(state="failed", error=f"{type(exc).__name__}: {line}"[:500], finished=now_iso())
            raise
        finally:
            heartbeat.stop.set()
            pm.unregister(watcher)
        if self._rank == 0 and watcher.record is None:
            self._update(state="failed", error="the run ended without a record", finished=now_iso())
            raise RuntimeError(f"{self.key}: the run ended without a record")
        self._update(state="done", record=watcher.record, finished=now_iso())
        return {"key": self.key, "record": watcher.record}

    def checkpoint(self, *args: Any, **kwargs: Any):
        """submitit's checkpointing hook (preemption, time-out): requeue the same run with ``--resume``."""
        from submitit.core.utils import DelayedSubmission

        self._requeueing = True
        self._update(state="requeued", requeued=now_iso())
        argv = self.argv if "--resume" in self.argv else [*self.argv, "--resume"]
        return DelayedSubmission(RunJob(self.key, argv, self.sweep_dir, self.output, self.attempt + 1))

    __submitit_checkpoint__ = checkpoint
