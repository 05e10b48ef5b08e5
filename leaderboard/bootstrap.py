"""Resampling test images: how much a run's mAP would move with another test set of the same size.

Used only where a run saved its test scores (``mlrpl-bench run --save-scores``,
:mod:`mlrpl_bench.scores`). One resampling plan per test set: :func:`image_weights` draws
``B`` = :data:`RESAMPLES` multisets of the ``N`` test images (sampling with replacement, as the
multiplicity of each image, seeded by :data:`SEED` so a page is rebuilt identically), and
*every* run on that test set is scored on the same ``B`` multisets. Reusing the plan is what
makes it paired: the difference between two methods (or the mean over seeds) is taken inside
each resample, so the images both find easy or hard cancel out.

:func:`replicate_map` computes the harness's mAP (all-point interpolated AP, ties in one
threshold step, classes without a positive left out: :mod:`mlrpl_bench.metrics`) of one score
matrix under every resample at once, from the multiplicities — no Python loop over resamples
or samples; with all multiplicities 1 it is exactly :func:`mlrpl_bench.metrics.average_precision`.
"""

from __future__ import annotations

import numpy as np

#: Bootstrap resamples per test set: only their variance is used (its relative error is about
#: sqrt(2 / RESAMPLES) = 6 %), the intervals themselves are t-based (see .stats).
RESAMPLES = 500
#: Seed of the resampling plan (fixed: the same records give the same page).
SEED = 0
#: Largest resamples x images block held at once (bounds memory on large test sets).
_BLOCK_ELEMENTS = 4_000_000


def image_weights(n_images: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """``(resamples, n_images)`` multiplicities: row ``b`` counts how often each image is drawn in resample ``b``."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=resamples).astype(np.int32)


def replicate_map(scores: np.ndarray, targets: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The mAP (percent) of ``scores`` against ``targets`` under each row of multiplicities ``weights``.

    Rows of ``scores`` with a NaN (images skipped as unreadable) are left out, as in the engine.
    A class without a drawn positive in a resample has no AP there and is left out of that
    resample's mean. Returns a ``(B,)`` array (NaN where no class has a positive).
    """
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets)
    weights = np.asarray(weights)
    scored = ~np.isnan(scores).any(axis=1)
    n_resamples, n_classes = weights.shape[0], scores.shape[1]
    ap = np.full((n_resamples, n_classes), np.nan)
    block = max(1, _BLOCK_ELEMENTS // max(1, scores.shape[0]))
    for c in range(n_classes):
        y = targets[:, c]
        keep = np.flatnonzero(scored & (y != 0))
        order = np.argsort(scores[keep, c], kind="stable")
        cols, s_sorted, positive = keep[order], scores[keep, c][order], (y[keep] == 1)[order]
        pos_idx = np.flatnonzero(positive)
        if pos_idx.size == 0:
            continue
        # Counting ">= s" from the first index of each run of tied scores puts ties in one step:
        # n(>= s) = total - (drawn images before that index), the same for positives.
        first = np.searchsorted(s_sorted, s_sorted, side="left")[pos_idx]
        pos_before = np.searchsorted(pos_idx, first, side="left")
        for start in range(0, n_resamples, block):
            w = weights[start:start + block][:, cols]
            w_pos = w[:, pos_idx]
            cum = np.zeros((w.shape[0], w.shape[1] + 1), dtype=np.int64)
            np.cumsum(w, axis=1, out=cum[:, 1:])
            cum_pos = np.zeros((w.shape[0], pos_idx.size + 1), dtype=np.int64)
            np.cumsum(w_pos, axis=1, out=cum_pos[:, 1:])
            n_ge = cum[:, -1:] - cum[:, first]
            tp_ge = cum_pos[:, -1:] - cum_pos[:, pos_before]
            precision = np.divide(tp_ge, n_ge, out=np.zeros(w_pos.shape), where=w_pos > 0)
            # Running max over positives in ascending score order = the envelope from the right
            # in recall; a positive not drawn has weight 0 and precision 0, so it adds nothing.
            envelope = np.maximum.accumulate(precision, axis=1)
            total = cum_pos[:, -1]
            ap[start:start + block, c] = np.divide((w_pos * envelope).sum(axis=1), total,
                                                   out=np.full(total.shape, np.nan), where=total > 0)
    evaluated = ~np.isnan(ap)
    count = evaluated.sum(axis=1)
    total = np.where(evaluated, ap, 0.0).sum(axis=1)
    return np.divide(100.0 * total, count, out=np.full(n_resamples, np.nan), where=count > 0)
