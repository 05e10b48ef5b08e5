"""``curriculum``: curriculum labeling of missing labels (Durand, Mehrasa, Mori, CVPR 2019).

Durand et al. alternate between training on the current labels and labelling some of the missing
labels with the model's most confident predictions ("the easiest missing labels first"). Here, a
labelling step runs at the end of every epoch once ``warmup_epochs`` epochs have been trained on
the known labels: the model scores the whole training set without augmentation
(``ctx.feature_batches``), and among the still-unknown entries it labels

* ``strategy=proportion`` (default; the paper's score-proportion strategy): the ``proportion``
  of the originally unknown entries with the highest confidence ``|p - 0.5|``, so the labelled
  share grows by a fixed amount every epoch;
* ``strategy=threshold`` (the paper's score-threshold strategy): every entry with
  ``p >= threshold`` (positive) or ``p <= 1 - threshold`` (negative).

A pseudo label is positive when ``p >= 0.5`` and negative otherwise (``only_positive`` keeps the
positive ones only, the paper's "positive only" variant). Pseudo labels are permanent, kept per
image in the method's state (``state_dict()["pseudo"]``, N x C int8) and read back through
``batch.indices``; known labels are never overwritten. Training uses partial BCE over known and
pseudo labels (the paper's partial loss with per-image normalisation by the labelled count).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import Field

import torch

from mlrpl_bench.hookspecs import hookimpl
from mlrpl_bench.losses import partial_bce
from mlrpl_bench.method import Batch

from ._baseline_common import LinearHeadMethod, SEED_RECIPE, Unit


def select_curriculum_labels(probs: torch.Tensor, candidates: torch.Tensor, *, strategy: str = "proportion",
                             count: int = 0, threshold: float = 0.9, only_positive: bool = False) -> torch.Tensor:
    """New pseudo labels ``(N, C)`` int8 in {1, -1, 0} chosen among ``candidates``.

    :param probs: predicted probabilities ``(N, C)``.
    :param candidates: bool ``(N, C)``, the entries that may be labelled (still unknown, scored).
    :param strategy: ``proportion`` (the ``count`` most confident candidates) or ``threshold``.
    """
    probs = probs.float()
    new = torch.zeros(probs.shape, dtype=torch.int8)
    sign = torch.where(probs >= 0.5, torch.ones_like(new), -torch.ones_like(new))
    allowed = candidates.clone()
    if only_positive:
        allowed &= probs >= 0.5
    if strategy == "threshold":
        chosen = allowed & ((probs >= threshold) | (probs <= 1.0 - threshold))
    else:
        confidence = torch.where(allowed, (probs - 0.5).abs(), torch.full_like(probs, -1.0))
        k = min(int(count), int(allowed.sum()))
        chosen = torch.zeros_like(allowed)
        if k > 0:
            chosen.view(-1)[torch.topk(confidence.flatten(), k).indices] = True
    new[chosen] = sign[chosen]
    return new


class CurriculumLabeling(LinearHeadMethod):
    name = "curriculum"
    summary = "curriculum labeling: after warm-up, label the most confident unknowns each epoch"
    citation = ("Durand, Mehrasa, Mori. Learning a Deep ConvNet for Multi-label Classification with Partial "
                "Labels. CVPR 2019 (curriculum learning of missing labels)")
    profiles = {"paper": dict(SEED_RECIPE)}  # the seed papers' recipe (ResNet-101, 448 px, batch 32, lr 1e-5, 20 epochs)

    @dataclass
    class Options:
        warmup_epochs: Annotated[int, Field(ge=0)] = field(default=1, metadata={"help": "epochs trained on the known labels before the first labelling step"})
        strategy: Literal["proportion", "threshold"] = field(default="proportion", metadata={"help": "proportion: label a fixed share per epoch; threshold: label every confident entry"})
        proportion: Unit = field(default=0.1, metadata={"help": "share of the originally unknown entries labelled per step (strategy=proportion)"})
        threshold: Annotated[float, Field(ge=0.5, le=1)] = field(default=0.9, metadata={"help": "label p >= t as positive, p <= 1-t as negative (strategy=threshold)"})
        only_positive: bool = field(default=False, metadata={"help": "add positive pseudo labels only"})

    def __init__(self, options, ctx):
        super().__init__(options, ctx)
        self.train_labels = torch.from_numpy(ctx.train_labels.astype("int8"))
        self.pseudo = torch.zeros_like(self.train_labels)

    def current_labels(self, batch: Batch) -> torch.Tensor:
        """The batch's labels with pseudo labels filled into its unknown entries."""
        pseudo = self.pseudo[batch.indices.cpu()].to(batch.labels.device, batch.labels.dtype)
        return torch.where(batch.labels != 0, batch.labels, pseudo)

    def training_step(self, model, batch: Batch, epoch: int):
        labels = self.current_labels(batch)
        return {"loss": partial_bce(model(batch.inputs), labels),
                "pseudo_share": (self.pseudo != 0).float().mean()}

    @torch.no_grad()
    def score_training_set(self, model) -> tuple[torch.Tensor, torch.Tensor]:
        """``(probs (N, C), scored (N,) bool)`` over the un-augmented training set, all processes."""
        was_training = model.training
        model.eval()
        idx_parts, prob_parts = [], []
        for batch in self.ctx.feature_batches():
            idx_parts.append(batch.indices.long())
            prob_parts.append(self.predict(model, batch.inputs).float())
        model.train(was_training)
        n, c = self.train_labels.shape
        probs = torch.full((n, c), 0.5)
        scored = torch.zeros(n, dtype=torch.bool)
        if idx_parts:
            device = prob_parts[0].device
            indices = self.ctx.all_gather(torch.cat(idx_parts).to(device)).cpu()
            values = self.ctx.all_gather(torch.cat(prob_parts)).cpu()
            probs[indices] = values
            scored[indices] = True
        return probs, scored

    def on_epoch_end(self, model, epoch: int) -> None:
        if epoch + 1 < self.options.warmup_epochs or epoch + 1 >= self.ctx.epochs:
            return  # still warming up, or no epoch left to use new labels
        probs, scored = self.score_training_set(model)
        candidates = (self.train_labels == 0) & (self.pseudo == 0) & scored[:, None]
        count = math.ceil(self.options.proportion * int((self.train_labels == 0).sum()))
        new = select_curriculum_labels(probs, candidates, strategy=self.options.strategy, count=count,
                                       threshold=self.options.threshold, only_positive=self.options.only_positive)
        self.pseudo = torch.where(new != 0, new, self.pseudo)

    def state_dict(self):
        return {"pseudo": self.pseudo.clone()}

    def load_state_dict(self, state):
        if "pseudo" in state:
            self.pseudo = torch.as_tensor(state["pseudo"]).to(torch.int8).cpu()


@hookimpl
def mlrpl_methods():
    return [CurriculumLabeling]
