"""The checks a tuned run's choice must survive, in one torch-free place.

``--tune`` (:mod:`.tuning`) writes what they find into the record (``tuning.warnings``) and its
log; the leaderboard (:mod:`mlrpl_bench.leaderboard.frame`) applies the same checks to every
filed record, so records written before the checks existed are flagged too.

* **Grid edge:** the chosen value of a numeric grid axis (two or more distinct numbers) is its
  smallest or largest value. The validation score may still be rising beyond it: the grid did
  not bracket the optimum, and the method may be under-tuned (widen the grid that way).
* **First epoch:** the selected best epoch is the first one (index 0; the engine numbers epochs
  from 0 and logs them from 1). Validation never improved after one epoch: the learning rate is
  likely too high, or the model selection rests on a noisy validation split.
"""

from __future__ import annotations

from typing import Any, Mapping

#: Joins a run's warnings in one text field (the leaderboard's frame and CSV); no message contains it.
SEPARATOR = "; "

GRID_EDGE = "grid-edge"
FIRST_EPOCH = "first-epoch"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def grid_edge_warnings(grid: Mapping[str, list], chosen: Mapping[str, Any]) -> list[str]:
    """One message per numeric axis of ``grid`` whose ``chosen`` value is the axis's smallest or largest."""
    out = []
    for key in sorted(grid):
        values = list(grid[key])
        if key not in chosen or not all(_number(v) for v in values) or len(set(values)) < 2:
            continue
        value = chosen[key]
        side = "smallest" if value == min(values) else "largest" if value == max(values) else None
        if side is not None:
            out.append(f"{GRID_EDGE}: {key}={value:g} is the {side} value of the grid {values}: the optimum may lie "
                       "beyond it (widen the grid)")
    return out


def first_epoch_warning(best_epoch: Any) -> list[str]:
    """A message when the selected best epoch is the first (index 0), else nothing."""
    if _number(best_epoch) and int(best_epoch) == 0:
        return [f"{FIRST_EPOCH}: the selected best epoch is the first (index 0): validation never improved after one "
                "epoch (lr too high, or a noisy validation split)"]
    return []


def tuning_warnings(grid: Mapping[str, list] | None, chosen: Mapping[str, Any] | None, best_epoch: Any) -> list[str]:
    """Every warning for a tuned run: grid edges of its choice, then a first-epoch selection."""
    warnings = grid_edge_warnings(grid or {}, chosen or {}) + first_epoch_warning(best_epoch)
    return [w.replace(SEPARATOR, ", ") for w in warnings]  # (a grid of strings could hold one)


def record_warnings(record: Mapping[str, Any]) -> list[str]:
    """The warnings of a result record: none without a ``tuning`` block (an untuned run)."""
    tuning = record.get("tuning")
    if not isinstance(tuning, Mapping):
        return []
    grid, chosen = tuning.get("grid"), tuning.get("chosen")
    return tuning_warnings(grid if isinstance(grid, Mapping) else {}, chosen if isinstance(chosen, Mapping) else {},
                           (record.get("selection") or {}).get("best_epoch"))
