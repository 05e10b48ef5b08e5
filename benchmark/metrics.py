"""Multi-label evaluation metrics (pure numpy).

:func:`compute_metrics` scores an ``(N, C)`` matrix of predictions against an ``(N, C)`` target
matrix under the label contract (``1`` positive, ``-1`` negative, ``0`` not annotated) and returns
percentages (0-100):

* ``mAP`` - mean over classes of the all-point *interpolated* average precision: precision is
  made monotone from the right (each point takes the best precision at any higher recall) and
  summed over the recall steps. This is the PASCAL VOC 2010+ convention, used by the tables of
  SST/HST/DSRB.
* ``mAP_noninterp`` - mean of the non-interpolated AP, ``sum_k (R_k - R_{k-1}) P_k``; per class
  it equals :func:`sklearn.metrics.average_precision_score`.
* ``OP, OR, OF1, CP, CR, CF1`` at ``score >= threshold`` (DSRB paper, eq. 17-19), and the same
  six with ``_top3`` where the ``top_k`` highest scores of each image are predicted positive.

Conventions (the places where codebases silently differ):

* Entries whose target is ``0`` are ignored everywhere: they are neither positives nor
  negatives, they are not counted as predictions, and they do not move a threshold.
* Tied scores form a single threshold step, so no result depends on the order of the samples.
* A class with no positive among the evaluated entries has no AP and no recall: it is left out
  of ``mAP``, ``mAP_noninterp``, ``CP`` and ``CR`` (its per-class AP is ``None``) and counted in
  ``classes_skipped``. ``C`` in eq. 17-18 is the number of evaluated classes. Its predictions
  still count in the overall ``OP``.
* A class (or the whole matrix, for ``OP``) with no predicted positive has precision 0 - it found
  nothing - rather than an undefined value; the same holds for F1 when precision and recall
  are both 0.
* Top-k: a score tied with the k-th highest score of its image is also predicted positive, so
  the prediction never depends on the order of the classes.
* Targets with 0s but not a single -1 are refused: that is the 0/1 (scikit-learn) convention,
  which would otherwise silently turn every negative into "not annotated".
* A value that is undefined (e.g. ``mAP`` when every class is skipped) is ``None``, which is
  what the results record stores.

The AP needs one value sort per class (no ``argsort``, no gathers): see
:func:`average_precision`. There is no Python loop over samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import BenchError
from .labels import check_label_matrix, refuse_zero_one

#: The thresholded metrics (at a score threshold, and again on each image's top k scores).
THRESHOLD_METRICS = ("OP", "OR", "OF1", "CP", "CR", "CF1")


@dataclass(frozen=True)
class MetricSpec:
    """One summary metric, declared once: records (:data:`mlrpl_bench.results.METRIC_NAMES`, the
    required test metrics), ``--tune-metric``, the sweep table and the leaderboard's columns read it.

    :ivar name: its key in :func:`compute_metrics`' result and in a record's metrics blocks.
    :ivar summary: shown in the sweep table and the leaderboard's average columns, and required
        in every record's test metrics.
    :ivar average_header: the leaderboard's header of its average column (summary metrics).
    :ivar higher_is_better: the direction of a better value (every metric here is a percentage).
    :ivar digits: decimals shown.
    """

    name: str
    summary: bool = False
    average_header: str = ""
    higher_is_better: bool = True
    digits: int = 2

    def format(self, value: float | None) -> str:
        """``12.35``, or ``n/a`` for an undefined value."""
        return "n/a" if value is None else f"{value:.{self.digits}f}"


def _specs(top_k: int) -> tuple[MetricSpec, ...]:
    summary = {"mAP": "Ave. mAP", "OF1": "Avg. OF1", "CF1": "Avg. CF1"}
    return (MetricSpec("mAP", True, summary["mAP"]), MetricSpec("mAP_noninterp"),
            *(MetricSpec(m, m in summary, summary.get(m, "")) for m in THRESHOLD_METRICS),
            *(MetricSpec(f"{m}_top{top_k}") for m in THRESHOLD_METRICS))


#: Every summary metric :func:`compute_metrics` returns at the default ``top_k=3``, in display order.
METRICS: tuple[MetricSpec, ...] = _specs(3)
METRIC_SPECS: dict[str, MetricSpec] = {m.name: m for m in METRICS}
#: The metrics of the sweep table, the leaderboard's averages and every record's required test block.
SUMMARY_METRICS: tuple[str, ...] = tuple(m.name for m in METRICS if m.summary)


def metric_names(top_k: int = 3) -> tuple[str, ...]:
    """Names of the summary metrics :func:`compute_metrics` returns, in display order."""
    return tuple(m.name for m in (METRICS if top_k == 3 else _specs(top_k)))


def check_scores(scores: np.ndarray, *, source: str = "scores", probabilities: bool = False) -> np.ndarray:
    """Validate a score matrix: 2-D, numeric, finite. Returns it as float32/float64.

    :param probabilities: also require every score in [0, 1] -- what the thresholded metrics
        (``OP ... CF1`` at 0.5) assume. AP alone only ranks, so logits or percentages would give
        a right mAP beside meaningless thresholded metrics.
    :raises BenchError: naming the first row/column that is NaN or infinite, or the range found.
    """
    arr = np.asarray(scores)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise BenchError(f"{source}: expected a 2-D score matrix (images x classes), got shape {arr.shape}")
    if arr.dtype.kind not in "fiub":
        raise BenchError(f"{source}: scores must be numeric, got dtype {arr.dtype}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    finite = np.isfinite(arr)
    if not finite.all():
        row, col = map(int, np.argwhere(~finite)[0])
        raise BenchError(
            f"{source}: score at row {row}, column {col} is {arr[row, col]}; scores must be finite numbers "
            "(replace NaN/inf, e.g. apply a sigmoid to the logits)"
        )
    if probabilities and (arr.min() < 0 or arr.max() > 1):
        raise BenchError(f"{source}: scores range over [{arr.min():.4g}, {arr.max():.4g}], not probabilities in [0, 1]; "
                         "apply a sigmoid to logits (evaluate: --score-type logits), or divide percentages by 100")
    return arr


def read_score_file(path) -> np.ndarray:
    """Read a score matrix from ``.npy`` or comma-separated text and validate it (:func:`check_scores`)."""
    from .labels import read_matrix_file

    return check_scores(read_matrix_file(path, what="score matrix"), source=str(path))


def _check_pair(scores, targets, *, scores_source: str, targets_source: str):
    scores = check_scores(scores, source=scores_source)
    targets = np.asarray(targets)
    if targets.shape != scores.shape:
        raise BenchError(
            f"{scores_source} has shape {scores.shape} but {targets_source} has shape {targets.shape}; "
            "they must match (one row per image, one column per class)"
        )
    # Fast path for the common case (integer labels already in range); the full check, with its
    # row/column error message, runs otherwise. At COCO scale it saves ~20 ms.
    if not (targets.dtype.kind in "iu" and targets.min() >= -1 and targets.max() <= 1):
        targets = check_label_matrix(targets, source=targets_source)
    targets = targets.astype(np.int8, copy=False)
    # 0/1 targets would score every class 100 (every negative ignored as "not annotated").
    refuse_zero_one(targets, source=targets_source, fix="targets * 2 - 1")
    return scores, targets


def average_precision(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class AP of validated ``(N, C)`` inputs.

    Only the positives matter: each one adds ``1 / n_pos`` of recall at the threshold equal to
    its own score, where the precision is ``#positives >= s / #annotated >= s``. Counting with
    ``>=`` puts tied scores in one threshold step whatever their order. For the interpolated AP,
    the best precision at any higher recall is reached at a step that contains a positive
    (adding only negatives never raises precision), so the running maximum over the positives
    in ascending score order is the monotone-from-the-right precision envelope.

    So each class needs one value sort of its annotated scores and ``searchsorted`` look-ups for
    its positives - cheaper than an ``argsort`` of the scores plus gathers. The loop runs over
    classes (not samples).

    :returns: ``(ap_interp, ap_noninterp, n_pos)``: two float arrays of shape ``(C,)`` as
        fractions in [0, 1] (NaN where the class has no positive) and the positive count per class.
    """
    return _average_precision_t(class_major(scores), class_major(targets))


