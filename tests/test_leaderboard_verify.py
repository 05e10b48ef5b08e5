"""Issue 20: verified rows, the leaderboard's own truth, and the cheats of its "Why" that the
leaderboard side catches (re-execution, rescoring against the dataset's labels, the protocol's
own masks, an all-or-nothing submit under signals)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_SCENES
from record_factory import make_record, write_record_file

from mlrpl_bench import verification as V
from mlrpl_bench.cli import main
from mlrpl_bench.data.builtin import DigitScenes, private_draw, private_draw_id
from mlrpl_bench.errors import BenchError
from mlrpl_bench.leaderboard import submit as submit_mod
from mlrpl_bench.leaderboard.build import build_leaderboard
from mlrpl_bench.leaderboard.submit import SubmissionRefused, submit_records
from mlrpl_bench.leaderboard.truth import implausibility, shared_masks
from mlrpl_bench.metrics import compute_metrics

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CELLS = [(0.5, 0), (0.5, 1), (0.9, 0)]


def _invoke(capsys, *args) -> tuple[int, str, str]:
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Three tiny real runs of partial-bce (2 epochs): known 0.5 seeds 0 and 1, known 0.9 seed 0."""
    out = tmp_path_factory.mktemp("runs")
    for known, seed in ((0.5, "0,1"), (0.9, "0")):
        try:
            main(["run", "--plugin", "partial-bce", "--epochs", "2", "--known", str(known), "--seeds", seed, "--jobs", "1",
                  *TINY_SCENES, "--output", str(out)])
        except SystemExit as exc:
            assert not exc.code, exc
    return out


def _run_dir(runs: Path, known: float, seed: int) -> Path:
    return runs / f"partial-bce__digit-scenes__pal__{known:g}__seed{seed}"


@pytest.fixture
def copy_of(runs, tmp_path):
    """A private copy of one run folder (record, scores, log) to edit."""
    def make(known: float = 0.5, seed: int = 0) -> Path:
        target = tmp_path / "edited" / _run_dir(runs, known, seed).name
        shutil.copytree(_run_dir(runs, known, seed), target)
        return target / "record.json"
    return make


def _edit(path: Path, change) -> dict:
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))
    return record


def _rewrite_scores(record_path: Path, scores=None, targets=None) -> None:
    """Replace the arrays of a run's scores file and give the record the new file's sha256 (as a cheat would)."""
    file = record_path.parent / "test_scores.npz"
    with np.load(file) as npz:
        s, t = npz["scores"], npz["targets"]
    buf = io.BytesIO()
    np.savez_compressed(buf, scores=s if scores is None else scores.astype(s.dtype),
                        targets=t if targets is None else targets.astype(np.int8))
    file.write_bytes(buf.getvalue())
    _edit(record_path, lambda r: r["scores_file"].update(sha256=hashlib.sha256(buf.getvalue()).hexdigest()))


# --------------------------------------------------------------------------- what a record carries


def test_records_name_the_method_source_and_the_test_draw(runs):
    record = json.loads((_run_dir(runs, 0.5, 0) / "record.json").read_text())
    from mlrpl_bench.plugins import partial_bce

    assert record["method"]["source_sha256"] == hashlib.sha256(Path(partial_bce.__file__).read_bytes()).hexdigest()
    assert record["method"]["distribution"] == "mlrpl-bench" and record["method"]["distribution_version"]
    assert record["dataset"]["test_draw"] == "public"
    assert V.record_threads(record) == 1 and V.is_exact(record)


# --------------------------------------------------------------------------- verify (Why 1)


def test_verify_reproduces_a_record_bit_for_bit(runs, capsys):
    code, out, err = _invoke(capsys, "leaderboard", "verify", _run_dir(runs, 0.5, 0) / "record.json")
    assert code == 0, out + err
    assert "reproduced (bit for bit)" in out and "1 of 1 record(s) reproduced" in err


