"""Regression tests for the hostile inputs a hurried researcher gives (issue 12, part 5): each one
gives one line naming the file/field/value and the fix with exit status 2 (or works, where working
is right), and nothing is lost or half-written. One test per fix; the reproductions listed in the
issue itself are in test_reliability.py."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from record_factory import make_record, write_record_file

from mlrpl_bench.errors import BenchError


def one_line_exit_2(res, *fragments):
    assert res.exit_code == 2, (res.exit_code, res.stderr, res.output)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for fragment in fragments:
        assert fragment in res.stderr, res.stderr


@pytest.fixture
def labels(tmp_path) -> Path:
    path = tmp_path / "full.npy"
    np.save(path, np.where(np.random.default_rng(0).random((20, 5)) < 0.4, 1, -1).astype(np.int8))
    return path


def _config(cli_values=None, file_values=None, **kw):
    from mlrpl_bench.run_config import make_run_config, prepare_run

    return prepare_run(make_run_config({"plugin": "partial-bce", **(cli_values or {})}, file_values, **kw))


# ------------------------------------------------------------------ label and score files


@pytest.mark.parametrize("kind", ["zero-one int8", "zero-one float", "bool"])
def test_protocol_refuses_a_zero_one_matrix_instead_of_dropping_every_negative(cli, tmp_path, labels, kind):
    full = np.load(labels)
    zero_one = (full == 1).astype(np.float32 if "float" in kind else np.int8)
    path = tmp_path / "zero_one.npy"
    np.save(path, zero_one.astype(bool) if kind == "bool" else zero_one)
    res = cli("protocol", "--labels", path, "--out", tmp_path / "p.npy", "--known", "0.5")
    one_line_exit_2(res, f"{path}: no entry is -1", "labels * 2 - 1")
    assert not (tmp_path / "p.npy").exists()


def test_protocol_reads_a_float_plus_minus_one_matrix(cli, tmp_path, labels):
    path = tmp_path / "float.npy"
    np.save(path, np.load(labels).astype(np.float64))
    res = cli("protocol", "--labels", path, "--out", tmp_path / "p.npy", "--known", "0.5")
    assert res.exit_code == 0, res.stderr
    from_int = cli("protocol", "--labels", labels, "--out", tmp_path / "q.npy", "--known", "0.5")
    assert from_int.exit_code == 0
    assert np.array_equal(np.load(tmp_path / "p.npy"), np.load(tmp_path / "q.npy"))


@pytest.mark.parametrize("content, fragment", [
    ("folder", "is a directory"),
    (b"", "the file is empty"),
    (b"\n\n", "holds no numbers"),
])
def test_protocol_says_what_is_wrong_with_the_labels_file(cli, tmp_path, content, fragment):
    path = tmp_path / "labels.txt"
    if content == "folder":
        path.mkdir()
    else:
        path.write_bytes(content)
    res = cli("protocol", "--labels", path, "--out", tmp_path / "p.npy", "--known", "0.5")
    one_line_exit_2(res, str(path), fragment)  # and no numpy warning lines


@pytest.mark.parametrize("make, fragment", [
    (lambda path, full: np.savez(path.with_suffix(".npz"), labels=full), "an .npz archive holds several arrays"),
    (lambda path, full: path.with_suffix(".npy").write_text("1,-1\n-1,1\n"), "not a .npy file (no NumPy header)"),
    (lambda path, full: path.with_suffix(".csv").write_text("a,b\n1,-1\n"), "no header line"),
])
def test_a_labels_file_in_the_wrong_format_says_which(cli, tmp_path, labels, make, fragment):
    make(tmp_path / "in", np.load(labels))
    (path,) = [p for p in tmp_path.iterdir() if p.stem == "in"]
    res = cli("protocol", "--labels", path, "--out", tmp_path / "p.npy", "--known", "0.5")
    one_line_exit_2(res, str(path), fragment)


def test_an_upper_case_npy_suffix_is_written_and_read_as_npy(cli, tmp_path, labels):
    res = cli("protocol", "--labels", labels, "--out", tmp_path / "P.NPY", "--known", "0.5")
    assert res.exit_code == 0, res.stderr
    assert np.load(tmp_path / "P.NPY").shape == np.load(labels).shape  # was comma-separated text named .NPY


def test_an_unreadable_labels_file_is_one_line(cli, tmp_path, labels, monkeypatch):
    labels.chmod(0)
    if os.geteuid() == 0:  # root reads a chmod-000 file: make the read fail the way it fails for a user

        def denied(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(np, "load", denied)
    res = cli("protocol", "--labels", labels, "--out", tmp_path / "p.npy", "--known", "0.5")
    one_line_exit_2(res, str(labels), "Permission denied", "permissions")


def test_evaluate_keeps_the_ranking_of_large_logits(cli, tmp_path):
    """A sigmoid rounds logits above ~37 to 1.0: 40 and 50 became a tie and AP fell from 83.3 to 66.7."""
    scores = np.array([[40.0, -3.0], [50.0, 2.0], [-1.0, -2.0], [0.2, 0.0]])
    targets = np.array([[-1, -1], [1, 1], [-1, -1], [1, -1]], dtype=np.int8)
    np.save(tmp_path / "s.npy", scores)
    np.save(tmp_path / "t.npy", targets)
    res = cli("evaluate", "--scores", tmp_path / "s.npy", "--targets", tmp_path / "t.npy", "--score-type", "logits",
              "--json")
    assert res.exit_code == 0 and not res.stderr  # no overflow warning either
    out = json.loads(res.output)
    assert out["per_class_ap"][0] == pytest.approx(100 * (1 + 2 / 3) / 2)
    from mlrpl_bench.metrics import compute_metrics

    probabilities = compute_metrics(1 / (1 + np.exp(-scores)), targets, threshold=0.5)
    assert {k: out[k] for k in ("OP", "OR", "CP", "CR")} == {k: probabilities[k] for k in ("OP", "OR", "CP", "CR")}


# ------------------------------------------------------------------ one line for click's own errors


@pytest.mark.parametrize("args, fragment", [
    (["run", "--plugin", "partial-bce", "--data-root", "{file}"], "Directory '{file}' is a file"),
    (["run", "--epoch", "3"], "Did you mean '--epochs'"),
    (["leaderboard", "export", "--format", "xlsx", "--out", "x"], "'xlsx' is not one of"),
    (["protocol", "--out", "x.npy"], "Missing option '--labels'"),
    (["nosuch"], "No such command 'nosuch'"),
])
def test_usage_errors_are_one_line(cli, labels, args, fragment):
    args = [a.format(file=labels) for a in args]
    res = cli(*args)
    one_line_exit_2(res, fragment.format(file=labels), "--help")


@pytest.mark.parametrize("args", [[], ["leaderboard"]])
def test_a_command_group_alone_prints_its_help(cli, args):
    res = cli(*args)
    assert res.exit_code == 0 and res.output.startswith("Usage: mlrpl-bench") and not res.stderr


def test_a_shard_without_runs_says_so(cli, tmp_path):
    res = cli("run", "--plugin", "partial-bce", "--known", "0.5", "--shard", "1/2", "--output", tmp_path / "runs")
    assert res.exit_code == 0 and "nothing to run: shard 1/2 of a sweep of 1 run(s)" in res.output
    assert not (tmp_path / "runs").exists()


def test_ctrl_c_says_what_is_kept_and_how_to_resume(cli, monkeypatch):
    import mlrpl_bench.runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mlrpl_bench.runner, "run_sweep", interrupted)
    res = cli("run", "--plugin", "partial-bce")
    assert res.exit_code == 130
    assert len(res.stderr.strip().splitlines()) == 1 and "interrupted" in res.stderr and "--resume" in res.stderr


# ------------------------------------------------------------------ run options and config files


@pytest.mark.parametrize("values, fragments", [
    ({"known": "0.1,0.1"}, ["--known 0.1,0.1", "lists 0.1 twice"]),
    ({"known": "0.1,0.1000001"}, ["= 0.1 to 6 decimals"]),
    ({"known": "0.0000001"}, ["smallest known-label proportion is 1e-06"]),
    ({"seeds": "0,0"}, ["--seeds 0,0", "lists 0 twice"]),
    ({"seeds": "0-4"}, ["--seeds 0-4", "no ranges"]),
    ({"train": {"epochs": "0-4"}}, ["--epochs 0-4", "'0-4' is not an integer"]),
    ({"train": {"workers": "00-1"}}, ["--workers 00-1", "not an integer"]),
    ({"train": {"batch_size": "1000000000000000000000000000000"}}, ["--batch-size", "does not fit in 64 bits"]),
    ({"train": {"image_size": "100000"}}, ["--image-size 100000", "less than or equal to 4096"]),
    ({"tune_metric": "bogus"}, ["--tune-metric bogus", "'mAP'"]),
    ({"shard": "1/0"}, ["--shard 1/0"]),
    ({"known": "a\nb"}, ["--known 'a\\nb'"]),
])
def test_bad_run_options_are_refused_before_anything_runs(values, fragments):
    with pytest.raises(BenchError) as info:
        _config(values)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_a_refused_tune_metric_trains_nothing(cli, tmp_path):
    res = cli("run", "--plugin", "partial-bce", "--tune", "lr=1e-3,1e-2", "--tune-metric", "bogus", "--output",
              tmp_path / "runs")
    one_line_exit_2(res, "--tune-metric bogus")
    assert not (tmp_path / "runs").exists()


def test_tuning_candidates_never_share_a_directory():
    from mlrpl_bench.tuning import candidate_name

    assert candidate_name({"lr_gamma": 1e16}) != candidate_name({"lr_gamma": 1e-16})  # "1e+16" made safe is "1e-16"
    assert candidate_name({"lr": 0.001, "weight_decay": 0}) == "lr-0.001_weight_decay-0"  # plain names unchanged


@pytest.mark.parametrize("name, content, fragments", [
    ("run.json", b'{"plugin": "partial-bce", \xff}', ["not UTF-8 text", "save the file as UTF-8"]),
    ("run.yaml", b"plugin: partial-bce\n", ["config files are JSON or TOML"]),
    ("run.toml", b'plugin = "partial-bce"\n[train]\nepochs = 2021-01-01\n', ["train.epochs=datetime.date(2021, 1, 1)"]),
    ("run.json", b'{"tune": {"lr": 0.001}}', ["tune.lr=0.001", "valid array"]),
    ("run.json", b'{"method_options": {"gamma": NaN}}', ["method_options.gamma", "NaN"]),
    ("run.json", b'{"train": {"batch_size": 1000000000000000000000000000000}}', ["batch_size", "64 bits"]),
    ("run.json", b'{"seeds": [0, 0]}', ["seeds", "lists 0 twice"]),
])
def test_config_file_mistakes_are_one_line(cli, tmp_path, name, content, fragments):
    path = tmp_path / name
    path.write_bytes(content)
    res = cli("run", "--plugin", "partial-bce", "--config", path, "--output", tmp_path / "runs")
    one_line_exit_2(res, *fragments)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, flag", [
    (["protocol", "--labels", "{labels}", "--out", "", "--known", "0.5"], "--out"),
    (["evaluate", "--scores", "", "--targets", "{labels}"], "--scores"),
    (["leaderboard", "build", "--results", "{tmp}", "--out", ""], "--out"),
    (["leaderboard", "submit", "{labels}", "--results", ""], "--results"),
    (["leaderboard", "export", "--format", "csv", "--out", ""], "--out"),
    (["new-plugin", "my-thing", "--dir", ""], "--dir"),
    (["datasets", "labels", "digit-scenes", "--split", "test", "--out", ""], "--out"),
    (["run", "--plugin", "partial-bce", "--output", ""], "--output"),
    (["run", "--plugin", "partial-bce", "--config", ""], "--config"),
])
def test_an_empty_path_is_refused_instead_of_meaning_the_current_folder(cli, tmp_path, labels, monkeypatch, args,
                                                                        flag):
    """``--out "$OUT"`` with OUT unset: the build, the export, a submit or a sweep went into the current
    folder, ``--config ""`` ran the default sweep, ``datasets labels --out ""`` was a traceback."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    res = cli(*[a.format(labels=labels, tmp=tmp_path) for a in args])
    one_line_exit_2(res, flag, "empty path")
    assert not list(work.iterdir())


