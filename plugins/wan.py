"""``wan``: weak assume negative (Cole et al., CVPR 2021, "WAN"; Mac Aodha et al., ICCV 2019).

Unknown labels are assumed negative but their loss is down-weighted by gamma = 1 / (C - 1), the
weight that balances one positive against C - 1 assumed negatives in the single-positive setting.
With partial labels, known positives and known negatives keep weight 1; only the assumed
negatives (the unknown entries) get gamma. Sum over entries divided by B x C (official code).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mlrpl_bench.hookspecs import hookimpl
from mlrpl_bench.losses import hard_targets, soft_bce_with_logits
from mlrpl_bench.method import Batch

from ._baseline_common import COLE_CITATION, COLE_RECIPE, LinearHeadMethod, Unit


def wan_weights(labels: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-entry weights: 1 on known entries, ``gamma`` on unknown (assumed negative) entries."""
    known = (labels != 0).float()
    return known + (1.0 - known) * gamma


def wan_loss(logits: torch.Tensor, labels: torch.Tensor, gamma: float) -> torch.Tensor:
    """Weighted assume-negative BCE, summed and divided by B x C."""
    per_entry = soft_bce_with_logits(logits, hard_targets(labels)) * wan_weights(labels, gamma)
    return per_entry.mean()


class WeakAssumeNegative(LinearHeadMethod):
    name = "wan"
    summary = "weak assume negative: unknowns are negatives weighted by 1/(C-1)"
    citation = COLE_CITATION + "; Mac Aodha, Cole, Perona. Presence-Only Geographical Priors for Fine-Grained Image Classification. ICCV 2019"
    profiles = {"paper": dict(COLE_RECIPE)}  # Cole et al.'s end-to-end setting

    @dataclass
    class Options:
        gamma: Unit = field(default=0.0, metadata={"help": "weight of assumed negatives; 0 means the paper's 1/(C-1)"})

    def __init__(self, options, ctx):
        super().__init__(options, ctx)
        c = ctx.num_classes
        self.gamma = options.gamma if options.gamma > 0 else (1.0 / (c - 1) if c > 1 else 1.0)

    def training_step(self, model, batch: Batch, epoch: int):
        return {"loss": wan_loss(model(batch.inputs), batch.labels, self.gamma)}


@hookimpl
def mlrpl_methods():
    return [WeakAssumeNegative]