def test_verify_names_the_metric_and_both_values_of_a_tampered_record(copy_of, capsys):
    path = copy_of()
    filed = json.loads(path.read_text())["metrics"]["test"]["mAP"]
    _edit(path, lambda r: r["metrics"]["test"].update(mAP=filed + 1.0))
    code, out, _ = _invoke(capsys, "leaderboard", "verify", path)
    assert code == 1
    (line,) = [ln for ln in out.splitlines() if ln.startswith("differs:")]
    assert f"test mAP: filed {filed + 1.0!r}, re-executed {filed!r}" in line


def test_another_runs_scores_under_a_record_are_caught(copy_of, runs, capsys):
    """Why 2: seed 1's scores under seed 0's record, metrics recomputed to match: consistent with the
    dataset's labels, so only re-execution can tell; without recomputed metrics submit refuses it."""
    path = copy_of(0.5, 0)
    other = _run_dir(runs, 0.5, 1)
    with np.load(other / "test_scores.npz") as npz:
        scores = npz["scores"].astype(np.float32)
    _rewrite_scores(path, scores=scores)
    with pytest.raises(SubmissionRefused, match="saved scores give test mAP .* but the record says"):
        submit_records([path], path.parent.parent / "results")
    labels = DigitScenes(None, DigitScenes.Options(train_size=60, test_size=30)).load_split("test").labels
    metrics = compute_metrics(scores, labels)

    def recompute(r):
        r["metrics"]["test"].update({k: metrics[k] for k in r["metrics"]["test"] if k in metrics})
        r["per_class_ap"]["test"] = metrics["per_class_ap"]
    _edit(path, recompute)
    (filed,) = submit_records([path], path.parent.parent / "results")  # consistent: the leaderboard cannot tell
    code, out, _ = _invoke(capsys, "leaderboard", "verify", filed.target)
    assert code == 1 and "differs:" in out and "test mAP: filed" in out


def test_sample_verifies_a_seeded_subset(runs, capsys):
    code, out, err = _invoke(capsys, "leaderboard", "verify", runs, "--sample", "1", "--sample-seed", "3")
    assert code == 0, out + err
    assert "verifying 1 of 3 record(s)" in err
    chosen = V.sample_paths(V.record_files([runs]), 1, 3)
    assert f"{chosen[0]}" in out
    assert V.sample_paths(list(range(10)), 4, 7) == V.sample_paths(list(range(10)), 4, 7)


def test_a_record_of_a_dataset_not_available_here_gets_one_line(tmp_path, capsys):
    path = write_record_file(tmp_path, make_record(dataset="voc2007"))
    code, out, _ = _invoke(capsys, "leaderboard", "verify", path)
    assert code == 1
    assert out.strip() == (f"not verified: {path}: dataset 'voc2007' is not available here (it needs --data-root); "
                           "not re-executed")


def test_a_record_of_another_method_version_is_not_re_executed(copy_of, capsys):
    path = copy_of()
    _edit(path, lambda r: r["method"].update(version="0.9", source_sha256="0" * 64))
    code, out, _ = _invoke(capsys, "leaderboard", "verify", path)
    assert code == 1
    assert "method 'partial-bce' version 0.9 made the record, 1.0 is installed" in out
    assert "method.source_sha256 is 0000000000000000 in the record" in out
    assert "re-executed" not in out


def test_another_source_file_of_the_same_version_is_re_executed_and_noted(copy_of, capsys):
    path = copy_of()
    _edit(path, lambda r: r["method"].update(source_sha256="0" * 64))
    code, out, _ = _invoke(capsys, "leaderboard", "verify", path)
    assert code == 0
    (line,) = [ln for ln in out.splitlines() if ln.startswith("reproduced")]
    assert "note: method.source_sha256 is 0000000000000000 in the record" in line


# --------------------------------------------------------------------------- stamp and the page (Why 2)


