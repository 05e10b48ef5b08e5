"""``--tune``: an equal tuning budget for every method, selected on the validation split only.

For one (known, seed) cell, every point of the grid (the product of the ``--tune KEY=V1,V2``
lists, train settings or method options) is trained as a *candidate* under
``<run dir>/candidates/<values>/`` (its own epoch log and checkpoint; ``--resume`` continues each).
A candidate's score is its best epoch's validation metric (``--tune-metric``, default mAP); the
test split is never looked at while choosing. Only the chosen candidate is then scored on the test
split -- from its own checkpoint, without training again -- and the record says what was tried
(``record["tuning"]``: the grid, every candidate's validation score and best epoch, the choice).
The grid is part of the run's identity (its configuration hash).

With ``--tune-seed S`` the grid is searched on seed ``S`` only: every other seed of the same
proportion trains the values seed ``S`` chose (read from its record, so seed ``S`` runs first) and
says so (``tuning.chosen_on_seed``, ``tuning.candidates`` empty). That divides the cost of a
tuned multi-seed leaderboard by about the grid size, and the seeds other than ``S`` then measure
the chosen configuration on splits and initialisations the choice never saw.

A choice at an edge of a numeric grid axis, or a selected best epoch of 0 (the first), is
logged as a warning and listed in ``tuning.warnings`` (:mod:`.tuning_checks`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
from pathlib import Path
from typing import Any, Callable

from .cell import Cell, cell_lock, cell_paths, existing_record_of
from .checkpoint import load_checkpoint
from .errors import BenchError
from .filing import file_cell, outcome_of
from .results import read_record
from .run_config import PreparedRun, TrainConfig
from .training import train_cell
from .tuning_checks import tuning_warnings
from .vocabulary import safe_name


def candidates(prepared: PreparedRun) -> list[dict[str, Any]]:
    """Every grid point, in a deterministic order (keys sorted, values as given)."""
    keys = sorted(prepared.tune_grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(prepared.tune_grid[k] for k in keys))]


def candidate_name(values: dict[str, Any]) -> str:
    """The directory name of a candidate: ``lr-0.001_weight_decay-0``.

    When making the text file-system safe changed it (``1e+16`` and ``1e-16`` would both read
    ``1e-16``), 8 hex digits of the text's hash keep two candidates out of one directory.
    """
    text = "_".join(f"{k}-{v}" for k, v in sorted(values.items()))
    safe = safe_name(text)
    return safe if safe == text else f"{safe}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def with_values(prepared: PreparedRun, values: dict[str, Any]) -> PreparedRun:
    """``prepared`` with a candidate's train settings and method options set."""
    train = {k: v for k, v in values.items() if k in TrainConfig.field_names()}
    options = {k: v for k, v in values.items() if k not in train}
    return dataclasses.replace(prepared, train=dataclasses.replace(prepared.train, **train),
                               method_options=dataclasses.replace(prepared.method_options, **options))


def run_tuned(cell: Cell) -> tuple[dict[str, Any] | None, Path]:
    """Tune on validation, score the chosen candidate on test, write one record with ``tuning``."""
    with cell_lock(cell):
        existing = existing_record_of(cell)
        if existing is not None:
            return existing, cell.record_path
        tune_seed = cell.prepared.config.tune_seed
        if tune_seed is not None and cell.seed != tune_seed:
            return _run_with_choice_of(cell)
        return _search(cell)


def _candidate(cell: Cell, values: dict[str, Any], run_dir: Path) -> Cell:
    """The cell of one grid point: its values set, training in ``run_dir``, without run-level hooks."""
    return dataclasses.replace(cell, prepared=with_values(cell.prepared, values), run_dir=run_dir,
                               station=dataclasses.replace(cell.station, hooks=None))


