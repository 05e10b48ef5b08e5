"""``an``: assume negative (Cole et al., CVPR 2021, "AN").

Every unknown label is taken as a negative and the model is trained with BCE on the completed
label matrix. With partial labels, known negatives and known positives keep their labels. As in
the official code of Cole et al., the loss matrix is summed and divided by B x C (every entry,
known or assumed, has the same weight). This differs from ``bce`` only in that normalisation and
in the citation: both compute the mean BCE over all entries with unknowns as negatives.
"""

from __future__ import annotations

import torch

from mlrpl_bench.hookspecs import hookimpl
from mlrpl_bench.losses import hard_targets, soft_bce_with_logits
from mlrpl_bench.method import Batch

from ._baseline_common import COLE_CITATION, COLE_RECIPE, LinearHeadMethod


def an_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BCE with unknowns as negatives, summed over the batch and divided by B x C (Cole et al.'s L_AN)."""
    return soft_bce_with_logits(logits, hard_targets(labels)).mean()


class AssumeNegative(LinearHeadMethod):
    name = "an"
    summary = "assume negative: unknown labels are negatives, BCE over all entries"
    citation = COLE_CITATION
    profiles = {"paper": dict(COLE_RECIPE)}  # Cole et al.'s end-to-end setting

    def training_step(self, model, batch: Batch, epoch: int):
        return {"loss": an_loss(model(batch.inputs), batch.labels)}


@hookimpl
def mlrpl_methods():
    return [AssumeNegative]
