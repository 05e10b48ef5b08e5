"""Regression tests for the reproductions of issue 12 (and 13.1's hcp/full settlement): every bad
input is one line and exit 2, nothing is lost, resume refuses a changed run."""

from __future__ import annotations

import json
import multiprocessing as mp
import os

import numpy as np
import pytest

from conftest import TINY_SCENES
from record_factory import make_record, write_record_file

from mlrpl_bench.errors import BenchError


def _one_line_exit_2(res, *fragments):
    assert res.exit_code == 2, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    for fragment in fragments:
        assert fragment in res.stderr, res.stderr


# ------------------------------------------------------------------ no lost data


@pytest.mark.parametrize("how", ["same", "hardlink", "symlink"])
def test_protocol_refuses_to_overwrite_its_input(cli, tmp_path, how):
    full = tmp_path / "full.npy"
    np.save(full, np.where(np.random.default_rng(0).random((6, 3)) < 0.5, 1, -1).astype(np.int8))
    before = full.read_bytes()
    out = full
    if how == "hardlink":
        out = tmp_path / "alias.npy"
        os.link(full, out)
    elif how == "symlink":
        out = tmp_path / "alias.npy"
        out.symlink_to(full)
    res = cli("protocol", "--labels", full, "--out", out, "--known", "0.5")
    _one_line_exit_2(res, "--out", "same file as --labels")
    assert full.read_bytes() == before


def _submit_one(args):
    path, results, barrier = args
    from mlrpl_bench.leaderboard.submit import submit_records

    barrier.wait()
    try:
        submit_records([path], results)
        return "filed"
    except BenchError as exc:
        return "refused: " + str(exc)


def _submit_worker(path, results, barrier, queue):
    queue.put(_submit_one((path, results, barrier)))


def test_fifty_concurrent_pairs_file_exactly_one_record_each(tmp_path):
    """Two processes filing different records of the same run: exactly one wins, the other is told."""
    ctx = mp.get_context("fork")
    results = tmp_path / "results"
    outcomes = []
    for pair in range(50):
        a = write_record_file(tmp_path / f"in{pair}", make_record(known=0.5, seed=pair, mAP=50.0), "a.json")
        b = write_record_file(tmp_path / f"in{pair}", make_record(known=0.5, seed=pair, mAP=60.0), "b.json")
        barrier, queue = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_submit_worker, args=(p, results, barrier, queue)) for p in (a, b)]
        for p in procs:
            p.start()
        got = sorted(queue.get(timeout=60) for _ in procs)
        for p in procs:
            p.join(timeout=60)
        outcomes.append(got)
    for got in outcomes:
        assert got[0] == "filed", got
        assert got[1].startswith("refused:") and ("already filed" in got[1] or "meanwhile" in got[1]
                                                  or "already holds" in got[1]), got
    filed = list(results.rglob("*.json"))
    assert len(filed) == 50
    assert not [p for p in results.rglob("*") if p.name.endswith((".new", ".tmp"))]


def test_a_collision_names_the_fields_that_differ(cli, tmp_path):
    results = tmp_path / "results"
    eight = write_record_file(tmp_path / "a", make_record(train={"epochs": 8}))
    two = write_record_file(tmp_path / "b", make_record(train={"epochs": 2}))
    assert cli("leaderboard", "submit", eight, "--results", results).exit_code == 0
    res = cli("leaderboard", "submit", two, "--results", results)
    assert res.exit_code == 2
    assert "train.epochs: 8 (filed) vs 2 (new)" in res.stderr


def test_submit_refuses_non_json_numbers_and_out_of_range_seeds(cli, tmp_path):
    record = make_record(options={"beta": 1.0})
    text = json.dumps(record).replace('"beta": 1.0', '"beta": Infinity')
    path = tmp_path / "inf.json"
    path.write_text(text)
    res = cli("leaderboard", "submit", path, "--results", tmp_path / "r")
    assert res.exit_code == 2 and "Infinity" in res.stderr
    bad_seed = write_record_file(tmp_path / "s", make_record(protocol={"seed": -5}))
    res = cli("leaderboard", "submit", bad_seed, "--results", tmp_path / "r")
    assert res.exit_code == 2 and "protocol.seed" in res.stderr and "-5" in res.stderr
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").rglob("*.json"))


