"""``ll-r``: large-loss rejection (Kim, Kim, Akata, Lee, CVPR 2022, "LL-R").

Unknown labels are assumed negative (AN). Because a model first fits clean labels and only later
memorises noisy ones, the unknown entries whose assumed-negative loss is largest in a batch are
likely false negatives: LL-R drops them (weight 0). The rejection rate grows linearly with the
epoch — nothing is rejected in the first epoch, then ``(t - 1) * delta_rel`` percent at epoch t
(1-based), i.e. ``epoch * delta_rel`` with this harness's 0-based epochs. Known entries (positive
or negative) are never rejected.

Sources: the paper and its official code (``snucml/LargeLossMatters``): ``delta_rel`` is given in
percent (the code divides it by 100) and searched over {0.1, 0.2, 0.3, 0.4, 0.5}; the default
0.2 here is a middle value of that grid. The number of rejected entries is
``ceil(B * C * rate)`` — a rate of the batch's entries, taken among its unknown entries
(``rate_of=all``, official); ``rate_of=unknown`` applies the rate to the number of unknown entries
instead. The loss is summed over the kept entries and divided by B x C, as in the official code.
The official code also trains the classifier layer with 10 x the backbone's learning rate
(``classifier_lr_mult``, 10 in the ``paper`` profile: ResNet-50 on ImageNet, 448 px, batch 16,
lr 1e-5, Adam without weight decay, 10 epochs). The paper's two other variants are options:
``mode=ct`` (LL-Ct) trains the selected entries towards positive for that step instead of
dropping them; ``mode=cp`` (LL-Cp) flips a fixed ``delta_rel`` percent of each batch's entries
(from the second epoch) to positive for good, kept per image in the method state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import Field

import torch

from mlrpl_bench.hookspecs import hookimpl
from mlrpl_bench.losses import hard_targets, soft_bce_with_logits
from mlrpl_bench.method import Batch

from ._baseline_common import LinearHeadMethod

LLR_RECIPE = {"backbone": "resnet50", "backbone_weights": "imagenet", "image_size": 448, "batch_size": 16,
              "lr": 1e-5, "weight_decay": 0.0, "lr_step": 10**6, "epochs": 10, "classifier_lr_mult": 10.0}


def rejection_rate(epoch: int, delta_rel_percent: float) -> float:
    """Fraction of entries rejected at 0-based ``epoch``: ``epoch * delta_rel / 100``, capped at 1."""
    return min(1.0, max(0.0, epoch * delta_rel_percent / 100.0))


def large_loss_keep_mask(per_entry: torch.Tensor, labels: torch.Tensor, rate: float,
                         rate_of: str = "all") -> torch.Tensor:
    """``(B, C)`` float mask, 0 on the rejected entries: the ``k`` largest losses among unknowns.

    ``k = ceil(rate * B * C)`` (``rate_of=all``) or ``ceil(rate * #unknown)`` (``unknown``), capped at
    the number of unknown entries. Known entries always keep weight 1. Ties at the k-th value are
    broken by position (``torch.topk``), so exactly k entries are rejected.
    """
    unknown = labels == 0
    n_unknown = int(unknown.sum())
    base = per_entry.numel() if rate_of == "all" else n_unknown
    k = min(n_unknown, math.ceil(rate * base)) if rate > 0 else 0
    keep = torch.ones_like(per_entry)
    if k == 0:
        return keep
    # Known entries get -inf so that they can never be among the top k.
    candidates = torch.where(unknown, per_entry.detach(), torch.full_like(per_entry, float("-inf")))
    idx = torch.topk(candidates.flatten(), k).indices
    keep.view(-1)[idx] = 0.0
    return keep


def ll_r_loss(logits: torch.Tensor, labels: torch.Tensor, rate: float, rate_of: str = "all", correct: bool = False):
    """``(loss, keep mask)``: assume-negative BCE, sum / (B x C), over the entries kept.

    The selected large-loss entries (keep = 0) are dropped (LL-R) or, with ``correct``, trained
    towards positive instead (LL-Ct / LL-Cp: the loss of the flipped label).
    """
    per_entry = soft_bce_with_logits(logits, hard_targets(labels))
    keep = large_loss_keep_mask(per_entry, labels, rate, rate_of)
    if correct:
        flipped = soft_bce_with_logits(logits, torch.ones_like(logits))
        per_entry = per_entry * keep + flipped * (1.0 - keep)
    else:
        per_entry = per_entry * keep
    return per_entry.sum() / float(per_entry.numel()), keep


class LargeLossRejection(LinearHeadMethod):
    name = "ll-r"
    summary = "assume negative, rejecting the largest unknown-entry losses (rate +delta_rel%/epoch)"
    citation = ("Kim, Kim, Akata, Lee. Large Loss Matters in Weakly Supervised Multi-Label Classification. "
                "CVPR 2022")
    profiles = {"paper": dict(LLR_RECIPE)}  # the official code's configuration

    @dataclass
    class Options:
        delta_rel: Annotated[float, Field(ge=0, le=100)] = field(default=0.2, metadata={"help": "rejection rate increase per epoch, in percent (official grid 0.1-0.5)"})
        rate_of: Literal["all", "unknown"] = field(default="all", metadata={"help": "all: k = rate x B x C (official code); unknown: k = rate x number of unknown entries"})
        classifier_lr_mult: Annotated[float, Field(ge=0, le=1e6)] = field(default=1.0, metadata={"help": "learning-rate factor of the classifier layer (official code: 10)"})
        mode: Literal["reject", "ct", "cp"] = field(default="reject", metadata={"help": "reject: LL-R; ct: LL-Ct, flip the selected labels for this step; cp: LL-Cp, flip them permanently (delta_rel% of the batch per step)"})

    def __init__(self, options, ctx):
        super().__init__(options, ctx)
        # LL-Cp's permanent corrections, per image (1 = flipped to positive), read via batch.indices.
        self.corrected = torch.zeros(ctx.train_labels.shape, dtype=torch.int8)

    def configure_optimizers(self, model, train):
        if self.options.classifier_lr_mult == 1.0:
            return super().configure_optimizers(model, train)
        head = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("classifier.")]
        rest = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("classifier.")]
        optimizer = torch.optim.Adam([
            {"params": rest, "lr": train.lr},
            {"params": head, "lr": train.lr * self.options.classifier_lr_mult},
        ], lr=train.lr, weight_decay=train.weight_decay)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=train.lr_step, gamma=train.lr_gamma)
        return optimizer, scheduler

    def training_step(self, model, batch: Batch, epoch: int):
        labels = batch.labels
        if self.options.mode == "cp":
            # LL-Cp selects a fixed delta_rel% of the batch from the second epoch on (official code)
            # and turns the selection into positive labels for the rest of training.
            rows = batch.indices.cpu()
            fixed = self.corrected[rows].to(labels.device, labels.dtype)
            labels = torch.where(fixed > 0, torch.ones_like(labels), labels)
            rate = self.options.delta_rel / 100.0 if epoch > 0 else 0.0
        else:
            rate = rejection_rate(epoch, self.options.delta_rel)
        loss, keep = ll_r_loss(model(batch.inputs), labels, rate, self.options.rate_of,
                               correct=self.options.mode != "reject")
        if self.options.mode == "cp":
            # Every process applies every process's flips, so the per-image state stays identical.
            rows_all = self.ctx.all_gather(batch.indices.long()).cpu()
            flipped = self.ctx.all_gather((keep == 0).to(torch.int8)).cpu() > 0
            current = self.corrected[rows_all]
            self.corrected[rows_all] = torch.where(flipped, torch.ones_like(current), current)
        selected = (keep == 0).float().sum() / float(keep.numel())
        return {"loss": loss, "rejected": selected}

    def state_dict(self):
        return {"corrected": self.corrected.clone()} if self.options.mode == "cp" else {}

    def load_state_dict(self, state):
        if "corrected" in state:
            self.corrected = torch.as_tensor(state["corrected"]).to(torch.int8).cpu()


@hookimpl
def mlrpl_methods():
    return [LargeLossRejection]
