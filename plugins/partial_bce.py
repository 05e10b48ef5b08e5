"""``partial-bce``: BCE over the known labels only (SST eq. 9 / HST eq. 16).

Each image's loss is normalised by its number of known labels. The ``durand`` normalisation is
the proportion-based weighting of Durand et al. (CVPR 2019, eq. 4-5): the per-image loss is
scaled by ``g(p) = alpha * p**gamma + beta`` of the proportion ``p`` of known labels, with
``g(0.1) = 5`` and ``g(1) = 1`` (gamma = 1), and divided by C instead of the known count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from mlrpl_bench.hookspecs import hookimpl
from mlrpl_bench.losses import partial_bce
from mlrpl_bench.method import Batch, Method
from mlrpl_bench.models.heads import PooledLinearClassifier


def durand_weight(known_fraction: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """g(p) = alpha p^gamma + beta with g(0.1) = 5 and g(1) = 1 (Durand et al. 2019)."""
    alpha = (5.0 - 1.0) / (0.1**gamma - 1.0)
    beta = 1.0 - alpha
    return alpha * known_fraction.pow(gamma) + beta


class PartialBCE(Method):
    name = "partial-bce"
    summary = "BCE over known labels, normalised by the number of known labels per image"
    citation = ("Durand, Mehrasa, Mori. Learning a Deep ConvNet for Multi-label Classification with Partial "
                "Labels. CVPR 2019; normalisation as in Chen et al., SST (AAAI 2022) eq. 9")

    @dataclass
    class Options:
        normalization: Literal["known", "durand"] = field(default="known", metadata={"help": "known: divide by the known count (SST eq. 9); durand: g(p)/C weighting (Durand et al. 2019)"})
        gamma: float = field(default=1.0, metadata={"help": "exponent of Durand's g(p) (only with normalization=durand)"})

    def build_model(self, backbone):
        return PooledLinearClassifier(backbone, self.ctx.num_classes)

    def training_step(self, model, batch: Batch, epoch: int):
        logits = model(batch.inputs)
        if self.options.normalization == "known":
            return {"loss": partial_bce(logits, batch.labels)}
        known = (batch.labels != 0).float()
        c = batch.labels.shape[1]
        weights = durand_weight(known.sum(1) / c, self.options.gamma) * known.sum(1) / c
        # partial_bce divides by the known count; weights turn that into g(p)/C.
        return {"loss": partial_bce(logits, batch.labels, weights=weights)}


@hookimpl
def mlrpl_methods():
    return [PartialBCE]
