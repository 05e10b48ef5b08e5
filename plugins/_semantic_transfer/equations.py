"""The equations SST and HST share, as pure tensor functions (each pinned by a test).

Notation as in the papers: ``labels`` are partial labels ``(B, C)`` in {1, -1, 0}; ``features``
the category-specific features ``f_c^n`` ``(B, C, D)``; ``cooc`` the co-occurrence probabilities
``P^n[i, j] = p_ij^n`` ``(B, C, C)``.

Where the papers and the official code differ, the functions follow the paper and take the
official behaviour as an option:

- IST score (eq. 2/4): paper = sum over the known positives j ≠ i of p_ij; official = their
  mean (``aggregate="mean"``).
- L_ist negative term (eq. 4): paper = max(p − m, 0)^γ2 · log(1 − p); official/ASL = the shifted
  probability p_m = max(p − m, 0) in the log too (``form="asl"``).
- L_ist pairs: paper and official = every pair not in D^n is a negative (``pairs="all"``);
  ``pairs="known"`` (this suite's variant) scores only pairs whose two labels are known.
- SST CST reference set D_c (eq. 6): paper = the images of the batch with c known positive;
  official = the 100 latest known-positive features per class (a bank).
- DTL loss (eq. 14-15): paper = partial BCE on d = score − θ (here d/τ, see :func:`dtl_loss`);
  official = BCE on clamp(d, 0, 1) as a logit (``form="official"``).

Losses summed over images/pairs in the papers (eq. 3, 7, 10) are averaged here, as in the
official code, which is the scale the weights λ1 = 10, λ2 = 0.05, λ3 = 0.1 were tuned for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mlrpl_bench.losses import partial_bce

# ---------------------------------------------------------------------------------------------
# IST: intra-image semantic transfer (SST eq. 1-4, HST eq. 3-6)
# ---------------------------------------------------------------------------------------------


def ist_scores(cooc: torch.Tensor, labels: torch.Tensor, aggregate: str = "sum") -> torch.Tensor:
    """The argument of the indicator in SST eq. 2 / HST eq. 4 (and of HST eq. 12).

    ``score[n, i] = Σ_{j ≠ i, y_j^n = 1} p_ij^n · y_j^n`` -- the co-occurrence of category i with
    the image's known positives. ``aggregate="mean"`` divides by the number of those positives
    (the official code's normalisation). The diagonal is left out so that, for a known positive i
    (HST's DTL scores every known label), the label does not vote for itself.

    :return: ``(B, C)``.
    """
    pos = (labels > 0).to(cooc.dtype)
    c = cooc.shape[-1]
    off_diagonal = cooc * (1.0 - torch.eye(c, dtype=cooc.dtype, device=cooc.device))
    score = (off_diagonal * pos.unsqueeze(1)).sum(dim=-1)
    if aggregate == "mean":
        score = score / (pos.sum(dim=1, keepdim=True) - pos).clamp(min=1.0)
    elif aggregate != "sum":
        raise ValueError(f"aggregate must be sum or mean, got {aggregate!r}")
    return score


def pseudo_positives(scores: torch.Tensor, labels: torch.Tensor, threshold, valid: torch.Tensor | None = None) -> torch.Tensor:
    """``1[score ≥ θ]`` on the *unknown* entries only (SST eq. 2/6, HST eq. 4/8); 0 elsewhere.

    Only positive pseudo labels are generated, and never on a known entry (the known label wins).

    :param threshold: a number or a 0-d tensor θ.
    :param valid: optional ``(B, C)`` or ``(C,)`` mask of entries that have a score at all (e.g.
        categories with prototypes); others never get a pseudo label.
    :return: ``(B, C)`` float in {0, 1}.
    """
    mask = (labels == 0) & (scores >= threshold)
    if valid is not None:
        mask = mask & valid.to(torch.bool)
    return mask.to(scores.dtype)


def pair_targets(labels: torch.Tensor, pairs: str = "all") -> tuple[torch.Tensor, torch.Tensor]:
    """Targets of L_ist: ``(positive (B, C, C), valid (B, C, C))`` boolean masks.

    A pair {i, j} (i ≠ j) is positive (in D^n) when both are known positives. ``pairs="all"``
    (eq. 4 as written, and the official code) scores every other pair as negative, including
    pairs with an unknown label; ``pairs="known"`` scores only pairs whose two labels are known
    (a pair with an unknown label may well co-occur).
    """
    pos = labels > 0
    positive = pos.unsqueeze(2) & pos.unsqueeze(1)
    c = labels.shape[1]
    not_diag = ~torch.eye(c, dtype=torch.bool, device=labels.device)
    if pairs == "known":
        known = labels != 0
        valid = known.unsqueeze(2) & known.unsqueeze(1) & not_diag
    elif pairs == "all":
        valid = not_diag.expand(labels.shape[0], c, c)
    else:
        raise ValueError(f"pairs must be known or all, got {pairs!r}")
    return positive & valid, valid


def asymmetric_pair_loss(logits: torch.Tensor, labels: torch.Tensor, *, gamma_pos: float = 1.0, gamma_neg: float = 2.0,
                         margin: float = 0.05, pairs: str = "all", form: str = "paper") -> torch.Tensor:
    """L_ist, SST eq. 3-4 / HST eq. 5-6: asymmetric loss on the co-occurrence logits.

    ``−(1−p)^γ1 log p`` for a co-occurring pair, ``−max(p−m, 0)^γ2 log(1−p)`` otherwise
    (``form="asl"``: ``−p_m^γ2 log(1−p_m)`` with ``p_m = max(p−m, 0)``, the official/ASL form),
    averaged over the scored pairs of the batch (0 when there is none).
    """
    positive, valid = pair_targets(labels, pairs)
    p = torch.sigmoid(logits)
    pos_term = (1.0 - p).pow(gamma_pos) * F.logsigmoid(logits)
    shifted = (p - margin).clamp(min=0.0)
    if form == "paper":
        neg_term = shifted.pow(gamma_neg) * F.logsigmoid(-logits)
    elif form == "asl":
        neg_term = shifted.pow(gamma_neg) * torch.log((1.0 - shifted).clamp(min=1e-8))
    else:
        raise ValueError(f"form must be paper or asl, got {form!r}")
    ell = torch.where(positive, pos_term, neg_term) * valid
    return -ell.sum() / valid.sum().clamp(min=1)


# ---------------------------------------------------------------------------------------------
# CST: cross-image semantic transfer (SST eq. 5-8, HST eq. 7-11)
# ---------------------------------------------------------------------------------------------


def category_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``s_c^{n,m} = cos(f_c^n, f_c^m)`` (SST eq. 5, HST eq. 9) for ``a (B, C, D)``, ``b (M, C, D)`` -> ``(B, M, C)``."""
    return torch.einsum("bcd,mcd->bmc", F.normalize(a, dim=-1, eps=1e-8), F.normalize(b, dim=-1, eps=1e-8))


def instance_scores(features: torch.Tensor, ref_features: torch.Tensor, ref_labels: torch.Tensor,
                    exclude_self: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """SST eq. 6: mean similarity of ``f_c^n`` to the category-c features of the images in
    D_c = {m | y_c^m = 1} (the reference set).

    :param exclude_self: the reference set is the batch itself; leave out m = n.
    :return: ``(scores (B, C), has_reference (B, C))``; a score is 0 where D_c is empty.
    """
    sim = category_cosine(features, ref_features)  # (B, M, C)
    weight = (ref_labels > 0).to(sim.dtype).unsqueeze(0).expand_as(sim)
    if exclude_self:
        eye = torch.eye(sim.shape[0], sim.shape[1], dtype=sim.dtype, device=sim.device)
        weight = weight * (1.0 - eye).unsqueeze(-1)
    count = weight.sum(dim=1)
    return (sim * weight).sum(dim=1) / count.clamp(min=1.0), count > 0


def prototype_scores(features: torch.Tensor, prototypes: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """HST eq. 7-8: ``s_c^n = (1/K) Σ_k cos(f_c^n, p_c^k)``, the mean similarity to category c's prototypes.

    Also used for SST's official bank of recent positives (a bank is a set of "prototypes").

    :param prototypes: ``(C, K, D)``; :param valid: ``(C, K)`` which of them exist.
    :return: ``(scores (B, C), has_prototype (C,))``; a score is 0 for a category without one.
    """
    sim = torch.einsum("bcd,ckd->bck", F.normalize(features, dim=-1, eps=1e-8), F.normalize(prototypes, dim=-1, eps=1e-8))
    w = valid.to(sim.dtype)
    return (sim * w).sum(dim=-1) / w.sum(dim=-1).clamp(min=1.0), valid.any(dim=-1)


def cst_pair_loss(features: torch.Tensor, labels: torch.Tensor, pairs: str = "all") -> torch.Tensor:
    """L_cst, SST eq. 7-8 / HST eq. 10-11: ``1 − s`` when both images have c as a known positive,
    ``1 + s`` otherwise, averaged over ordered image pairs n ≠ m of the batch and categories.

    ``pairs="known"`` scores only pairs where both labels of c are known.
    """
    b = features.shape[0]
    if b < 2:
        return features.sum() * 0.0
    sim = category_cosine(features, features)  # (B, B, C)
    pos = labels > 0
    both = pos.unsqueeze(1) & pos.unsqueeze(0)
    valid = (~torch.eye(b, dtype=torch.bool, device=features.device)).unsqueeze(-1).expand_as(both)
    if pairs == "known":
        known = labels != 0
        valid = valid & known.unsqueeze(1) & known.unsqueeze(0)
    elif pairs != "all":
        raise ValueError(f"pairs must be all or known, got {pairs!r}")
    ell = torch.where(both, 1.0 - sim, 1.0 + sim) * valid
    return ell.sum() / valid.sum().clamp(min=1)


# ---------------------------------------------------------------------------------------------
# Classification targets, DTL, thresholds
# ---------------------------------------------------------------------------------------------


def transfer_targets(labels: torch.Tensor, pseudo: torch.Tensor, combine: bool) -> torch.Tensor:
    """The label vector ŷ / ỹ a pseudo-label loss is computed on.

    SST: known labels combined with the pseudo positives of the unknown entries; HST: the known
    entries are set to 0 and only the pseudo positives remain (``combine=False``).
    """
    if combine:
        return labels + (labels == 0).to(labels.dtype) * pseudo
    return pseudo


def dtl_loss(scores: torch.Tensor, threshold: torch.Tensor, labels: torch.Tensor, form: str = "paper",
             temperature: float = 1.0) -> torch.Tensor:
    """HST eq. 12-15: the threshold differences ``d = score − θ`` of the *known* labels scored by
    the partial BCE of eq. 16 with ``d / τ`` as the logit: a known positive pulls θ below its
    score, a known negative pushes θ above it, so θ is learned from the known labels.

    The paper does not say how ``d`` enters the BCE. ``d / τ`` is the logistic surrogate of the
    indicator ``1[score ≥ θ]``; the fitted θ is where the known labels' posterior crosses ½.
    With τ = 1 that crossing lies outside the score range under label imbalance and θ climbs
    above every score (no pseudo label ever); the plugins default to τ = 0.1.
    ``form="official"`` uses ``clamp(d, 0, 1)`` as the logit (the official code's soft pseudo
    label, no temperature), which passes gradient to θ only where ``0 < d < 1``.
    """
    d = scores - threshold
    if form == "official":
        d = d.clamp(0.0, 1.0)
    elif form == "paper":
        d = d / temperature
    else:
        raise ValueError(f"form must be paper or official, got {form!r}")
    return partial_bce(d, labels)


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


@dataclass(frozen=True)
class TransferSchedule:
    """When pseudo labels start, what the scheduled threshold is, when prototypes are recomputed.

    The papers' timeline (20 epochs): no pseudo labels for the first ``start_epoch`` = 5 epochs
    (thresholds "set to 1"); then θ = 0.95 at the 6th epoch, decreased by 0.025 per epoch down to
    0.75 (SST); prototypes computed at epoch 5 and every 5 epochs (HST). With ``scale="epochs"``
    this timeline is mapped onto a run of ``total_epochs`` (factor ``total_epochs /
    reference_epochs``; exactly the paper's at 20 epochs): an 8-epoch run starts pseudo labels at
    epoch 2 with θ falling 0.0625 per epoch, a 1-epoch run starts them at epoch 0. ``scale="none"``
    uses the epochs as given. Epochs are 0-based.
    """

    start_epoch: int = 5
    start: float = 0.95
    step: float = 0.025
    minimum: float = 0.75
    prototype_every: int = 5
    reference_epochs: int = 20
    scale: str = "epochs"

    def factor(self, total_epochs: int) -> float:
        if self.scale == "none":
            return 1.0
        return max(int(total_epochs), 1) / float(self.reference_epochs)

    def first_epoch(self, total_epochs: int) -> int:
        """The first (0-based) epoch with pseudo labels."""
        return _round_half_up(self.start_epoch * self.factor(total_epochs))

    def active(self, epoch: int, total_epochs: int) -> bool:
        return epoch >= self.first_epoch(total_epochs)

    def threshold(self, epoch: int, total_epochs: int) -> float | None:
        """The scheduled θ at ``epoch`` (None before pseudo labels start)."""
        if not self.active(epoch, total_epochs):
            return None
        elapsed = (epoch - self.first_epoch(total_epochs)) / self.factor(total_epochs)
        return max(self.start - self.step * elapsed, self.minimum)

    def prototype_epoch(self, epoch: int, total_epochs: int) -> bool:
        """Whether prototypes are (re)computed at the start of ``epoch``; ``prototype_every`` 0
        computes them once, at the first pseudo-label epoch."""
        first = self.first_epoch(total_epochs)
        if epoch < first:
            return False
        if self.prototype_every <= 0:
            return epoch == first
        period = max(1, _round_half_up(self.prototype_every * self.factor(total_epochs)))
        return (epoch - first) % period == 0


# ---------------------------------------------------------------------------------------------
# K-means (HST prototypes)
# ---------------------------------------------------------------------------------------------


def kmeans(x: torch.Tensor, k: int, generator: torch.Generator, iterations: int = 30) -> torch.Tensor:
    """Euclidean K-means with k-means++ seeding; returns ``min(k, n)`` centres ``(k', D)``.

    Deterministic given ``generator`` (a CPU generator); runs on ``x``'s device.
    """
    n = x.shape[0]
    if n == 0:
        return x.new_zeros((0, x.shape[1]))
    if n <= k:
        return x.clone()
    x = x.float()
    first = int(torch.randint(n, (1,), generator=generator))
    centres = [x[first]]
    dist = ((x - centres[0]) ** 2).sum(dim=1)
    for _ in range(1, k):
        probs = dist.clamp(min=0).cpu()
        idx = int(torch.multinomial(probs, 1, generator=generator)) if probs.sum() > 0 else int(torch.randint(n, (1,), generator=generator))
        centres.append(x[idx])
        dist = torch.minimum(dist, ((x - x[idx]) ** 2).sum(dim=1))
    c = torch.stack(centres)
    for _ in range(iterations):
        assign = torch.cdist(x, c).argmin(dim=1)
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype).unsqueeze(1)
        # An empty cluster keeps its previous centre rather than collapsing to the origin.
        new = torch.where(counts > 0, sums / counts.clamp(min=1.0), c)
        if torch.allclose(new, c):
            c = new
            break
        c = new
    return c
