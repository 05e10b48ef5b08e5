"""CLI tests for ``mlrpl-bench protocol`` and ``mlrpl-bench evaluate`` (through the real entry point)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlrpl_bench.cli import main
from mlrpl_bench.labels import read_label_file
from mlrpl_bench.metrics import compute_metrics
from mlrpl_bench.protocol import fingerprint_array, make_partial_labels


def run(capsys, *argv):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    code = 0
    try:
        main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_error(result, *fragments):
    code, out, err = result
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture
def full_labels(tmp_path):
    rng = np.random.default_rng(0)
    full = np.where(rng.random((40, 5)) < 0.3, 1, -1).astype(np.int8)
    path = tmp_path / "full.npy"
    np.save(path, full)
    return full, path


# --------------------------------------------------------------------------- protocol


@pytest.mark.parametrize("out_name", ["partial.npy", "partial.txt"])
def test_protocol_writes_the_mask_and_prints_one_line(capsys, tmp_path, full_labels, out_name):
    full, path = full_labels
    out = tmp_path / out_name
    code, stdout, err = run(capsys, "protocol", "--labels", str(path), "--out", str(out), "--setting", "pal",
                            "--known", "0.3", "--seed", "0", "--scheme", "hcp")
    assert code == 0, err
    written = read_label_file(out)
    expected = make_partial_labels(full, "pal", 0.3, 0, scheme="hcp")
    assert np.array_equal(written, expected)
    lines = stdout.strip().splitlines()
    assert len(lines) == 1
    assert fingerprint_array(expected) in lines[0]
    assert f"{(expected != 0).mean():.1%} known" in lines[0]
    no_label = int((expected == 0).all(axis=1).sum())
    assert f"{no_label}/40 images" in lines[0]


def test_protocol_reads_text_and_uses_the_key(capsys, tmp_path, full_labels):
    full, _ = full_labels
    src = tmp_path / "full.csv"
    np.savetxt(src, full, fmt="%d", delimiter=",")
    outs = []
    for key in ("a", "b"):
        out = tmp_path / f"{key}.npy"
        code, _, err = run(capsys, "protocol", "--labels", str(src), "--out", str(out), "--setting", "ppl", "--known", "0.5", "--key", key)
        assert code == 0, err
        outs.append(np.load(out))
    assert np.array_equal(outs[0], make_partial_labels(full, "ppl", 0.5, 0, key="a"))
    assert not np.array_equal(outs[0], outs[1])


def test_protocol_spl_needs_no_known(capsys, tmp_path, full_labels):
    _, path = full_labels
    out = tmp_path / "spl.npy"
    code, _, err = run(capsys, "protocol", "--labels", str(path), "--out", str(out), "--setting", "spl")
    assert code == 0, err
    assert np.all((np.load(out) == 1).sum(axis=1) <= 1)


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["--setting", "partial", "--known", "0.3"], ["unknown setting 'partial'", "full, pal, ppl, spl"]),
        (["--known", "0"], ["--known is '0'", "(0, 1]"]),
        (["--known", "1.5"], ["--known is '1.5'", "(0, 1]"]),
        (["--known", "lots"], ["--known is 'lots'"]),
        (["--seed", "x", "--known", "0.3"], ["--seed 'x'"]),
        (["--scheme", "official", "--known", "0.3"], ["unknown scheme 'official'"]),
        ([], ["--known is required"]),
    ],
)
def test_protocol_bad_options(capsys, tmp_path, full_labels, extra, fragments):
    _, path = full_labels
    out = tmp_path / "out.npy"
    assert_error(run(capsys, "protocol", "--labels", str(path), "--out", str(out), *extra), *fragments)
    assert not out.exists()


def test_protocol_bad_label_files(capsys, tmp_path):
    out = tmp_path / "out.npy"
    bad = tmp_path / "bad.txt"
    bad.write_text("1,-1\n2,1\n")
    assert_error(run(capsys, "protocol", "--labels", str(bad), "--out", str(out), "--known", "0.5"),
                 str(bad), "row 1, column 0", "not allowed")
    flat = tmp_path / "flat.npy"
    np.save(flat, np.ones(4, dtype=np.int8))
    assert_error(run(capsys, "protocol", "--labels", str(flat), "--out", str(out), "--known", "0.5"),
                 str(flat), "2-D", "(4,)")
    missing = tmp_path / "nope.npy"
    assert_error(run(capsys, "protocol", "--labels", str(missing), "--out", str(out), "--known", "0.5"),
                 str(missing), "not found")
    assert not out.exists()


def test_protocol_unwritable_output_leaves_nothing_behind(capsys, tmp_path, full_labels):
    _, path = full_labels
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert_error(run(capsys, "protocol", "--labels", str(path), "--out", str(blocker / "sub" / "out.npy"), "--known", "0.5"),
                 str(blocker), "writable")
    assert_error(run(capsys, "protocol", "--labels", str(path), "--out", str(tmp_path), "--known", "0.5"),
                 str(tmp_path), "writable")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "full.npy"]


def test_protocol_overwrites_atomically(capsys, tmp_path, full_labels):
    full, path = full_labels
    out = tmp_path / "out.npy"
    out.write_bytes(b"old")
    code, _, err = run(capsys, "protocol", "--labels", str(path), "--out", str(out), "--setting", "full")
    assert code == 2 and "already exists; pass --replace to overwrite it" in err and out.read_bytes() == b"old"
    code, _, _ = run(capsys, "protocol", "--labels", str(path), "--out", str(out), "--setting", "full", "--replace")
    assert code == 0 and np.array_equal(np.load(out), full)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.npy", "out.npy"]


# --------------------------------------------------------------------------- evaluate


@pytest.fixture
def predictions(tmp_path):
    rng = np.random.default_rng(1)
    targets = np.where(rng.random((60, 4)) < 0.3, 1, -1).astype(np.int8)
    targets[:, 3] = -1  # a class without positives
    targets[0, 0] = 0   # an entry that is not annotated
    scores = np.round(rng.random((60, 4)), 2)
    np.save(tmp_path / "scores.npy", scores)
    np.save(tmp_path / "targets.npy", targets)
    return scores, targets, tmp_path / "scores.npy", tmp_path / "targets.npy"


def test_evaluate_json_is_one_object_with_every_metric(capsys, predictions):
    scores, targets, s_path, t_path = predictions
    code, out, err = run(capsys, "evaluate", "--scores", str(s_path), "--targets", str(t_path), "--json")
    assert code == 0, err
    data = json.loads(out)
    expected = compute_metrics(scores, targets)
    assert set(data) == set(expected)
    for name in ("mAP", "mAP_noninterp", "OP", "OR", "OF1", "CP", "CR", "CF1", "OP_top3", "CF1_top3"):
        assert data[name] == pytest.approx(expected[name])
    assert data["classes_skipped"] == 1
    assert data["per_class_ap"][3] is None and len(data["per_class_ap"]) == 4
    assert "NaN" not in out


def test_evaluate_text_inputs_threshold_and_table(capsys, tmp_path, predictions):
    scores, targets, _, _ = predictions
    s_txt, t_txt = tmp_path / "scores.csv", tmp_path / "targets.csv"
    np.savetxt(s_txt, scores, delimiter=",")
    np.savetxt(t_txt, targets, fmt="%d", delimiter=",")
    code, out, err = run(capsys, "evaluate", "--scores", str(s_txt), "--targets", str(t_txt), "--threshold", "0.7", "--per-class")
    assert code == 0, err
    m = compute_metrics(scores, targets, threshold=0.7)
    assert f"{m['mAP']:.2f}" in out and f"{m['OF1']:.2f}" in out and f"{m['CF1_top3']:.2f}" in out
    assert "score >= 0.7" in out and "classes evaluated: 3/4" in out
    assert f"{m['per_class_ap'][1]:.2f}" in out


def test_evaluate_bad_inputs(capsys, tmp_path, predictions):
    scores, targets, s_path, t_path = predictions
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, scores[:, :3])
    assert_error(run(capsys, "evaluate", "--scores", str(wrong), "--targets", str(t_path)),
                 "(60, 3)", "(60, 4)", "must match")
    nan_scores = scores.copy()
    nan_scores[5, 2] = np.nan
    nan_path = tmp_path / "nan.npy"
    np.save(nan_path, nan_scores)
    assert_error(run(capsys, "evaluate", "--scores", str(nan_path), "--targets", str(t_path)),
                 str(nan_path), "row 5, column 2", "nan")
    bad_t = tmp_path / "bad_targets.npy"
    bad = targets.copy()
    bad[7, 1] = 2
    np.save(bad_t, bad)
    assert_error(run(capsys, "evaluate", "--scores", str(s_path), "--targets", str(bad_t)), str(bad_t), "row 7, column 1")
    flat = tmp_path / "flat.npy"
    np.save(flat, scores[:, 0])
    assert_error(run(capsys, "evaluate", "--scores", str(flat), "--targets", str(t_path)), str(flat), "2-D")
    assert_error(run(capsys, "evaluate", "--scores", str(tmp_path / "missing.npy"), "--targets", str(t_path)),
                 "missing.npy", "not found")
    garbage = tmp_path / "garbage.csv"
    garbage.write_text("0.1,abc\n")
    assert_error(run(capsys, "evaluate", "--scores", str(garbage), "--targets", str(t_path)), str(garbage), "cannot read")
    assert_error(run(capsys, "evaluate", "--scores", str(s_path), "--targets", str(t_path), "--threshold", "high"), "--threshold 'high'")
    assert_error(run(capsys, "evaluate", "--scores", str(s_path), "--targets", str(t_path), "--top-k", "0"), "top_k")


def test_console_script_and_no_torch_import(tmp_path, full_labels):
    """The real entry point works, and protocol/metrics/their commands never import torch."""
    _, path = full_labels
    code = (
        "import sys\n"
        "from mlrpl_bench.cli import main\n"
        f"main(['protocol', '--labels', {str(path)!r}, '--out', {str(tmp_path / 'o.npy')!r}, '--known', '0.5'])\n"
        "import mlrpl_bench.metrics, mlrpl_bench.protocol, mlrpl_bench.cli.evaluate_cmd\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'sklearn' not in sys.modules, 'sklearn was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "mask sha256" in proc.stdout
    script = Path(sys.executable).with_name("mlrpl-bench")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "mlrpl_bench"]
    bad = subprocess.run([*command, "protocol", "--labels", str(path), "--out", str(tmp_path / "x.npy"), "--known", "2"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --known is '2'")
