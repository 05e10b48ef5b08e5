"""The results record (benchmark/results.py): one pydantic schema, strict JSON both ways."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from record_factory import make_record

from mlrpl_bench.errors import BenchError
from mlrpl_bench.results import SCHEMA_VERSION, dumps_record, read_record, validate_record, write_record

FILED = Path(__file__).resolve().parents[1] / "leaderboard" / "results"


def test_every_filed_record_validates_as_schema_version_1():
    paths = sorted(FILED.rglob("*.json"))
    if not paths:  # a withdrawn track says so where the records were filed
        assert "## Withdrawn" in (FILED / "README.md").read_text()
    for path in paths:
        record = read_record(path)
        assert record["schema_version"] == SCHEMA_VERSION == 1


def test_write_refuses_nan_naming_the_field_and_writes_nothing(tmp_path):
    record = make_record()
    record["metrics"]["val"]["mAP"] = float("nan")
    with pytest.raises(BenchError, match="field 'metrics.val.mAP' is not a finite number"):
        write_record(tmp_path / "r.json", record)
    assert not (tmp_path / "r.json").exists()


def test_read_refuses_infinity_instead_of_turning_it_into_null(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(dumps_record(make_record(options={"w": 1.5})).replace("1.5", "Infinity"))
    with pytest.raises(BenchError, match="Infinity"):
        read_record(path)


@pytest.mark.parametrize("section, key, value, fragment", [
    ("protocol", "seed", True, "protocol.seed"),
    ("protocol", "known", 1.5, "(0, 1]"),
    ("dataset", "num_classes", 0, "dataset.num_classes"),
    ("selection", "best_epoch", -1, "selection.best_epoch"),
])
def test_types_and_ranges_are_declared_in_the_schema(section, key, value, fragment):
    record = make_record()
    record[section][key] = value
    with pytest.raises(BenchError, match="record: field") as info:
        validate_record(json.loads(json.dumps(record)))
    assert fragment in str(info.value)


def test_round_trip(tmp_path):
    record = make_record()
    write_record(tmp_path / "r.json", record)
    assert read_record(tmp_path / "r.json") == json.loads(dumps_record(record))
