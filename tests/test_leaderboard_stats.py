"""The leaderboard's statistics on constructed data whose answer is known: intervals, paired
comparisons with the Benjamini-Hochberg marks, the image bootstrap, the frequency bins."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from record_factory import make_record, scored_record, scored_targets, write_record_file
from scipy import stats as sp

from mlrpl_bench.errors import BenchError
from mlrpl_bench.leaderboard import stats
from mlrpl_bench.leaderboard.aggregate import build_tables
from mlrpl_bench.leaderboard.bootstrap import image_weights, replicate_map
from mlrpl_bench.leaderboard.build import build_leaderboard
from mlrpl_bench.leaderboard.discover import discover
from mlrpl_bench.metrics import average_precision, mean_average_precision

KNOWNS = tuple(round(0.1 * i, 1) for i in range(1, 10))


# --------------------------------------------------------------------------- cells

def test_t_interval_is_the_textbook_one():
    s = stats.estimate([1.0, 2.0, 3.0, 4.0])
    # mean 2.5, s = 1.290994, t(0.975, 3) = 3.182446: half-width 3.182446 * 1.290994 / 2 = 2.054260
    assert s.mean == 2.5 and s.std == pytest.approx(1.290994, abs=1e-6) and s.method == "t"
    assert s.half_width == pytest.approx(2.054260, abs=1e-5) and (s.lo, s.hi) == pytest.approx((0.445740, 4.554260), abs=1e-5)
    assert stats.estimate([5.0, 5.0]).text() == "5.0 ± 0.0"


def test_image_variance_is_added_to_the_seed_variance_with_welch_satterthwaite_df():
    values = [1.0, 2.0, 3.0, 4.0]
    with_images = stats.estimate(values, image_var=0.25)
    # s^2/n = 1.6667/4 = 0.41667; SE^2 = 0.66667; df = 0.66667^2 / (0.41667^2 / 3) = 7.68; t(0.975, 7.68) = 2.32284
    assert stats.welch_df(5 / 12, 0.25, 4) == pytest.approx(7.68, abs=1e-9)
    assert with_images.method == "t+images" and with_images.half_width == pytest.approx(2.32284 * math.sqrt(2 / 3), abs=1e-4)
    # a dominant image variance gives the normal interval; none gives the seeds' t-interval
    assert stats.estimate([5.0, 5.0, 5.0], image_var=4.0).half_width == pytest.approx(1.959964 * 2, abs=1e-5)
    assert stats.estimate(values, image_var=0.0).half_width == pytest.approx(stats.estimate(values).half_width)


# --------------------------------------------------------------------------- paired tests

def test_paired_test_without_scores_is_scipys_paired_t_test():
    a, b = [52.0, 49.0, 55.0, 51.0], [50.0, 48.5, 51.0, 50.0]
    result = stats.paired(a, b)
    expected = sp.ttest_rel(a, b)
    assert result.p == pytest.approx(expected.pvalue) and result.diff == pytest.approx(1.875) and result.n == 4
    assert (result.lo, result.hi) == pytest.approx(tuple(expected.confidence_interval(0.95)))
    assert stats.paired([1.0], [0.0]) is None  # one pair: nothing to test
    assert stats.paired([3.0, 3.0], [3.0, 3.0]).p == 1.0 and stats.paired([4.0, 5.0], [3.0, 4.0]).p == 0.0


def test_paired_test_with_a_zero_image_variance_equals_the_paired_t_test():
    a, b = [52.0, 49.0, 55.0], [50.0, 48.5, 51.0]
    assert stats.paired(a, b, image_var=0.0).p == pytest.approx(sp.ttest_rel(a, b).pvalue)
    # p from t = mean(d) / sqrt(s_d^2/n + v) at the Welch-Satterthwaite df
    d = np.subtract(a, b)
    seed_var = d.var(ddof=1) / 3
    expected = 2 * sp.t.sf(d.mean() / math.sqrt(seed_var + 1.0), stats.welch_df(seed_var, 1.0, 3))
    assert stats.paired(a, b, image_var=1.0).p == pytest.approx(expected) and stats.paired(a, b, image_var=1.0).method == "t+images"


def _constructed(diffs: dict[str, dict[float, list[float]]], seeds=(0, 1, 2)) -> list[dict]:
    """partial-bce at 50 + 10 * known + seed, and each method at that plus its per-seed difference."""
    records = []
    for seed in seeds:
        for known in KNOWNS:
            base = 50 + 10 * known + seed
            records.append(make_record("partial-bce", known=known, seed=seed, mAP=base))
            for method, by_known in diffs.items():
                records.append(make_record(method, known=known, seed=seed, mAP=base + by_known[known][seed]))
    return records


def test_marks_on_records_whose_answer_is_known():
    noisy_cell = [0.064, 0.1, 0.136]   # +0.1 with a raw p of about 0.04 at 30 %
    noisy = {k: (noisy_cell if k == 0.3 else [0.5, -0.3, 0.1]) for k in KNOWNS}
    records = _constructed({
        "plus10": {k: [10.2, 9.9, 10.3] for k in KNOWNS},
        "minus10": {k: [-10.1, -9.8, -10.4] for k in KNOWNS},
        "same": {k: [0.0, 0.0, 0.0] for k in KNOWNS},
        "noisy": noisy,
    })
    (table,) = build_tables(records)
    rows = {r.method: r for r in table.rows}
    assert {rows["plus10"].versus[k].mark for k in [*KNOWNS, "ave"]} == {"better"}
    assert {rows["minus10"].versus[k].mark for k in [*KNOWNS, "ave"]} == {"worse"}
    assert {rows["same"].versus[k].mark for k in [*KNOWNS, "ave"]} == {"tie"} and rows["same"].versus[0.1].p == 1.0
    cell = rows["noisy"].versus[0.3]
    assert 0.03 < cell.p < 0.05 < cell.q and cell.mark == "tie"   # significant alone, a tie after BH
    assert {rows["noisy"].versus[k].mark for k in [*KNOWNS, "ave"]} == {"tie"}
    assert rows["partial-bce"].versus == {} and rows["partial-bce"].is_baseline
    # the q-values are BH over the table's 40 comparisons (4 methods x (9 proportions + Ave.))
    tested = [r.versus[k] for r in table.rows for k in r.versus]
    assert len(tested) == 40
    expected = sp.false_discovery_control([t.p for t in tested], method="bh")
    assert [t.q for t in tested] == pytest.approx(list(expected))


def test_pairs_are_matched_on_seed_and_mask():
    records = _constructed({"m": {k: [5.0, 5.5, 4.5] for k in KNOWNS}})
    other_mask = next(r for r in records if r["method"]["name"] == "m" and r["protocol"]["seed"] == 2
                      and r["protocol"]["known"] == 0.5)
    other_mask["protocol"]["mask_fingerprint"] = "f" * 64   # this run saw other partial labels
    (table,) = build_tables(records)
    main = next(r for r in table.rows if r.method == "m" and not r.deviant_mask)
    assert main.versus[0.5].n == 2 and main.versus[0.1].n == 3
    assert next(r for r in table.rows if r.deviant_mask).versus == {}


def test_another_baseline_can_be_chosen(tmp_path):
    records = _constructed({"m": {k: [5.0, 5.5, 4.5] for k in KNOWNS}})
    (table,) = build_tables(records, baseline="m")
    rows = {r.method: r for r in table.rows}
    assert rows["m"].is_baseline and rows["partial-bce"].versus[0.1].mark == "worse"
    for i, rec in enumerate(records):
        write_record_file(tmp_path / "results", rec, f"{i}.json")
    result = build_leaderboard(tmp_path / "results", tmp_path / "site", baseline="m")
    assert "Paired differences against m" in (tmp_path / "site" / "leaderboard.md").read_text()
    assert result.tables[0].baseline == "m"


# --------------------------------------------------------------------------- the image bootstrap

def test_replicates_with_unit_weights_are_the_harness_map_and_weights_are_repeated_images():
    targets = scored_targets(80, 5)
    rng = np.random.default_rng(3)
    scores = np.round(rng.random(targets.shape) * 0.6 + 0.3 * (targets == 1), 1)  # coarse: many ties
    targets[5, 2] = 0  # an entry that is not annotated is ignored
    ones = np.ones((2, 80), dtype=np.int32)
    assert replicate_map(scores, targets, ones) == pytest.approx([mean_average_precision(scores, targets)] * 2, abs=1e-9)
    weights = image_weights(80, resamples=6, seed=1)
    assert (weights.sum(axis=1) == 80).all()
    for b in range(6):
        rows = np.repeat(np.arange(80), weights[b])
        ap, _, n_pos = average_precision(scores[rows], targets[rows])
        assert replicate_map(scores, targets, weights)[b] == pytest.approx(100 * np.nanmean(ap[n_pos > 0]), abs=1e-9)


def _scored_sweep(root, methods: dict[str, float], knowns=(0.1, 0.5), seeds=(0, 1, 2), **kwargs):
    paths = []
    for method, signal in methods.items():
        for known in knowns:
            for seed in seeds:
                paths.append(scored_record(root / f"{method}_{known}_{seed}", method, known, seed,
                                           signal=signal + known, **kwargs))
    return paths


def test_cells_and_comparisons_use_the_saved_scores_where_every_run_has_them(tmp_path):
    _scored_sweep(tmp_path / "runs", {"partial-bce": 0.5, "strong": 1.2})
    with_scores = build_tables(discover([tmp_path / "runs"]))[0]
    without = build_tables(discover([tmp_path / "runs"]), bootstrap=False)[0]
    strong = next(r for r in with_scores.rows if r.method == "strong")
    plain = next(r for r in without.rows if r.method == "strong")
    cell, plain_cell = strong.cells[0.1]["mAP"], plain.cells[0.1]["mAP"]
    assert cell.method == "t+images" and plain_cell.method == "t" and cell.mean == plain_cell.mean < 95
    assert cell.half_width != pytest.approx(plain_cell.half_width, rel=1e-3)
    assert strong.versus[0.1].method == "t+images" and strong.versus[0.1].p != pytest.approx(plain.versus[0.1].p, rel=1e-3)
    assert with_scores.interval_methods == {"t+images"}
    # one seed's scores file gone: that cell (and the Ave.) fall back to the seeds alone, with a note
    (tmp_path / "runs" / "strong_0.1_2" / "test_scores.npz").unlink()
    table = build_tables(discover([tmp_path / "runs"]))[0]
    strong = next(r for r in table.rows if r.method == "strong")
    assert strong.cells[0.1]["mAP"].method == "t" and strong.cells[0.5]["mAP"].method == "t+images"
    assert strong.average["mAP"].method == "t"
    assert any("1 record(s) name a test-scores file that is not beside them" in n for n in table.notes)


def test_a_scores_file_that_does_not_belong_to_its_record_stops_the_build(tmp_path):
    _scored_sweep(tmp_path / "runs", {"partial-bce": 1.0}, knowns=(0.5,), seeds=(0, 1))
    a, b = tmp_path / "runs" / "partial-bce_0.5_0", tmp_path / "runs" / "partial-bce_0.5_1"
    (a / "test_scores.npz").write_bytes((b / "test_scores.npz").read_bytes())
    with pytest.raises(BenchError, match=r"partial-bce_0.5_0/test_scores.npz: sha256 differs from field 'scores_file.sha256'"):
        build_tables(discover([tmp_path / "runs"]))


# --------------------------------------------------------------------------- frequency bins

def test_frequency_bins_are_thirds_by_rank_of_known_positives():
    counts = [10, 5, 1, 7, 7, 0]
    # ranks: 10 -> 0, 7 (class 3) -> 1, 7 (class 4) -> 2, 5 -> 3, 1 -> 4, 0 -> 5; bin = 3 * rank // 6
    assert stats.frequency_bins(counts).tolist() == [0, 1, 2, 0, 1, 2]
    assert stats.bin_means([90, 50, 10, 70, None, 30], counts) == pytest.approx([80.0, 50.0, 20.0])
    assert stats.frequency_bins([3, 2, 1]).tolist() == [0, 1, 2]
    assert stats.frequency_bins([5] * 20).tolist() == [0] * 7 + [1] * 7 + [2] * 6  # ties by class index


def test_bins_per_method_from_the_record_field():
    counts = [40, 30, 20, 10]
    recs = []
    for seed, shift in ((0, 0.0), (1, 2.0)):
        for known in (0.1, 0.5):
            rec = make_record("m", known=known, seed=seed, mAP=55.0 + shift)
            rec["per_class_ap"]["test"] = [80.0 + shift, 60.0 + shift, 50.0 + shift, 30.0 + shift]
            rec["protocol"]["per_class_known_positives"] = counts
            recs.append(rec)
    (row,) = build_tables(recs)[0].rows
    # C = 4: ranks 0, 1 -> head (3r // 4 = 0), rank 2 -> medium, rank 3 -> tail
    head, medium, tail = row.bins["ave"]
    assert (head.mean, medium.mean, tail.mean) == (71.0, 51.0, 31.0) and head.n == 2
    assert [s.mean for s in row.bins[0.1]] == [71.0, 51.0, 31.0]


def test_bins_from_the_protocol_cache_beside_records_without_the_field(tmp_path):
    from mlrpl_bench.protocol import fingerprint_array

    partial = np.array([[1, -1, 0], [1, 1, -1], [1, 0, 1], [-1, 1, -1], [1, 0, 0]], dtype=np.int8)
    val_idx = np.array([4])   # the validation row's positive does not count
    runs = tmp_path / "runs"
    (runs / "_protocol").mkdir(parents=True)
    np.save(runs / "_protocol" / "cell.partial.npy", partial)
    np.save(runs / "_protocol" / "cell.val_idx.npy", val_idx)
    mask = fingerprint_array(partial)
    (runs / "_protocol" / "cell.json").write_text(json.dumps({"format": 1, "mask_fingerprint": mask,
                                                              "labels_fingerprint": "0" * 64}))
    for seed in (0, 1):
        rec = make_record("m", known=0.5, seed=seed, num_classes=3, mAP=50.0)
        rec["per_class_ap"]["test"] = [70.0, 50.0, 30.0]
        rec["protocol"]["mask_fingerprint"] = mask
        write_record_file(runs / f"r{seed}", rec, "record.json")
    found = discover([runs])
    assert found.protocol_caches == {mask: runs / "_protocol" / "cell.json"}
    (row,) = build_tables(found)[0].rows
    # known positives of rows 0-3: class 0: 3, class 1: 2, class 2: 1 -> head, medium, tail
    assert [s.mean for s in row.bins[0.5]] == [70.0, 50.0, 30.0]
    assert row.runs["per_class_known_positives"].iloc[0] == [3, 2, 1]


def test_the_image_variance_is_the_variance_of_the_seed_mean_over_the_shared_resamples(tmp_path):
    # two seeds with identical scores: the seed spread is 0, so the interval is the normal one on
    # the bootstrap SE of that one score matrix; a method identical to the baseline ties with p = 1
    for method in ("partial-bce", "copy"):
        for seed in (0, 1):
            scored_record(tmp_path / "runs" / f"{method}{seed}", method, 0.5, seed, signal=0.8, noise_seed=11)
    (table,) = build_tables(discover([tmp_path / "runs"]))
    rows = {r.method: r for r in table.rows}
    cell = rows["copy"].cells[0.5]["mAP"]
    with np.load(tmp_path / "runs" / "copy0" / "test_scores.npz") as npz:
        reps = replicate_map(npz["scores"].astype(np.float32), npz["targets"], image_weights(120))
    assert cell.std == 0 and cell.method == "t+images"
    assert cell.half_width == pytest.approx(1.959964 * reps.std(ddof=1), rel=1e-6)
    versus = rows["copy"].versus[0.5]
    assert versus.diff == 0 and versus.p == 1.0 and versus.mark == "tie"


def test_with_several_baseline_rows_the_default_profile_with_most_runs_is_chosen_and_said():
    records = _constructed({"m": {k: [5.0, 5.5, 4.5] for k in KNOWNS}})
    ablation = [make_record("partial-bce", known=k, seed=s, mAP=99.0, options={"normalization": "durand"})
                for k in KNOWNS for s in (0, 1)]
    (table,) = build_tables(records + ablation)
    m = next(r for r in table.rows if r.method == "m")
    assert m.versus[0.1].diff == pytest.approx(5.0) and m.versus[0.1].n == 3  # not against the 2-seed ablation
    assert any("2 partial-bce rows share protocol" in n and "most runs" in n for n in table.notes)
    durand = next(r for r in table.rows if r.options)
    assert not durand.is_baseline and durand.versus[0.1].mark == "better"  # the ablation is compared too
