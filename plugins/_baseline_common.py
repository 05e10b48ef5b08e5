"""Pieces shared by the baseline plugins (private: not a plugin module, registers nothing).

How the baselines meet partial labels. The seed papers (SST, HST, DSRB) adapt full-label
methods "by replacing the BCE loss with partial BCE", i.e. they train on the known labels only;
the imbalance-aware pseudo-labeling paper instead treats the missing labels as negatives for
Focal and ASL. The loss-only baselines therefore take an ``unknown`` option: ``ignore`` (the
seeds' adaptation, default) or ``negative`` (the other paper's). The single-positive methods of
Cole et al. (AN, WAN, EPR, ROLE) were written for {positive, unobserved} labels; with partial
labels, known negatives are used as negatives and only the unknown entries get the method's
special treatment (what "removing the restriction on the number of positive labels" amounts to).
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field

from mlrpl_bench.errors import BenchError
from mlrpl_bench.losses import known_mask, masked_per_image_mean
from mlrpl_bench.method import Method
from mlrpl_bench.models.heads import PooledLinearClassifier

UNKNOWN_MODES = ("ignore", "negative")
#: The ``unknown`` option's type: how a loss-only baseline treats unknown entries.
UnknownMode = Literal[UNKNOWN_MODES]
#: A probability-like option in [0, 1].
Unit = Annotated[float, Field(ge=0, le=1)]

COLE_CITATION = ("Cole, Mac Aodha, Lorieul, Perona, Morris, Jojic. Multi-Label Learning from Single Positive "
                 "Labels. CVPR 2021")

#: The seed papers' training recipe as the official code runs it (SST/HST/DSRB implementation
#: details, DESIGN.md, docs/fidelity.md "Training"): the image track (``finetune``: images are
#: augmented, nothing is cached), ResNet-101 on ImageNet weights with the official 2x2 pool after
#: layer4 (``resnet101-pool2``: 7x7 maps at 448 px), stem and layers 1-3 frozen with their
#: BatchNorm in eval mode and layer4 trained (``SST.py:81-85``, ``:124-126``), fp32 (the official
#: code has no autocast), 448 px with the official bicubic augmentation (the image datasets'
#: transforms), Adam 1e-5, weight decay 5e-4, StepLR(10, 0.1), 20 epochs, batch 32. The baselines
#: of their tables (SSGRL, SSGRL w/ PL, mixups, ASL, curriculum labeling) ran with it.
SEED_RECIPE = {"backbone": "resnet101-pool2", "backbone_weights": "imagenet", "freeze_backbone": "official",
               "track": "finetune", "precision": "fp32", "image_size": 448, "batch_size": 32, "lr": 1e-5,
               "weight_decay": 5e-4, "lr_step": 10, "lr_gamma": 0.1, "epochs": 20}

#: The imbalance-aware pseudo-labeling paper's setting for its baselines (BCE-LS, Focal, ASL, AN,
#: WAN, ROLE): ResNet-50 pre-trained on ImageNet, 448 x 448 inputs; no optimiser details given.
IPL_RECIPE = {"backbone": "resnet50", "backbone_weights": "imagenet", "image_size": 448}

#: Cole et al.'s end-to-end setting (official code): ResNet-50 on ImageNet, 448 px, Adam without
#: weight decay or schedule, 10 epochs; batch size and lr were picked per run from the grid
#: {8, 16} x {1e-2, 1e-3, 1e-4, 1e-5} -- this profile fixes 8 and 1e-5 from that grid.
COLE_RECIPE = {"backbone": "resnet50", "backbone_weights": "imagenet", "image_size": 448, "batch_size": 8,
               "lr": 1e-5, "weight_decay": 0.0, "lr_step": 10**6, "epochs": 10}


class LinearHeadMethod(Method):
    """A method on the plain model: backbone -> global average pooling -> linear classifier."""

    def build_model(self, backbone):
        return PooledLinearClassifier(backbone, self.ctx.num_classes)


def reduce_partial(per_entry: torch.Tensor, labels: torch.Tensor, unknown: str) -> torch.Tensor:
    """Reduce a per-entry loss matrix under the ``unknown`` rule.

    ``ignore``: mean over each image's known entries, then over images (partial BCE's reduction);
    ``negative``: every entry counts (the caller built the targets with unknowns as negatives),
    mean over all entries.
    """
    if unknown == "ignore":
        return masked_per_image_mean(per_entry, known_mask(labels))
    return per_entry.mean()


def estimate_expected_positives(train_labels: np.ndarray, setting: str = "pal", known: float = 1.0) -> float:
    """Estimate k, the expected number of positives per image, from the partial labels only.

    Cole et al. take k from the fully-labelled training set (e.g. 1.5 on VOC, 2.5 on COCO); the
    hidden labels are off limits here, so:

    * when negatives are known (``full``/``pal``), k = sum over classes of the positive rate
      among the known entries of that class — unbiased when labels are hidden at random;
    * ``ppl`` (a proportion ``known`` of the positives kept, no negatives): k = mean known
      positives per image / ``known``;
    * otherwise (``spl``): the mean number of known positives per image, a lower bound
      (exactly 1 under SPL); pass the option ``expected_positives`` to set k yourself.
    """
    labels = np.asarray(train_labels)
    pos = (labels == 1).sum(axis=0).astype(np.float64)
    neg = (labels == -1).sum(axis=0).astype(np.float64)
    if neg.sum() > 0:
        seen = pos + neg
        rates = np.divide(pos, seen, out=np.zeros_like(pos), where=seen > 0)
        return float(rates.sum())
    mean_pos = float((labels == 1).sum(axis=1).mean()) if labels.shape[0] else 0.0
    if setting == "ppl" and 0.0 < known <= 1.0:
        return mean_pos / known
    return mean_pos


def resolve_expected_positives(method, option_value: float) -> float:
    """k for EPR and ROLE: the option if positive, else the estimate from the partial training labels.

    The option's upper bound is the number of classes, which only the run knows: checked here.
    """
    ctx = method.ctx
    if option_value > ctx.num_classes:
        raise BenchError(f"method {method.name} option expected_positives={option_value!r}: at most the number of "
                         f"classes ({ctx.num_classes})")
    if option_value > 0:
        return float(option_value)
    return estimate_expected_positives(ctx.train_labels, ctx.setting, ctx.known)
