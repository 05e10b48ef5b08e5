"""Property-based tests of the results record (hypothesis): filing round-trips, bad values are refused.

Any valid record (``record_factory.make_record`` with fuzzed names, proportions, seeds, metrics
and option values of every JSON type) is filed by ``leaderboard submit`` and read back equal,
apart from the ``submission`` block submit adds; filing it again changes nothing. A record with
one bad value (NaN, Infinity, a wrong type, a proportion outside (0, 1], a negative seed ...) is
refused in one line that names the field, and nothing is filed.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from record_factory import make_record, write_record_file

from mlrpl_bench.leaderboard.submit import SubmissionRefused, submit_records
from mlrpl_bench.results import read_record, validate_record
from mlrpl_bench.vocabulary import NAME_PATTERN, SCHEMES, SEED_LIMIT, SETTINGS

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

names = st.from_regex(NAME_PATTERN, fullmatch=True).filter(lambda s: len(s) <= 24)
finite = st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | finite | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8)
percent = st.none() | st.floats(min_value=0, max_value=100)


@st.composite
def records(draw) -> dict:
    known = draw(st.floats(min_value=1e-6, max_value=1.0))
    return make_record(
        draw(names), draw(names), draw(st.sampled_from(SETTINGS)), known, draw(st.integers(0, SEED_LIMIT - 1)),
        mAP=draw(percent), OF1=draw(percent), CF1=draw(percent), scheme=draw(st.sampled_from(SCHEMES)),
        num_classes=draw(st.integers(1, 5)), method_version=draw(st.text(min_size=1, max_size=8).filter(str.strip)),
        profile=draw(st.sampled_from(["default", "paper", "paper-literal"])),
        options=draw(st.dictionaries(st.text(max_size=10), json_values, max_size=4)),
        train={"epochs": draw(st.integers(1, 10**6)), "lr": draw(st.floats(min_value=1e-12, max_value=10.0))})


@FAST
@given(record=records())
def test_a_filed_record_reads_back_equal(tmp_path_factory, record):
    root = tmp_path_factory.mktemp("submit")
    source = write_record_file(root / "in", record)
    (filed,) = submit_records([source], root / "results")
    assert filed.status == "filed" and filed.target.is_file()
    assert filed.target.resolve().is_relative_to((root / "results").resolve())
    back = read_record(filed.target)
    assert back.pop("submission")["source_name"] == source.name
    assert back == record
    assert json.dumps(back, sort_keys=True) == json.dumps(record, sort_keys=True)  # same types, not only ==
    (again,) = submit_records([source], root / "results")
    assert again.status == "unchanged" and again.target == filed.target


#: (dotted field, bad values): each value breaks a rule the schema declares for that field.
BAD_VALUES = [
    ("protocol.known", [0, 0.0, -0.1, 1.5, 2, math.nan, math.inf, "0.5", True, None, [0.5]]),
    ("protocol.seed", [-1, -5, SEED_LIMIT, 1.5, "0", True, None]),
    ("protocol.setting", ["PAL", "", 3, None, ["pal"]]),
    ("protocol.mask_fingerprint", ["abc", "", 7, "A" * 64]),
    ("metrics.test.mAP", [math.nan, math.inf, -math.inf, -1, 100.5, "80", True]),
    ("dataset.num_classes", [0, -1, 1.5, "4", True]),
    ("dataset.sizes.test", [-1, 1.5, "3"]),
    ("selection.best_epoch", [-1, 1.5, "1", None]),
    ("schema_version", ["1", 1.5, True, None, 0, 99]),
    ("method.options.beta", [math.nan, math.inf, -math.inf]),
    ("train.lr", [math.nan, math.inf]),
    ("run_id", [7, None]),
]


def _set(record: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        record = record[part]
    record[last] = value


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record=records(), case=st.sampled_from(BAD_VALUES), data=st.data())
def test_a_bad_value_is_refused_in_one_line_naming_the_field(tmp_path_factory, record, case, data):
    field, values = case
    bad = data.draw(st.sampled_from(values))
    _set(record, field, bad)
    root = tmp_path_factory.mktemp("bad")
    path = root / "record.json"
    path.write_text(json.dumps(record))  # NaN / Infinity written as the non-JSON words a lax writer uses
    with pytest.raises(SubmissionRefused) as info:
        submit_records([path], root / "results")
    message = str(info.value)
    assert "\n" not in message
    assert field in message, message
    assert not (root / "results").exists() or not list((root / "results").rglob("*.json"))


@FAST
@given(record=records())
def test_validation_is_idempotent_and_never_changes_a_valid_record(record):
    copy = json.loads(json.dumps(record))
    assert validate_record(copy) == record and copy == record


json_words = st.sampled_from(["NaN", "Infinity", "-Infinity", "null", "{", "}", "[", "]", ",", ":", '"a"', "1e999",
                              "\ufeff", "\xff", '"schema_version"', "1"])


@FAST
@given(data=st.one_of(st.binary(max_size=40), st.lists(json_words, max_size=12).map("".join),
                      records().map(lambda r: json.dumps(r)[: len(json.dumps(r)) // 2])))
def test_any_bytes_as_a_record_file_are_a_record_or_one_line(tmp_path_factory, data):
    from mlrpl_bench.errors import BenchError

    path = tmp_path_factory.mktemp("bytes") / "record.json"
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
    try:
        read_record(path)
    except BenchError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(str(path))
