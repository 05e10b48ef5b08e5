"""``focal``: the focal loss of Lin et al. (ICCV 2017) applied per label.

``FL(p_t) = -alpha_t (1 - p_t)^gamma log p_t`` (eq. 5) down-weights well-classified entries,
which in multi-label recognition are mostly the abundant easy negatives. Paper defaults:
gamma = 2 with alpha = 0.25 (its best pair, Table 1a); ``alpha < 0`` turns the alpha weighting
off (the common multi-label use).

Partial labels: by default the loss is computed on the known labels only, each image normalised
by its number of known labels (the seed papers' partial-BCE adaptation); ``unknown=negative``
treats unknowns as negatives (how the imbalance-aware pseudo-labeling paper ran Focal).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from pydantic import Field

from mlrpl_bench.hookspecs import hookimpl
from mlrpl_bench.losses import focal_loss, hard_targets
from mlrpl_bench.method import Batch

from ._baseline_common import IPL_RECIPE, LinearHeadMethod, UnknownMode, reduce_partial


class Focal(LinearHeadMethod):
    name = "focal"
    summary = "focal loss (gamma=2, alpha=0.25) on the known labels"
    citation = "Lin, Goyal, Girshick, He, Dollar. Focal Loss for Dense Object Detection. ICCV 2017"
    profiles = {"paper": dict(IPL_RECIPE)}  # the imbalance-aware pseudo-labeling paper's baseline setting

    @dataclass
    class Options:
        gamma: Annotated[float, Field(ge=0, le=100)] = field(default=2.0, metadata={"help": "focusing parameter gamma (paper: 2)"})
        alpha: Annotated[float, Field(le=1)] = field(default=0.25, metadata={"help": "weight of positives, 1-alpha for negatives (paper: 0.25); negative to disable"})
        unknown: UnknownMode = field(default="ignore", metadata={"help": "ignore: known labels only (seeds' adaptation); negative: unknowns are negatives"})

    def training_step(self, model, batch: Batch, epoch: int):
        logits = model(batch.inputs)
        alpha = self.options.alpha if self.options.alpha >= 0 else None
        per_entry = focal_loss(logits, hard_targets(batch.labels), gamma=self.options.gamma, alpha=alpha)
        return {"loss": reduce_partial(per_entry, batch.labels, self.options.unknown)}


@hookimpl
def mlrpl_methods():
    return [Focal]
