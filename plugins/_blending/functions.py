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

# -------------------------------------------------------------------------------------------------
# Losses
# -------------------------------------------------------------------------------------------------


def soft_partial_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 14 per image, ``(B,)``, extended to the soft labels that blending produces.

    An entry with label ``v > 0`` contributes ``v log s + (1 − v) log(1 − s)`` (``v = 1``: the
    paper's positive term), ``-1`` contributes ``log(1 − s)``, ``0`` (unknown) nothing; the sum is
    divided by the image's number of non-zero entries (``Σ_c |y_c|`` for hard labels).
    """
    known = (labels != 0).to(logits.dtype)
    target = labels.clamp(min=0).to(logits.dtype)
    per_entry = F.binary_cross_entropy_with_logits(logits, target, reduction="none") * known
    return per_entry.sum(dim=1) / known.sum(dim=1).clamp(min=1.0)


def contrastive_loss(features: torch.Tensor, labels: torch.Tensor, pairs: str = "all") -> torch.Tensor:
    """Eq. 3–4 over the image pairs of a batch, averaged over the pairs used.

    ``ℓ_c^{n,m} = 1 − cos(f_c^n, f_c^m)`` when both images are known positives of c, else
    ``1 + cos``. ``pairs="all"`` (the paper) uses every ordered pair n ≠ m and every class (a
    pair with itself is a constant); ``"known"`` (the official code's choice) only pairs whose
    two labels are both known. The paper sums; this averages, so that the weight λ = 0.05 does
    not depend on the batch size or the number of classes (the official code averages too).

    :param features: ``(B, C, D)`` category-specific vectors.
    :param labels: ``(B, C)`` in {1, -1, 0}.
    """
    b = features.shape[0]
    if b < 2:
        return features.sum() * 0.0
    unit = F.normalize(features, dim=-1, eps=1e-9)
    cos = torch.einsum("ncd,mcd->nmc", unit, unit)
    pos = labels > 0
    both_pos = pos[:, None, :] & pos[None, :, :]
    use = ~torch.eye(b, dtype=torch.bool, device=features.device)[:, :, None].expand_as(cos)
    if pairs == "known":
        known = labels != 0
        use = use & known[:, None, :] & known[None, :, :]
    elif pairs != "all":
        raise ValueError(f"pairs must be 'all' or 'known', got {pairs!r}")
    terms = torch.where(both_pos, 1.0 - cos, 1.0 + cos)
    weight = use.to(cos.dtype)
    return (terms * weight).sum() / weight.sum().clamp(min=1.0)


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
    :param alpha: ``(C,)`` per-class α in [0, 1].
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


def prototypes_from_sums(sums: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Region means; an empty region takes the class's mean over all its positives.

    :return: ``(prototypes (C, Q, ...), valid (C,) bool)``; a class without any known positive
        is invalid (its prototypes are zeros and PPRB never picks it).
    """
    extra = (1,) * (sums.dim() - 2)
    total = counts.sum(dim=1)
    class_mean = sums.sum(dim=1) / total.clamp(min=1).reshape(-1, *extra)
    region_mean = sums / counts.clamp(min=1).reshape(counts.shape + extra)
    empty = (counts == 0).reshape(counts.shape + extra)
    protos = torch.where(empty, class_mean.unsqueeze(1).expand_as(sums), region_mean)
    return protos, total > 0


def kmeans_vector_prototypes(vectors: list[np.ndarray], n_clusters: int, seed: int, dim: int):
    """Vector prototypes (the 'RV' variants; SARB, the paper's preliminary version): per class,
    K-means centres of the known positives' vectors. A class with fewer positives than
    ``n_clusters`` repeats its centres so every class has ``n_clusters`` rows.

    :return: ``(prototypes (C, n_clusters, dim) float32, valid (C,) bool)``.
    """
    from sklearn.cluster import KMeans

    out = np.zeros((len(vectors), n_clusters, dim), dtype=np.float32)
    valid = np.zeros(len(vectors), dtype=bool)
    for c, vecs in enumerate(vectors):
        if len(vecs) == 0:
            continue
        n = min(n_clusters, len(vecs))
        if n == 1:
            centres = vecs.mean(axis=0, keepdims=True)
        else:
            centres = KMeans(n_clusters=n, n_init=3, random_state=seed).fit(vecs).cluster_centers_
        out[c] = centres[np.arange(n_clusters) % n]
        valid[c] = True
    return torch.from_numpy(out), torch.from_numpy(valid)


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
    :param beta: ``(C,)``.
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
