"""``mlrpl-bench run --jobs N``: the cells of a CPU sweep in N worker processes.

Each (known proportion, seed) cell of a sweep is an independent run: its own protocol split,
its own seeds, its own record. On a CPU the cells can therefore run side by side, one per worker
process, each worker with a fixed number of torch threads (``--threads``, default 1), and the
records are exactly those a sequential run with the same thread count writes (a test compares
them): nothing a cell computes depends on which process ran it or on the cells before it.

How: the parent resolves the configuration, generates the dataset if needed and skips the cells
whose record is already filed; ``N`` workers (``forkserver`` where the platform has it, with
torch and the harness imported once in the server, else ``spawn``) each resolve the same
configuration, load the data once and take cells from a queue. Everything a cell prints comes
back to the parent with its result, so the terminal shows one block of lines per finished run
(no progress bars from workers). A failing cell reports one line and the others go on; a
worker that dies is replaced. Ctrl-C (or SIGTERM) stops the workers and the sweep: finished
records stay filed, interrupted cells continue with ``--resume``.

Under ``torchrun`` or on a GPU a sweep runs sequentially in the one process (``jobs`` is 1).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import BenchError


@dataclass
class CellFailure:
    """A cell that did not produce a record: which one and the one-line reason."""

    index: int
    known: float
    seed: int
    message: str


@dataclass
class SweepOutcome:
    """Records in the sweep's planned order (None where a cell failed) and the failures."""

    records: list[dict[str, Any] | None]
    failures: list[CellFailure] = field(default_factory=list)


class SweepFailed(BenchError):
    """Some cells of a parallel sweep failed (each already reported on its own line); the records
    of the others are filed and carried here for the summary table."""

    def __init__(self, message: str, records: list[dict[str, Any]]):
        super().__init__(message)
        self.records = records


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the platform says, else the count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - platforms without sched_getaffinity
        return max(1, os.cpu_count() or 1)


def resolve_jobs(requested: int, cells: int, *, device_type: str, distributed: bool) -> int:
    """How many worker processes a sweep of ``cells`` pending cells uses.

    ``requested`` 0 means automatic: one per available core on a CPU, capped at the number of
    cells; 1 under torchrun or on a GPU. An explicit N > 1 is refused there (one line).
    """
    if device_type != "cpu" or distributed:
        if requested > 1:
            where = "under torchrun" if distributed else f"on a {device_type} device"
            raise BenchError(f"--jobs {requested}: parallel cells run on the CPU only; {where} a sweep runs its cells one "
                             "after another (use --jobs 1, or --device cpu)")
        return 1
    jobs = requested or available_cores()
    return max(1, min(jobs, cells))


def resolve_threads(requested: int, device_type: str) -> int | None:
    """torch threads per process: ``requested``, or 1 on a CPU by default (the same numbers on any
    machine); None leaves torch's own default (a GPU run with ``--threads`` unset)."""
    if requested:
        return requested
    return 1 if device_type == "cpu" else None


#: glibc ``mallopt`` parameters (malloc.h) and the values a CPU run uses; see :func:`tune_allocator`.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest allowed value on 64-bit
_TRIM_THRESHOLD = 256 * 1024 * 1024