def test_config_files_with_a_byte_order_mark_or_a_shard_text_are_read(tmp_path):
    from mlrpl_bench.run_config import read_config_file

    path = tmp_path / "run.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"plugin": "partial-bce", "shard": "1/2", "seeds": [0, 1]}).encode())
    prepared = _config({}, read_config_file(path), file_name=str(path))
    assert prepared.config.shard == (1, 2) and prepared.config.planned_runs() == [(k, s) for k, s in
                                                                                 [(k, s) for k in prepared.config.known
                                                                                  for s in (0, 1)]][1::2]
    toml = tmp_path / "run.toml"
    toml.write_bytes(b'\xef\xbb\xbfplugin = "partial-bce"\nshard = "0/3"\n')
    assert _config({}, read_config_file(toml), file_name=str(toml)).config.shard == (0, 3)


def test_declared_dataset_options_replace_the_hand_checks():
    from mlrpl_bench.data.builtin import DigitScenes
    from mlrpl_bench.data.folder import FolderDataset
    from mlrpl_bench.schema import SchemaError, describe_field

    with pytest.raises(SchemaError, match=r"train_size=0 .*greater than or equal to 1"):
        DigitScenes(None, DigitScenes.Options(train_size=0))
    with pytest.raises(SchemaError, match=r"test_fraction=1.0"):
        FolderDataset("x", FolderDataset.Options(test_fraction=1.0))
    assert describe_field(DigitScenes.Options, "image_size") == ">= 16, <= 512"
    with pytest.raises(BenchError, match=r"seed='-1'"):
        _config({"dataset_options": {"seed": "-1"}})


