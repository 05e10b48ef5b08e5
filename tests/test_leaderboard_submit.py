"""`mlrpl-bench leaderboard submit`: validation, provenance, canonical filing, all-or-nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from record_factory import make_record, write_record_file

from mlrpl_bench.cli import main
from mlrpl_bench.errors import BenchError
from mlrpl_bench.leaderboard import submit as submit_mod
from mlrpl_bench.leaderboard.aggregate import method_signature, short_hash
from mlrpl_bench.leaderboard.submit import SubmissionRefused, canonical_path, path_component, submit_records
from mlrpl_bench.results import read_record


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


def test_valid_records_are_filed_at_canonical_paths(tmp_path):
    recs = [make_record("hst", known=k, seed=s) for k in (0.1, 0.5) for s in (0, 1)]
    paths = [write_record_file(tmp_path / "in", r, f"r{i}.json") for i, r in enumerate(recs)]
    results = tmp_path / "results"
    filed = submit_records(paths, results)
    assert [f.status for f in filed] == ["filed"] * 4
    mask = recs[0]["protocol"]["mask_fingerprint"][:12]
    variant = short_hash(method_signature(recs[0]))
    expected = results / "voc2007" / "pal" / "hst" / f"hst__voc2007__pal__0.1__seed0__{mask}__{variant}.json"
    assert filed[0].target == expected and expected.exists()
    assert len(files_under(results)) == 4
    stored = read_record(expected)  # the filed record still validates
    assert stored["metrics"]["test"]["mAP"] == 80.0
    assert stored["submission"]["source_name"] == "r0.json"
    assert not list(results.rglob("*.tmp"))


def test_resubmitting_is_a_noop_and_a_different_record_needs_replace(tmp_path):
    results = tmp_path / "results"
    first = write_record_file(tmp_path / "a", make_record(mAP=70.0))
    submit_records([first], results)
    assert [f.status for f in submit_records([first], results)] == ["unchanged"]
    changed = write_record_file(tmp_path / "b", make_record(mAP=71.0))
    with pytest.raises(SubmissionRefused, match="--replace"):
        submit_records([changed], results)
    assert read_record(files_under(results)[0])["metrics"]["test"]["mAP"] == 70.0
    assert [f.status for f in submit_records([changed], results, replace=True)] == ["replaced"]
    assert read_record(files_under(results)[0])["metrics"]["test"]["mAP"] == 71.0


def test_different_protocols_of_the_same_run_id_do_not_overwrite(tmp_path):
    results = tmp_path / "results"
    a = write_record_file(tmp_path / "a", make_record(scheme="generator"))
    b = write_record_file(tmp_path / "b", make_record(scheme="hcp"))
    submit_records([a, b], results)
    assert len(files_under(results)) == 2


def _break(record: dict, dotted: str, value) -> dict:
    *parents, leaf = dotted.split(".")
    block = record
    for p in parents:
        block = block[p]
    if value is _DELETE:
        del block[leaf]
    else:
        block[leaf] = value
    return record


_DELETE = object()

INVALID = [
    ("environment.code_version", _DELETE, "'environment.code_version' is missing"),
    ("environment.code_version", "unknown", "'environment.code_version' is 'unknown'"),
    ("method.version", "  ", "'method.version' is empty"),
    ("method.version", _DELETE, "'method.version' is missing"),
    ("dataset.fingerprint", {"train": "abc"}, "'dataset.fingerprint.train' is 'abc'"),
    ("dataset.fingerprint", {"train": "a" * 64}, "'dataset.fingerprint.test' is None"),
    ("protocol.mask_fingerprint", "not-a-digest", "'protocol.mask_fingerprint' is 'not-a-digest'; must be a sha256"),
    ("protocol.val_fingerprint", "ABC", "'protocol.val_fingerprint' is 'ABC'"),
    ("schema_version", 99, "schema_version 99 is newer"),
    ("schema_version", 0, "schema_version 0 is not supported"),
    ("metrics.test.mAP", 150.0, "'metrics.test.mAP' is 150.0"),
    ("protocol.known", 1.5, "'protocol.known' is 1.5"),
    ("run_id", "something-else", "field 'run_id' is 'something-else'"),
    ("metrics.test.mAP", 95.0, "'metrics.test.mAP' is 95.0 but the mean of 'per_class_ap.test' is 80.0000"),
    ("per_class_ap.test", [80.0] * 3, "'per_class_ap.test' has 3 entries; expected one per class (4)"),
    ("per_class_ap.test", [80.0, 80.0, 80.0, 180.0], "'per_class_ap.test[3]' is 180.0"),
]


@pytest.mark.parametrize("field,value,message", INVALID, ids=[f"{f}={v!r}"[:40] for f, v, _ in INVALID])
def test_an_invalid_record_refuses_the_whole_batch(tmp_path, field, value, message):
    good = write_record_file(tmp_path / "in", make_record(known=0.1), "good.json")
    bad = write_record_file(tmp_path / "in", _break(make_record(known=0.3), field, value), "bad.json")
    results = tmp_path / "results"
    with pytest.raises(SubmissionRefused) as info:
        submit_records([good, bad], results)
    assert len(info.value.errors) == 1
    assert str(bad) in info.value.errors[0] and message in info.value.errors[0]
    assert files_under(results) == []  # the valid record was not filed either


def test_classes_without_ap_are_left_out_of_the_consistency_check(tmp_path):
    rec = make_record(mAP=70.0, per_class_ap={"test": [60.0, None, 80.0, 70.0]})
    (filed,) = submit_records([write_record_file(tmp_path, rec)], tmp_path / "results")
    assert filed.status == "filed"


def test_unreadable_files_are_refused_with_their_name(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    missing = tmp_path / "missing.json"
    with pytest.raises(SubmissionRefused) as info:
        submit_records([broken, missing, tmp_path], tmp_path / "results")
    errors = info.value.errors
    assert len(errors) == 3
    assert "broken.json: not valid JSON" in errors[0]
    assert "missing.json: record file not found" in errors[1]
    assert "is a directory" in errors[2]


def test_conflicting_duplicates_in_one_batch_are_refused(tmp_path):
    a = write_record_file(tmp_path / "a", make_record(mAP=60.0))
    b = write_record_file(tmp_path / "b", make_record(mAP=61.0))
    with pytest.raises(SubmissionRefused, match="same run_id, protocol and method options"):
        submit_records([a, b], tmp_path / "results")
    same = write_record_file(tmp_path / "c", make_record(mAP=60.0))
    assert len(submit_records([a, same], tmp_path / "results")) == 1


def test_names_from_records_cannot_escape_the_results_dir(tmp_path):
    rec = make_record("../../../evil", dataset="..")
    path = write_record_file(tmp_path / "in", rec, "evil.json")
    results = tmp_path / "results"
    (filed,) = submit_records([path], results)
    assert filed.target.resolve().is_relative_to(results.resolve())
    assert path_component("..") == "_.." and path_component("a/b\\c") == "a-b-c"
    assert path_component("") == "_"


def test_a_failed_write_rolls_back_the_batch(tmp_path, monkeypatch):
    results = tmp_path / "results"
    old = write_record_file(tmp_path / "old", make_record(known=0.1, mAP=50.0))
    submit_records([old], results)
    before = {p: p.read_bytes() for p in files_under(results)}
    new = [write_record_file(tmp_path / "in", make_record(known=k, mAP=60.0), f"{k}.json") for k in (0.1, 0.3, 0.5)]
    real_write, real_create = submit_mod.atomic_write_bytes, submit_mod.create_exclusive
    calls = []

    def flaky(real):
        def write(path, data):
            calls.append(path)
            if len(calls) == 3:
                raise OSError("disk full")
            real(path, data)
        return write

    monkeypatch.setattr(submit_mod, "atomic_write_bytes", flaky(real_write))
    monkeypatch.setattr(submit_mod, "create_exclusive", flaky(real_create))
    with pytest.raises(OSError, match="disk full"):
        submit_records(new, results, replace=True)
    monkeypatch.setattr(submit_mod, "atomic_write_bytes", real_write)
    # the replaced record is back, the newly created one is gone
    assert {p: p.read_bytes() for p in files_under(results)} == before


def test_dirty_code_is_filed_with_a_warning(tmp_path):
    path = write_record_file(tmp_path, make_record(code_version="abc123+dirty"))
    (filed,) = submit_records([path], tmp_path / "results")
    assert filed.status == "filed" and "modified code" in filed.warnings[0]


def test_no_files_is_an_error(tmp_path):
    with pytest.raises(BenchError, match="no record files"):
        submit_records([], tmp_path)


def test_cli_submit_reports_every_bad_file_and_exits_2(tmp_path, capsys):
    good = write_record_file(tmp_path / "in", make_record(known=0.1), "good.json")
    bad1 = write_record_file(tmp_path / "in", _break(make_record(known=0.3), "environment.code_version", ""), "bad1.json")
    bad2 = write_record_file(tmp_path / "in", _break(make_record(known=0.5), "method.version", _DELETE), "bad2.json")
    results = tmp_path / "results"
    with pytest.raises(SystemExit) as exit_info:
        main(["leaderboard", "submit", str(good), str(bad1), str(bad2), "--results", str(results)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"refused: {bad1}: field 'environment.code_version'" in err
    assert f"refused: {bad2}: field 'method.version' is missing" in err
    assert "refused 2 of 3 record(s), nothing was filed" in err
    assert files_under(results) == []


def test_cli_submit_files_and_prints_targets(tmp_path, capsys):
    rec = make_record()
    path = write_record_file(tmp_path / "in", rec)
    results = tmp_path / "results"
    main(["leaderboard", "submit", str(path), "--results", str(results)])
    out = capsys.readouterr().out
    target = canonical_path(rec, results)
    assert f"filed: {path} -> {target}" in out
    assert json.loads(target.read_text())["run_id"] == rec["run_id"]


def test_an_ablation_is_filed_beside_the_method_not_over_it(tmp_path):
    results = tmp_path / "results"
    plain = make_record("hst", known=0.5, mAP=70.0)
    ablation = make_record("hst", known=0.5, mAP=72.0)
    ablation["method"]["options"] = {**plain["method"]["options"], "feature_blending": True}
    paths = [write_record_file(tmp_path / "in", r, f"r{i}.json") for i, r in enumerate((plain, ablation))]
    filed = submit_records(paths, results)
    assert [f.status for f in filed] == ["filed", "filed"] and filed[0].target != filed[1].target
    assert sorted(read_record(p)["metrics"]["test"]["mAP"] for p in files_under(results)) == [70.0, 72.0]
