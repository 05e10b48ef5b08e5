"""Property-based tests of the metrics (hypothesis): any scores and targets.

Every output is a percentage in [0, 100] or ``None`` exactly where it is undefined (a class with
no positive has no AP and no recall; ``mAP``/``CP``/``CR`` are ``None`` when no class has one,
``OR`` when there is no positive at all); nothing depends on the order of the rows; a class's AP
does not change under a strictly increasing transform of its scores (ties kept); the
non-interpolated AP is scikit-learn's ``average_precision_score`` and the interpolated one a
brute-force envelope; non-finite or out-of-range scores are one :class:`BenchError`.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score

from mlrpl_bench.errors import BenchError
from mlrpl_bench.metrics import check_scores, compute_metrics, metric_names

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def scored(draw, max_rows: int = 30, max_cols: int = 6):
    """(scores in [0, 1] with ties and constant columns, targets in {1, -1, 0} under the contract)."""
    n, c = draw(st.integers(1, max_rows)), draw(st.integers(1, max_cols))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    kind = draw(st.sampled_from(["continuous", "few levels", "constant columns", "extremes"]))
    if kind == "continuous":
        scores = rng.random((n, c))
    elif kind == "few levels":  # many ties
        scores = rng.choice(np.array([0.0, 0.25, 0.5, 0.75, 1.0]), size=(n, c))
    elif kind == "constant columns":
        scores = np.repeat(rng.random((1, c)), n, axis=0)
        scores[:, rng.random(c) < 0.5] = rng.random()
    else:
        scores = rng.choice(np.array([0.0, 1.0, 5e-324, 1 - 2**-53]), size=(n, c))
    scores = scores.astype(draw(st.sampled_from([np.float32, np.float64])))
    p_pos = draw(st.sampled_from([0.0, 0.2, 0.5, 1.0]))
    targets = np.where(rng.random((n, c)) < p_pos, 1, -1)
    if draw(st.booleans()):
        targets = np.where(rng.random((n, c)) < draw(st.sampled_from([0.2, 0.9])), 0, targets)
    if (targets == 0).any() and not (targets == -1).any():
        targets.flat[np.flatnonzero(targets == 0)[0]] = -1
    return scores, targets.astype(draw(st.sampled_from([np.int8, np.int64, np.float64])))


def _positives(targets: np.ndarray) -> np.ndarray:
    return (np.asarray(targets) == 1).sum(axis=0)


@FAST
@given(data=scored())
def test_outputs_are_percentages_or_none_exactly_where_undefined(data):
    scores, targets = data
    out = compute_metrics(scores, targets)
    n_pos = _positives(targets)
    evaluated = n_pos > 0
    assert out["classes_skipped"] == int((~evaluated).sum())
    for name in metric_names():
        value = out[name]
        assert value is None or (np.isfinite(value) and -1e-9 <= value <= 100 + 1e-9), (name, value)
    for per_class in (out["per_class_ap"], out["per_class_ap_noninterp"]):
        assert len(per_class) == targets.shape[1]
        assert [v is None for v in per_class] == (~evaluated).tolist()
    none_when_no_class = ("mAP", "mAP_noninterp", "CP", "CR", "CF1", "CP_top3", "CR_top3", "CF1_top3")
    for name in none_when_no_class:
        assert (out[name] is None) == (not evaluated.any()), name
    for name in ("OR", "OF1", "OR_top3", "OF1_top3"):
        assert (out[name] is None) == (n_pos.sum() == 0), name
    assert out["OP"] is not None and out["OP_top3"] is not None  # no prediction counts as precision 0


@FAST
@given(data=scored(), order=st.randoms(use_true_random=False))
def test_no_result_depends_on_the_order_of_the_rows(data, order):
    scores, targets = data
    perm = list(range(scores.shape[0]))
    order.shuffle(perm)
    assert compute_metrics(scores[perm], targets[perm]) == compute_metrics(scores, targets)


@FAST
@given(data=scored(), draw=st.data(), steps=st.lists(st.floats(0.01, 10), min_size=30, max_size=30))
def test_ap_is_invariant_to_a_strictly_increasing_transform_of_a_class(data, draw, steps):
    """Distinct values stay distinct and in order, equal values stay equal (the map is built on the
    sorted unique scores, so float rounding cannot merge or split a tie)."""
    scores, targets = data
    column = draw.draw(st.integers(0, scores.shape[1] - 1))
    values = np.unique(scores[:, column])
    new_levels = np.cumsum(np.asarray(steps[: len(values)]))
    new_levels = new_levels / (new_levels[-1] * 1.5)  # still in (0, 1)
    transformed = scores.astype(np.float64)
    transformed[:, column] = new_levels[np.searchsorted(values, scores[:, column])]
    before, after = compute_metrics(scores, targets), compute_metrics(transformed, targets)
    for key in ("per_class_ap", "per_class_ap_noninterp"):
        assert after[key][column] == pytest.approx(before[key][column], rel=1e-12, abs=1e-12) \
            if before[key][column] is not None else after[key][column] is None


def _interpolated_ap_brute_force(s: np.ndarray, y: np.ndarray) -> float:
    """Precision and recall at every distinct threshold, precision made monotone from the right,
    summed over the recall steps -- the definition, at O(n^2)."""
    thresholds = np.unique(s)[::-1]
    n_pos = (y == 1).sum()
    points = []
    for t in thresholds:
        predicted = s >= t
        tp = np.sum(predicted & (y == 1))
        points.append((tp / n_pos, tp / predicted.sum()))
    ap, previous_recall = 0.0, 0.0
    for i, (recall, _) in enumerate(points):
        envelope = max(p for r, p in points[i:])
        ap += (recall - previous_recall) * envelope
        previous_recall = recall
    return ap


@FAST
@given(data=scored())
def test_ap_equals_sklearn_and_the_brute_force_envelope(data):
    scores, targets = data
    out = compute_metrics(scores, targets)
    targets = np.asarray(targets)
    expected_noninterp, expected_interp = [], []
    for c in range(scores.shape[1]):
        annotated = targets[:, c] != 0
        y, s = targets[annotated, c], scores[annotated, c].astype(np.float64)
        if not (y == 1).any():
            assert out["per_class_ap"][c] is None
            continue
        expected = 100 * average_precision_score(y == 1, s)
        assert out["per_class_ap_noninterp"][c] == pytest.approx(expected, rel=1e-9, abs=1e-9)
        assert out["per_class_ap"][c] == pytest.approx(100 * _interpolated_ap_brute_force(s, y), rel=1e-9, abs=1e-9)
        expected_noninterp.append(expected)
        expected_interp.append(out["per_class_ap"][c])
    if expected_noninterp:
        assert out["mAP_noninterp"] == pytest.approx(np.mean(expected_noninterp), rel=1e-9)
        assert out["mAP"] == pytest.approx(np.mean(expected_interp), rel=1e-9)


@FAST
@given(data=scored(), draw=st.data(), bad=st.sampled_from([np.nan, np.inf, -np.inf]))
def test_non_finite_scores_are_one_bench_error_naming_the_entry(data, draw, bad):
    scores, targets = data
    i, j = draw.draw(st.integers(0, scores.shape[0] - 1)), draw.draw(st.integers(0, scores.shape[1] - 1))
    scores = scores.astype(np.float64)
    scores[i, j] = bad
    first = tuple(map(int, np.argwhere(~np.isfinite(scores))[0]))
    with pytest.raises(BenchError, match=rf"row {first[0]}, column {first[1]}") as info:
        compute_metrics(scores, targets)
    assert "\n" not in str(info.value)


@FAST
@given(data=scored(), factor=st.sampled_from([100.0, -1.0, 1.5]), offset=st.sampled_from([0.0, -0.5, 2.0]))
def test_out_of_range_scores_are_refused_as_probabilities(data, factor, offset):
    scores, _ = data
    moved = scores.astype(np.float64) * factor + offset
    if moved.min() >= 0 and moved.max() <= 1:
        assert check_scores(moved, probabilities=True) is not None
        return
    with pytest.raises(BenchError, match=r"not probabilities in \[0, 1\]") as info:
        check_scores(moved, source="s.npy", probabilities=True)
    assert str(info.value).startswith("s.npy: ") and "\n" not in str(info.value)


@FAST
@given(n=st.integers(1, 6), c=st.integers(1, 6), other=st.tuples(st.integers(0, 7), st.integers(0, 7)))
def test_mismatched_shapes_are_one_bench_error(n, c, other):
    assume(other != (n, c))
    scores = np.full((n, c), 0.5)
    targets = np.where(np.arange(other[0] * other[1]).reshape(other) % 2 == 0, 1, -1)
    with pytest.raises(BenchError) as info:
        compute_metrics(scores, targets)
    assert "\n" not in str(info.value)
