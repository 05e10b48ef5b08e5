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
    # A two-point grid: whichever value wins is at an edge; said in the record and in the log.
    chosen_lr = tuning["chosen"]["lr"]
    assert tuning["warnings"][0].startswith(f"grid-edge: lr={chosen_lr:g} is the "
                                            f"{'smallest' if chosen_lr == 1e-3 else 'largest'} value of the grid")
    assert any(w.startswith("first-epoch") for w in tuning["warnings"]) == (record["selection"]["best_epoch"] == 0)
    assert f"WARNING grid-edge: lr={chosen_lr:g}" in res.output + res.stderr


def test_one_point_grid_equals_the_plain_run_and_resume_does_not_retrain(cli, tmp_path):
    assert _run(cli, tmp_path / "plain", "--lr", "3e-3").exit_code == 0
    assert _run(cli, tmp_path / "tuned", "--tune", "lr=3e-3").exit_code == 0
    plain = json.loads(next((tmp_path / "plain").glob("*/record.json")).read_text())
    tuned_path = next((tmp_path / "tuned").glob("*/record.json"))
    tuned = json.loads(tuned_path.read_text())
    assert tuned["metrics"]["test"] == plain["metrics"]["test"]  # scored from the checkpoint = scored directly
    assert tuned["config_hash"] != plain["config_hash"]  # the grid is part of the run's identity
    # one value has no edge; a warning could only be a first-epoch selection
    assert all(w.startswith("first-epoch") for w in tuned["tuning"].get("warnings", []))
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


def _records(out):
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(out.glob("*/record.json"))}


def test_tune_seed_searches_on_one_seed_and_the_others_train_its_choice(cli, tmp_path):
    args = ("--seeds", "1,0", "--tune", "lr=1e-3,3e-2", "--tune-seed", "0", "--jobs", "1")
    res = _run(cli, tmp_path / "s", *args)
    assert res.exit_code == 0, res.stderr
    recs = _records(tmp_path / "s")
    searched, reused = (recs[f"partial-bce__digit-scenes__pal__0.5__seed{s}"] for s in (0, 1))
    assert len(searched["tuning"]["candidates"]) == 2 and searched["tuning"]["chosen_on_seed"] == 0
    assert reused["tuning"]["candidates"] == [] and reused["tuning"]["chosen"] == searched["tuning"]["chosen"]
    assert reused["tuning"]["chosen_by"] == "partial-bce__digit-scenes__pal__0.5__seed0"
    # the seed that reuses the choice is warned of the grid edge too, and of its own first-epoch selection
    for rec in (searched, reused):
        warnings = rec["tuning"]["warnings"]
        assert warnings[0].startswith(f"grid-edge: lr={rec['tuning']['chosen']['lr']:g}")
        assert any(w.startswith("first-epoch") for w in warnings) == (rec["selection"]["best_epoch"] == 0)
    assert reused["train"]["lr"] == searched["tuning"]["chosen"]["lr"]
    assert not (tmp_path / "s" / "partial-bce__digit-scenes__pal__0.5__seed1" / "candidates").exists()
    assert reused["config_hash"] == searched["config_hash"]
    # Seed 1 trained once with the chosen lr: the same numbers as a plain run with that lr.
    chosen_lr = str(searched["tuning"]["chosen"]["lr"])
    assert _run(cli, tmp_path / "plain", "--seeds", "1", "--lr", chosen_lr).exit_code == 0
    (plain,) = _records(tmp_path / "plain").values()
    assert plain["metrics"] == reused["metrics"]
    # Worker processes give the same records (seed 0's cells run in a first phase).
    assert _run(cli, tmp_path / "p", *args[:-1], "2").exit_code == 0
    par = _records(tmp_path / "p")
    assert {k: v["metrics"] for k, v in par.items()} == {k: v["metrics"] for k, v in recs.items()}


def test_tune_seed_without_its_record_or_without_a_grid_is_one_line(cli, tmp_path):
    res = _run(cli, tmp_path / "a", "--seeds", "1", "--tune", "lr=1e-3,3e-2", "--tune-seed", "0")
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "--tune-seed 0" in res.stderr and "run seed 0 first" in res.stderr
    assert not list((tmp_path / "a").glob("*/record.json"))
    res = _run(cli, tmp_path / "b", "--tune-seed", "0")
    assert res.exit_code == 2 and "no --tune grid" in res.stderr
    res = _run(cli, tmp_path / "b", "--tune", "lr=1e-3,3e-2", "--tune-seed", "-1")
    assert res.exit_code == 2 and "tune" in res.stderr


def test_a_tuned_lr_does_not_split_a_leaderboard_row():
    from mlrpl_bench.leaderboard.identity import budget_signature

    def record(lr, seed_of_choice):
        return {"train": {"epochs": 20, "lr": lr, "backbone": "small-cnn"},
                "tuning": {"grid": {"lr": [1e-3, 3e-2]}, "chosen": {"lr": lr}, "chosen_on_seed": seed_of_choice}}

    assert budget_signature(record(1e-3, 0)) == budget_signature(record(3e-2, 0))
    assert budget_signature(record(1e-3, 0))["lr"] == "tuned"
    assert budget_signature(record(1e-3, 0)) != budget_signature(record(1e-3, 1))  # searched on another seed
    untuned = {"train": {"epochs": 20, "lr": 1e-3, "backbone": "small-cnn"}}
    assert budget_signature(untuned)["lr"] == 1e-3 and budget_signature(untuned)["tuning_grid"] == "none"