def test_stamp_marks_the_row_verified_and_an_edit_unmarks_it(runs, tmp_path, capsys, monkeypatch):
    results = tmp_path / "results"
    filed = submit_records([_run_dir(runs, 0.5, 0), _run_dir(runs, 0.5, 1)], results)
    monkeypatch.setenv(V.RUNNER_ENV, "ci-runner")
    code, out, err = _invoke(capsys, "leaderboard", "verify", filed[0].target, "--stamp")
    assert code == 0, out + err
    stamped = json.loads(filed[0].target.read_text())
    block = stamped["verification"]
    assert block["runner"] == "ci-runner" and block["code_version"] == "test" and block["exact"] is True
    assert V.is_verified(stamped)
    # re-submitting the same record leaves the stamp alone
    assert [f.status for f in submit_records([_run_dir(runs, 0.5, 0)], results)] == ["unchanged"]
    assert V.is_verified(json.loads(filed[0].target.read_text()))
    result = build_leaderboard(results, tmp_path / "site")
    (row,) = result.tables[0].rows
    assert row.kind == "partly verified" and row.verified_runs == 1
    md = (tmp_path / "site" / "leaderboard.md").read_text()
    assert "(1/2 runs verified)" in md and "verified: every run of the row" in md
    assert "1/2 verified" in (tmp_path / "site" / "index.html").read_text()
    _invoke(capsys, "leaderboard", "verify", filed[1].target, "--stamp")
    result = build_leaderboard(results, tmp_path / "site")
    assert result.tables[0].rows[0].kind == "verified"
    assert "partial-bce (baseline) ✔ verified" in (tmp_path / "site" / "leaderboard.md").read_text()
    assert ",verified,2," in (tmp_path / "site" / "leaderboard.csv").read_text()
    edited = dict(stamped, metrics={**stamped["metrics"], "val": {**stamped["metrics"]["val"], "mAP": 1.0}})
    assert not V.is_verified(edited)  # the block names the content it verified


def test_a_submitted_verification_block_is_dropped(copy_of, tmp_path):
    path = copy_of()
    _edit(path, lambda r: r.update(verification={"result": "reproduced", "record_sha256": V.content_sha256(r)}))
    (filed,) = submit_records([path], tmp_path / "results")
    assert "verification" not in json.loads(filed.target.read_text())
    assert any("block was dropped" in w for w in filed.warnings)


def test_rows_compare_kinds_are_named(tmp_path):
    base = make_record("partial-bce", seed=0), make_record("partial-bce", seed=1)
    other = make_record("hst", seed=0, mAP=81.0), make_record("hst", seed=1, mAP=82.0)
    for i, rec in enumerate([*base, *other]):
        write_record_file(tmp_path / "r", rec, f"r{i}.json")
    result = build_leaderboard(tmp_path / "r", tmp_path / "site")
    row = next(r for r in result.tables[0].rows if r.method == "hst")
    assert row.compared_kinds == "self-reported vs self-reported"
    md = (tmp_path / "site" / "leaderboard.md").read_text()
    assert any(line.startswith("| hst |") and "| self-reported vs self-reported |" in line for line in md.splitlines())


# --------------------------------------------------------------------------- the private draw (20.4)


def test_the_private_draw_keeps_the_training_split_and_hides_its_seed(session_cache):
    options = DigitScenes.Options(train_size=20, test_size=10)
    public = DigitScenes(None, options)
    private = private_draw(123456789)(None, options)
    assert private.test_draw == private_draw_id(123456789) and "123456789" not in private.test_draw
    assert private.load_split("train").fingerprint() == public.load_split("train").fingerprint()
    assert not np.array_equal(private.load_split("test").labels, public.load_split("test").labels)
    assert "123456789" not in (private.directory / "DONE.json").read_text()
    assert private_draw_id(1) != private_draw_id(2)


