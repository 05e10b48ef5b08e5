"""Shared helpers of the speed benchmarks: interleaved timing, medians, machine and load notes.

Benchmarks report *ratios* of variants measured side by side in one process: every repeat runs
each variant once, in turn, so a neighbour's load (the machine is shared) hits all of them alike;
the median over repeats is what is reported.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable


def load_note() -> str:
    """``load 1/5/15 min: a, b, c on N cpus`` (the figures depend on it)."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:  # pragma: no cover - not on this platform
        return "load average unavailable"
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min) on {os.cpu_count()} cpu(s)"


def machine_note() -> str:
    import torch

    return (f"python {platform.python_version()} | torch {torch.__version__} | {torch.get_num_threads()} torch "
            f"thread(s) | OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '-')} | {platform.machine()}")


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def timed_cpu(fn: Callable[[], object], cpu_log: list[float]) -> float:
    """Wall seconds of one call of ``fn``; its CPU seconds (all threads of this process) go to ``cpu_log``.

    CPU time is far less sensitive than wall time to other jobs on a shared machine: waiting for a
    core costs wall time only.
    """
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    cpu_log.append(time.process_time() - c0)
    return wall


def interleave(variants: dict[str, Callable[[], float]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Run every variant once per repeat, in turn; return each variant's timed repeats.

    Each callable returns the seconds it measured itself (so that set-up it needs, such as a fresh
    cache directory, stays outside the clock). ``warmup`` rounds are run first and discarded
    (first-call allocations, lazy imports, the OS page cache).
    """
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(warmup + repeats):
        for name, fn in variants.items():
            seconds = fn()
            if round_ >= warmup:
                times[name].append(seconds)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median of the per-repeat ratios (robust to load that drifts between repeats)."""
    return statistics.median(a / b for a, b in zip(numerator, denominator))


def spread(values: list[float]) -> str:
    return f"min {min(values) * 1000:.0f} / max {max(values) * 1000:.0f} ms"


def quick_cache_for(argv: list[str]) -> None:
    """With ``--quick`` (the smoke test's mode) and no ``MLRPL_BENCH_CACHE`` set, point the cache at
    a temporary folder removed at exit, so a quick run neither reuses nor leaves a cache."""
    if "--quick" in argv and "MLRPL_BENCH_CACHE" not in os.environ:
        import atexit
        import shutil
        import tempfile

        folder = tempfile.mkdtemp(prefix="mlrpl-bench-quick-")
        atexit.register(shutil.rmtree, folder, True)
        os.environ["MLRPL_BENCH_CACHE"] = folder


def instrument_run_path(on_epoch, on_cell) -> None:
    """Time every ``Engine._train_epoch`` and every ``train_cell`` of the run path in CPU seconds,
    code unchanged: ``on_epoch(engine, seconds)`` after each epoch, ``on_cell(seconds)`` after each cell."""
    from mlrpl_bench import engine, single_run

    original_epoch, original_cell = engine.Engine._train_epoch, single_run.train_cell

    def timed_epoch(self, epoch):
        c0 = time.process_time()
        out = original_epoch(self, epoch)
        on_epoch(self, time.process_time() - c0)
        return out

    def timed_cell(*args, **kwargs):
        c0 = time.process_time()
        out = original_cell(*args, **kwargs)
        on_cell(time.process_time() - c0)
        return out

    engine.Engine._train_epoch = timed_epoch
    single_run.train_cell = timed_cell
