"""Semantic-aware representation blending: the pieces of DSRB (Pu, Chen et al.) as functions.

Everything here works on *category-specific* representations laid out as ``(B, C, ...)``:
feature maps ``(B, C, D, h, w)`` (the paper's ``F_c^n``) or vectors ``(B, C, D)`` (``f_c^n``);
labels are ``(B, C)`` floats in {1, -1, 0} and, after blending, soft values in [0, 1] on the
blended entries. The maps and their pooling σ (eq. 1–2) come from the shared SARL model
(:meth:`~mlrpl_bench.models.sarl.SARLModel.category_maps`, ``pool``, ``classify``); the learnable
per-class α (IPRB) and β (PPRB) from :class:`.model.BlendCoefficients`; what carries over between
steps (schedule, prototypes) is in :mod:`.blender`.

Pooling is linear (SD: attention-weighted sum; SA: mean), so pooling a blend equals blending
the pooled vectors; what maps add is *where* the object is — the 4^K-region split of the PPRB
prototypes and the choice of a prototype from another region than the image's own.
"""

from __future__ import annotations


import numpy as np
import torch
import torch.nn.functional as F

from mlrpl_bench.losses import mean_over_known

from .._sarl.kmeans import kmeans_centres

# -------------------------------------------------------------------------------------------------
# Losses
# -------------------------------------------------------------------------------------------------


def soft_partial_bce(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "none") -> torch.Tensor:
    """Eq. 14, extended to the soft labels that blending produces.

    An entry with label ``v > 0`` contributes ``v log s + (1 − v) log(1 − s)`` (``v = 1``: the
    paper's positive term), ``-1`` contributes ``log(1 − s)``, ``0`` (unknown) nothing -- as the
    official ``BCELoss`` does with its positive mask ``target > 0`` and negative mask ``target < 0``.

    :param reduction: ``none`` -- ``(B,)``, each image divided by its number of non-zero entries
        (eq. 14); ``mean`` of those; ``entries`` -- the mean over all non-zero entries of the
        batch (the official code's reduction).
    """
    known = (labels != 0).to(logits.dtype)
    target = labels.clamp(min=0).to(logits.dtype)
    per_entry = F.binary_cross_entropy_with_logits(logits, target, reduction="none") * known
    if reduction == "entries":
        return mean_over_known(per_entry, known)
    per_image = per_entry.sum(dim=1) / known.sum(dim=1).clamp(min=1.0)
    if reduction == "mean":
        return per_image.mean()
    if reduction != "none":
        raise ValueError(f"reduction must be none, mean or entries, got {reduction!r}")
    return per_image


# -------------------------------------------------------------------------------------------------
# IPRB (eq. 6–9, Algorithm 1)
# -------------------------------------------------------------------------------------------------