# ------------------------------------------------------------------ files the leaderboard reads and writes


def test_submit_of_one_bad_record_prints_one_line(cli, tmp_path):
    bad = write_record_file(tmp_path / "in", make_record(protocol={"known": 1.5}))
    res = cli("leaderboard", "submit", bad, "--results", tmp_path / "results")
    one_line_exit_2(res, "protocol.known")


def test_a_nan_written_into_a_record_is_named_by_its_field(cli, tmp_path):
    record = make_record(options={"beta": 1.0})
    path = tmp_path / "r.json"
    path.write_text(json.dumps(record).replace('"beta": 1.0', '"beta": NaN'))
    res = cli("leaderboard", "submit", path, "--results", tmp_path / "results")
    one_line_exit_2(res, "field 'method.options.beta' is NaN")


def test_build_reads_records_strictly_and_names_unreadable_files(cli, tmp_path, monkeypatch):
    results = tmp_path / "results"
    write_record_file(results, make_record(known=0.3))
    (results / "folder.json").mkdir()  # a folder named like a record holds none: skipped
    res = cli("leaderboard", "build", "--results", results, "--out", tmp_path / "site")
    assert res.exit_code == 0, res.stderr
    nan = make_record(known=0.5, options={"beta": 1.0})
    (results / "nan.json").write_text(json.dumps(nan).replace('"beta": 1.0', '"beta": NaN'))
    res = cli("leaderboard", "build", "--results", results, "--out", tmp_path / "site")
    one_line_exit_2(res, "nan.json", "method.options.beta")
    (results / "nan.json").unlink()
    locked = next(p for p in results.glob("*.json") if p.is_file())
    from mlrpl_bench import schema

    real = schema.read_bounded

    def read_bounded(path, limit):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied")
        return real(path, limit)

    monkeypatch.setattr(schema, "read_bounded", read_bounded)
    res = cli("leaderboard", "export", "--results", results, "--format", "csv", "--out", tmp_path / "export")
    one_line_exit_2(res, str(locked), "Permission denied")


