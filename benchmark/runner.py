"""The sweep of one ``mlrpl-bench run``: every planned (known proportion, seed) of a prepared
configuration, on one dataset, on this process's device.

The configuration is typed and resolved by :mod:`mlrpl_bench.run_config` (:func:`prepare_run`);
one run -- protocol, method, engine, record -- is :func:`mlrpl_bench.single_run.run_single` of a
:class:`~mlrpl_bench.cell.Cell`;
this module loads the data once, picks the device and joins the process group, and walks the
sweep (one run per cell, or one run per tuning candidate with ``--tune``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from . import distributed as D
from . import plugin_manager as P
from .errors import BenchError
from .run_config import DEFAULT_DATASET, PreparedRun, RunConfig, TrainConfig, prepare_run  # noqa: F401 - re-exported
from .cell import Cell, Station, SweepData
from .single_run import run_single
from .vocabulary import DEFAULT_PROPORTIONS  # noqa: F401 - re-exported


def pick_device(name: str) -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise BenchError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None


def planned_runs(config: RunConfig) -> list[tuple[float, int]]:
    """The (known, seed) pairs of this sweep, restricted to this shard (deterministic order)."""
    return config.planned_runs()


def load_sweep_data(prepared: PreparedRun) -> SweepData:
    """Open the dataset, read both splits and the word vectors (once per sweep)."""
    from .data.embeddings import load_word_embeddings

    config = prepared.config
    dataset = prepared.dataset_cls(config.data_root, prepared.dataset_options)
    train_split = dataset.load_split("train")
    test_split = dataset.load_split("test")
    if train_split.class_names != test_split.class_names:
        raise BenchError(f"dataset {dataset.name!r}: train and test splits have different class lists")
    embeddings = load_word_embeddings(train_split.class_names, config.word_embeddings)
    return SweepData(dataset, train_split, test_split, embeddings)


def run_cell(cell: Cell) -> tuple[dict[str, Any] | None, Path]:
    """One cell of the sweep: a run, or with ``--tune`` a tuned run (the same in a worker process)."""
    if cell.prepared.tune_grid:
        from .tuning import run_tuned

        return run_tuned(cell)
    return run_single(cell)


def open_cells(config: RunConfig) -> Callable[[float, int, Callable[[str], None]], tuple[dict[str, Any] | None, Path]]:
    """A worker process's side of a parallel sweep (the target :mod:`mlrpl_bench.parallel` is
    given by name): resolve ``config``, load the data once, and return ``(known, seed, log) ->
    (record, path)``, which runs one cell on the CPU with the run-level hooks."""
    prepared = prepare_run(config)
    data = load_sweep_data(prepared)
    station = Station(torch.device("cpu"), output=prepared.config.output_dir,
                      hooks=P.run_events())  # a failing reporter never stops a run

    def run(known: float, seed: int, log: Callable[[str], None]) -> tuple[dict[str, Any] | None, Path]:
        return run_cell(Cell.of(prepared, data, known, seed, dataclasses.replace(station, log=log)))

    return run


def run_sweep(config: RunConfig | PreparedRun) -> list[dict[str, Any]]:
    """Run every planned (known, seed) pair and return their records (rank 0; [] elsewhere).

    On a CPU the pending cells run in ``--jobs`` worker processes (:mod:`mlrpl_bench.parallel`),
    every process with ``--threads`` torch threads (default 1), giving the records a sequential
    run with that thread count gives.

    :raises mlrpl_bench.parallel.SweepFailed: some cells of a parallel sweep failed (the others
        finished; their records are attached).
    """
    prepared = config if isinstance(config, PreparedRun) else prepare_run(config)
    config = prepared.config
    device = pick_device(config.device)
    dist = D.init_from_env(device.type)
    if device.type == "cuda" and dist.enabled:
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    output = config.output_dir
    if dist.is_main:
        _check_writable(output)
    from .loggers import check_available
    from .parallel import resolve_jobs, resolve_threads, tune_allocator

    check_available(config.log)  # a chosen tracker's package must import before anything trains

    threads = resolve_threads(config.threads, device.type)
    # Refuses --jobs N on a GPU or under torchrun before any work starts.
    resolve_jobs(config.jobs, len(config.planned_runs()), device_type=device.type, distributed=dist.enabled)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    if device.type == "cpu":
        tune_allocator()
    try:
        data = load_sweep_data(prepared)  # generates the dataset once, before any worker needs it
        events = P.run_events()  # a failing reporter never stops a run
        cells = config.planned_runs()
        records: list[dict[str, Any] | None] = [None] * len(cells)
        pending = list(range(len(cells)))
        if dist.is_main and not dist.enabled:
            pending = _skip_finished(prepared, cells, records, output)
        jobs = resolve_jobs(config.jobs, len(pending), device_type=device.type, distributed=dist.enabled)
        failures = []
        phases = _phases(prepared, cells, pending)
        if jobs > 1:
            from .parallel import run_cells_in_workers

            print(f"{len(pending)} runs in {jobs} worker processes x {threads} torch thread(s)"
                  + (f" ({len(cells) - len(pending)} already done)" if len(pending) < len(cells) else ""), flush=True)
            quiet = dataclasses.replace(config, progress=False)  # bars of several processes would garble the terminal
            for phase in phases:
                outcome = run_cells_in_workers(quiet, [(i, *cells[i]) for i in phase], target=f"{__name__}:open_cells",
                                               jobs=jobs, threads=threads, echo=lambda line: print(line, flush=True),
                                               name=prepared.run_id)
                for i, record in zip(phase, outcome.records):
                    records[i] = record
                failures += outcome.failures
        else:
            station = Station(device, dist, output, hooks=events)
            for i in (i for phase in phases for i in phase):
                records[i], _ = run_cell(Cell.of(prepared, data, *cells[i], station))
    finally:
        torch.set_num_threads(previous_threads)
    done = [r for r in records if r is not None] if dist.is_main else []
    if dist.is_main:
        events.mlrpl_sweep_end(records=done)
    if failures:
        from .parallel import SweepFailed

        raise SweepFailed(f"{len(failures)} of {len(cells)} runs failed (each reported above); the others are filed -- "
                          "run the same command again to retry the failed ones", done)
    return done


def _phases(prepared: PreparedRun, cells: list[tuple[float, int]], pending: list[int]) -> list[list[int]]:
    """The pending cells in the order they must run: with ``--tune --tune-seed S``, the cells of
    seed S first (they search the grid), then the others (they train S's choice); otherwise one phase."""
    tune_seed = prepared.config.tune_seed if prepared.tune_grid else None
    if tune_seed is None:
        return [pending]
    first = [i for i in pending if cells[i][1] == tune_seed]
    rest = [i for i in pending if cells[i][1] != tune_seed]
    return [phase for phase in (first, rest) if phase]


def _skip_finished(prepared: PreparedRun, cells: list[tuple[float, int]], records: list, output: Path) -> list[int]:
    """The cells still to run; the records of finished ones go to ``records`` (their 'already done'
    line is printed here, before any work starts)."""
    from .cell import cell_paths, existing_record

    pending = []
    for i, (known, seed) in enumerate(cells):
        run_id, _, record_path = cell_paths(prepared, output, known, seed)
        records[i] = existing_record(prepared, record_path, run_id, dist=D.DistInfo(), log=print)
        if records[i] is None:
            pending.append(i)
    return pending


def _check_writable(output: Path) -> None:
    """Refuse an output that cannot be written, before any work. The probe file has a name of its
    own, so that runs starting side by side in one output do not remove each other's probe."""
    import tempfile

    try:
        output.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=output)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        from .atomic import not_a_folder

        raise BenchError(f"--output {output}: not a writable directory ({not_a_folder(output) or exc.strerror or exc}); "
                         "choose another --output") from None
