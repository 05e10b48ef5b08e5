"""Filing a trained cell: its test scores, its results record (written once, never over another
process's), the run-end hook and the one summary line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .atomic import AlreadyExists
from .cell import Cell
from .environment import device_description, environment_info
from .errors import BenchError
from .metrics import METRIC_SPECS, SUMMARY_METRICS
from .results import DataFacts, RunOutcome, RuntimeFacts, TrainingFacts, build_record, write_record
from .run_config import PreparedRun
from .scores import should_save as should_save_scores, write_scores
from .training import CellRun


def outcome_of(cell: Cell, run: CellRun, tuning: dict[str, Any] | None = None) -> RunOutcome:
    """The plain facts of a trained cell, for :func:`~mlrpl_bench.results.build_record`; its test
    scores are saved in the cell's run folder when its configuration keeps them (:func:`scores_dir`)."""
    result, protocol, train_split, test_split = run.result, run.protocol, cell.data.train_split, cell.data.test_split
    where = scores_dir(cell.prepared, cell.run_dir)
    scores_file = write_scores(where, result.test_scores, test_split.labels) if where is not None else None
    device, dist = cell.device, cell.dist
    return RunOutcome(
        run_id=cell.run_id, known=cell.known, seed=cell.seed,
        data=DataFacts(
            sizes={"train": int(len(protocol.train_idx)), "val": int(len(protocol.val_idx)), "test": len(test_split)},
            fingerprint={"train": train_split.fingerprint(), "test": test_split.fingerprint()},
            class_names=list(train_split.class_names), mask_fingerprint=protocol.mask_fingerprint,
            val_fingerprint=protocol.val_fingerprint,
            per_class_known_positives=np.count_nonzero(protocol.partial[protocol.train_idx] == 1, axis=0).tolist()),
        training=TrainingFacts(
            best_epoch=result.best_epoch, epochs_run=result.epochs_run, val_metrics=result.val_metrics,
            test_metrics=result.test_metrics, bad_images=result.bad_images,
            resumed_from_epoch=result.resumed_from_epoch, precision_used=run.precision_used),
        runtime=RuntimeFacts(
            seconds=run.seconds, started=run.started, device=str(device), device_description=device_description(device),
            world_size=dist.world_size, environment=environment_info()),
        tuning=tuning, scores_file=scores_file)


def scores_dir(prepared: PreparedRun, run_dir: Path) -> Path | None:
    """``run_dir`` when this configuration keeps its test scores (``--save-scores``), else None."""
    return run_dir if should_save_scores(prepared.config.save_scores, prepared.dataset_name) else None


def file_record(record: dict[str, Any], record_path: Path, *, overwrite: bool) -> None:
    """Write a run's record: create-if-absent unless overwriting, so that of two processes running
    the same run into one output the second to finish is told instead of replacing the first's."""
    try:
        write_record(record_path, record, exclusive=not overwrite)
    except AlreadyExists:
        raise BenchError(f"{record_path}: another process filed this run's record while this one ran; nothing was "
                         "replaced -- pass --overwrite to replace it, or choose another --output") from None


def file_cell(cell: Cell, run: CellRun, outcome: RunOutcome, *, trained: PreparedRun | None = None) -> dict[str, Any]:
    """Build, write and announce the record of ``cell`` (the run-end hook, the summary line).

    :param trained: the configuration that trained it when it is not ``cell.prepared`` (a tuning
        candidate): its settings go into the record, under ``cell.prepared``'s configuration hash.
    """
    prepared = cell.prepared
    if trained is None:
        record = build_record(prepared, outcome)
    else:
        record = build_record(trained, outcome, config_hash=prepared.config_hash)
    file_record(record, cell.record_path, overwrite=prepared.config.overwrite)
    cell.hooks.mlrpl_run_end(run={**run.run_info, "output_dir": str(cell.run_dir)}, record=record,
                             path=str(cell.record_path))
    cell.log(summary_line(record, cell.record_path))
    return record


def summary_line(record: dict[str, Any], path: Path) -> str:
    """``<run_id>: test mAP .. OF1 .. CF1 .. (best epoch b/n, s) -> path``, printed after each run."""
    test, sel = record["metrics"]["test"], record["selection"]
    shown = "  ".join(f"{m} {METRIC_SPECS[m].format(test.get(m))}" for m in SUMMARY_METRICS)
    return (f"{record['run_id']}: test {shown}  "
            f"(best epoch {sel['best_epoch'] + 1}/{sel['epochs_run']}, {record['runtime']['seconds']:.1f} s) -> {path}")