def _search(cell: Cell) -> tuple[dict[str, Any] | None, Path]:
    """Train every candidate, choose on validation, score the choice on test and file the record."""
    prepared, run_id, log = cell.prepared, cell.run_id, cell.log
    metric = prepared.config.tune_metric
    tried, seconds, resumed = [], 0.0, {}
    for values in candidates(prepared):
        name = candidate_name(values)
        trained = train_cell(_candidate(cell, values, cell.run_dir / "candidates" / name), score_test=False)
        score = trained.result.val_metrics.get(metric)
        if score is None:
            raise BenchError(f"--tune-metric {metric!r} is undefined on the validation split of {run_id} (no "
                             "validation image has a positive it could count); choose another --tune-metric or a "
                             "larger --val-fraction")
        seconds += trained.seconds
        resumed[name] = trained.result.resumed_from_epoch
        tried.append({"values": values, "name": name, "val": score, "best_epoch": trained.result.best_epoch,
                      "epoch_log": f"candidates/{name}/epochs.jsonl"})
        if cell.dist.is_main:
            log(f"{run_id}: candidate {name}: validation {metric} {score:.2f} (best epoch {trained.result.best_epoch + 1})")
    # The highest validation score wins; ties go to the earlier grid point (a fixed, data-free rule).
    best = max(range(len(tried)), key=lambda i: (tried[i]["val"] if math.isfinite(tried[i]["val"]) else -math.inf, -i))
    chosen = tried[best]
    chosen_cell = _candidate(cell, chosen["values"], cell.run_dir / "candidates" / chosen["name"])
    # Scored on test from its own last checkpoint: no epoch is trained again.
    final = train_cell(chosen_cell, resume_state=load_checkpoint(chosen_cell.run_dir / "checkpoint.pt"))
    if not cell.dist.is_main:
        return None, cell.record_path
    tuning = _with_warnings({**_tuning_block(prepared), "candidates": tried, "chosen": chosen["values"]},
                            final.result.best_epoch, run_id, log)
    outcome = outcome_of(cell, final, tuning=tuning)
    # Runtime: every candidate's training plus the test pass; resumed: the chosen candidate's own.
    outcome = dataclasses.replace(
        outcome, runtime=dataclasses.replace(outcome.runtime, seconds=seconds + final.seconds),
        training=dataclasses.replace(outcome.training, resumed_from_epoch=resumed[chosen["name"]]))
    return file_cell(cell, final, outcome, trained=chosen_cell.prepared), cell.record_path


def _tuning_block(prepared: PreparedRun) -> dict[str, Any]:
    """What every tuned record of this configuration says about how it was tuned."""
    block = {"grid": prepared.tune_grid_lists(), "metric": prepared.config.tune_metric, "split": "validation"}
    if prepared.config.tune_seed is not None:
        block["chosen_on_seed"] = prepared.config.tune_seed
    return block


def _with_warnings(tuning: dict[str, Any], best_epoch: int, run_id: str, log: Callable[[str], None]) -> dict[str, Any]:
    """``tuning`` with ``warnings`` (grid edge, first epoch) when there are any, each one logged."""
    warnings = tuning_warnings(tuning["grid"], tuning["chosen"], best_epoch)
    for warning in warnings:
        log(f"{run_id}: WARNING {warning}")
    return {**tuning, "warnings": warnings} if warnings else tuning


def choice_of_tune_seed(prepared: PreparedRun, output: Path, known: float) -> tuple[dict[str, Any], str]:
    """The grid point that ``--tune-seed S`` chose at ``known``: read from seed S's record in ``output``.

    :return: ``(values, run id of seed S)``; the values are the grid's own (typed) objects.
    :raises BenchError: when seed S has no record of this configuration yet, or its choice is not
        a point of this grid.
    """
    tune_seed = prepared.config.tune_seed
    source_id, _, source_path = cell_paths(prepared, output, known, tune_seed)
    fix = (f"run seed {tune_seed} first (a sweep whose --seeds include {tune_seed} runs it before the others), or drop "
           "--tune-seed")
    if not source_path.exists():
        raise BenchError(f"{source_id}: --tune-seed {tune_seed}: {source_path} does not exist yet, and the other seeds "
                         f"train its choice; {fix}")
    source = read_record(source_path)
    if source.get("config_hash") != prepared.config_hash:
        raise BenchError(f"{source_path}: field 'config_hash' is of another configuration than this run's, so its "
                         f"choice does not apply; {fix} with this configuration (or --overwrite it)")
    chosen = (source.get("tuning") or {}).get("chosen")
    for values in candidates(prepared):
        if values == chosen:
            return values, source_id
    raise BenchError(f"{source_path}: field 'tuning.chosen' ({chosen!r}) is not a point of the grid "
                     f"{prepared.tune_grid_lists()}; {fix}")


def _run_with_choice_of(cell: Cell) -> tuple[dict[str, Any] | None, Path]:
    """A seed other than ``--tune-seed``: train the tune seed's choice once, as a plain run."""
    values, source_id = choice_of_tune_seed(cell.prepared, cell.output, cell.known)
    if cell.dist.is_main:
        cell.log(f"{cell.run_id}: trains the choice of {source_id}: {candidate_name(values)}")
    chosen_cell = _candidate(cell, values, cell.run_dir)
    final = train_cell(chosen_cell)
    if not cell.dist.is_main:
        return None, cell.record_path
    tuning = _with_warnings({**_tuning_block(cell.prepared), "candidates": [], "chosen": values, "chosen_by": source_id},
                            final.result.best_epoch, cell.run_id, cell.log)
    return file_cell(cell, final, outcome_of(cell, final, tuning=tuning), trained=chosen_cell.prepared), cell.record_path
