"""``epr``: expected positive regularization (Cole et al., CVPR 2021, "EPR").

The classifier is trained on the observed labels only, and the unknown entries are constrained
through the regulariser ``R(p) = (mean_n sum_c p_nc - k)^2 / C^2``: the predicted number of
positives per image should match k, the expected number of positives. Loss (official code):
``sum of the observed-label BCE / (B x C) + R``. With partial labels the observed labels are the
known positives and the known negatives.

k: the official code looks k up from the fully labelled training set (VOC 1.5, COCO 2.5,
NUS-WIDE 1.9, CUB 31.4). The hidden labels are off limits here, so by default k is estimated
from the partial labels (see ``_baseline_common.estimate_expected_positives``: the sum of the
per-class positive rates among known entries when negatives are known, the mean known positives
over the kept proportion under PPL, the mean known positives — a lower bound — under SPL);
``expected_positives=K`` fixes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from pydantic import Field

import torch

from mlrpl_bench.hookspecs import hookimpl
from mlrpl_bench.losses import expected_positive_regularizer, hard_targets, known_mask, soft_bce_with_logits
from mlrpl_bench.method import Batch

from ._baseline_common import COLE_CITATION, COLE_RECIPE, LinearHeadMethod, resolve_expected_positives


def observed_bce_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BCE over the known entries only, summed and divided by B x C (Cole et al.'s normalisation)."""
    per_entry = soft_bce_with_logits(logits, hard_targets(labels)) * known_mask(labels)
    return per_entry.sum() / float(labels.numel())


def epr_loss(logits: torch.Tensor, labels: torch.Tensor, expected_positives: float, weight: float = 1.0):
    """``(observed BCE, regulariser)`` of EPR; the method's loss is ``bce + weight * reg``."""
    reg = expected_positive_regularizer(torch.sigmoid(logits), expected_positives)
    return observed_bce_sum(logits, labels), weight * reg


class ExpectedPositiveRegularization(LinearHeadMethod):
    name = "epr"
    summary = "BCE on observed labels + expected-positive regulariser on the predicted label count"
    citation = COLE_CITATION
    profiles = {"paper": dict(COLE_RECIPE)}  # Cole et al.'s end-to-end setting

    @dataclass
    class Options:
        expected_positives: Annotated[float, Field(ge=0)] = field(default=0.0, metadata={"help": "k, expected positives per image; 0 estimates it from the partial labels"})
        reg_weight: Annotated[float, Field(ge=0, le=1e6)] = field(default=1.0, metadata={"help": "weight of the regulariser (official code: 1)"})

    def __init__(self, options, ctx):
        super().__init__(options, ctx)
        self.expected_positives = resolve_expected_positives(self, options.expected_positives)

    def training_step(self, model, batch: Batch, epoch: int):
        bce, reg = epr_loss(model(batch.inputs), batch.labels, self.expected_positives, self.options.reg_weight)
        return {"loss": bce + reg, "bce": bce.detach(), "epr": reg.detach()}

    def state_dict(self):
        return {"expected_positives": self.expected_positives}

    def load_state_dict(self, state):
        self.expected_positives = float(state.get("expected_positives", self.expected_positives))


@hookimpl
def mlrpl_methods():
    return [ExpectedPositiveRegularization]
