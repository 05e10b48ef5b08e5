"""--shard i/n splits a sweep into disjoint, deterministic parts that together cover it."""

from __future__ import annotations

import pytest

from mlrpl_bench.run_config import RunConfig as RunRequest
from mlrpl_bench.runner import planned_runs


def test_shards_are_disjoint_deterministic_and_cover_the_sweep():
    base = dict(plugin="partial-bce", known=(0.1, 0.3, 0.5, 0.7, 0.9), seeds=(0, 1, 2))
    everything = planned_runs(RunRequest(**base))
    assert len(everything) == 15
    shards = [planned_runs(RunRequest(**base, shard=(i, 4))) for i in range(4)]
    assert sorted(r for s in shards for r in s) == sorted(everything)
    assert sum(len(s) for s in shards) == len(everything)  # no run in two shards
    assert shards == [planned_runs(RunRequest(**base, shard=(i, 4))) for i in range(4)]
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


@pytest.mark.parametrize("setting", ["full", "spl"])
def test_proportion_free_settings_run_once_per_seed_whatever_the_proportions(setting):
    """SPL keeps one positive per image at every proportion: a sweep ran the same cell nine times
    under nine run ids (and none at known 1.0, where the published SPL numbers are joined)."""
    runs = planned_runs(RunRequest(plugin="partial-bce", setting=setting, known=(0.1, 0.5), seeds=(0, 1)))
    assert runs == [(1.0, 0), (1.0, 1)]