def _per_class(coef: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(B, C)`` coefficients shaped to broadcast over ``like`` = ``(B, C, ...)``."""
    return coef.reshape(coef.shape + (1,) * (like.dim() - 2))


def iprb_blend(reps: torch.Tensor, labels: torch.Tensor, alpha: torch.Tensor):
    """Blend each image with its partner in the flipped batch (eq. 8–9).

    Where ``y_c^n = 0`` and the partner's ``y_c^m = 1``: ``F̂_c^n = α_c F_c^n + (1 − α_c) F_c^m`` and
    ``ŷ_c^n = 1 − α_c`` (eq. 6–7); everywhere else the representation and the label are the
    image's own. (Algorithm 1 sets the partner's weight to 1 outside the blended entries, which
    would add the partner's maps everywhere; the equations are followed.)

    :param reps: ``(B, C, ...)`` maps or vectors.
    :param labels: ``(B, C)``.
    :param alpha: α in [0, 1], one scalar ``()`` or one per class ``(C,)``.
    :return: ``(blended reps, blended labels, mask (B, C) of the blended entries)``.
    """
    partner_reps, partner_labels = reps.flip(0), labels.flip(0)
    mask = (labels == 0) & (partner_labels == 1)
    a = torch.where(mask, alpha.to(reps.dtype).expand_as(labels), torch.ones_like(labels, dtype=reps.dtype))
    a_full = _per_class(a, reps)
    blended = a_full * reps + (1 - a_full) * partner_reps
    blended_labels = a * labels + (1 - a) * partner_labels
    return blended, blended_labels, mask


# -------------------------------------------------------------------------------------------------
# PPRB (eq. 10–13) and its prototypes
# -------------------------------------------------------------------------------------------------


def region_index(maps: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Which of the ``4^k`` regions holds the maximum response of each map.

    The response is the channel sum of the map (``(..., D, h, w) -> (..., h, w)``); its arg-max
    location ``(row, col)`` falls in the grid cell ``(row // ⌊h / 2^k⌋, col // ⌊w / 2^k⌋)``
    (the last cell takes the remainder of an odd size, as in the official code for k = 1),
    numbered row-major: for k = 1, 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right.
    """
    response = maps.sum(dim=-3)
    h, w = response.shape[-2:]
    flat = response.flatten(-2).argmax(dim=-1)
    row, col = flat // w, flat % w
    side = 2**k
    cell_h, cell_w = max(1, h // side), max(1, w // side)
    r = (row // cell_h).clamp(max=side - 1)
    c = (col // cell_w).clamp(max=side - 1)
    return r * side + c


def map_prototype_sums(maps: torch.Tensor, labels: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class, per-region sums and counts of the maps of known positives (one batch).

    :param maps: ``(B, C, D, h, w)``.
    :param labels: ``(B, C)``; only entries equal to 1 count.
    :return: ``(sums (C, 4^k, D, h, w), counts (C, 4^k))`` — add them over batches (and
        processes), then :func:`prototypes_from_sums`.
    """
    b, c = labels.shape
    q = 4**k
    regions = region_index(maps, k)  # (B, C)
    pos = (labels == 1).to(maps.dtype)
    onehot = F.one_hot(regions, q).to(maps.dtype) * pos[..., None]  # (B, C, Q)
    sums = torch.einsum("bcq,bc...->cq...", onehot, maps)
    return sums, onehot.sum(dim=0)


def prototypes_from_sums(sums: torch.Tensor, counts: torch.Tensor, zero_map: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Region means; an empty region takes the class's mean over all its positives.

    ``zero_map``: divide a region's sum by its count + 1, as the official
    ``computePrototype_featuremap`` does (each region's list starts with a zero map that its
    ``torch.mean`` includes; the class mean for empty regions leaves it out).

    :return: ``(prototypes (C, Q, ...), valid (C,) bool)``; a class without any known positive
        is invalid (its prototypes are zeros and PPRB never picks it).
    """
    extra = (1,) * (sums.dim() - 2)
    total = counts.sum(dim=1)
    class_mean = sums.sum(dim=1) / total.clamp(min=1).reshape(-1, *extra)
    divisor = counts + 1 if zero_map else counts
    region_mean = sums / divisor.clamp(min=1).reshape(counts.shape + extra)
    empty = (counts == 0).reshape(counts.shape + extra)
    protos = torch.where(empty, class_mean.unsqueeze(1).expand_as(sums), region_mean)
    return protos, total > 0


def first_seen(keys: torch.Tensor, images: torch.Tensor, groups: torch.Tensor, cap: int) -> torch.Tensor:
    """Which candidates the official prototype pass keeps: per group, the ``cap`` candidates whose
    image comes first in a random order of the training set.

    The official ``computePrototype_featuremap`` walks the shuffled training loader and appends a
    positive's map to its (class, region) list while the list is short (at most 100 maps); so the
    maps kept are those of the first images seen. ``keys`` ``(N,)`` is a random order of the N
    training images (lower = seen first).

    :param images: ``(M,)`` image row of each candidate; :param groups: ``(M,)`` its group id
        (class · regions + region).
    :return: ``(M,)`` bool.
    """
    if images.numel() == 0:
        return torch.zeros(0, dtype=torch.bool)
    k = keys[images]
    # Order by group, then by key; a candidate's rank within its group decides.
    order = torch.argsort(k)
    order = order[torch.argsort(groups[order], stable=True)]
    sorted_groups = groups[order]
    starts = torch.searchsorted(sorted_groups, sorted_groups, right=False)
    rank = torch.arange(order.numel()) - starts
    keep = torch.zeros(images.numel(), dtype=torch.bool)
    keep[order] = rank < cap
    return keep


def kmeans_vector_prototypes(vectors: list[np.ndarray], n_clusters: int, seed: int, dim: int):
    """Vector prototypes (the 'RV' variants; SARB, the paper's preliminary version): per class,
    K-means centres of the known positives' vectors (:func:`.._sarl.kmeans.kmeans_centres`, as
    SARB's ``computePrototype``). A class with fewer positives than ``n_clusters`` repeats its
    centres so every class has ``n_clusters`` rows.

    :return: ``(prototypes (C, n_clusters, dim) float32, valid (C,) bool)``.
    """
    out = torch.zeros(len(vectors), n_clusters, dim)
    valid = torch.zeros(len(vectors), dtype=torch.bool)
    for c, vecs in enumerate(vectors):
        if len(vecs) == 0:
            continue
        centres = kmeans_centres(vecs, n_clusters, seed)
        out[c] = centres[torch.arange(n_clusters) % centres.shape[0]]
        valid[c] = True
    return out, valid


def pprb_select(labels: torch.Tensor, valid: torch.Tensor, per_image: int = 1,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick ``per_image`` random unknown categories of each image (eq. 10, ``random({c | y_c = 0})``)
    among the classes that have prototypes. An image without such a category gets none.

    :return: ``(B, C)`` bool.
    """
    eligible = (labels == 0) & valid.to(labels.device)[None, :]
    draw = torch.rand(labels.shape, generator=generator).to(labels.device)
    draw = torch.where(eligible, draw, torch.full_like(draw, -1.0))
    rank = draw.argsort(dim=1, descending=True).argsort(dim=1)
    return (rank < per_image) & eligible


def pick_prototype_index(own_region: torch.Tensor, n_prototypes: int, avoid_own: bool,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """The prototype ``k`` for each blended entry: uniform over the prototypes, excluding the
    image's own region when ``avoid_own`` (eq. 10: 'avoid the potential object area of the
    prototype is same with the input image')."""
    shape = own_region.shape
    if n_prototypes == 1:
        return torch.zeros(shape, dtype=torch.long, device=own_region.device)
    if avoid_own:
        offset = torch.randint(1, n_prototypes, shape, generator=generator).to(own_region.device)
        return (own_region + offset) % n_prototypes
    return torch.randint(0, n_prototypes, shape, generator=generator).to(own_region.device)


def pprb_blend(reps: torch.Tensor, labels: torch.Tensor, beta: torch.Tensor, prototypes: torch.Tensor,
               selected: torch.Tensor, k: torch.Tensor):
    """Blend the selected categories with a prototype (eq. 12–13).

    ``F̃_c^n = β_c F_c^n + (1 − β_c) P_c^k`` and ``ỹ_c^n = 1 − β_c`` where ``selected``; the image's
    own representation and label elsewhere.

    :param reps: ``(B, C, ...)``.
    :param beta: ``()`` or ``(C,)``.
    :param prototypes: ``(C, Q, ...)`` (no gradient).
    :param selected: ``(B, C)`` bool.
    :param k: ``(B, C)`` long prototype index (read where ``selected``).
    """
    bsel = torch.where(selected, beta.to(reps.dtype).expand_as(labels), torch.ones_like(labels, dtype=reps.dtype))
    proto = reps.new_zeros(reps.shape)
    rows, cls = selected.nonzero(as_tuple=True)
    if rows.numel():
        proto[rows, cls] = prototypes.to(reps.dtype)[cls, k[rows, cls]]
    b_full = _per_class(bsel, reps)
    blended = b_full * reps + (1 - b_full) * proto
    blended_labels = bsel * labels + (1 - bsel)
    return blended, blended_labels