def test_verify_scores_a_reproduced_record_on_the_private_draw(runs, tmp_path, capsys, monkeypatch):
    record = _run_dir(runs, 0.5, 0) / "record.json"
    copy = tmp_path / "r" / "record.json"
    shutil.copytree(record.parent, copy.parent)
    (tmp_path / "seed").write_text("987654321\n")
    code, out, err = _invoke(capsys, "leaderboard", "verify", copy, "--stamp", "--private-seed-file", tmp_path / "seed")
    assert code == 0, out + err
    block = json.loads(copy.read_text())["verification"]
    assert block["private"]["draw"] == private_draw_id(987654321)
    public = json.loads(record.read_text())["metrics"]["test"]["mAP"]
    assert block["private"]["test"]["mAP"] != public
    build_leaderboard(tmp_path / "r", tmp_path / "site")  # the page shows both draws of the verified run
    md = (tmp_path / "site" / "leaderboard.md").read_text()
    private = block["private"]["test"]["mAP"]
    (line,) = [ln for ln in md.splitlines() if ln.startswith("| partial-bce |") and "| 1 |" in ln]
    assert line.endswith(f"| 1 | {public:.1f} | {private:.1f} | {private - public:+.1f} |")
    assert "The private test draw (verified runs)" in (tmp_path / "site" / "index.html").read_text()
    monkeypatch.setenv(V.PRIVATE_SEED_ENV, "not-a-number")
    code, _, err = _invoke(capsys, "leaderboard", "verify", copy)
    assert code == 2 and "MLRPL_BENCH_PRIVATE_SEED: expected a non-negative integer" in err


# --------------------------------------------------------------------------- the leaderboard's own truth (20.5)


def test_rewritten_targets_in_the_scores_file_are_refused(copy_of, tmp_path):
    """Why 2: targets rewritten so that the submitted scores rank perfectly (new sha256 in the record)."""
    path = copy_of()
    with np.load(path.parent / "test_scores.npz") as npz:
        scores = npz["scores"].astype(np.float32)
    _rewrite_scores(path, targets=np.where(scores >= 0.5, 1, -1))
    with pytest.raises(SubmissionRefused, match="'targets' array of its scores file is not the dataset's test labels"):
        submit_records([path], tmp_path / "results")


def test_a_record_without_its_scores_is_refused_for_the_builtin_dataset(copy_of, tmp_path):
    """Why 2: 'scores_file' deleted from an edited record."""
    path = copy_of()
    _edit(path, lambda r: r.pop("scores_file"))
    with pytest.raises(SubmissionRefused, match="field 'scores_file' is missing; records of the built-in dataset"):
        submit_records([path], tmp_path / "results")


def test_a_mask_of_another_protocol_is_refused_not_shown_as_other_mask(copy_of, runs, tmp_path):
    path = copy_of(0.5, 0)
    other = json.loads((_run_dir(runs, 0.9, 0) / "record.json").read_text())["protocol"]["mask_fingerprint"]
    _edit(path, lambda r: r["protocol"].update(mask_fingerprint=other))
    with pytest.raises(SubmissionRefused, match=r"'protocol.mask_fingerprint' .* is not the protocol's mask for "
                                                r"\(pal, known 0.5, seed 0, scheme generator\)"):
        submit_records([path], tmp_path / "results")
    results = tmp_path / "filed" / "digit-scenes"  # smuggled into a results tree: build refuses it too
    results.mkdir(parents=True)
    shutil.copy(path, results / "x.json")
    shutil.copy(path.parent / "test_scores.npz", results / "test_scores.npz")
    with pytest.raises(BenchError, match="is not the protocol's mask"):
        build_leaderboard(tmp_path / "filed", tmp_path / "site")


def test_build_refuses_a_record_whose_scores_file_is_missing(runs, tmp_path):
    results = tmp_path / "results"
    (filed,) = submit_records([_run_dir(runs, 0.5, 0)], results)
    filed.scores.unlink()
    with pytest.raises(BenchError, match="cannot read the test scores"):
        build_leaderboard(results, tmp_path / "site")


