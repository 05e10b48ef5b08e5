"""One run: protocol -> method context -> engine -> results record, for one :class:`~mlrpl_bench.cell.Cell`.

The run path is split by job: :mod:`mlrpl_bench.cell` (what a run is: its cell, paths,
fingerprint, the record already filed for it, its lock), :mod:`mlrpl_bench.training` (protocol,
method context, model, engine) and :mod:`mlrpl_bench.filing` (scores, record, run-end hook).
:mod:`mlrpl_bench.runner` drives the sweep over cells, and the conformance kit calls
:func:`run_single` on its tiny in-memory dataset, so both go through the same path.

The names of the run path that callers used to import from here still are (re-exported).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .cell import (Cell, Station, SweepData, cell_lock, cell_paths, existing_record,  # noqa: F401 - re-exported
                   existing_record_of, run_fingerprint)
from .filing import file_cell, file_record, outcome_of, scores_dir, summary_line  # noqa: F401 - re-exported
from .training import CellRun, ContextSpec, initial_model, method_context, run_transforms, train_cell  # noqa: F401


def run_single(cell: Cell) -> tuple[dict[str, Any] | None, Path]:
    """Train and score one cell; write its record, epoch log and checkpoint.

    :return: ``(record or None on ranks > 0, record path)``.
    """
    with cell_lock(cell):
        existing = existing_record_of(cell)
        if existing is not None:
            return existing, cell.record_path
        run = train_cell(cell)
        if not cell.dist.is_main:
            return None, cell.record_path
        return file_cell(cell, run, outcome_of(cell, run)), cell.record_path


__all__ = ["Cell", "CellRun", "ContextSpec", "Station", "SweepData", "cell_lock", "cell_paths", "existing_record",
           "existing_record_of", "file_cell", "file_record", "initial_model", "method_context", "outcome_of",
           "run_fingerprint", "run_single", "run_transforms", "scores_dir", "summary_line", "train_cell"]
