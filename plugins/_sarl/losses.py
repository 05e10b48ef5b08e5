"""Losses and schedules shared by SST, HST and DSRB on their category-specific features.

* :func:`category_contrastive_loss` -- SST's L_cst (eq. 7-8), HST's instance L_cst (eq. 10-11)
  and DSRB's contrastive loss (eq. 3-4) are one loss: ``1 − cos`` for a pair of images that both
  have category c as a known positive, ``1 + cos`` otherwise. The official code (``ContrastiveLoss``
  / ``InstanceContrastiveLoss`` of loss/SST.py, loss/HST.py, loss/DSRB.py) scores only pairs
  with both labels known and subsamples the negative pairs; the papers sum over every pair.
* :class:`LinearRamp` -- the official code multiplies its auxiliary losses (L_ist, the
  contrastive losses) by ``batchIndex / len(train_loader)`` during the first epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

#: Length of the papers' training schedule in epochs; a run's timeline maps onto it.
REFERENCE_EPOCHS = 20

#: Pairs of :func:`category_contrastive_loss`: ``sampled`` (official code), ``all`` (papers),
#: ``known`` (both labels known, no subsampling).
ContrastivePairs = Literal["sampled", "all", "known"]

CONTRASTIVE_PAIRS_HELP = ("pairs of the contrastive loss: sampled = unordered pairs with both labels known; if any pair "
                          "shares a known positive (P such pairs), the pos-neg and the neg-neg pairs are each cut to 2P "
                          "random + P hardest (official code); all = every ordered pair, unknowns count as 'otherwise' "
                          "(paper); known = pairs with both labels known, all of them")


def category_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``s_c^{n,m} = cos(f_c^n, f_c^m)`` for ``a (B, C, D)``, ``b (M, C, D)`` -> ``(B, M, C)``."""
    return torch.einsum("bcd,mcd->bmc", F.normalize(a, dim=-1, eps=1e-9), F.normalize(b, dim=-1, eps=1e-9))


def category_contrastive_loss(features: torch.Tensor, labels: torch.Tensor, pairs: str = "sampled",
                              generator: torch.Generator | None = None) -> torch.Tensor:
    """``1 − s`` for pairs of images that both have c as a known positive, ``1 + s`` otherwise,
    averaged over the scored (pair, category) entries (0 when there is none).

    * ``all`` (SST eq. 7-8, HST eq. 10-11, DSRB eq. 3-4): every ordered pair n ≠ m and every
      category; a pair with an unknown label counts as "otherwise" (pushed apart). The papers sum;
      this averages (as the official code does), so λ does not depend on the batch size.
    * ``known``: only (pair, category) entries whose two labels are known.
    * ``sampled`` (official code): unordered pairs n < m with both labels known, split into
      pos-pos (``1 − s``), pos-neg and neg-neg (both ``1 + s``). When there are P > 0 pos-pos
      entries, the pos-neg entries are cut to ``2P`` drawn at random plus the ``P`` largest
      (hardest), and the neg-neg entries the same way, each independently (a hard entry may also
      be drawn at random: it then counts twice, as in the official code); with P = 0 nothing is
      cut. The draw uses ``generator``.

    :param features: ``(B, C, D)``; :param labels: ``(B, C)`` in {1, -1, 0}.
    """
    b = features.shape[0]
    if b < 2:
        return features.sum() * 0.0
    if pairs == "sampled":
        return _sampled_contrastive(features, labels, generator)
    sim = category_cosine(features, features)  # (B, B, C)
    pos = labels > 0
    both = pos.unsqueeze(1) & pos.unsqueeze(0)
    valid = (~torch.eye(b, dtype=torch.bool, device=features.device)).unsqueeze(-1).expand_as(both)
    if pairs == "known":
        known = labels != 0
        valid = valid & known.unsqueeze(1) & known.unsqueeze(0)
    elif pairs != "all":
        raise ValueError(f"pairs must be sampled, all or known, got {pairs!r}")
    ell = torch.where(both, 1.0 - sim, 1.0 + sim) * valid
    return ell.sum() / valid.sum().clamp(min=1)