def class_major(arr: np.ndarray, block: int = 256) -> np.ndarray:
    """A C-contiguous transpose of a 2-D array, copied in row blocks.

    Copying ``block`` rows at a time keeps source and destination in cache; at 40,504 x 80 it
    is ~3x faster than ``np.ascontiguousarray(arr.T)``.
    """
    out = np.empty(arr.shape[::-1], dtype=arr.dtype)
    for start in range(0, arr.shape[0], block):
        out[:, start:start + block] = arr[start:start + block].T
    return out


def _average_precision_t(s_t: np.ndarray, y_t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`average_precision` on class-major ``(C, N)`` arrays."""
    n_classes = s_t.shape[0]
    ap_interp = np.full(n_classes, np.nan)
    ap_noninterp = np.full(n_classes, np.nan)
    n_pos = np.zeros(n_classes, dtype=np.int64)
    for c in range(n_classes):
        row, y = s_t[c], y_t[c]
        is_pos = y == 1
        positives = np.sort(row[is_pos])
        if positives.size == 0:
            continue
        annotated = np.sort(row if y.all() else row[y != 0])
        # Counts of scores >= each positive's score (positives ascending).
        n_above = annotated.size - np.searchsorted(annotated, positives, side="left")
        tp_above = positives.size - np.searchsorted(positives, positives, side="left")
        precision = tp_above / n_above
        n_pos[c] = positives.size
        ap_noninterp[c] = precision.mean()
        ap_interp[c] = np.maximum.accumulate(precision).mean()
    return ap_interp, ap_noninterp, n_pos


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` elementwise with 0 where ``den`` is 0."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _f1(p: float | None, r: float | None) -> float | None:
    if p is None or r is None:
        return None
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def prf_counts(pred: np.ndarray, targets: np.ndarray, *, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class counts of eq. 17-18 for a boolean prediction matrix.

    :param axis: the sample axis (0 for ``(N, C)`` inputs, 1 for class-major ``(C, N)``).
    :returns: ``(n_correct, n_predicted, n_ground_truth)`` per class; entries with target 0 are
        ignored (neither predicted nor ground truth).
    """
    pos = targets == 1
    n_correct = np.count_nonzero(pred & pos, axis=axis)
    n_predicted = np.count_nonzero(pred & (targets != 0), axis=axis)
    n_truth = np.count_nonzero(pos, axis=axis)
    return n_correct, n_predicted, n_truth


def per_class_precision_recall(pred: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class precision and recall (fractions) of a boolean ``(N, C)`` prediction matrix.

    Precision of a class with no predicted positive is 0 (it retrieved nothing). Recall of a
    class with no positive is NaN (undefined; such classes are skipped in ``CR``).
    """
    n_correct, n_predicted, n_truth = prf_counts(pred, targets)
    precision = _ratio(n_correct, n_predicted)
    recall = _ratio(n_correct, n_truth)
    recall[n_truth == 0] = np.nan
    return precision, recall


def _prf(n_correct: np.ndarray, n_predicted: np.ndarray, n_truth: np.ndarray) -> dict[str, float | None]:
    """OP, OR, OF1, CP, CR, CF1 (fractions) from per-class counts (DSRB eq. 17-19).

    Overall values pool every class; per-class means run over the classes with a positive.
    """
    total_correct, total_pred, total_truth = int(n_correct.sum()), int(n_predicted.sum()), int(n_truth.sum())
    op = total_correct / total_pred if total_pred else 0.0
    orec = total_correct / total_truth if total_truth else None
    evaluated = n_truth > 0
    if evaluated.any():
        cp = float(_ratio(n_correct, n_predicted)[evaluated].mean())
        cr = float(_ratio(n_correct, n_truth)[evaluated].mean())
    else:
        cp = cr = None
    return {"OP": op, "OR": orec, "OF1": _f1(op, orec), "CP": cp, "CR": cr, "CF1": _f1(cp, cr)}


def top_k_predictions(scores: np.ndarray, k: int) -> np.ndarray:
    """Boolean ``(N, C)`` matrix marking the ``k`` highest scores of each row (ties at the k-th included)."""
    n_classes = scores.shape[1]
    if k >= n_classes:
        return np.ones(scores.shape, dtype=bool)
    # A full row sort (SIMD in numpy >= 2) beats np.partition on 80-wide rows.
    kth = np.sort(scores, axis=1)[:, n_classes - k]
    return scores >= kth[:, None]


def _percent(value: float | None) -> float | None:
    if value is None or not np.isfinite(value):
        return None
    return 100.0 * float(value)


def compute_metrics(
    scores: np.ndarray,
    targets: np.ndarray,
    *,
    threshold: float = 0.5,
    top_k: int = 3,
    scores_source: str = "scores",
    targets_source: str = "targets",
) -> dict:
    """Score predictions against targets; every value is a percentage (0-100) or ``None``.

    :param scores: ``(N, C)`` finite real scores (probabilities for the ``threshold`` metrics).
    :param targets: ``(N, C)`` labels in {1, -1, 0}; 0 entries are ignored everywhere.
    :param threshold: a score ``>= threshold`` predicts positive for ``OP ... CF1``.
    :param top_k: how many top scores per image are predicted positive for the ``_top{k}`` metrics.
    :param scores_source: name of the scores (a file) used in error messages.
    :param targets_source: name of the targets used in error messages.
    :returns: ``mAP``, ``mAP_noninterp``, ``OP, OR, OF1, CP, CR, CF1``, the same six suffixed
        ``_top{k}``, ``per_class_ap`` and ``per_class_ap_noninterp`` (lists of C percentages, ``None``
        for skipped classes) and ``classes_skipped`` (classes without any positive).
    :raises BenchError: on mismatched shapes, non-finite scores or targets outside the contract.
    """
    if not isinstance(top_k, (int, np.integer)) or isinstance(top_k, bool) or top_k < 1:
        raise BenchError(f"top_k is {top_k!r}; use a positive integer (e.g. 3)")
    if not np.isfinite(threshold):
        raise BenchError(f"threshold is {threshold!r}; use a finite number (e.g. 0.5)")
    scores, targets = _check_pair(scores, targets, scores_source=scores_source, targets_source=targets_source)

    s_t, y_t = class_major(scores), class_major(targets)
    ap_interp, ap_noninterp, n_pos = _average_precision_t(s_t, y_t)
    evaluated = n_pos > 0
    out: dict = {
        "mAP": _percent(ap_interp[evaluated].mean()) if evaluated.any() else None,
        "mAP_noninterp": _percent(ap_noninterp[evaluated].mean()) if evaluated.any() else None,
    }
    pos_t = y_t == 1
    annotated_t = None if y_t.all() else y_t != 0

    def counts(pred_t: np.ndarray):
        n_correct = np.count_nonzero(pred_t & pos_t, axis=1)
        n_predicted = np.count_nonzero(pred_t if annotated_t is None else pred_t & annotated_t, axis=1)
        return n_correct, n_predicted, n_pos

    for name, value in _prf(*counts(s_t >= threshold)).items():
        out[name] = _percent(value)
    for name, value in _prf(*counts(class_major(top_k_predictions(scores, int(top_k))))).items():
        out[f"{name}_top{top_k}"] = _percent(value)
    out["per_class_ap"] = [_percent(v) for v in ap_interp]
    out["per_class_ap_noninterp"] = [_percent(v) for v in ap_noninterp]
    out["classes_skipped"] = int((~evaluated).sum())
    return out


def mean_average_precision(scores: np.ndarray, targets: np.ndarray, *, interpolated: bool = True) -> float | None:
    """Only the mAP (percentage), for per-epoch validation where the other metrics are not needed."""
    scores, targets = _check_pair(scores, targets, scores_source="scores", targets_source="targets")
    ap_interp, ap_noninterp, n_pos = average_precision(scores, targets)
    ap = ap_interp if interpolated else ap_noninterp
    return _percent(ap[n_pos > 0].mean()) if (n_pos > 0).any() else None
