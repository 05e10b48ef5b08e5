"""The run path's named pieces: a Cell carries one run, its paths are computed once, and the
sweep's worker processes take their target by name (runner and parallel do not import each other)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import torch

from mlrpl_bench.cell import Cell, Station, cell_paths
from mlrpl_bench.parallel import resolve_target
from mlrpl_bench.run_config import RunConfig, prepare_run

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmark"


@pytest.fixture(scope="module")
def prepared():
    return prepare_run(RunConfig(plugin="partial-bce", known=(0.5,), seeds=(3,), progress=False))


def test_a_cell_knows_its_run_id_and_paths(prepared, tmp_path):
    station = Station(torch.device("cpu"), output=tmp_path)
    cell = Cell.of(prepared, None, 0.5, 3, station)
    run_id, run_dir, record_path = cell_paths(prepared, tmp_path, 0.5, 3)
    assert (cell.run_id, cell.run_dir, cell.record_path) == (run_id, run_dir, record_path)
    assert run_id.endswith("0.5__seed3") and record_path == run_dir / "record.json"
    assert cell.device == torch.device("cpu") and cell.output == tmp_path and cell.dist.is_main


def test_a_candidate_cell_keeps_the_runs_id_and_record(prepared, tmp_path):
    """Tuning trains a candidate in its own folder with other values; the record stays the run's."""
    cell = Cell.of(prepared, None, 0.5, 3, Station(torch.device("cpu"), output=tmp_path))
    other = dataclasses.replace(prepared, train=dataclasses.replace(prepared.train, lr=0.5))
    candidate = dataclasses.replace(cell, prepared=other, run_dir=cell.run_dir / "candidates" / "lr-0.5")
    assert candidate.run_id == cell.run_id and candidate.record_path == cell.record_path
    assert candidate.run_dir.parent.parent == cell.run_dir


def test_a_station_without_hooks_calls_none(tmp_path):
    station = Station(torch.device("cpu"), output=tmp_path)
    assert station.hooks.mlrpl_run_start(run={}) == []
    silent = dataclasses.replace(station, dist=dataclasses.replace(station.dist, rank=1, world_size=2))
    lines = []
    dataclasses.replace(silent, log=lines.append).main_log("not shown")
    assert lines == []


def test_resolve_target_imports_a_function_by_name():
    from mlrpl_bench.runner import open_cells

    assert resolve_target("mlrpl_bench.runner:open_cells") is open_cells
    with pytest.raises(AttributeError):
        resolve_target("mlrpl_bench.runner:no_such_function")


def _imported(module: str) -> set[str]:
    tree = ast.parse((BENCHMARK / f"{module}.py").read_text())
    return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}


def test_runner_and_parallel_do_not_import_each_other():
    assert "parallel" in _imported("runner")
    assert "runner" not in _imported("parallel")
