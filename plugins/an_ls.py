"""``an-ls``: assume negative with label smoothing (Cole et al., CVPR 2021, "AN-LS").

Unknown labels are assumed negative, then every target is smoothed: positives -> 1 - eps,
negatives (known or assumed) -> eps, with eps = 0.1 (the ``ls_coef`` of the official code).
The loss matrix is summed and divided by B x C as in the official code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mlrpl_bench.hookspecs import hookimpl
from mlrpl_bench.losses import hard_targets, smoothed_targets, soft_bce_with_logits
from mlrpl_bench.method import Batch

from ._baseline_common import COLE_CITATION, COLE_RECIPE, LinearHeadMethod, Unit


def an_ls_loss(logits: torch.Tensor, labels: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Label-smoothed assume-negative BCE, mean over all B x C entries."""
    targets = smoothed_targets(hard_targets(labels), epsilon, "cole")
    return soft_bce_with_logits(logits, targets).mean()


class AssumeNegativeLS(LinearHeadMethod):
    name = "an-ls"
    summary = "assume negative with label smoothing (eps=0.1)"
    citation = COLE_CITATION
    profiles = {"paper": dict(COLE_RECIPE)}  # Cole et al.'s end-to-end setting

    @dataclass
    class Options:
        epsilon: Unit = field(default=0.1, metadata={"help": "label-smoothing coefficient (Cole et al.: 0.1)"})

    def training_step(self, model, batch: Batch, epoch: int):
        return {"loss": an_ls_loss(model(batch.inputs), batch.labels, self.options.epsilon)}


@hookimpl
def mlrpl_methods():
    return [AssumeNegativeLS]
