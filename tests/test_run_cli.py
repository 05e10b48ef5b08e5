"""``mlrpl-bench run`` end to end on a tiny built-in dataset: records, logs, table, determinism,
reuse of finished runs, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import TINY_SCENES
from mlrpl_bench.results import read_record


def _run(cli, out: Path, *extra: str):
    return cli("run", "--plugin", "partial-bce", "--epochs", "2", "--output", out, *TINY_SCENES, *extra)


def test_sweep_writes_valid_records_logs_and_a_table(cli, tmp_path):
    res = _run(cli, tmp_path / "runs", "--known", "0.3,0.6")
    assert res.exit_code == 0, res.stderr
    run_dirs = sorted(p.name for p in (tmp_path / "runs").iterdir() if not p.name.startswith("_"))
    assert run_dirs == ["partial-bce__digit-scenes__pal__0.3__seed0", "partial-bce__digit-scenes__pal__0.6__seed0"]
    for name in run_dirs:
        rec = read_record(tmp_path / "runs" / name / "record.json")
        assert rec["selection"]["split"] == "validation"
        assert 0 <= rec["selection"]["best_epoch"] < 2
        assert rec["dataset"]["sizes"]["test"] == 30
        assert rec["dataset"]["sizes"]["train"] + rec["dataset"]["sizes"]["val"] == 60
        assert len(rec["per_class_ap"]["test"]) == rec["dataset"]["num_classes"]
        assert rec["environment"]["code_version"] == "test"
        logs = [json.loads(line) for line in (tmp_path / "runs" / name / "epochs.jsonl").read_text().splitlines()]
        assert [e["epoch"] for e in logs] == [0, 1]
        assert all("train/loss" in e and "val/mAP" in e and "lr" in e for e in logs)
    # the per-run summary lines and the final table
    assert "partial-bce__digit-scenes__pal__0.3__seed0: test mAP" in res.output
    assert "| Ave." in res.output.replace("|  ", "| ").replace("| Ave. ", "| Ave.") or "Ave." in res.output


def test_same_command_twice_gives_the_same_metrics(cli, tmp_path):
    a = _run(cli, tmp_path / "a", "--known", "0.5")
    b = _run(cli, tmp_path / "b", "--known", "0.5")
    assert a.exit_code == b.exit_code == 0
    ra = read_record(tmp_path / "a" / "partial-bce__digit-scenes__pal__0.5__seed0" / "record.json")
    rb = read_record(tmp_path / "b" / "partial-bce__digit-scenes__pal__0.5__seed0" / "record.json")
    assert ra["metrics"]["test"] == rb["metrics"]["test"]
    assert ra["protocol"]["mask_fingerprint"] == rb["protocol"]["mask_fingerprint"]


def test_finished_runs_are_reused_and_a_changed_config_is_refused(cli, tmp_path):
    assert _run(cli, tmp_path, "--known", "0.5").exit_code == 0
    again = _run(cli, tmp_path, "--known", "0.5")
    assert again.exit_code == 0 and "already done" in again.output
    changed = _run(cli, tmp_path, "--known", "0.5", "--lr", "0.02")
    assert changed.exit_code == 2
    assert "different configuration" in changed.stderr and "--overwrite" in changed.stderr


def test_an_ablation_runs_beside_the_default_in_one_output_directory(cli, tmp_path):
    assert _run(cli, tmp_path, "--known", "0.5").exit_code == 0
    ablation = _run(cli, tmp_path, "--known", "0.5", "-o", "normalization=durand")
    assert ablation.exit_code == 0, ablation.stderr
    default_dir = tmp_path / "partial-bce__digit-scenes__pal__0.5__seed0"
    ablation_dir = tmp_path / "partial-bce__digit-scenes__pal__0.5__seed0__normalization-durand"
    assert read_record(default_dir / "record.json")["method"]["options"]["normalization"] == "known"
    rec = read_record(ablation_dir / "record.json")
    assert rec["method"]["options"]["normalization"] == "durand"
    assert rec["run_id"] == "partial-bce__digit-scenes__pal__0.5__seed0"  # the run id names the run, not the variant
    assert str(ablation_dir) in ablation.output
    # both are found again as done
    assert "already done" in _run(cli, tmp_path, "--known", "0.5", "-o", "normalization=durand").output


def test_variant_suffix_names_changed_options_and_hashes_long_ones():
    from mlrpl_bench.run_config import variant_suffix

    defaults = {"a": 1, "b": "x", "c": False}
    assert variant_suffix("default", {"a": 1, "b": "x", "c": False}, defaults) == ""
    assert variant_suffix("default", {"a": 2, "b": "x", "c": True}, defaults) == "a-2_c-True"
    assert variant_suffix("paper", dict(defaults), defaults) == "paper"
    assert variant_suffix("default", {"a": 1, "b": "a/b c", "c": False}, defaults) == "b-a-b-c"  # file-system safe
    long = variant_suffix("default", {"a": 1, "b": "y" * 80, "c": False}, defaults)
    assert long.startswith("opts-") and len(long) == 13
    assert long != variant_suffix("default", {"a": 1, "b": "z" * 80, "c": False}, defaults)


@pytest.mark.parametrize("args, message", [
    (["--plugin", "no-such-method"], "unknown plugin 'no-such-method'; choose one of:"),
    (["--plugin", "partial-bce", "--dataset", "nope"], "unknown dataset 'nope'"),
    (["--plugin", "partial-bce", "--known", "1.5"], "--known 1.5: known is 1.5; a known-label proportion must be in (0, 1]"),
    (["--plugin", "partial-bce", "--known", "0"], "must be in (0, 1]"),
    (["--plugin", "partial-bce", "--setting", "half"], "--setting half: input should be 'full', 'pal', 'ppl' or 'spl'"),
    (["--plugin", "partial-bce", "-o", "nonsense=1"], "unknown option 'nonsense'"),
    (["--plugin", "partial-bce", "--profile", "gpu-monster"], "has no profile 'gpu-monster'"),
    (["--plugin", "partial-bce", "--backbone", "vgg"], "unknown backbone 'vgg'"),
    (["--plugin", "partial-bce", "--shard", "3/2"], "--shard 3/2"),
])
def test_bad_input_is_one_line_and_exit_2(cli, tmp_path, args, message):
    res = cli("run", *args, "--output", tmp_path / "out", "--no-progress")
    assert res.exit_code == 2
    assert message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not any((tmp_path / "out").glob("*/record.json"))


def test_unwritable_output_directory_is_refused(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    res = cli("run", "--plugin", "partial-bce", "--output", blocker / "runs", "--no-progress")
    assert res.exit_code == 2
    assert "not a writable directory" in res.stderr
    assert blocker.read_text() == "not a directory"


def test_run_help_shows_numeric_options_with_their_type(cli):
    """Issue 20.8: the train flags' values stay text for the schema layer, but help names their type."""
    import re

    help_text = cli("run", "--help").output
    for flag, kind in (("--epochs", "INTEGER"), ("--batch-size", "INTEGER"), ("--lr", "FLOAT"),
                       ("--val-fraction", "FLOAT"), ("--image-size", "INTEGER"), ("--backbone", "TEXT")):
        assert re.search(rf"{flag} {kind}\b", help_text), flag
    assert "--precision [auto|fp32|bf16|fp16]" in help_text
    assert cli("run", "--plugin", "partial-bce", "--epochs", "two").exit_code == 2  # still the schema's one line


def test_an_empty_shard_still_checks_the_device(cli, tmp_path):
    """A shard with no runs checks the whole configuration, the device included, before saying so
    (found by the property test: ``--shard 1/3 --known 0.5 --device no-such-device`` exited 0)."""
    res = cli("run", "--plugin", "partial-bce", "--shard", "1/3", "--known", "0.5", "--device", "no-such-device",
              "--output", tmp_path / "out")
    assert res.exit_code == 2 and "--device 'no-such-device' is not a device" in res.stderr
    res = cli("run", "--plugin", "partial-bce", "--shard", "1/3", "--known", "0.5", "--device", "cpu",
              "--output", tmp_path / "out")
    assert res.exit_code == 0 and "nothing to run: shard 1/3" in res.output
    assert not (tmp_path / "out").exists()
