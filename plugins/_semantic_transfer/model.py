"""The model of SST and HST: the SARL model + the IST co-occurrence head φ_intra (+ learned thresholds).

:class:`SemanticTransferModel` is the shared SARL model
(:class:`mlrpl_bench.models.sarl.SARLModel`) with the head φ_intra of IST (SST eq. 1 / HST
eq. 3), and, for HST, the learnable thresholds θ_intra, θ_cross (DTL); with feature blending
(HST w/ FB) also DSRB's α, β.

Two heads φ_intra (option ``ist_head``):

* :class:`OfficialCooccurrenceHead` (default; model/SST.py and model/HST.py of the official
  code): ``intra_fc_1`` (D -> H1) on each category feature, the two results of each *unordered*
  pair i < j concatenated, ``intra_fc_2`` (2·H1 -> H2) + ReLU, ``intra_fc_3`` (H2 -> H2), then an
  element-wise classifier with one weight vector per pair -- C(C−1)/2 scores, so p_ij = p_ji.
* :class:`CooccurrenceHead` (the papers' text, factorised per category): ``p_ij = φ_intra([f_i ; f_j])``
for every ordered pair of categories, with φ_intra three fully connected layers (paper: first ->
512, ReLU, second -> 1024, ReLU, last -> 1 score, sigmoid).

The first layer acts on a concatenation, so it splits exactly into two per-category products::

    W [f_i ; f_j] + b = W_a f_i + (W_b f_j + b),      W = [W_a | W_b]

:class:`CooccurrenceHead` computes ``W_a f`` and ``W_b f + b`` once per category (``C`` products
of size ``D x H1``) and adds them for each pair by broadcasting, instead of multiplying ``C²``
concatenated ``2D``-vectors (:meth:`CooccurrenceHead.naive_logits`, kept for the equivalence test
and the benchmark). Layers two and three still run per pair: they act on ``relu(...)``, which does
not factorise. At C = 200 and D = 1024 this removes two thirds of the head's multiply-adds and
the ``B·C²·2D`` tensor of concatenated pairs (see ``perf/bench_ist_head.py``). Both paths
share the layers after the first, so the benchmark's ratios measure the factorisation alone.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from mlrpl_bench.models.sarl import ElementWiseClassifier, SARLModel, SARLOutput

from .._blending.model import BlendCoefficients


class CooccurrenceHead(nn.Module):
    """φ_intra: category features ``(B, C, D)`` -> co-occurrence logits ``(B, C, C)``.

    :param feature_dim: D.
    :param hidden: sizes of the two hidden layers (paper: ``(512, 1024)``).
    """

    def __init__(self, feature_dim: int, hidden: tuple[int, int] = (512, 1024)):
        super().__init__()
        h1, h2 = hidden
        self.feature_dim = feature_dim
        # One Linear over the concatenation [f_i ; f_j] (2D inputs): its weight is [W_a | W_b].
        self.fc1 = nn.Linear(2 * feature_dim, h1)
        self.fc2 = nn.Linear(h1, h2)
        self.fc3 = nn.Linear(h2, 1)

    def first_layer(self, features: torch.Tensor) -> torch.Tensor:
        """``W_a f_i + W_b f_j + b`` for all pairs, ``(B, C, C, H1)``, from two per-category products."""
        d = self.feature_dim
        left = features @ self.fc1.weight[:, :d].t()  # (B, C, H1): W_a f_i
        right = torch.addmm(self.fc1.bias, features.flatten(0, 1), self.fc1.weight[:, d:].t()).view_as(left)
        return left.unsqueeze(2) + right.unsqueeze(1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Co-occurrence logits ``(B, C, C)``; entry ``[b, i, j]`` is φ_intra([f_i ; f_j]) before the sigmoid."""
        return self._tail(self.first_layer(features))

    def _tail(self, pre_activation: torch.Tensor) -> torch.Tensor:
        # Out-of-place ReLUs on purpose: measured with perf/bench_ist_head.py, in-place ones
        # on these 4-D linear outputs raise the backward peak (autograd's view bookkeeping) and
        # save nothing, since the backward peak, not the forward one, is the head's peak.
        hidden = torch.relu(self.fc2(torch.relu(pre_activation)))
        return self.fc3(hidden).squeeze(-1)

    def naive_logits(self, features: torch.Tensor) -> torch.Tensor:
        """The same logits by materialising every concatenated pair ``[f_i ; f_j]`` (reference)."""
        b, c, d = features.shape
        pairs = torch.cat([features.unsqueeze(2).expand(b, c, c, d), features.unsqueeze(1).expand(b, c, c, d)], dim=-1)
        return self._tail(self.fc1(pairs))

    def probabilities(self, features: torch.Tensor) -> torch.Tensor:
        """``sigmoid(forward(features))``: the image-specific co-occurrence matrices P^n."""
        return torch.sigmoid(self(features))


