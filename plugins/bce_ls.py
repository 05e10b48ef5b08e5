"""``bce-ls``: binary cross-entropy with label smoothing (Szegedy et al., CVPR 2016).

Label smoothing moves every hard target away from 0/1 so that the model is not pushed to
over-confident scores. Defaults follow the multi-label baselines of Cole et al. (CVPR 2021),
which the imbalance-aware pseudo-labeling paper compares against: ``ls_coef`` eps = 0.1 with
positives -> 1 - eps and negatives -> eps (scheme ``cole``); ``szegedy`` uses the K = 2 form
1 - eps/2 and eps/2.

Partial labels: by default only the known labels are smoothed and trained on, each image
normalised by its number of known labels as in partial BCE (the seed papers' adaptation);
``unknown=negative`` treats unknown entries as negatives before smoothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mlrpl_bench.hookspecs import hookimpl
from mlrpl_bench.losses import hard_targets, smoothed_targets, soft_bce_with_logits
from mlrpl_bench.method import Batch

from ._baseline_common import IPL_RECIPE, LinearHeadMethod, Unit, UnknownMode, reduce_partial


class BCELabelSmoothing(LinearHeadMethod):
    name = "bce-ls"
    summary = "BCE with label smoothing (eps=0.1) on the known labels"
    citation = ("Szegedy, Vanhoucke, Ioffe, Shlens, Wojna. Rethinking the Inception Architecture for Computer "
                "Vision. CVPR 2016; multi-label form of Cole et al., Multi-Label Learning from Single Positive "
                "Labels, CVPR 2021")
    profiles = {"paper": dict(IPL_RECIPE)}  # the imbalance-aware pseudo-labeling paper's baseline setting

    @dataclass
    class Options:
        epsilon: Unit = field(default=0.1, metadata={"help": "label-smoothing coefficient eps (Cole et al.: 0.1)"})
        scheme: Literal["cole", "szegedy"] = field(default="cole", metadata={"help": "cole: targets 1-eps / eps; szegedy: 1-eps/2 / eps/2"})
        unknown: UnknownMode = field(default="ignore", metadata={"help": "ignore: train on known labels only (seeds' adaptation); negative: unknowns are negatives"})

    def training_step(self, model, batch: Batch, epoch: int):
        logits = model(batch.inputs)
        targets = smoothed_targets(hard_targets(batch.labels), self.options.epsilon, self.options.scheme)
        per_entry = soft_bce_with_logits(logits, targets)
        return {"loss": reduce_partial(per_entry, batch.labels, self.options.unknown)}


@hookimpl
def mlrpl_methods():
    return [BCELabelSmoothing]