@pytest.mark.parametrize("command", [
    ["leaderboard", "export", "--format", "csv", "--out", "{file}/export"],
    ["leaderboard", "build", "--out", "{file}/site"],
    ["protocol", "--labels", "{labels}", "--known", "0.5", "--out", "{file}/p.npy"],
])
def test_an_output_below_a_file_says_the_file_is_in_the_way(cli, tmp_path, labels, command):
    results = tmp_path / "results"
    write_record_file(results, make_record())
    blocker = tmp_path / "notes.txt"
    blocker.write_text("x")
    args = [a.format(file=blocker, labels=labels) for a in command]
    if args[0] == "leaderboard":
        args += ["--results", str(results)]
    res = cli(*args)
    one_line_exit_2(res, f"{blocker} is a file, not a folder")
    assert blocker.read_text() == "x"


# ------------------------------------------------------------------ contributor kit


@pytest.mark.parametrize("source, fragments", [
    ("def broken(:\n", ["line 1", "invalid syntax", "fix the module's syntax"]),
    ("raise RuntimeError('boom')\n", ["raised RuntimeError: boom", ".py:1", "for the traceback"]),
])
def test_check_plugin_on_a_module_that_fails_to_import(cli, tmp_path, monkeypatch, source, fragments):
    name = f"hostile_{abs(hash(source)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, name, raising=False)
    res = cli("check-plugin", f"{name}:Method")
    one_line_exit_2(res, *fragments)


# ------------------------------------------------------------------ runs: one writer per run, damaged files


def _hold_lock(path, ready):
    from mlrpl_bench.atomic import exclusive_lock

    with exclusive_lock(path, what="the run", fix="wait"):
        ready.set()
        time.sleep(120)  # killed by the test


def _lock_holder(path):
    """A process holding the lock at ``path`` until it is killed (a run in progress)."""
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(path, ready), daemon=True)
    holder.start()
    assert ready.wait(30)
    return holder


def test_a_run_directory_has_one_writer_and_a_killed_holder_frees_it(tmp_path):
    from mlrpl_bench.atomic import Busy, exclusive_lock

    lock = tmp_path / ".run.lock"
    holder = _lock_holder(lock)
    try:
        with pytest.raises(Busy, match=rf"in use by another process \(pid {holder.pid} on .*\); wait"):
            with exclusive_lock(lock, what="the run", fix="wait"):
                pass
    finally:
        holder.kill()  # a crashed run leaves no stale lock behind
        holder.join(30)
    with exclusive_lock(lock, what="the run", fix="wait"):
        assert lock.read_text().startswith(f"pid {os.getpid()} ")
    assert not lock.exists()


