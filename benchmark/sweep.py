"""``mlrpl-bench sweep``: a whole comparison as submitit jobs, one ``mlrpl-bench run`` each.

The plan is methods × datasets × settings × known proportions × seeds; every cell becomes one
job whose work is the command line of one run (:class:`~mlrpl_bench.sweep_job.RunJob`): the
sweep is built on ``mlrpl-bench run`` itself, so a job does exactly what the same command typed
by hand would do, and its record lands in the usual runs tree.

Launchers (both through submitit):

* ``local`` -- submitit's ``LocalExecutor``: jobs are processes on this machine, at most
  ``--array-parallelism`` at once; the command waits for them.
* ``slurm`` -- ``sbatch``, one job per run or one job array (``--array``, the default), with the
  partition, time limit, GPUs per job and array parallelism from options or the config file.
  A job with ``--gpus-per-job N`` gets ``N`` tasks (one per GPU) that join one DDP process group.

Several GPUs per job: ``--gpus-per-job N`` asks Slurm for ``N`` GPUs and ``N`` tasks on one node
(``gpus_per_node = ntasks_per_node = N``); each task runs the same command, and
:func:`mlrpl_bench.sweep_job._export_torch_distributed` turns submitit's job environment into
``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT``, which is what
``distributed.init_from_env`` reads under ``torchrun`` too: the run joins one NCCL group, rank
``r`` trains on ``cuda:r``, ``--batch-size`` stays the global batch and rank 0 writes the record.
``--tasks-per-job N`` without GPUs does the same on CPUs (gloo), which is how it is tested.

Jobs are requeued on preemption or time-out (submitit's checkpointing hook reruns the same
command, which carries ``--resume``): Slurm sends ``USR2`` 120 s before the end, the job marks
itself ``requeued`` and requeues itself with ``scontrol requeue`` (the local launcher restarts it). Runs
checkpoint once per epoch, so the work of a partial epoch is redone: an epoch must fit in
``--time``. Everything ``sweep status`` says comes from files:
``<output>/_sweep/<name>/`` holds ``sweep.json`` (the plan), ``submitted.jsonl`` (which job ran
which run), ``jobs/<run key>.json`` (each job's state) and ``submitit/`` (submitit's pickles and
logs). A second ``sweep`` with the same plan submits only what is missing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from .errors import BenchError
from .run_config import KnownList, SeedList
from .schema import loads_strict, read_config, read_text_file
from .sweep_job import RunJob, is_live, now_iso, read_state, state_path
from .vocabulary import DEFAULT_PROPORTIONS, SETTINGS, known_text, plan_cells

#: Run options a sweep sets itself, per job (the plan's axes and the job's bookkeeping).
PLAN_FLAGS = ("--plugin", "--dataset", "--data-root", "--setting", "--known", "--seeds", "--output", "--shard",
              "--config", "--resume", "--overwrite")
SWEEPS_DIR = "_sweep"
NOT_SUBMITTED = "not submitted (or its job never started)"


@dataclass
class SweepOptions:
    """What ``mlrpl-bench sweep`` runs and where (the command line and the config file both fill it)."""

    plugins: tuple[str, ...] = field(default=(), metadata={"help": "methods, comma-separated"})
    datasets: tuple[str, ...] = field(default=("digit-scenes",), metadata={
        "help": "datasets, comma-separated; NAME=DATA_ROOT gives a dataset's folder"})
    settings: tuple[Literal[SETTINGS], ...] = field(default=("pal",), metadata={"help": "protocol settings"})
    known: KnownList = field(default=DEFAULT_PROPORTIONS, metadata={"help": "known-label proportions (or 'all')"})
    seeds: SeedList = field(default=(0,), metadata={"help": "seeds"})
    output: str = field(default="runs", metadata={"help": "the runs tree (records, checkpoints, sweep state)"})
    run_args: tuple[str, ...] = field(default=(), metadata={"help": "further `mlrpl-bench run` options of every job"})
    name: str = field(default="", metadata={"help": "the sweep's name [default: from the run options]"})
    launcher: Literal["local", "slurm"] = field(default="local", metadata={"help": "local or slurm"})
    partition: str = field(default="", metadata={"help": "Slurm partition"})
    time: Annotated[int, Field(ge=1)] = field(default=1440, metadata={"help": "time limit per job, minutes"})
    gpus_per_job: Annotated[int, Field(ge=0, le=64)] = field(default=0, metadata={
        "help": "GPUs per job; each gets one task (DDP process)"})
    tasks_per_job: Annotated[int, Field(ge=0, le=64)] = field(default=0, metadata={
        "help": "processes per job [default: one per GPU, or 1]; >1 without GPUs runs DDP on CPUs (gloo)"})
    cpus_per_task: Annotated[int, Field(ge=0)] = field(default=0, metadata={"help": "CPUs per task (0: the cluster's default)"})
    mem_gb: Annotated[float, Field(ge=0)] = field(default=0.0, metadata={"help": "memory per job in GB (0: default)"})
    account: str = field(default="", metadata={"help": "Slurm account"})
    qos: str = field(default="", metadata={"help": "Slurm quality of service"})
    constraint: str = field(default="", metadata={"help": "Slurm node constraint"})
    setup: tuple[str, ...] = field(default=(), metadata={"help": "shell lines run before each job (e.g. module load)"})
    array: bool = field(default=True, metadata={"help": "Slurm: submit the runs as one job array"})
    array_parallelism: Annotated[int, Field(ge=1)] = field(default=16, metadata={
        "help": "jobs running at once (Slurm array throttle; local: processes)"})
    resubmit_queued: bool = field(default=False, metadata={
        "help": "also resubmit runs whose job is queued but never started (after an scancel)"})

    @property
    def tasks(self) -> int:
        return self.tasks_per_job or max(1, self.gpus_per_job)


def build_sweep_options(config: dict[str, Any], cli_values: dict[str, Any]) -> SweepOptions:
    """Config-file values, then command-line values, through the one validation layer."""
    from .schema import build_options

    values = {**config, **{k: v for k, v in cli_values.items() if v is not None}}
    if isinstance(values.get("datasets"), dict):  # config file: {name = "root"}
        values["datasets"] = [f"{k}={v}" if v else k for k, v in values["datasets"].items()]
    opts = build_options(SweepOptions, values, owner="sweep", strings=True)
    if not opts.plugins:
        raise BenchError("sweep: give the methods to run, e.g. --plugins partial-bce,hst (or plugins = [...] in --config)")
    if opts.launcher == "slurm" and not opts.partition:
        raise BenchError("sweep --launcher slurm: give the partition, e.g. --partition gpu (or partition = \"gpu\" in --config)")
    check_run_args(opts.run_args, opts.plugins)
    return opts


def check_run_args(run_args: tuple[str, ...], plugins: tuple[str, ...] = ()) -> None:
    """Refuse options the plan sets, and check the rest now, before any job is submitted: the run
    command's own parser, then the run configuration every job would resolve (each method's)."""
    import click

    from .cli.run_cmd import command_line_values, run
    from .run_config import make_run_config, prepare_run

    for arg in run_args:
        flag = arg.split("=", 1)[0]
        if flag in PLAN_FLAGS:
            raise BenchError(f"sweep: run option {flag} is set by the sweep for every job; "
                             "use the sweep's --plugins/--datasets/--settings/--known/--seeds/--output instead")
    try:
        context = run.make_context("run", list(run_args))
    except click.ClickException as exc:
        raise BenchError(f"sweep: run options {' '.join(run_args)!r}: {exc.format_message()}") from None
    values = command_line_values(context.params)
    for plugin in plugins:
        try:
            prepare_run(make_run_config({**values, "plugin": plugin}))
        except BenchError as exc:
            raise BenchError(f"sweep: run options {' '.join(run_args)!r}: {exc}") from None


def sweep_name(opts: SweepOptions) -> str:
    """``default`` for a sweep without extra run options, else ``args-`` and a hash of them: two
    sweeps that differ only by their axes share one state directory (the second one adds runs)."""
    if opts.name:
        from .results import safe_name

        return safe_name(opts.name)
    if not opts.run_args:
        return "default"
    return "args-" + hashlib.sha256(json.dumps(list(opts.run_args)).encode()).hexdigest()[:10]


def sweep_dir(opts: SweepOptions) -> Path:
    return Path(opts.output).expanduser().resolve() / SWEEPS_DIR / sweep_name(opts)


@dataclass(frozen=True)
class PlannedRun:
    key: str
    method: str
    dataset: str
    setting: str
    known: float
    seed: int
    argv: tuple[str, ...]


def plan(opts: SweepOptions) -> tuple[list[PlannedRun], list[str]]:
    """Every run of the sweep (in a stable order) and notes on combinations left out."""
    from . import plugin_manager as P
    from .results import make_run_id

    output = str(Path(opts.output).expanduser().resolve())
    datasets = []
    for item in opts.datasets:
        name, _, root = item.partition("=")
        P.get_dataset(name.strip())  # unknown names: one line with the choices
        datasets.append((name.strip(), root.strip()))
    runs, notes = [], []
    for method in opts.plugins:
        supported = P.get_method(method).settings
        for dataset, root in datasets:
            for setting in opts.settings:
                if setting not in supported:
                    notes.append(f"{method} does not support setting {setting}: left out")
                    continue
                for known, seed in plan_cells(setting, opts.known, opts.seeds):
                    argv = ["run", "--plugin", method, "--dataset", dataset, *(["--data-root", root] if root else []),
                            "--setting", setting, "--known", known_text(known), "--seeds", str(seed), "--output", output,
                            *([] if "--no-progress" in opts.run_args else ["--no-progress"]), *opts.run_args,
                            "--resume"]
                    runs.append(PlannedRun(make_run_id(method, dataset, setting, known, seed), method, dataset,
                                           setting, float(known), int(seed), tuple(argv)))
    keys = Counter(r.key for r in runs)
    if any(n > 1 for n in keys.values()):
        raise BenchError(f"sweep: run {next(k for k, n in keys.items() if n > 1)} is planned twice; remove the duplicate")
    return runs, notes


# -- status, from the files alone ----------------------------------------------------------------


@dataclass
class RunStatus:
    key: str
    state: str  # pending | running | done | failed
    detail: str = ""
    job_id: str | None = None
    record: str | None = None


def _submissions(folder: Path) -> dict[str, dict[str, Any]]:
    """The latest submission of each run key."""
    out: dict[str, dict[str, Any]] = {}
    path = folder / "submitted.jsonl"
    if path.exists():
        for number, line in enumerate(read_text_file(path, what="sweep submissions log").splitlines(), 1):
            if line.strip():
                entry = loads_strict(line, source=f"{path} line {number}")
                if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
                    raise BenchError(f"{path} line {number}: expected an object with a 'key'; remove the line")
                out[entry["key"]] = entry
    return out


def _progress(run_dir: str | None) -> str:
    if not run_dir:
        return "starting"
    log = Path(run_dir) / "epochs.jsonl"
    epochs = len(log.read_text().splitlines()) if log.exists() else 0
    checkpoint = " (checkpointed)" if (Path(run_dir) / "checkpoint.pt").exists() else ""
    return f"{epochs} epoch(s) done{checkpoint}"


def run_status(folder: Path, key: str, submission: dict[str, Any] | None) -> RunStatus:
    """One run's state: ``done`` (its record exists), ``running`` (its job is alive), ``failed``
    (the job said so, or died without a word), ``pending`` (queued, requeued or not submitted)."""
    path = state_path(folder, key)
    state = read_state(path) or {}
    job_id = state.get("job_id") or (submission or {}).get("job_id")
    log = state.get("log")
    if state.get("record") and Path(state["record"]).exists():
        return RunStatus(key, "done", state["record"], job_id, state["record"])
    kind = state.get("state")
    if kind == "running":
        if is_live(state, path):
            return RunStatus(key, "running", f"{_progress(state.get('run_dir'))} on {state.get('host')}", job_id)
        return RunStatus(key, "failed", f"lost: the job stopped without a word (killed, out of memory or node lost) "
                                        f"after {state.get('updated', '?')}; log: {log}", job_id)
    if kind == "failed":
        return RunStatus(key, "failed", f"{state.get('error', 'failed')}; log: {log}", job_id)
    if kind == "requeued":
        return RunStatus(key, "pending", f"requeued after preemption or time-out at {state.get('requeued')}", job_id)
    if kind == "done":  # done, but its record has gone since
        return RunStatus(key, "pending", f"its record {state.get('record')} is gone", job_id)
    if submission is not None and not _local_job_gone(submission):
        return RunStatus(key, "pending", f"queued as job {submission['job_id']} ({submission['launcher']}, "
                                         f"{submission['time']})", job_id)
    return RunStatus(key, "pending", NOT_SUBMITTED, None)


def _local_job_gone(submission: dict[str, Any]) -> bool:
    """A local job (its id is its controller's pid) that ended without its run ever starting."""
    from .sweep_job import _pid_alive

    return (submission.get("launcher") == "local" and submission.get("host") == socket.gethostname()
            and not _pid_alive(int(submission["job_id"])))


def status(folder: Path) -> list[RunStatus]:
    """The state of every run of the sweep whose state directory is ``folder``."""
    manifest = folder / "sweep.json"
    if not manifest.exists():
        raise BenchError(f"{folder}: no sweep here (no sweep.json); run `mlrpl-bench sweep` first")
    runs = _read_manifest(manifest)
    submitted = _submissions(folder)
    return [run_status(folder, key, submitted.get(key)) for key in runs]


def find_sweeps(output: str | Path, name: str = "") -> list[Path]:
    """The state directories of the sweeps under ``output`` (one, when ``name`` is given)."""
    root = Path(output).expanduser().resolve() / SWEEPS_DIR
    if name:
        folder = root / name
        if not (folder / "sweep.json").exists():
            raise BenchError(f"{folder}: no sweep named {name!r} under {output}; "
                             f"known: {', '.join(p.parent.name for p in sorted(root.glob('*/sweep.json'))) or 'none'}")
        return [folder]
    found = sorted(p.parent for p in root.glob("*/sweep.json"))
    if not found:
        raise BenchError(f"{root}: no sweep under --output {output}; run `mlrpl-bench sweep` first")
    return found


def status_table(statuses: list[RunStatus]) -> str:
    """A plain table of run, state and detail, then the counts."""
    from tabulate import tabulate

    rows = [(s.key, s.state, s.job_id or "", s.detail) for s in statuses]
    counts = Counter(s.state for s in statuses)
    summary = ", ".join(f"{counts.get(k, 0)} {k}" for k in ("done", "running", "failed", "pending"))
    return tabulate(rows, headers=("run", "state", "job", "detail"), tablefmt="simple") + f"\n\n{summary}"


# -- submission ---------------------------------------------------------------------------------


def make_executor(opts: SweepOptions, folder: Path):
    """The submitit executor of the sweep's launcher, with its parameters set."""
    import submitit

    tasks, gpus = opts.tasks, opts.gpus_per_job
    logs = folder / "submitit" / "%j"
    if opts.launcher == "local":
        executor = submitit.LocalExecutor(folder=logs)
        executor.update_parameters(timeout_min=opts.time, tasks_per_node=tasks, gpus_per_node=gpus,
                                   **({"setup": list(opts.setup)} if opts.setup else {}))
        return executor
    executor = submitit.SlurmExecutor(folder=logs)
    params: dict[str, Any] = {"job_name": "mlrpl-sweep", "partition": opts.partition, "time": opts.time,
                              "nodes": 1, "ntasks_per_node": tasks, "array_parallelism": opts.array_parallelism,
                              "signal_delay_s": 120}
    if gpus:
        params["gpus_per_node"] = gpus
    if opts.cpus_per_task:
        params["cpus_per_task"] = opts.cpus_per_task
    if opts.mem_gb:
        params["mem"] = f"{opts.mem_gb:g}GB"
    for key in ("account", "qos", "constraint"):
        if getattr(opts, key):
            params[key] = getattr(opts, key)
    if opts.setup:
        params["setup"] = list(opts.setup)
    executor.update_parameters(**params)
    return executor


def _read_manifest(manifest: Path) -> dict[str, list[str]]:
    """The ``runs`` of a sweep's ``sweep.json`` (run key -> its command line), read strictly."""
    data = read_config(manifest, source=str(manifest), what="sweep state file",
                       hint="run `mlrpl-bench sweep` again to plan it anew")
    runs = data.get("runs") if isinstance(data, dict) else None
    if not isinstance(runs, dict) or not all(isinstance(v, list) for v in runs.values()):
        raise BenchError(f"{manifest}: field 'runs' is missing or not a mapping of run key -> command line; delete the "
                         "file and run `mlrpl-bench sweep` again to plan it anew")
    return runs


def _write_manifest(folder: Path, opts: SweepOptions, runs: list[PlannedRun]) -> None:
    from .atomic import atomic_write_text

    manifest = folder / "sweep.json"
    known = _read_manifest(manifest) if manifest.exists() else {}
    known.update({r.key: list(r.argv) for r in runs})
    atomic_write_text(manifest, json.dumps({"options": dataclasses.asdict(opts), "updated": now_iso(), "runs": known},
                                           indent=1) + "\n")


def to_submit(folder: Path, runs: list[PlannedRun], resubmit_queued: bool) -> tuple[list[PlannedRun], list[RunStatus]]:
    """The runs a new ``sweep`` must submit (neither done, running, nor queued) and every status."""
    submitted = _submissions(folder)
    statuses = [run_status(folder, r.key, submitted.get(r.key)) for r in runs]
    todo = []
    for run, st in zip(runs, statuses):
        queued = st.state == "pending" and st.detail != NOT_SUBMITTED and not st.detail.startswith("its record")
        if st.state == "failed" or (st.state == "pending" and (not queued or resubmit_queued)):
            todo.append(run)
    return todo, statuses


def submit(opts: SweepOptions, *, dry_run: bool = False, echo=print) -> list[RunStatus]:
    """Plan the sweep, submit what is missing, and (local launcher) wait for it; return the status."""
    runs, notes = plan(opts)
    for note in notes:
        echo(f"note: {note}")
    if not runs:
        raise BenchError("sweep: the plan is empty (every method/setting combination was left out)")
    folder = sweep_dir(opts)
    todo, statuses = to_submit(folder, runs, opts.resubmit_queued)
    counts = Counter(s.state for s in statuses)
    echo(f"sweep {folder.name}: {len(runs)} runs ({counts.get('done', 0)} done, {counts.get('running', 0)} running, "
         f"{counts.get('failed', 0)} failed, {counts.get('pending', 0)} pending); submitting {len(todo)} "
         f"({opts.launcher}) -> {folder}")
    if dry_run:
        for run in todo:
            echo("  mlrpl-bench " + " ".join(run.argv))
        return statuses
    folder.mkdir(parents=True, exist_ok=True)
    _write_manifest(folder, opts, runs)
    if not todo:
        return status(folder)
    executor = make_executor(opts, folder)
    output = str(Path(opts.output).expanduser().resolve())
    attempts = {r.key: int((read_state(state_path(folder, r.key)) or {}).get("attempt", 0)) + 1 for r in todo}
    jobs_of = {r.key: RunJob(r.key, list(r.argv), str(folder), output, attempts[r.key]) for r in todo}
    if opts.launcher == "slurm":
        if opts.array and len(todo) > 1:
            jobs = _submit_array(executor, jobs_of)
        else:
            jobs = [executor.submit(job) for job in jobs_of.values()]
        _log_submissions(folder, [(r.key, j.job_id) for r, j in zip(todo, jobs)], opts.launcher)
        echo(f"submitted {len(jobs)} Slurm job(s): {', '.join(j.job_id for j in jobs[:5])}{' ...' if len(jobs) > 5 else ''}"
             f"; follow them with `mlrpl-bench sweep status --output {opts.output}`")
        return status(folder)
    _run_locally(executor, folder, todo, jobs_of, opts.array_parallelism, opts.launcher, echo)
    return status(folder)


def _submit_array(executor, jobs_of: dict[str, RunJob]) -> list:
    with executor.batch():
        pending = [executor.submit(job) for job in jobs_of.values()]
    return pending


def _log_submissions(folder: Path, pairs: list[tuple[str, str]], launcher: str) -> None:
    with (folder / "submitted.jsonl").open("a") as handle:
        for key, job_id in pairs:
            handle.write(json.dumps({"key": key, "job_id": str(job_id), "launcher": launcher, "time": now_iso(),
                                     "host": socket.gethostname()}) + "\n")


def _run_locally(executor, folder: Path, todo: list[PlannedRun], jobs_of: dict[str, RunJob], parallel: int,
                 launcher: str, echo) -> None:
    """Local launcher: keep at most ``parallel`` jobs running until every one has ended."""
    queue = list(todo)
    running: dict[str, Any] = {}
    try:
        while queue or running:
            while queue and len(running) < parallel:
                run = queue.pop(0)
                job = executor.submit(jobs_of[run.key])
                _log_submissions(folder, [(run.key, job.job_id)], launcher)
                running[run.key] = job
            time.sleep(0.5)
            for key, job in list(running.items()):
                if job.done():
                    del running[key]
                    st = run_status(folder, key, None)
                    echo(f"  {key}: {st.state}{'' if st.state == 'done' else ' - ' + st.detail}")
    except KeyboardInterrupt:
        for job in running.values():
            job.cancel(check=False)
        raise
