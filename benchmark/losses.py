"""Loss functions shared by several methods (pure torch, label contract 1/-1/0)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def partial_bce(logits: torch.Tensor, labels: torch.Tensor, *, weights: torch.Tensor | None = None,
                reduction: str = "mean") -> torch.Tensor:
    """Partial binary cross-entropy (SST eq. 9, HST eq. 16): BCE over known entries only.

    :param logits: ``(B, C)`` raw scores.
    :param labels: ``(B, C)`` in {1, -1, 0}; 0 entries contribute nothing.
    :param weights: optional ``(B,)`` per-image factors applied after the per-image normalisation
        (not with ``reduction="entries"``).
    :param reduction: ``mean`` -- each image normalised by its number of known labels (the
        papers' eq. 9/16), then the mean over images (images without known labels count as zero
        loss); ``sum`` of those per-image values; ``none`` for the ``(B,)`` per-image values;
        ``entries`` -- the mean over all known entries of the batch, as the official SST/HST/DSRB
        code's ``BCELoss`` computes it (0 when the batch has none), see :func:`mean_over_known`.
    """
    known = (labels != 0).to(logits.dtype)
    targets = (labels > 0).to(logits.dtype)
    per_entry = F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * known
    if reduction == "entries":
        if weights is not None:
            raise ValueError("partial_bce: per-image weights need a per-image reduction, not 'entries'")
        return mean_over_known(per_entry, known)
    per_image = per_entry.sum(dim=1) / known.sum(dim=1).clamp(min=1.0)
    if weights is not None:
        per_image = per_image * weights
    if reduction == "none":
        return per_image
    if reduction == "sum":
        return per_image.sum()
    return per_image.mean()


def mean_over_known(per_entry: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """``Σ per_entry·known / Σ known`` over the whole batch, 0 when nothing is known: the
    reduction of the official code's ``BCELoss`` (every known entry weighs the same, so an image
    with many known labels weighs more than one with few)."""
    return (per_entry * known).sum() / known.sum().clamp(min=1.0)


# ---------------------------------------------------------------------------------------------
# Per-entry losses of the baselines (return ``(B, C)`` matrices; the caller masks and reduces)
# ---------------------------------------------------------------------------------------------


def known_mask(labels: torch.Tensor) -> torch.Tensor:
    """``(B, C)`` float mask of the known entries (label 1 or -1)."""
    return (labels != 0).float()


def hard_targets(labels: torch.Tensor) -> torch.Tensor:
    """``(B, C)`` float targets: 1 where the label is positive, 0 elsewhere (negatives and unknowns)."""
    return (labels > 0).float()


def masked_per_image_mean(per_entry: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``per_entry`` over the entries where ``mask`` > 0, image by image, then over images.

    The reduction of partial BCE (SST eq. 9): each image is normalised by the weight of its own
    entries; an image without any entry contributes zero (it still counts in the batch mean).
    """
    per_image = (per_entry * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-12)
    per_image = torch.where(mask.sum(dim=1) > 0, per_image, torch.zeros_like(per_image))
    return per_image.mean()


def smoothed_targets(targets: torch.Tensor, epsilon: float, scheme: str = "cole") -> torch.Tensor:
    """Label-smoothed binary targets.

    ``cole``: 1 -> 1-eps, 0 -> eps (Cole et al. 2021, the ``ls_coef`` of their BCE-LS / AN-LS);
    ``szegedy``: Szegedy et al. 2016 with K = 2 classes per entry, 1 -> 1-eps/2, 0 -> eps/2.
    """
    if scheme == "cole":
        return targets * (1.0 - epsilon) + (1.0 - targets) * epsilon
    if scheme == "szegedy":
        return targets * (1.0 - epsilon) + epsilon / 2.0
    raise ValueError(f"unknown label-smoothing scheme {scheme!r}")


def soft_bce_with_logits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-entry ``-(t log p + (1 - t) log(1 - p))`` for soft targets ``t`` in [0, 1]."""
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none")


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, *, gamma: float = 2.0,
               alpha: float | None = None) -> torch.Tensor:
    """Per-entry focal loss (Lin et al., ICCV 2017, eq. 5): ``-alpha_t (1 - p_t)^gamma log p_t``.

    :param targets: hard targets in {0, 1}.
    :param alpha: weight of positives (``1 - alpha`` for negatives); ``None`` for no weighting.
    """
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # = -log p_t, stable
    p = torch.sigmoid(logits)
    p_t = p * targets + (1.0 - p) * (1.0 - targets)
    loss = (1.0 - p_t).pow(gamma) * ce
    if alpha is not None:
        loss = loss * (alpha * targets + (1.0 - alpha) * (1.0 - targets))
    return loss


def asymmetric_loss(logits: torch.Tensor, targets: torch.Tensor, *, gamma_pos: float = 0.0,
                    gamma_neg: float = 4.0, margin: float = 0.05, eps: float = 1e-8) -> torch.Tensor:
    """Per-entry asymmetric loss (Ridnik, Ben-Baruch et al., ICCV 2021, Sec. 3).

    ``L+ = (1 - p)^gamma_pos * -log p`` on positives and ``L- = p_m^gamma_neg * -log(1 - p_m)``
    on negatives with the shifted probability ``p_m = max(p - margin, 0)`` (probability shifting): negatives
    predicted below ``margin`` are discarded entirely.
    """
    p = torch.sigmoid(logits)
    loss_pos = (1.0 - p).pow(gamma_pos) * -F.logsigmoid(logits)
    p_m = (p - margin).clamp(min=0.0)
    loss_neg = p_m.pow(gamma_neg) * -torch.log((1.0 - p_m).clamp(min=eps))
    return targets * loss_pos + (1.0 - targets) * loss_neg


def expected_positive_regularizer(probs: torch.Tensor, expected_positives: float) -> torch.Tensor:
    """EPR of Cole et al. (CVPR 2021, eq. 7 with the squared norm): ``(mean_n sum_c p_nc - k)^2 / C^2``."""
    c = probs.shape[1]
    return (probs.sum(dim=1).mean() - expected_positives).pow(2) / float(c * c)
