"""``--tune``: every grid point trained, the choice made on validation only, test scored once."""

from __future__ import annotations

import json

from conftest import TINY_SCENES


def _run(cli, out, *extra):
    return cli("run", "--plugin", "partial-bce", "--known", "0.5", "--epochs", "2", "--output", out, *TINY_SCENES, *extra)


def test_tune_selects_on_validation_and_records_every_candidate(cli, tmp_path):
    res = _run(cli, tmp_path / "t", "--tune", "lr=1e-3,1e-2")
    assert res.exit_code == 0, res.stderr
    (path,) = (tmp_path / "t").glob("*/record.json")
    record = json.loads(path.read_text())
    tuning = record["tuning"]
    assert tuning["grid"] == {"lr": [1e-3, 1e-2]} and tuning["split"] == "validation" and tuning["metric"] == "mAP"
    scores = {c["values"]["lr"]: c["val"] for c in tuning["candidates"]}
    assert tuning["chosen"] == {"lr": max(scores, key=scores.get)}
    assert record["train"]["lr"] == tuning["chosen"]["lr"]
    for candidate in tuning["candidates"]:
        assert (path.parent / candidate["epoch_log"]).is_file()
    # The chosen candidate's validation score is the record's validation mAP (same best epoch).
    assert record["metrics"]["val"]["mAP"] == max(scores.values())


def test_one_point_grid_equals_the_plain_run_and_resume_does_not_retrain(cli, tmp_path):
    assert _run(cli, tmp_path / "plain", "--lr", "3e-3").exit_code == 0
    assert _run(cli, tmp_path / "tuned", "--tune", "lr=3e-3").exit_code == 0
    plain = json.loads(next((tmp_path / "plain").glob("*/record.json")).read_text())
    tuned_path = next((tmp_path / "tuned").glob("*/record.json"))
    tuned = json.loads(tuned_path.read_text())
    assert tuned["metrics"]["test"] == plain["metrics"]["test"]  # scored from the checkpoint = scored directly
    assert tuned["config_hash"] != plain["config_hash"]  # the grid is part of the run's identity
    tuned_path.unlink()
    res = _run(cli, tmp_path / "tuned", "--tune", "lr=3e-3", "--resume")
    assert res.exit_code == 0, res.stderr
    again = json.loads(tuned_path.read_text())
    assert again["metrics"]["test"] == tuned["metrics"]["test"] and again["runtime"]["resumed_from_epoch"] == 2


def test_tune_refuses_unknown_keys_and_the_validation_split(cli, tmp_path):
    res = _run(cli, tmp_path / "x", "--tune", "nosuch=1,2")
    assert res.exit_code == 2 and "--tune nosuch: not a train setting or an option" in res.stderr
    res = _run(cli, tmp_path / "x", "--tune", "val_fraction=0.1,0.2")
    assert res.exit_code == 2 and "not tunable" in res.stderr
    res = _run(cli, tmp_path / "x", "--tune", "lr=-1,1e-3")
    assert res.exit_code == 2 and "lr" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_tune_grid_from_a_config_file(cli, tmp_path):
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps({"plugin": "partial-bce", "tune": {"normalization": ["known", "durand"]}}))
    res = cli("run", "--config", cfg, "--known", "0.5", "--epochs", "1", "--output", tmp_path / "o", *TINY_SCENES)
    assert res.exit_code == 0, res.stderr
    record = json.loads(next((tmp_path / "o").glob("*/record.json")).read_text())
    assert [c["values"] for c in record["tuning"]["candidates"]] == [{"normalization": "known"}, {"normalization": "durand"}]