def test_implausible_records_are_flagged(tmp_path):
    rec = make_record(selection={"metric": "mAP", "best_epoch": 0, "epochs_run": 20, "split": "validation"})
    rec["metrics"]["val"]["mAP"] = 100.0
    assert implausibility(rec) == ["validation mAP 100.0 at its first epoch"]
    assert implausibility(make_record()) == []
    a, b = make_record(known=0.3), make_record(known=0.6, seed=1)
    b["protocol"]["mask_fingerprint"] = a["protocol"]["mask_fingerprint"]
    assert shared_masks([a, b]) == {a["protocol"]["mask_fingerprint"]: [0.3, 0.6]}
    for i, r in enumerate([rec, a, b]):
        write_record_file(tmp_path / "r", r, f"r{i}.json")
    build_leaderboard(tmp_path / "r", tmp_path / "site")
    md = (tmp_path / "site" / "leaderboard.md").read_text()
    assert "implausible: partial-bce__voc2007__pal__0.5__seed0 (r0.json): validation mAP 100.0 at its first epoch" in md
    assert "is filed at several proportions (0.3, 0.6)" in md


# --------------------------------------------------------------------------- submit under signals (20.6)


def _three(runs) -> list[Path]:
    return [_run_dir(runs, k, s) for k, s in CELLS]


def test_ctrl_c_during_submit_files_the_whole_batch_then_stops(runs, tmp_path, monkeypatch):
    """Why 3: Ctrl-C in the middle of a 3-record submit; the interrupt waits for the batch."""
    import os

    real = submit_mod.create_exclusive
    calls = []

    def interrupted(path, data):
        calls.append(path)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return real(path, data)

    monkeypatch.setattr(submit_mod, "create_exclusive", interrupted)
    results = tmp_path / "results"
    with pytest.raises(KeyboardInterrupt):
        submit_records(_three(runs), results)
    records = sorted(p for p in results.rglob("*.json"))
    assert len(records) == 3
    for path in records:
        assert path.with_name(path.stem + ".scores.npz").is_file()  # every record has the scores it names
    build_leaderboard(results, tmp_path / "site")


def test_sigterm_during_submit_is_delivered_after_the_batch(runs, tmp_path, monkeypatch):
    import os

    received = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(len(list(results.rglob("*.json")))))
    real = submit_mod.atomic_write_bytes

    def terminated(path, data):
        if not received and path.suffix == ".npz":
            os.kill(os.getpid(), signal.SIGTERM)
        return real(path, data)

    monkeypatch.setattr(submit_mod, "atomic_write_bytes", terminated)
    results = tmp_path / "results"
    try:
        submit_records(_three(runs), results)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert received == [3]  # delivered once, with the three records filed


def test_a_write_failing_mid_batch_files_nothing(runs, tmp_path, monkeypatch):
    """An interrupt raised inside a write (or a full disk) rolls back every file of the batch, scores included."""
    real = submit_mod.create_exclusive
    calls = []

    def failing(path, data):
        calls.append(path)
        if len(calls) == 3:
            real(path, data)  # the file is written, then the interrupt arrives
            raise KeyboardInterrupt
        return real(path, data)

    monkeypatch.setattr(submit_mod, "create_exclusive", failing)
    results = tmp_path / "results"
    with pytest.raises(KeyboardInterrupt):
        submit_records(_three(runs), results)
    assert [p for p in results.rglob("*") if p.is_file()] == []


