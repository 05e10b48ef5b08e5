"""`mlrpl-bench leaderboard export`: the per-run and aggregated tables round-trip through
parquet, CSV and a saved `datasets.Dataset` (offline)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from record_factory import make_record, sweep, write_record_file

from mlrpl_bench.leaderboard.export import export_tables, read_csv_table, write_export
from mlrpl_bench.leaderboard.frame import RUN_COLUMNS


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("export") / "results"
    records = sweep("partial-bce", 60, knowns=(0.1, 0.5), seeds=(0, 1, 2)) + sweep("hst", 70, knowns=(0.1, 0.5), seeds=(0, 1, 2))
    for rec in records[:3]:
        rec["protocol"]["per_class_known_positives"] = [9, 5, 3, 1]
    records.append(make_record("=cmd()", known=0.1))
    for i, rec in enumerate(records):
        write_record_file(root, rec, f"{i}.json")
    return root


@pytest.fixture(scope="module")
def tables(results):
    return export_tables([results])


def _same(a, b) -> bool:
    a, b = (None if x is pd.NA else x for x in (a, b))  # a nullable integer column's missing value
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    if hasattr(a, "tolist"):
        a = a.tolist()
    if hasattr(b, "tolist"):
        b = b.tolist()
    if isinstance(a, float) or isinstance(b, float):
        return b is not None and a is not None and float(a) == pytest.approx(float(b), rel=1e-12)
    return a == b


def _csv_value(v):
    if v is None or v is pd.NA or v == "" or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, (list, dict)):
        return v
    try:
        return float(v) if not isinstance(v, bool) else str(v)
    except (TypeError, ValueError):
        return str(v)


def _assert_frames_equal(expected: pd.DataFrame, loaded: pd.DataFrame) -> None:
    assert list(loaded.columns) == list(expected.columns) and len(loaded) == len(expected)
    for column in expected.columns:
        for i, (a, b) in enumerate(zip(expected[column], loaded[column])):
            assert _same(a, b), (column, i, a, b)


def test_the_tables_hold_one_row_per_record_and_one_per_cell(tables):
    runs, aggregated = tables["runs"], tables["aggregated"]
    assert list(runs.columns) == list(RUN_COLUMNS) and len(runs) == 13
    assert runs.loc[0, "per_class_known_positives"] == [9, 5, 3, 1] and len(runs.loc[0, "per_class_ap"]) == 4
    hst = aggregated[(aggregated["method"] == "hst")]
    assert hst["known"].tolist() == ["0.1", "0.5", "ave"] and set(hst["mark"]) == {"better"}
    assert hst["seeds"].tolist() == [3, 3, 3] and (hst["mAP_lo"] < hst["mAP_mean"]).all()


@pytest.mark.parametrize("fmt", ["parquet", "csv", "hf"])
def test_export_round_trips(tables, tmp_path, fmt, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    written = write_export(tables, tmp_path / "out", fmt)
    assert sorted(p.name for p in written) == sorted(f"{n}.{fmt}" if fmt != "hf" else n for n in ("runs", "aggregated"))
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")] == []  # no staging left behind
    for name, expected in tables.items():
        if fmt == "parquet":
            loaded = pd.read_parquet(tmp_path / "out" / f"{name}.parquet")
        elif fmt == "csv":
            loaded = read_csv_table(tmp_path / "out" / f"{name}.csv")
        else:
            import datasets

            dataset = datasets.load_from_disk(str(tmp_path / "out" / name))
            assert isinstance(dataset, datasets.Dataset) and dataset.num_rows == len(expected)
            loaded = dataset.to_pandas()
        if fmt == "csv":  # CSV has no types and one missing value (empty): compare values as written
            assert list(loaded.columns) == list(expected.columns) and len(loaded) == len(expected)
            for column in expected.columns:
                for a, b in zip(expected[column], loaded[column]):
                    a, b = _csv_value(a), _csv_value(b)
                    assert a == b or (isinstance(a, float) and a == pytest.approx(b)), (name, column, a, b)
        else:
            _assert_frames_equal(expected, loaded)


def test_cli_export(results, tmp_path, cli):
    res = cli("leaderboard", "export", "--results", results, "--format", "parquet", "--out", tmp_path / "out")
    assert res.exit_code == 0, res.stderr
    assert "13 run(s), 8 aggregated line(s)" in res.output
    assert len(pd.read_parquet(tmp_path / "out" / "runs.parquet")) == 13
    assert cli("leaderboard", "export", "--results", results, "--format", "csv", "--out", tmp_path / "csv").exit_code == 0
    assert "'=cmd()" in (tmp_path / "csv" / "runs.csv").read_text()  # defused for spreadsheets, restored on reading
    bad = cli("leaderboard", "export", "--results", results, "--format", "xlsx", "--out", tmp_path / "x")
    assert bad.exit_code == 2 and "xlsx" in bad.stderr