def test_a_second_run_into_the_same_run_directory_is_refused_at_once(cli, tmp_path):
    """Two runs of one cell into one output would both write its checkpoint, epoch log and scores."""
    from conftest import TINY_SCENES

    out = tmp_path / "runs"
    holder = _lock_holder(out / ".partial-bce__digit-scenes__pal__0.5__seed0.lock")
    try:
        res = cli("run", "--plugin", "partial-bce", "--known", "0.5", "--epochs", "1", "--output", out, *TINY_SCENES)
        one_line_exit_2(res, "partial-bce__digit-scenes__pal__0.5__seed0: in use by another process",
                        "choose another --output")
        assert not (out / "partial-bce__digit-scenes__pal__0.5__seed0").exists()
    finally:
        holder.kill()
        holder.join(30)


def test_a_record_filed_meanwhile_names_the_run_flag(tmp_path):
    from mlrpl_bench.single_run import file_record

    record = make_record()
    path = tmp_path / "record.json"
    file_record(record, path, overwrite=False)
    with pytest.raises(BenchError, match=r"pass --overwrite to replace it") as info:
        file_record(make_record(mAP=10.0), path, overwrite=False)
    assert "--replace" not in str(info.value)
    assert json.loads(path.read_text())["metrics"]["test"]["mAP"] == 80.0


def test_a_damaged_record_in_the_output_names_the_fix(tmp_path):
    from mlrpl_bench.single_run import existing_record
    from mlrpl_bench.distributed import DistInfo

    path = tmp_path / "record.json"
    path.write_text('{"oops":')
    with pytest.raises(BenchError, match=r"record.json: not valid JSON .*pass --overwrite to run it again"):
        existing_record(_config(), path, "run", dist=DistInfo(), log=print)


def test_a_record_of_another_configuration_names_what_differs(tmp_path):
    """'a record from a different configuration exists' said nothing of what differed."""
    from mlrpl_bench.distributed import DistInfo
    from mlrpl_bench.single_run import existing_record

    import dataclasses

    filed = _config({"train": {"epochs": "5"}})
    record = make_record("partial-bce", "digit-scenes", options=dataclasses.asdict(filed.method_options),
                         train={**dataclasses.asdict(filed.train), "backbone_weights_sha256": filed.weights_sha256})
    record["dataset"]["options"] = filed.dataset_options_dict()
    path = write_record_file(tmp_path, record, "record.json")
    prepared = _config({"train": {"epochs": "5", "lr": "0.02"}})
    with pytest.raises(BenchError, match=r"different configuration exists \(train.lr: 0.01 \(record\) vs 0.02 "
                                         r"\(this run\).*pass --overwrite") as info:
        existing_record(prepared, path, "run", dist=DistInfo(), log=print)
    assert "train.epochs" not in str(info.value)


def test_a_truncated_checkpoint_is_one_short_line(tmp_path):
    import torch

    from mlrpl_bench.checkpoint import load_checkpoint

    path = tmp_path / "checkpoint.pt"
    buf = tmp_path / "full.pt"
    torch.save({"checkpoint_version": 2, "weights": torch.zeros(1000)}, buf)
    path.write_bytes(buf.read_bytes()[:1000])
    with pytest.raises(BenchError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400 and "delete it, or rerun without --resume" in message


@pytest.mark.slow
def test_ctrl_c_in_a_real_run_keeps_whole_files(tmp_path):
    """``--epochs 100000`` then Ctrl-C: exit 130 with one line, a checkpoint, no record, no temp files."""
    from conftest import TINY_SCENES

    script = Path(sys.executable).with_name("mlrpl-bench")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "mlrpl_bench"]
    out = tmp_path / "runs"
    args = ["run", "--plugin", "partial-bce", "--known", "0.5", "--output", str(out), *TINY_SCENES]
    proc = subprocess.Popen([*command, *args, "--epochs", "100000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    log = out / "partial-bce__digit-scenes__pal__0.5__seed0" / "epochs.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and len(err.strip().splitlines()) == 1 and "--resume" in err, err
    run_dir = log.parent
    assert (run_dir / "checkpoint.pt").exists() and not (run_dir / "record.json").exists()
    assert not [p for p in out.rglob("*") if p.name.endswith((".tmp", ".new", ".lock"))]
    for line in log.read_text().splitlines():
        json.loads(line)