def test_submit_takes_a_runs_folder_and_skips_what_is_not_a_record(cli, tmp_path):
    runs = tmp_path / "runs"
    for known in (0.1, 0.3):
        record = make_record(known=known)
        write_record_file(runs / record["run_id"], record, "record.json")
    (runs / "_protocol").mkdir()
    (runs / "_protocol" / "x__pal__0.1__seed0__generator__val0.1.json").write_text('{"format": 1}')
    res = cli("leaderboard", "submit", runs, "--results", tmp_path / "results")
    assert res.exit_code == 0, res.stderr
    assert res.output.count("filed:") == 2 and len(list((tmp_path / "results").rglob("*.json"))) == 2


def test_protocol_cache_files_are_not_records(tmp_path):
    from mlrpl_bench.results import is_record_path

    assert is_record_path(tmp_path / "runs" / "hst__x__pal__0.1__seed0" / "record.json")
    assert not is_record_path(tmp_path / "runs" / "_protocol" / "abc__pal__0.1__seed0__generator__val0.1.json")
    assert not is_record_path(tmp_path / "runs" / "hst__x" / "epochs.jsonl")


# ------------------------------------------------------------------ one line, exit 2


@pytest.mark.parametrize("args, fragments", [
    (["--lr", "-1"], ["--lr -1", "greater than 0"]),
    (["--lr", "nan"], ["--lr nan", "finite"]),
    (["--workers", "-1"], ["--workers -1", "greater than or equal to 0"]),
    (["--image-size", "-3"], ["--image-size -3"]),
    (["--val-fraction", "0"], ["--val-fraction 0", "greater than 0"]),
    (["--epochs", "1.7"], ["--epochs 1.7", "integer"]),
    (["--freeze-backbone", "bogus"], ["--freeze-backbone bogus", "'none', 'official' or 'all'"]),
])
def test_run_refuses_bad_train_settings_in_one_line(cli, tmp_path, args, fragments):
    res = cli("run", "--plugin", "partial-bce", *args, "--output", tmp_path, "--no-progress")
    _one_line_exit_2(res, *fragments)
    assert not list(tmp_path.rglob("record.json"))


@pytest.mark.parametrize("config, fragments", [
    ({"known": 0.5}, ["known=0.5", "array"]),
    ({"plugin": ["partial-bce"]}, ["plugin=['partial-bce']"]),
    ({"train": {"epochs": 1.7}}, ["epochs=1.7"]),
    ({"train": {"epochs": True}}, ["epochs=True"]),
    ({"known": ["abc"]}, ["known"]),
])
def test_config_files_are_read_strictly(cli, tmp_path, config, fragments):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"plugin": "partial-bce", **config}))
    res = cli("run", "--config", path, "--output", tmp_path / "out", "--no-progress")
    _one_line_exit_2(res, *fragments)


def test_check_plugin_with_a_module_that_is_not_a_method(cli):
    res = cli("check-plugin", "os:path")
    _one_line_exit_2(res, "os.path is not a Method subclass")


def test_image_size_zero_means_the_dataset_default():
    from mlrpl_bench.run_config import make_run_config, prepare_run

    prepared = prepare_run(make_run_config({"plugin": "partial-bce", "train": {"image_size": "0"}}))
    assert prepared.train.image_size == prepared.dataset_cls.default_image_size > 0


def test_evaluate_refuses_logits_and_percentages_unless_told(cli, tmp_path):
    targets = np.array([[1, -1], [-1, 1], [1, 1]], dtype=np.int8)
    np.save(tmp_path / "t.npy", targets)
    np.save(tmp_path / "logits.npy", np.array([[280.0, -280.0], [-3.0, 4.0], [1.0, 2.0]]))
    res = cli("evaluate", "--scores", tmp_path / "logits.npy", "--targets", tmp_path / "t.npy")
    _one_line_exit_2(res, "not probabilities in [0, 1]", "--score-type logits")
    res = cli("evaluate", "--scores", tmp_path / "logits.npy", "--targets", tmp_path / "t.npy", "--score-type", "logits",
              "--json")
    assert res.exit_code == 0 and json.loads(res.output)["mAP"] == 100.0


