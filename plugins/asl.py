"""``asl``: the asymmetric loss of Ridnik, Ben-Baruch et al. (ICCV 2021; arXiv 2020).

Positives: ``(1 - p)^gamma_pos * -log p``; negatives: ``p_m^gamma_neg * -log(1 - p_m)`` with the
shifted probability ``p_m = max(p - m, 0)``, so easy negatives (p < m) are discarded and hard
ones are still focused on. Paper defaults (its MS-COCO setting): gamma_neg = 4, gamma_pos = 0,
m = 0.05. The official code's class defaults use gamma_pos = 1 (pass ``gamma_pos=1``).

Partial labels: by default the loss is computed on the known labels only, each image normalised
by its number of known labels (the seed papers' adaptation, "replacing the BCE loss with partial
BCE"); ``unknown=negative`` treats unknowns as negatives (the imbalance-aware pseudo-labeling
paper's adaptation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from pydantic import Field

from mlrpl_bench.hookspecs import hookimpl
from mlrpl_bench.losses import asymmetric_loss, hard_targets
from mlrpl_bench.method import Batch

from ._baseline_common import LinearHeadMethod, SEED_RECIPE, Unit, UnknownMode, reduce_partial

Focusing = Annotated[float, Field(ge=0, le=100)]


class ASL(LinearHeadMethod):
    name = "asl"
    summary = "asymmetric loss (gamma-=4, gamma+=0, margin 0.05) on the known labels"
    citation = ("Ridnik, Ben-Baruch, Zamir, Noy, Friedman, Protter, Zelnik-Manor. Asymmetric Loss for "
                "Multi-Label Classification. ICCV 2021 (arXiv:2009.14119, 2020)")
    profiles = {"paper": dict(SEED_RECIPE)}  # the seed papers' recipe (ResNet-101, 448 px, batch 32, lr 1e-5, 20 epochs)

    @dataclass
    class Options:
        gamma_neg: Focusing = field(default=4.0, metadata={"help": "focusing exponent on negatives (paper: 4)"})
        gamma_pos: Focusing = field(default=0.0, metadata={"help": "focusing exponent on positives (paper: 0; official class default: 1)"})
        margin: Unit = field(default=0.05, metadata={"help": "probability margin m of the negative shift (paper: 0.05)"})
        unknown: UnknownMode = field(default="ignore", metadata={"help": "ignore: known labels only (seeds' adaptation); negative: unknowns are negatives"})

    def training_step(self, model, batch: Batch, epoch: int):
        logits = model(batch.inputs)
        per_entry = asymmetric_loss(logits, hard_targets(batch.labels), gamma_pos=self.options.gamma_pos,
                                    gamma_neg=self.options.gamma_neg, margin=self.options.margin)
        return {"loss": reduce_partial(per_entry, batch.labels, self.options.unknown)}


@hookimpl
def mlrpl_methods():
    return [ASL]
