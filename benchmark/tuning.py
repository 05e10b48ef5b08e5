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

import torch

from . import distributed as D
from .checkpoint import load_checkpoint
from .errors import BenchError
from .results import build_record, read_record
from .run_config import PreparedRun, TrainConfig
from .single_run import SweepData, cell_lock, cell_paths, existing_record, file_record, outcome_of, scores_dir, summary_line, train_cell
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


def run_tuned(prepared: PreparedRun, data: SweepData, known: float, seed: int, *, device: torch.device,
              dist: D.DistInfo, output: Path, hooks: Any = None,
              log: Callable[[str], None] = print) -> tuple[dict[str, Any] | None, Path]:
    """Tune on validation, score the chosen candidate on test, write one record with ``tuning``."""
    run_id, run_dir, record_path = cell_paths(prepared, output, known, seed)
    with cell_lock(output, run_dir, dist):
        return _run_tuned_locked(prepared, data, known, seed, run_id, run_dir, record_path, device=device, dist=dist,
                                 output=output, hooks=hooks, log=log)


def _run_tuned_locked(prepared: PreparedRun, data: SweepData, known: float, seed: int, run_id: str, run_dir: Path,
                      record_path: Path, *, device: torch.device, dist: D.DistInfo, output: Path, hooks: Any,
                      log: Callable[[str], None]) -> tuple[dict[str, Any] | None, Path]:
    existing = existing_record(prepared, record_path, run_id, dist=dist, log=log)
    if existing is not None:
        return existing, record_path
    tune_seed = prepared.config.tune_seed
    if tune_seed is not None and seed != tune_seed:
        return _run_with_choice_of(prepared, data, known, seed, run_id, run_dir, record_path, device=device, dist=dist,
                                   output=output, hooks=hooks, log=log)
    metric = prepared.config.tune_metric
    tried, seconds, resumed = [], 0.0, {}
    for values in candidates(prepared):
        name = candidate_name(values)
        cell = train_cell(with_values(prepared, values), data, run_id, known, seed, device=device, dist=dist, output=output,
                          run_dir=run_dir / "candidates" / name, log=log, score_test=False)
        score = cell.result.val_metrics.get(metric)
        if score is None:
            raise BenchError(f"--tune-metric {metric!r} is undefined on the validation split of {run_id} (no "
                             "validation image has a positive it could count); choose another --tune-metric or a "
                             "larger --val-fraction")
        seconds += cell.seconds
        resumed[name] = cell.result.resumed_from_epoch
        tried.append({"values": values, "name": name, "val": score, "best_epoch": cell.result.best_epoch,
                      "epoch_log": f"candidates/{name}/epochs.jsonl"})
        if dist.is_main:
            log(f"{run_id}: candidate {name}: validation {metric} {score:.2f} (best epoch {cell.result.best_epoch + 1})")
    # The highest validation score wins; ties go to the earlier grid point (a fixed, data-free rule).
    best = max(range(len(tried)), key=lambda i: (tried[i]["val"] if math.isfinite(tried[i]["val"]) else -math.inf, -i))
    chosen = tried[best]
    chosen_prepared = with_values(prepared, chosen["values"])
    chosen_dir = run_dir / "candidates" / chosen["name"]
    # Scored on test from its own last checkpoint: no epoch is trained again.
    final = train_cell(chosen_prepared, data, run_id, known, seed, device=device, dist=dist, output=output, run_dir=chosen_dir,
                       log=log, resume_state=load_checkpoint(chosen_dir / "checkpoint.pt"))
    if not dist.is_main:
        return None, record_path
    tuning = _with_warnings({**_tuning_block(prepared), "candidates": tried, "chosen": chosen["values"]},
                            final.result.best_epoch, run_id, log)
    outcome = outcome_of(final, data, run_id, known, seed, device, dist, tuning=tuning,
                         scores_dir=scores_dir(prepared, run_dir))
    # Runtime: every candidate's training plus the test pass; resumed: the chosen candidate's own.
    outcome = dataclasses.replace(outcome, seconds=seconds + final.seconds, resumed_from_epoch=resumed[chosen["name"]])
    return _file(prepared, chosen_prepared, outcome, final, run_dir, record_path, hooks, log)


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


def _file(prepared: PreparedRun, chosen_prepared: PreparedRun, outcome: Any, final: Any, run_dir: Path, record_path: Path,
          hooks: Any, log: Callable[[str], None]) -> tuple[dict[str, Any], Path]:
    record = build_record(chosen_prepared, outcome, config_hash=prepared.config_hash)
    file_record(record, record_path, overwrite=prepared.config.overwrite)
    if hooks is not None:
        hooks.mlrpl_run_end(run={**final.run_info, "output_dir": str(run_dir)}, record=record, path=str(record_path))
    log(summary_line(record, record_path))
    return record, record_path


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


def _run_with_choice_of(prepared: PreparedRun, data: SweepData, known: float, seed: int, run_id: str, run_dir: Path,
                        record_path: Path, *, device: torch.device, dist: D.DistInfo, output: Path, hooks: Any,
                        log: Callable[[str], None]) -> tuple[dict[str, Any] | None, Path]:
    """A seed other than ``--tune-seed``: train the tune seed's choice once, as a plain run."""
    values, source_id = choice_of_tune_seed(prepared, output, known)
    if dist.is_main:
        log(f"{run_id}: trains the choice of {source_id}: {candidate_name(values)}")
    chosen_prepared = with_values(prepared, values)
    final = train_cell(chosen_prepared, data, run_id, known, seed, device=device, dist=dist, output=output, run_dir=run_dir,
                       log=log)
    if not dist.is_main:
        return None, record_path
    tuning = _with_warnings({**_tuning_block(prepared), "candidates": [], "chosen": values, "chosen_by": source_id},
                            final.result.best_epoch, run_id, log)
    outcome = outcome_of(final, data, run_id, known, seed, device, dist, tuning=tuning,
                         scores_dir=scores_dir(prepared, run_dir))
    return _file(prepared, chosen_prepared, outcome, final, run_dir, record_path, hooks, log)