def test_results_default_is_not_the_working_folder(monkeypatch, tmp_path):
    monkeypatch.delenv(submit_mod.RESULTS_ENV, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert submit_mod.default_results_dir() == tmp_path / "data" / "mlrpl-bench" / "results"
    monkeypatch.setenv(submit_mod.RESULTS_ENV, str(tmp_path / "mine"))
    assert submit_mod.default_results_dir() == tmp_path / "mine"


def test_a_record_that_cannot_run_is_one_line_and_the_others_go_on(copy_of, runs, capsys):
    path = copy_of()
    _edit(path, lambda r: r["method"]["options"].update(normalization="nonsense"))
    code, out, err = _invoke(capsys, "leaderboard", "verify", path, _run_dir(runs, 0.9, 0) / "record.json")
    assert code == 1
    (line,) = [ln for ln in out.splitlines() if ln.startswith("not verified:")]
    assert "could not be re-executed" in line and "normalization" in line
    assert "1 of 2 record(s) reproduced" in err


def test_a_run_on_a_doctored_protocol_cache_is_refused(runs, tmp_path, capsys):
    """Why 2: the cached `_protocol/*.partial.npy` overwritten with the full labels and its
    fingerprint fixed: the run trains on every label, but its mask is not the protocol's."""
    from mlrpl_bench.protocol import fingerprint_array

    out = tmp_path / "runs"
    shutil.copytree(runs / "_protocol", out / "_protocol")
    (meta_path,) = [p for p in (out / "_protocol").glob("*__pal__0.5__seed0__*.json")]
    labels = DigitScenes(None, DigitScenes.Options(train_size=60, test_size=30)).load_split("train").labels
    np.save(meta_path.with_name(meta_path.name[:-len(".json")] + ".partial.npy"), labels)
    meta = json.loads(meta_path.read_text())
    meta["mask_fingerprint"] = fingerprint_array(labels)
    meta_path.write_text(json.dumps(meta))
    try:
        main(["run", "--plugin", "partial-bce", "--epochs", "1", "--known", "0.5", "--jobs", "1", *TINY_SCENES,
              "--output", str(out)])
    except SystemExit as exc:
        assert not exc.code
    record = out / "partial-bce__digit-scenes__pal__0.5__seed0" / "record.json"
    assert json.loads(record.read_text())["protocol"]["mask_fingerprint"] == fingerprint_array(labels)
    with pytest.raises(SubmissionRefused, match="is not the protocol's mask"):
        submit_records([record], tmp_path / "results")


def test_voc2007_scenes_records_are_scored_against_the_leaderboards_own_labels(tmp_path, session_cache):
    """The other built-in dataset gets the same truth checks: the official VOC label rows are its
    test labels, rewritten targets and another cell's mask are refused."""
    out = tmp_path / "voc_runs"
    for known in ("0.5", "0.9"):
        try:
            main(["run", "--plugin", "partial-bce", "--dataset", "voc2007-scenes", "--epochs", "1", "--known", known,
                  "--seeds", "0", "--jobs", "1", "--no-progress", "--dataset-option", "train_size=80",
                  "--dataset-option", "test_size=40", "--dataset-option", f"cache_dir={session_cache / 'voc-truth'}",
                  "--output", str(out)])
        except SystemExit as exc:
            assert not exc.code, exc
    (half,) = out.glob("partial-bce__voc2007-scenes__pal__0.5__seed0/record.json")
    (most,) = out.glob("partial-bce__voc2007-scenes__pal__0.9__seed0/record.json")
    submit_records([half], tmp_path / "results")  # honest: filed
    edited = tmp_path / "edited"
    shutil.copytree(half.parent, edited)
    path = edited / "record.json"
    with np.load(edited / "test_scores.npz") as npz:
        scores = npz["scores"].astype(np.float32)
    _rewrite_scores(path, targets=np.where(scores >= 0.5, 1, -1))
    with pytest.raises(SubmissionRefused, match="'targets' array of its scores file is not the dataset's test labels"):
        submit_records([path], tmp_path / "results2")
    shutil.copytree(half.parent, tmp_path / "edited2")
    path = tmp_path / "edited2" / "record.json"
    other = json.loads(most.read_text())["protocol"]["mask_fingerprint"]
    _edit(path, lambda r: r["protocol"].update(mask_fingerprint=other))
    with pytest.raises(SubmissionRefused, match="is not the protocol's mask"):
        submit_records([path], tmp_path / "results3")