def _pair_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[:, index]``: on the CPU by ``index_select`` (whole rows copied; ~9x cheaper than advanced
    indexing at C = 20, and its backward ``index_add_`` adds the rows in index order, the same
    floats); elsewhere by advanced indexing, whose CUDA backward is a sorted, deterministic
    accumulation (``index_add_`` there uses atomics: the order of a class's C − 1 terms would vary)."""
    return x.index_select(1, index) if x.device.type == "cpu" else x[:, index]


class OfficialCooccurrenceHead(nn.Module):
    """φ_intra of the official code: category features ``(B, C, D)`` -> symmetric co-occurrence
    logits ``(B, C, C)`` (diagonal 0: the head scores no pair of a category with itself).

    ``intra_fc_2`` acts on ``[g_i ; g_j]`` with no activation before it, so it splits into two
    per-category products (as in :class:`CooccurrenceHead`): ``W [g_i ; g_j] + b = W_a g_i +
    (W_b g_j + b)``; only the pair rows i < j are formed. Same function and gradients as the
    official code, without its ``(B, C(C−1)/2, 2·H1)`` tensor of concatenated pairs.

    :param feature_dim: D. :param num_classes: C.
    :param hidden: ``(H1, H2)`` = the official ``(intermediaDim, outputDim)`` = (512, 1024) at D = 1024.
    """

    def __init__(self, feature_dim: int, num_classes: int, hidden: tuple[int, int] = (512, 1024)):
        super().__init__()
        h1, h2 = hidden
        self.num_classes = num_classes
        first, second = torch.triu_indices(num_classes, num_classes, offset=1)
        self.register_buffer("pair_first", first, persistent=False)
        self.register_buffer("pair_second", second, persistent=False)
        # Where each entry of the symmetric (C, C) output comes from in [0 ; pair logits]: the
        # pair's position + 1 on both sides of the diagonal, 0 (the zero) on it.
        position = torch.zeros(num_classes, num_classes, dtype=torch.long)
        position[first, second] = position[second, first] = torch.arange(1, first.numel() + 1)
        self.register_buffer("pair_position", position.flatten(), persistent=False)
        self.fc1 = nn.Linear(feature_dim, h1)
        self.fc2 = nn.Linear(2 * h1, h2)
        self.fc3 = nn.Linear(h2, h2)
        self.classifier = ElementWiseClassifier(first.numel(), h2)

    def pair_logits(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, C(C−1)/2)`` logits of the pairs i < j, in the official order (0,1), (0,2), ..., (1,2), ..."""
        g = self.fc1(features)  # (B, C, H1)
        h1 = g.shape[-1]
        left = g @ self.fc2.weight[:, :h1].t()  # (B, C, H2): W_a g_i
        right = torch.addmm(self.fc2.bias, g.flatten(0, 1), self.fc2.weight[:, h1:].t()).view_as(left)
        hidden = torch.relu(_pair_rows(left, self.pair_first) + _pair_rows(right, self.pair_second))  # (B, P, H2)
        # intra_fc_3 and the per-pair classifier have no activation between them, so they are one
        # vector per pair: w_p·(W_3 x + b_3) + b_p = (w_p W_3)·x + (w_p·b_3 + b_p) -- a (P, H2)
        # product per batch instead of W_3 on all B·P pair rows; the same function and gradients,
        # summed in another order (:meth:`literal_pair_logits` is the layer-by-layer form).
        weight = self.classifier.weight @ self.fc3.weight  # (P, H2)
        bias = torch.addmv(self.classifier.bias, self.classifier.weight, self.fc3.bias)  # (P,)
        return (hidden * weight).sum(dim=-1) + bias

    def literal_pair_logits(self, features: torch.Tensor) -> torch.Tensor:
        """:meth:`pair_logits` with ``intra_fc_3`` on every pair row, then the classifier (the official
        layer order; the reference of the equivalence tests and of perf/bench_sarl_cost.py)."""
        g = self.fc1(features)
        h1 = g.shape[-1]
        left = g @ self.fc2.weight[:, :h1].t()
        right = torch.addmm(self.fc2.bias, g.flatten(0, 1), self.fc2.weight[:, h1:].t()).view_as(left)
        hidden = torch.relu(left[:, self.pair_first] + right[:, self.pair_second])
        return self.classifier(self.fc3(hidden))

    def naive_pair_logits(self, features: torch.Tensor) -> torch.Tensor:
        """The same logits by concatenating ``[g_i ; g_j]`` as the official code does (reference)."""
        g = self.fc1(features)
        pairs = torch.cat([g[:, self.pair_first], g[:, self.pair_second]], dim=-1)
        return self.classifier(self.fc3(torch.relu(self.fc2(pairs))))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Symmetric ``(B, C, C)`` logits: ``[b, i, j] = [b, j, i]`` = the pair's logit, diagonal 0.

        One ``index_select`` from ``[0 ; pair logits]`` (the same values as writing the pairs into
        a zero matrix twice, :meth:`literal_forward`; the backward adds the two sides' gradients,
        as the two writes' backward does -- two terms, so their order cannot change the sum, on
        any device)."""
        pairs = self.pair_logits(features)
        padded = torch.cat([pairs.new_zeros(pairs.shape[0], 1), pairs], dim=1)
        return padded.index_select(1, self.pair_position).view(pairs.shape[0], self.num_classes, self.num_classes)

    def literal_forward(self, features: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` as two indexed writes into a zero matrix, with :meth:`literal_pair_logits`
        (the reference of the equivalence tests and of perf/bench_sarl_cost.py)."""
        pairs = self.literal_pair_logits(features)
        out = pairs.new_zeros(pairs.shape[0], self.num_classes, self.num_classes)
        out[:, self.pair_first, self.pair_second] = pairs
        out[:, self.pair_second, self.pair_first] = pairs
        return out


class TransferOutput(NamedTuple):
    """:ivar sarl: the :class:`SARLOutput`; :ivar cooc_logits: ``(B, C, C)`` φ_intra logits or None;
    :ivar blended: what the ``blend`` callable returned (feature blending), else None."""

    sarl: SARLOutput
    cooc_logits: torch.Tensor | None
    blended: Any = None


class SemanticTransferModel(BlendCoefficients, SARLModel):
    """SARL model + the IST head φ_intra + (HST) the learnable thresholds θ_intra, θ_cross
    (+ with ``blending``, the α, β of feature blending).

    ``model(x)`` gives logits (the IST/CST modules are removed at inference, as in the papers);
    ``model(x, return_all=True)`` a :class:`TransferOutput`; ``blend=fn`` builds the category
    feature maps and runs ``fn(model, maps, features)`` inside forward, as
    :class:`~.._blending.model.DSRBModel` does. The thresholds are parameters of the model so the
    optimizer, gradient averaging and checkpoints see them.

    :param ist_head: ``official`` (:class:`OfficialCooccurrenceHead`) or ``paper`` (:class:`CooccurrenceHead`).
    :param blend_shape: shape of α and β with ``blending`` (``()`` one scalar each, ``(C,)`` per class).
    """

    def __init__(self, backbone, num_classes, word_embeddings, adjacency, *, ist_hidden: tuple[int, int] | None,
                 learn_thresholds: bool, threshold_init: float = 1.0, blending: bool = False, ist_head: str = "official",
                 blend_shape: tuple[int, ...] = (), **sarl_kwargs):
        super().__init__(backbone, num_classes, word_embeddings, adjacency, **sarl_kwargs)
        if ist_hidden is None:
            self.ist_head = None
        elif ist_head == "official":
            self.ist_head = OfficialCooccurrenceHead(self.feature_dim, num_classes, ist_hidden)
        else:
            self.ist_head = CooccurrenceHead(self.feature_dim, ist_hidden)
        # [θ_intra, θ_cross]; absent unless learned (DTL).
        self.thresholds = nn.Parameter(torch.full((2,), float(threshold_init))) if learn_thresholds else None
        # α, β only exist with blending, so checkpoints of the plain methods keep their keys.
        if blending:
            self.init_blend_parameters(blend_shape)

    def forward(self, x: torch.Tensor, return_all: bool = False, blend=None):
        if blend is None:
            out, blended = super().forward(x, return_all=True), None
        else:
            out, _, blended = self.forward_blended(x, blend)
        if not return_all:
            return out.logits
        cooc = self.ist_head(out.features) if self.ist_head is not None else None
        return TransferOutput(out, cooc, blended)


__all__ = ["CooccurrenceHead", "OfficialCooccurrenceHead", "SemanticTransferModel", "TransferOutput"]
