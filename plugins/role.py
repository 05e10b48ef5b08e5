"""``role``: regularized online label estimation (Cole et al., CVPR 2021, "ROLE").

Besides the classifier f, ROLE learns a label estimator g: a free N x C matrix of logits, one row
per training image, whose sigmoid is the current estimate of that image's labels. Both are trained
jointly, each with the other as a (detached) soft target (the paper's eq. 8-10):

* classifier: BCE(f, g.detach()) over all entries + BCE on the observed labels + R(f),
* estimator:  BCE(g, f.detach()) over all entries + BCE on the observed labels + R(g),

with R the expected-positive regulariser of EPR. Official-code details kept here: loss =
0.5 (observed_f + observed_g) + 0.5 (cross_f + cross_g), summed over entries and divided by B x C,
plus 0.5 (R(f) + R(g)); the estimator's learning rate is 10 x the classifier's (``lr_mult``) and
it gets no weight decay; initialisation — unknown entries uniformly in logit space so that
sigmoid lies in [0.4, 0.6], observed positives at logit(0.995), observed negatives at logit(0.005).

Partial labels: the observed terms include the known negatives (BCE towards 0), the estimator
starts at 0.005 on them. The estimator lives on the model (``model.label_logits``) so that it is
checkpointed, restored and synchronised with the rest of the parameters; ``batch.indices`` picks
its rows.

k (expected positives) is resolved as in ``epr``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import Field

import torch
import torch.nn.functional as F
from torch import nn

from mlrpl_bench.hookspecs import hookimpl
from mlrpl_bench.losses import expected_positive_regularizer, hard_targets, known_mask
from mlrpl_bench.method import Batch, Method
from mlrpl_bench.models.heads import PooledLinearClassifier

from ._baseline_common import COLE_CITATION, COLE_RECIPE, resolve_expected_positives


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def init_label_logits(train_labels: torch.Tensor, generator: torch.Generator | None = None,
                      width: float = 0.1, pos: float = 0.995, neg: float = 0.005) -> torch.Tensor:
    """The estimator's initial logits ``(N, C)`` (official code of Cole et al.).

    Unknown entries: uniform in ``[-logit(0.5 + width), logit(0.5 + width)]``; observed positives:
    ``logit(pos)``; observed negatives: ``logit(neg)``.
    """
    labels = torch.as_tensor(train_labels)
    q = _logit(0.5 + width)
    logits = q * (2.0 * torch.rand(labels.shape, generator=generator) - 1.0)
    logits[labels == 1] = _logit(pos)
    logits[labels == -1] = _logit(neg)
    return logits


class LabelEstimatorClassifier(PooledLinearClassifier):
    """The plain classifier plus ROLE's label-estimator matrix ``label_logits`` (N x C)."""

    def __init__(self, backbone: nn.Module, num_classes: int, init_logits: torch.Tensor):
        super().__init__(backbone, num_classes)
        self.label_logits = nn.Parameter(init_logits.clone().float())

    def estimated_labels(self, indices: torch.Tensor) -> torch.Tensor:
        """Sigmoid of the estimator rows of ``indices``: the current label estimates in [0, 1]."""
        return torch.sigmoid(self.label_logits[indices])


def _bce_prob(probs: torch.Tensor, targets: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    # Cole et al.'s neg_log(x) = -log(x + 1e-5), kept for probabilities that can reach 0 or 1.
    return -(targets * torch.log(probs + eps) + (1.0 - targets) * torch.log(1.0 - probs + eps))


def role_loss(logits: torch.Tensor, estimates: torch.Tensor, labels: torch.Tensor,
              expected_positives: float) -> dict[str, torch.Tensor]:
    """ROLE's loss for one batch.

    :param logits: classifier logits ``(B, C)``.
    :param estimates: estimator probabilities ``(B, C)`` (sigmoid of the rows of this batch).
    :param labels: partial labels ``(B, C)`` in {1, -1, 0}.
    :return: ``loss`` and its parts ``observed``, ``cross``, ``reg``.
    """
    preds = torch.sigmoid(logits)
    known = known_mask(labels)
    targets = hard_targets(labels)
    observed_f = F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * known
    observed_g = _bce_prob(estimates, targets) * known
    cross_f = _bce_prob(preds, estimates.detach())
    cross_g = _bce_prob(estimates, preds.detach())
    denom = float(labels.numel())
    observed = 0.5 * (observed_f + observed_g).sum() / denom
    cross = 0.5 * (cross_f + cross_g).sum() / denom
    reg = 0.5 * (expected_positive_regularizer(preds, expected_positives)
                 + expected_positive_regularizer(estimates, expected_positives))
    return {"loss": observed + cross + reg, "observed": observed, "cross": cross, "reg": reg}


class ROLE(Method):
    name = "role"
    summary = "regularized online label estimation: classifier + learned N x C label estimator"
    citation = COLE_CITATION
    profiles = {"paper": dict(COLE_RECIPE)}  # Cole et al.'s end-to-end setting

    @dataclass
    class Options:
        expected_positives: Annotated[float, Field(ge=0)] = field(default=0.0, metadata={"help": "k, expected positives per image; 0 estimates it from the partial labels"})
        lr_mult: Annotated[float, Field(ge=0, le=1e6)] = field(default=10.0, metadata={"help": "estimator learning rate / classifier learning rate (official code: 10)"})
        init_width: Annotated[float, Field(ge=0, le=0.49)] = field(default=0.1, metadata={"help": "unknown entries start with sigmoid in [0.5-w, 0.5+w] (official: 0.1)"})

    def __init__(self, options, ctx):
        super().__init__(options, ctx)
        self.expected_positives = resolve_expected_positives(self, options.expected_positives)

    def build_model(self, backbone):
        init = init_label_logits(torch.from_numpy(self.ctx.train_labels.astype("int64")), self.ctx.generator,
                                 width=self.options.init_width)
        return LabelEstimatorClassifier(backbone, self.ctx.num_classes, init)

    def configure_optimizers(self, model, train):
        estimator = [model.label_logits]
        others = [p for n, p in model.named_parameters() if p.requires_grad and n != "label_logits"]
        others += [p for p in self.extra_parameters() if p.requires_grad]
        optimizer = torch.optim.Adam([
            {"params": others, "lr": train.lr, "weight_decay": train.weight_decay},
            # Weight decay would pull every estimate towards 0.5; the official code uses none.
            {"params": estimator, "lr": train.lr * self.options.lr_mult, "weight_decay": 0.0},
        ], lr=train.lr)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=train.lr_step, gamma=train.lr_gamma)
        return optimizer, scheduler

    def training_step(self, model, batch: Batch, epoch: int):
        logits = model(batch.inputs)
        estimates = _unwrap(model).estimated_labels(batch.indices)
        out = role_loss(logits, estimates, batch.labels, self.expected_positives)
        return {"loss": out["loss"], "observed": out["observed"].detach(), "cross": out["cross"].detach(),
                "reg": out["reg"].detach()}

    def state_dict(self):
        return {"expected_positives": self.expected_positives}

    def load_state_dict(self, state):
        self.expected_positives = float(state.get("expected_positives", self.expected_positives))


def _unwrap(model: nn.Module) -> nn.Module:
    """The model itself, or the module inside a DistributedDataParallel wrapper."""
    return getattr(model, "module", model)


@hookimpl
def mlrpl_methods():
    return [ROLE]
