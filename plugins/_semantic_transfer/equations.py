"""The equations SST and HST share, as pure tensor functions (each pinned by a test).

Notation as in the papers: ``labels`` are partial labels ``(B, C)`` in {1, -1, 0}; ``features``
the category-specific features ``f_c^n`` ``(B, C, D)``; ``cooc`` the co-occurrence probabilities
``P^n[i, j] = p_ij^n`` ``(B, C, C)``.

Where the papers and the official code differ, each function takes both forms; the plugins
default to the official code's (it produced the published numbers, see ``docs/fidelity.md``):

- IST score (eq. 2/4/12): paper = sum over the known positives j of p_ij; official = their mean,
  with P(i, i) = 1 on the diagonal (a known positive counts itself).
- L_ist negative term (eq. 4/6): paper = max(p − m, 0)^γ2 · log(1 − p); official/ASL = the
  shifted probability p_m = max(p − m, 0) in the log too (``form="asl"``).
- L_ist pairs: paper and official = every pair not in D^n is a negative (``pairs="all"``);
  ``pairs="known"`` (this suite's variant) scores only pairs whose two labels are known.
- SST CST reference set D_c (eq. 6): paper = the images of the batch with c known positive;
  official = the 100 latest known-positive features per class (a bank).
- DTL (eq. 12-15): paper = partial BCE on d = score − θ (here d/τ, see :func:`dtl_loss`);
  official = BCE with the soft pseudo label clamp(d, 0, 1) as the logit (``form="official"``),
  and an unknown entry is a pseudo positive when that soft label is > 0.
- HST's prototype contrastive term (official only, not in the paper): :func:`prototype_contrastive_loss`.

Losses summed over images/pairs in the papers (eq. 3, 7, 10) are averaged here, as in the
official code, which is the scale the weights λ1 = 10, λ2 = 0.05, λ3 = 0.1 were tuned for.
The contrastive loss L_cst is :func:`.._sarl.losses.category_contrastive_loss` (shared with DSRB).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mlrpl_bench.losses import partial_bce

from .._sarl.losses import category_cosine

# ---------------------------------------------------------------------------------------------
# IST: intra-image semantic transfer (SST eq. 1-4, HST eq. 3-6)
# ---------------------------------------------------------------------------------------------


def ist_scores(cooc: torch.Tensor, labels: torch.Tensor, aggregate: str = "mean", diagonal: str = "one") -> torch.Tensor:
    """The co-occurrence of category i with the image's known positives (SST eq. 2, HST eq. 4/12).

    ``score[n, i] = agg_{j: y_j^n = 1} P^n[i, j]`` with ``agg`` a sum (paper) or the mean
    (official: divided by the number of known positives, at least 1). ``diagonal`` says what a
    known positive i contributes for itself (only HST's DTL scores known labels; for an unknown i
    the diagonal never enters):

    * ``one`` -- P(i, i) = 1 (the official ``getIntraPseudoLabel`` builds its matrix so);
    * ``matrix`` -- the diagonal of ``cooc`` as given (the paper's sum over every known positive j,
      j = i included, with p_ii from φ_intra);
    * ``exclude`` -- j ≠ i only, and the mean divides by the other known positives.

    :return: ``(B, C)``.
    """
    pos = (labels > 0).to(cooc.dtype)
    c = cooc.shape[-1]
    eye = torch.eye(c, dtype=cooc.dtype, device=cooc.device)
    if diagonal == "one":
        matrix = cooc * (1.0 - eye) + eye
    elif diagonal == "matrix":
        matrix = cooc
    elif diagonal == "exclude":
        matrix = cooc * (1.0 - eye)
    else:
        raise ValueError(f"diagonal must be one, matrix or exclude, got {diagonal!r}")
    score = (matrix * pos.unsqueeze(1)).sum(dim=-1)
    if aggregate == "mean":
        count = pos.sum(dim=1, keepdim=True)
        if diagonal == "exclude":
            count = count - pos
        score = score / count.clamp(min=1.0)
    elif aggregate != "sum":
        raise ValueError(f"aggregate must be sum or mean, got {aggregate!r}")
    return score


def pseudo_positives(scores: torch.Tensor, labels: torch.Tensor, threshold, valid: torch.Tensor | None = None,
                     strict: bool = False) -> torch.Tensor:
    """``1[score ≥ θ]`` on the *unknown* entries only (SST eq. 2/6, HST eq. 4/8); 0 elsewhere.

    Only positive pseudo labels are generated, and never on a known entry (the known label wins).
    ``strict`` uses ``score > θ``: the official HST code makes a pseudo positive where its soft
    label ``clamp(score − θ, 0, 1)`` is > 0 (:func:`soft_labels`).

    :param threshold: a number or a 0-d tensor θ.
    :param valid: optional ``(B, C)`` or ``(C,)`` mask of entries that have a score at all (e.g.
        categories with prototypes); others never get a pseudo label.
    :return: ``(B, C)`` float in {0, 1}.
    """
    above = scores > threshold if strict else scores >= threshold
    mask = (labels == 0) & above
    if valid is not None:
        mask = mask & valid.to(torch.bool)
    return mask.to(scores.dtype)


def soft_labels(scores: torch.Tensor, threshold) -> torch.Tensor:
    """The official HST soft pseudo label ``clamp(score − θ, 0, 1)`` (``getIntraPseudoLabel`` /
    ``getInterPseudoLabel`` of loss/HST.py), differentiable in the score and θ."""
    return (scores - threshold).clamp(0.0, 1.0)


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


def dtl_loss(scores: torch.Tensor, threshold: torch.Tensor, labels: torch.Tensor, form: str = "official",
             temperature: float = 0.1, reduction: str = "entries") -> torch.Tensor:
    """HST eq. 12-15: the threshold differences ``d = score − θ`` of the *known* labels scored by
    the partial BCE of eq. 16: a known positive pulls θ below its score, a known negative pushes θ
    above it, so θ is learned from the known labels.

    ``form="official"`` (loss/HST.py ``BCELoss(intraTarget, target)``): the soft pseudo label
    ``clamp(d, 0, 1)`` is the logit, which passes gradient to θ only where ``0 < d < 1``.
    ``form="paper"``: the paper does not say how ``d`` enters the BCE; ``d / τ`` is the logistic
    surrogate of the indicator ``1[score ≥ θ]`` and the fitted θ is where the known labels'
    posterior crosses ½ (with τ = 1 that crossing lies outside the score range under label
    imbalance and θ climbs above every score, so τ defaults to 0.1).

    :param reduction: a :func:`mlrpl_bench.losses.partial_bce` reduction (``entries`` = official).
    """
    if form == "official":
        logit = soft_labels(scores, threshold)
    elif form == "paper":
        logit = (scores - threshold) / temperature
    else:
        raise ValueError(f"form must be paper or official, got {form!r}")
    return partial_bce(logit, labels, reduction=reduction)


def prototype_contrastive_loss(scores: torch.Tensor, labels: torch.Tensor, sign: str = "official") -> torch.Tensor:
    """HST's prototype contrastive term of the official code (loss/HST.py ``PrototypeContrastiveLoss``;
    not in the paper), the mean over every entry of the batch, unknown ones included (constant 1).

    ``scores`` are the mean cosines to the category's prototypes ``s_c^n`` (:func:`prototype_scores`).
    ``official``: ``1 + s·y`` -- a known *positive* is pushed away from its prototypes and a known
    negative pulled towards them (the code's comment says so: "-1: 1-distance, 1: 1+distance");
    the opposite of what a contrastive loss does, and likely a sign slip, but it is what produced
    the published numbers. ``pull``: ``1 − s·y``, positives pulled towards their prototypes.
    """
    y = labels.to(scores.dtype)
    if sign == "official":
        return (1.0 + scores * y).mean()
    if sign == "pull":
        return (1.0 - scores * y).mean()
    raise ValueError(f"sign must be official or pull, got {sign!r}")


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
