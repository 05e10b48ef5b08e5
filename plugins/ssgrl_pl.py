"""``ssgrl-pl``: SSGRL with confidence-based pseudo labels ("SSGRL w/ PL" of the HST paper).

HST's baseline "simply generates pseudo labels based on the predicted confidence scores". From
``start_epoch`` on, every unknown entry whose current prediction (detached) reaches
``threshold`` becomes a positive pseudo label for that step, and partial BCE runs over the known
and pseudo-labelled entries. Defaults follow the seeds' pseudo-label conventions: from epoch 5,
positive pseudo labels only (SST), threshold 0.95 (SST's starting threshold, kept fixed here);
``negatives=true`` also labels entries with ``p <= 1 - threshold`` negative. Known labels are
never changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from pydantic import Field

import torch

from mlrpl_bench.hookspecs import hookimpl
from mlrpl_bench.losses import partial_bce
from mlrpl_bench.method import Batch, Method
from mlrpl_bench.models.sarl import cam_loss

from ._baseline_common import SEED_RECIPE
from ._ssgrl_common import SSGRL_CITATION, build_ssgrl, GnnSteps, SarlKind, gnn_steps_field, sarl_field


def confidence_pseudo_labels(probs: torch.Tensor, labels: torch.Tensor, threshold: float,
                             negatives: bool = False) -> torch.Tensor:
    """Labels with pseudo labels on unknown entries: 1 where ``p >= threshold`` (and, with
    ``negatives``, -1 where ``p <= 1 - threshold``); known entries unchanged."""
    probs = probs.detach()
    pseudo = torch.zeros_like(labels)
    pseudo = torch.where(probs >= threshold, torch.ones_like(labels), pseudo)
    if negatives:
        pseudo = torch.where(probs <= 1.0 - threshold, -torch.ones_like(labels), pseudo)
    return torch.where(labels != 0, labels, pseudo)


class SSGRLPseudoLabels(Method):
    name = "ssgrl-pl"
    summary = "SSGRL with partial BCE plus confidence-thresholded pseudo labels on unknown entries"
    citation = SSGRL_CITATION + "; 'SSGRL w/ PL' baseline of Chen, Pu et al., Heterogeneous Semantic Transfer for Multi-label Recognition with Partial Labels (journal extension of SST)"
    conformance_options = {"start_epoch": 1}  # exercise the pseudo labels within the checks' 2 epochs
    profiles = {"paper": {**SEED_RECIPE, "start_epoch": 5}}  # the seed papers' recipe (ResNet-101, 448 px, batch 32, lr 1e-5, 20 epochs)

    @dataclass
    class Options:
        sarl: SarlKind = sarl_field()
        gnn_steps: GnnSteps = gnn_steps_field()
        threshold: Annotated[float, Field(ge=0.5, le=1)] = field(default=0.95, metadata={"help": "confidence needed for a pseudo label (SST's starting threshold: 0.95)"})
        start_epoch: Annotated[int, Field(ge=0)] = field(default=5, metadata={"help": "first (0-based) epoch with pseudo labels (SST: 5)"})
        negatives: bool = field(default=False, metadata={"help": "also label p <= 1 - threshold as negative (SST: positives only)"})

    def build_model(self, backbone):
        return build_ssgrl(self, backbone)

    def training_step(self, model, batch: Batch, epoch: int):
        out = model(batch.inputs, return_all=True)
        labels = batch.labels
        if epoch >= self.options.start_epoch:
            labels = confidence_pseudo_labels(torch.sigmoid(out.logits), labels, self.options.threshold,
                                              self.options.negatives)
        pseudo = ((labels != 0) & (batch.labels == 0)).float().mean()
        loss = partial_bce(out.logits, labels) + cam_loss(out, batch.labels)
        return {"loss": loss, "pseudo_share": pseudo}


@hookimpl
def mlrpl_methods():
    return [SSGRLPseudoLabels]