def _sampled_contrastive(features: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    b = features.shape[0]
    first, second = torch.triu_indices(b, b, offset=1, device=features.device)
    la, lb = labels[first], labels[second]  # (P, C)
    # Only (pair, category) entries with both labels known are ever scored, so only their cosines
    # are computed, in the row-major order of the (P, C) grid: each is the cosine of the same two
    # D-vectors as over the full grid and the entries left out would get a zero gradient, so the
    # loss and the gradients are bit-identical to the full grid's at a fraction of its cost
    # (k² of it at known proportion k; pinned by tests/test_fast_paths.py).
    pair, cls = ((la != 0) & (lb != 0)).nonzero(as_tuple=True)
    sim = EntryCosine.apply(features, features, first[pair], second[pair], cls, 1e-9)  # (E,)
    return _sampled_pairs_mean(sim, la[pair, cls], lb[pair, cls], generator, features)


def full_grid_sampled_contrastive(features: torch.Tensor, labels: torch.Tensor,
                                  generator: torch.Generator | None) -> torch.Tensor:
    """The sampled contrastive loss with the cosine of every (pair, category) of the batch: the
    straightforward form that the known-entries-only path above replaces, kept as the reference
    it is checked against (tests/test_fast_paths.py) and timed against (perf/bench_frozen_step.py)."""
    import torch.nn.functional as F

    b = features.shape[0]
    first, second = torch.triu_indices(b, b, offset=1, device=features.device)
    sim = F.cosine_similarity(features[first], features[second], dim=-1, eps=1e-9)
    la, lb = labels[first], labels[second]
    known = (la != 0) & (lb != 0)
    return _sampled_pairs_mean(sim[known], la[known], lb[known], generator, features)


def _sampled_pairs_mean(sim: torch.Tensor, la: torch.Tensor, lb: torch.Tensor, generator: torch.Generator | None,
                        features: torch.Tensor) -> torch.Tensor:
    """Mean of the official sampled pair losses over entries with both labels known (row-major
    order): every positive-positive ``1 - cos``, and of the positive-negative and of the
    negative-negative ``1 + cos`` each ``2n`` random plus the ``n`` hardest (``n`` positives)."""
    pos_pos = (la == 1) & (lb == 1)
    neg_neg = (la == -1) & (lb == -1)
    pos_neg = ~pos_pos & ~neg_neg
    positives = (1.0 - sim)[pos_pos]
    n = positives.numel()
    parts = [positives]
    for mask in (pos_neg, neg_neg):
        negatives = (1.0 + sim)[mask]
        if n and negatives.numel():
            order = torch.randperm(negatives.numel(), generator=generator)[: 2 * n].to(negatives.device)
            hardest = negatives.sort(descending=True).values[:n]
            negatives = torch.cat([negatives[order], hardest])
        parts.append(negatives)
    loss = torch.cat(parts)
    return loss.mean() if loss.numel() else features.sum() * 0.0


class EntryCosine(torch.autograd.Function):
    """``cos(x[i_e, c_e], x[j_e, c_e])`` for entries ``e``: the values and gradients of
    ``F.cosine_similarity(x[i, c], x[j, c], dim=-1, eps=eps)``, bit for bit, for less work.

    Forward: every (image, category) vector is normalised once (the same norm, clamp and division
    the cosine applies to each gathered copy) and each entry is one product-sum of two rows.
    Backward: only the entries whose gradient is non-zero are worked on (the sampled loss uses a
    few of them); the others would add exact zeros. Each entry gets the cosine's own backward
    (the divisions' and the norm's gradients, in the same order), and the two sides are
    accumulated into ``x`` as the two gathers' backward would, the ``j`` side first: the sums
    are the same floats, added in the same order (pinned against ``F.cosine_similarity`` by
    tests/test_fast_paths.py).

    Call ``EntryCosine.apply(x, x, i, j, c, eps)`` (``x`` twice: one gradient per side, as the two
    gathers of the plain form give).
    """

    @staticmethod
    def forward(ctx, x_j, x_i, i, j, c, eps: float):
        x = x_i
        norm = torch.linalg.vector_norm(x, 2, dim=-1, keepdim=True)  # (B, C, 1)
        clamped = norm.clamp_min(eps)
        unit = x / clamped
        # Rows of the flattened (B·C, D) tensors: index_select copies whole rows, the same values
        # as `unit[i, c]` at a fraction of advanced indexing's cost on CPU.
        cols = x.shape[1]
        flat_i, flat_j = i * cols + c, j * cols + c
        ctx.save_for_backward(x, norm, clamped, unit, flat_i, flat_j)
        rows = unit.flatten(0, 1)
        return (rows.index_select(0, flat_i) * rows.index_select(0, flat_j)).sum(-1)

    @staticmethod
    def backward(ctx, grad):
        x, norm, clamped, unit, flat_i, flat_j = ctx.saved_tensors
        live = (grad != 0).nonzero().squeeze(1)
        grad, flat_i, flat_j = grad.index_select(0, live).unsqueeze(-1), flat_i.index_select(0, live), flat_j.index_select(0, live)
        x_rows, norm_rows, clamped_rows, unit_rows = (t.flatten(0, 1) for t in (x, norm, clamped, unit))
        grads = []
        for rows, other in ((flat_j, flat_i), (flat_i, flat_j)):  # the j side's gradient reaches x first
            own, n0, n = x_rows.index_select(0, rows), norm_rows.index_select(0, rows), clamped_rows.index_select(0, rows)
            g_unit = grad * unit_rows.index_select(0, other)
            g_norm = (-g_unit * ((own / n) / n)).sum(-1, keepdim=True)
            g_own = g_unit / n + g_norm * (own / n0).masked_fill_(n0 == 0, 0)
            # On the CPU index_add_ adds the rows in entry order, as the gathers' backward
            # (index_put_ with accumulate) does: the same floats. On CUDA index_add_ uses atomics
            # (a varying order); index_put_'s sorted accumulation stays deterministic there.
            zeros = torch.zeros_like(x_rows)
            grads.append((zeros.index_add_(0, rows, g_own) if x.device.type == "cpu"
                          else zeros.index_put_((rows,), g_own, accumulate=True)).view_as(x))
        return grads[0], grads[1], None, None, None, None


@dataclass
class LinearRamp:
    """The weight of an auxiliary loss, rising linearly from 0 over the first ``ramp_steps``
    optimiser steps of the run and 1 after; ``ramp_steps`` 0 means always 1.

    The official code's ramp is ``batchIndex / len(train_loader)`` in epoch 0 (0 at the first
    step), i.e. ``ramp_steps = steps_per_epoch``. Call :meth:`start_epoch` at every epoch start
    (it also places a resumed run), then :meth:`next` once per training step.
    """

    steps_per_epoch: int
    ramp_steps: int
    step: int = 0

    def start_epoch(self, epoch: int) -> None:
        self.step = epoch * self.steps_per_epoch

    def next(self) -> float:
        weight = 1.0 if self.ramp_steps <= 0 else min(1.0, self.step / self.ramp_steps)
        self.step += 1
        return weight


def ramp_steps(paper_epochs: float, factor: float, steps_per_epoch: int) -> int:
    """Optimiser steps of a ramp of ``paper_epochs`` epochs of the papers' 20-epoch timeline, mapped
    onto a run by ``factor`` (run epochs / 20, or 1 when the timeline is not mapped)."""
    return int(round(paper_epochs * factor * steps_per_epoch))