def tune_allocator() -> bool:
    """Keep freed tensor memory in the process instead of handing it back to the OS at once.

    A training step allocates and frees the same few-MB tensors hundreds of times; glibc's
    defaults serve each one with a fresh ``mmap`` (or trim the heap after it), so every step pays
    page faults for memory it just had (measured: 14 % of an hst run's CPU time at known 0.9, most
    of it system time, for 3 % more peak memory). Only where the allocation goes changes, never
    a value. glibc only; elsewhere nothing is done.

    :return: whether the allocator was tuned.
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) & bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))


def _start_method(preload: list[str]) -> mp.context.BaseContext:
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        # Imported once in the server and inherited by every worker it forks (torch and
        # torchvision: ~3 core-seconds of start-up per worker); a failing preload is ignored.
        ctx.set_forkserver_preload(["mlrpl_bench.parallel", *preload, "torchvision.transforms"])
        return ctx
    return mp.get_context("spawn")  # pragma: no cover - platforms without fork


@dataclass
class _WorkerSetup:
    config: Any              # the RunConfig (plain data; each worker resolves it itself)
    target: str              # "module:function": config -> ((known, seed, log) -> (record, path))
    threads: int
    cwd: str
    environ: dict[str, str]


def _worker(setup: _WorkerSetup, tasks, results) -> None:
    """A worker process: resolve the configuration, load the data once, run cells until told to stop."""
    # Ctrl-C reaches the whole process group: only the parent acts on it (it stops the workers).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Stopped by the parent: exit through the interpreter's shutdown, so that what this process
    # registered (tqdm's lock is a multiprocessing semaphore) is released, not reported as leaked.
    signal.signal(signal.SIGTERM, _exit_on_term)
    # The forkserver may be older than the parent's latest chdir/setenv: take the parent's now.
    for key in set(os.environ) - set(setup.environ):
        del os.environ[key]
    os.environ.update(setup.environ)
    os.chdir(setup.cwd)
    import torch

    torch.set_num_threads(setup.threads)
    tune_allocator()
    pid = os.getpid()
    try:
        run_cell = resolve_target(setup.target)(setup.config)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which stops the sweep
        results.put(("setup-failed", pid, _one_line(exc)))
        return
    for index, known, seed in iter(tasks.get, None):
        results.put(("started", pid, index))
        lines: list[str] = []
        try:
            record, path = run_cell(known, seed, lines.append)
            results.put(("done", pid, index, record, str(path), lines))
        except Exception as exc:  # noqa: BLE001 - one line to the parent, the next cell goes on
            results.put(("failed", pid, index, _one_line(exc), lines))


def _exit_on_term(signum, frame) -> None:
    raise SystemExit(128 + signum)


def _one_line(exc: BaseException) -> str:
    """The error as one line; an unexpected one (a bug, not bad input) says how to see its traceback."""
    from .atomic import FULL_DISK, disk_full

    if isinstance(exc, OSError) and exc.errno in FULL_DISK:  # met outside the atomic writers
        exc = disk_full(exc.filename or ".", exc, None)
    if isinstance(exc, BenchError):
        return " ".join(str(exc).split()) or type(exc).__name__
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return f"{text} (run this cell alone with --jobs 1 for the traceback)"


def resolve_target(target: str) -> Callable[..., Any]:
    """The function named ``"package.module:function"`` (imported here, in the worker)."""
    import importlib

    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


def run_cells_in_workers(config, cells: list[tuple[int, float, int]], *, target: str, jobs: int, threads: int,
                         echo: Callable[[str], None] = print,
                         name: Callable[[float, int], str] = lambda known, seed: f"known {known:g} seed {seed}") -> SweepOutcome:
    """Run ``cells`` (``(index, known, seed)``) in ``jobs`` worker processes; records by index.

    :param config: the sweep's :class:`~mlrpl_bench.run_config.RunConfig` (its ``output`` is
        taken as is: relative paths resolve against the current directory, passed to workers).
    :param target: ``"module:function"`` each worker calls once with ``config``; it returns
        ``(known, seed, log) -> (record, path)``, which runs one cell (e.g.
        :func:`mlrpl_bench.runner.open_cells`).
    :param echo: where the parent prints each finished cell's lines (one block per cell).
    :param name: how a failed cell is named in its error line (the run id).
    """
    ctx = _start_method([target.partition(":")[0]])
    # Tasks go through a SimpleQueue (written directly, no feeder thread): a feeder thread of the
    # parent's could be left blocked on a full pipe after an interrupt, holding the queue's locks.
    tasks, results = ctx.SimpleQueue(), ctx.Queue()
    setup = _WorkerSetup(config=config, target=target, threads=threads, cwd=os.getcwd(), environ=dict(os.environ))
    workers: dict[int, Any] = {}

    started = [0]

    def start_worker() -> None:
        if started[0] >= 2 * jobs + len(cells):  # workers die as they start: stop instead of looping
            raise BenchError("worker processes keep dying at start-up; run with --jobs 1 to see why")
        started[0] += 1
        proc = ctx.Process(target=_worker, args=(setup, tasks, results), daemon=True, name="mlrpl-bench-cell")
        proc.start()
        workers[proc.pid] = proc

    records: dict[int, dict[str, Any]] = {}
    failures: list[CellFailure] = []
    by_index = {index: (known, seed) for index, known, seed in cells}
    running: dict[int, int] = {}  # pid -> cell index
    remaining = set(by_index)
    previous_term = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):  # SIGTERM stops the sweep like Ctrl-C
        raise KeyboardInterrupt

    if previous_term in (signal.SIG_DFL, None) and _in_main_thread():
        signal.signal(signal.SIGTERM, on_term)
    stopped: BaseException | None = None
    try:
        for _ in range(jobs):
            start_worker()
        for cell in cells:  # after the start: the workers drain the pipe while it fills
            tasks.put(cell)
        while remaining:
            try:
                message = results.get(timeout=1.0)
            except queue.Empty:
                _replace_dead_workers(workers, running, remaining, by_index, failures, start_worker, echo, name)
                continue
            kind, pid = message[0], message[1]
            if kind == "setup-failed":
                raise BenchError(message[2])
            if kind == "started":
                running[pid] = message[2]
                continue
            index = message[2]
            running.pop(pid, None)
            remaining.discard(index)
            known, seed = by_index[index]
            if kind == "done":
                _, _, _, record, _path, lines = message
                for line in lines:
                    echo(line)
                if record is not None:
                    records[index] = record
            else:
                _, _, _, text, lines = message
                for line in lines:
                    echo(line)
                failures.append(CellFailure(index, known, seed, text))
                echo(f"error: {name(known, seed)}: {text}")
        for _ in workers:
            tasks.put(None)
        for proc in workers.values():
            proc.join(timeout=30)
    except BaseException as exc:  # Ctrl-C, SIGTERM, workers that cannot start: stop them all below
        stopped = exc
    finally:
        for proc in workers.values():
            if proc.is_alive():
                proc.terminate()
        for proc in workers.values():
            proc.join(timeout=10)
            if proc.is_alive():  # deaf to SIGTERM (stuck in native code): no more waiting
                proc.kill()
                proc.join(timeout=10)
        if _in_main_thread() and signal.getsignal(signal.SIGTERM) is on_term:
            signal.signal(signal.SIGTERM, previous_term)
        tasks.close()
        results.close()
        _stop_forkserver()
    if stopped is not None:
        # Without its traceback (which holds the queues) the queues are freed now and their
        # semaphores released, instead of being reported as leaked at exit.
        workers.clear()
        proc = None  # the loop variables above hold Process objects, which hold the queues
        del tasks, results, start_worker, proc
        raise stopped.with_traceback(None)
    order = sorted(by_index)
    return SweepOutcome([records.get(i) for i in order], sorted(failures, key=lambda f: f.index))


def _stop_forkserver() -> None:
    """Stop the fork server now rather than when this process exits, so that no process of the
    sweep outlives it (the next sweep starts a new one). ``_stop`` is what CPython's own tests
    use; where it is missing the server still ends with this process."""
    from multiprocessing import forkserver

    stop = getattr(getattr(forkserver, "_forkserver", None), "_stop", None)
    if stop is not None:
        stop()


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _replace_dead_workers(workers, running, remaining, by_index, failures, start_worker, echo, name) -> None:
    """A worker that died (killed, out of memory) fails the cell it held; a new one takes its place."""
    for pid, proc in list(workers.items()):
        if proc.is_alive():
            continue
        del workers[pid]
        index = running.pop(pid, None)
        if index is not None and index in remaining:
            remaining.discard(index)
            known, seed = by_index[index]
            text = f"the worker process running it died (exit code {proc.exitcode})"
            failures.append(CellFailure(index, known, seed, text))
            echo(f"error: {name(known, seed)}: {text}")
        if remaining:
            start_worker()
