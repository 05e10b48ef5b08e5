"""Saved test scores (`mlrpl_bench.scores`): the file format, its checks, and `run --save-scores`."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from conftest import TINY_SCENES
from mlrpl_bench.errors import BenchError
from mlrpl_bench.metrics import mean_average_precision
from mlrpl_bench.results import read_record
from mlrpl_bench.scores import SCORES_FILE, read_scores, save_by_default, should_save, verify_scores, write_scores


def _pair(n=40, c=3, seed=0):
    rng = np.random.default_rng(seed)
    targets = np.where(rng.random((n, c)) < 0.3, 1, -1).astype(np.int8)
    targets[0] = 1
    scores = rng.random((n, c)).astype(np.float32) * 0.5 + 0.5 * (targets == 1)
    return scores, targets


def _record(block, scores, targets, mAP=None):
    return {"scores_file": block, "dataset": {"sizes": {"test": scores.shape[0]}, "num_classes": scores.shape[1]},
            "metrics": {"test": {"mAP": mAP if mAP is not None else mean_average_precision(scores, targets)}}}


def test_write_read_round_trip_in_the_documented_format(tmp_path):
    scores, targets = _pair()
    block = write_scores(tmp_path, scores, targets)
    path = tmp_path / SCORES_FILE
    assert block == {"path": "test_scores.npz", "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "dtype": "float16"}
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["scores", "targets"]
        assert npz["scores"].dtype == np.float16 and npz["targets"].dtype == np.int8
        assert np.array_equal(npz["targets"], targets)
    record = _record(block, scores, targets)
    got_scores, got_targets = read_scores(tmp_path / "record.json", record)
    assert got_scores.dtype == np.float32 and np.array_equal(got_targets, targets)
    assert np.abs(got_scores - scores).max() < 1e-3  # float16 keeps ~3 significant digits
    verify_scores(tmp_path / "record.json", record)


def test_float16_is_kept_only_when_it_changes_no_class_ap(tmp_path):
    targets = _pair(n=60)[1]
    noisy = np.random.default_rng(1).random(targets.shape) * 0.8 + 0.2 * (targets == 1)   # overlapping classes
    squeezed = (0.5 + (noisy - 0.5) * 0.06).astype(np.float32)   # an under-trained model: every probability in 0.47..0.53
    exact = mean_average_precision(squeezed, targets)
    rounded = mean_average_precision(squeezed.astype(np.float16).astype(np.float32), targets)
    assert abs(exact - rounded) > 0.2   # float16 would have merged part of the ranking into ties
    block = write_scores(tmp_path, squeezed, targets)
    assert block["dtype"] == "float32"
    got, _ = verify_scores(tmp_path / "record.json", _record(block, squeezed, targets))
    assert mean_average_precision(got, targets) == exact


def test_a_changed_missing_or_foreign_scores_file_is_refused_by_name(tmp_path):
    scores, targets = _pair()
    block = write_scores(tmp_path, scores, targets)
    record_path = tmp_path / "record.json"
    with pytest.raises(BenchError, match=r"test_scores.npz: sha256 differs"):
        read_scores(record_path, _record({**block, "sha256": "0" * 64}, scores, targets))
    with pytest.raises(BenchError, match=r"scores have shape \(40, 3\) but .* has 41 test images"):
        read_scores(record_path, {**_record(block, scores, targets), "dataset": {"sizes": {"test": 41}, "num_classes": 3}})
    with pytest.raises(BenchError, match=r"give test mAP .* says 12.00; the file does not belong to this record"):
        verify_scores(record_path, _record(block, scores, targets, mAP=12.0))
    (tmp_path / SCORES_FILE).unlink()
    with pytest.raises(BenchError, match=r"test_scores.npz: cannot read the test scores"):
        read_scores(record_path, _record(block, scores, targets))
    with pytest.raises(BenchError, match=r"expected one \(N, C\) pair"):
        write_scores(tmp_path, scores, targets[:5])


def test_saving_is_on_by_default_for_the_built_in_dataset_only():
    assert save_by_default("digit-scenes") and save_by_default("voc2007-scenes") and not save_by_default("coco2014")
    assert should_save(None, "digit-scenes") and not should_save(None, "voc2007")
    assert should_save(True, "voc2007") and not should_save(False, "digit-scenes")


def test_a_run_saves_its_scores_beside_the_record_unless_told_not_to(cli, tmp_path):
    common = ["run", "--plugin", "partial-bce", "--epochs", "1", "--known", "0.5", *TINY_SCENES]
    res = cli(*common, "--output", tmp_path / "on")
    assert res.exit_code == 0, res.stderr
    run_dir = tmp_path / "on" / "partial-bce__digit-scenes__pal__0.5__seed0"
    record = read_record(run_dir / "record.json")
    assert record["scores_file"]["path"] == SCORES_FILE and (run_dir / SCORES_FILE).is_file()
    scores, targets = verify_scores(run_dir / "record.json", record)  # sha256, shape and the record's mAP agree
    assert scores.shape == (30, record["dataset"]["num_classes"]) and set(np.unique(targets)) <= {-1, 0, 1}
    # the per-class known positives of the training rows, from the cached mask
    meta = next((tmp_path / "on" / "_protocol").glob("*.json"))
    stem = meta.name[: -len(".json")]
    partial = np.load(meta.with_name(stem + ".partial.npy"))
    train = np.setdiff1d(np.arange(partial.shape[0]), np.load(meta.with_name(stem + ".val_idx.npy")))
    assert record["protocol"]["per_class_known_positives"] == (partial[train] == 1).sum(axis=0).tolist()
    assert json.loads(meta.read_text())["mask_fingerprint"] == record["protocol"]["mask_fingerprint"]
    off = cli(*common, "--output", tmp_path / "off", "--no-save-scores")
    assert off.exit_code == 0, off.stderr
    run_dir = tmp_path / "off" / "partial-bce__digit-scenes__pal__0.5__seed0"
    assert "scores_file" not in read_record(run_dir / "record.json") and not (run_dir / SCORES_FILE).exists()


def test_submit_files_the_scores_beside_the_record_and_refuses_changed_or_missing_ones(cli, tmp_path):
    from mlrpl_bench.leaderboard.submit import SubmissionRefused, submit_records

    res = cli("run", "--plugin", "partial-bce", "--epochs", "1", "--known", "0.5", *TINY_SCENES, "--output", tmp_path / "runs")
    assert res.exit_code == 0, res.stderr
    run_dir = tmp_path / "runs" / "partial-bce__digit-scenes__pal__0.5__seed0"
    source = read_record(run_dir / "record.json")
    (filed,) = submit_records([tmp_path / "runs"], tmp_path / "results")
    assert filed.status == "filed" and filed.scores == filed.target.with_name(filed.target.stem + ".scores.npz")
    stored = read_record(filed.target)
    assert stored["scores_file"] == {**source["scores_file"], "path": filed.scores.name}  # same sha256, new name
    assert filed.scores.read_bytes() == (run_dir / SCORES_FILE).read_bytes()
    verify_scores(filed.target, stored)  # the filed pair checks out on its own
    # the leaderboard finds the scores beside the filed record (no "not beside them" note)
    from mlrpl_bench.leaderboard.aggregate import build_tables
    from mlrpl_bench.leaderboard.discover import discover

    (table,) = build_tables(discover([tmp_path / "results"]))
    assert not [n for n in table.notes if "not beside them" in n]
    (again,) = submit_records([tmp_path / "runs"], tmp_path / "results")
    assert again.status == "unchanged"
    # A changed scores file is refused by name before anything is written.
    data = np.load(run_dir / SCORES_FILE)
    np.savez_compressed(run_dir / SCORES_FILE, scores=np.flip(data["scores"], 0), targets=data["targets"])
    with pytest.raises(SubmissionRefused, match="sha256 differs"):
        submit_records([tmp_path / "runs"], tmp_path / "other")
    (run_dir / SCORES_FILE).unlink()
    with pytest.raises(SubmissionRefused, match=f"cannot read the test scores.*{SCORES_FILE}|{SCORES_FILE}.*cannot read"):
        submit_records([tmp_path / "runs"], tmp_path / "other")
    assert not (tmp_path / "other").exists()
