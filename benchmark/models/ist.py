"""The IST co-occurrence head φ_intra (SST eq. 1 / HST eq. 3), factorised per category.

``p_ij = φ_intra([f_i ; f_j])`` for every ordered pair of categories, with φ_intra three fully
connected layers (paper: first -> 512, ReLU, second -> 1024, ReLU, last -> 1 score, sigmoid).

The first layer acts on a concatenation, so it splits exactly into two per-category products::

    W [f_i ; f_j] + b = W_a f_i + (W_b f_j + b),      W = [W_a | W_b]

:class:`CooccurrenceHead` computes ``W_a f`` and ``W_b f + b`` once per category (``C`` products
of size ``D x H1``) and adds them for each pair by broadcasting, instead of multiplying ``C²``
concatenated ``2D``-vectors (:meth:`CooccurrenceHead.naive_logits`, kept for the equivalence test
and the benchmark). Layers two and three still run per pair: they act on ``relu(...)``, which does
not factorise. At C = 200 and D = 1024 this removes two thirds of the head's multiply-adds and
the ``B·C²·2D`` tensor of concatenated pairs (see ``perf/bench_ist_head.py``). Both paths
share the layers after the first, so the benchmark's ratios measure the
factorisation alone.
"""

from __future__ import annotations

import torch
from torch import nn


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