# ------------------------------------------------------------------ resume


def test_resume_with_a_changed_configuration_is_refused(cli, tmp_path):
    out = tmp_path / "out"
    base = ["run", "--plugin", "partial-bce", "--known", "0.5", "--output", out, *TINY_SCENES]
    assert cli(*base, "--epochs", "1").exit_code == 0
    res = cli(*base, "--epochs", "2", "--lr", "0.02", "--resume", "--overwrite")
    _one_line_exit_2(res, "--resume refused", "train.epochs: 1 (checkpoint) vs 2 (this run)", "train.lr")
    # Without --resume, a rerun starts over after saying how to resume instead (a finished run's
    # checkpoint goes with its record, so it is only announced for an interrupted run).
    record = next(out.glob("*/record.json"))
    record.unlink()
    res = cli(*base, "--epochs", "1")
    assert res.exit_code == 0 and "pass --resume to continue it instead" in res.output


def test_run_hooks_learn_whether_the_run_resumed(cli, tmp_path, register_hooks):
    from mlrpl_bench.hookspecs import hookimpl

    seen = []

    @hookimpl
    def mlrpl_run_start(run):
        seen.append(run["resumed"])

    register_hooks("resume-logger", mlrpl_run_start)
    out = tmp_path / "out"
    base = ["run", "--plugin", "partial-bce", "--known", "0.5", "--epochs", "1", "--output", out, *TINY_SCENES]
    assert cli(*base).exit_code == 0
    next(out.glob("*/record.json")).unlink()  # as if interrupted after its last checkpoint
    res = cli(*base, "--resume")
    assert res.exit_code == 0
    assert seen == [False, True]
    assert "partial-bce__digit-scenes__pal__0.5__seed0: resumed from epoch 1 of 1" in res.output + res.stderr


def test_datasets_labels_refuses_to_write_two_outputs_to_one_file(cli, tmp_path):
    out = tmp_path / "labels.txt"
    res = cli("datasets", "labels", "digit-scenes", "--split", "test", "--out", out, "--classes-out", out,
              "-o", "train_size=60", "-o", "test_size=30", "-o", "image_size=32")
    _one_line_exit_2(res, "--classes-out", "would overwrite another output")
    assert not out.exists()


def test_a_changed_weights_file_is_a_new_run(cli, tmp_path):
    import torch

    from mlrpl_bench.models.backbones import SmallCNN

    weights = tmp_path / "w.pt"
    torch.manual_seed(0)
    torch.save(SmallCNN().state_dict(), weights)
    out = tmp_path / "out"
    base = ["run", "--plugin", "partial-bce", "--known", "0.5", "--epochs", "1", "--backbone-weights", weights,
            "--output", out, *TINY_SCENES]
    assert cli(*base).exit_code == 0
    record = json.loads(next(out.glob("*/record.json")).read_text())
    import hashlib

    assert record["train"]["backbone_weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    torch.manual_seed(1)
    torch.save(SmallCNN().state_dict(), weights)  # same path, other weights
    res = cli(*base)
    _one_line_exit_2(res, "a record from a different configuration exists")
    res = cli(*base, "--overwrite", "--resume")  # and its checkpoint is not resumed either
    _one_line_exit_2(res, "--resume refused", "backbone_weights_sha256")


def test_runs_starting_side_by_side_in_one_output_do_not_trip_on_each_others_write_probe(tmp_path):
    """The writability probe of one run must not be removed by another run's probe (both start at
    once in one output: a sweep's shards, two terminals)."""
    from concurrent.futures import ThreadPoolExecutor

    from mlrpl_bench.runner import _check_writable

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: _check_writable(tmp_path / "runs"), range(400)))  # raises on a lost probe
    assert list((tmp_path / "runs").iterdir()) == []  # every probe cleaned up
