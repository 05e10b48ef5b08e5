"""Mixup (Zhang, Cisse, Dauphin, Lopez-Paz, ICLR 2018) adapted to partial labels, and the base class shared by
``ip-mixup`` and ``fm-mixup`` (private module, registers nothing).

Mixup trains on convex combinations ``x~ = lam x_a + (1 - lam) x_b`` with ``lam ~ Beta(a, a)``,
one ``lam`` per batch, ``b`` a random permutation of the batch, and mixed targets
``y~ = lam y_a + (1 - lam) y_b``.

The DSRB paper (Pu et al., Sec. 3 "Rethinking image blending" and the "SSGRL w/ IP-Mixup /
FM-Mixup" baselines of its ablation) blends in pixel space and on global feature maps but does
not state how unknown labels enter the mixed target. Its own blending (eq. 7/9) only ever mixes a
label with another *known* label; the rule taken here follows that: ``label_rule=both`` (default)
mixes the {0, 1} targets only where the entry is known in both images and ignores every other
entry (partial BCE over those entries, each image normalised by their count). Alternative:
``label_rule=loss-mix`` uses mixup's equivalent loss form ``lam L(x~, y_a) + (1 - lam) L(x~, y_b)``
with each partial BCE over its own image's known entries, so an entry known in one image only
still trains with that image's share of the weight.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field

from mlrpl_bench.losses import hard_targets, known_mask, masked_per_image_mean, partial_bce, soft_bce_with_logits
from mlrpl_bench.method import Method
from mlrpl_bench.models.heads import PooledLinearClassifier

from ._sarl.model import GnnSteps, SarlKind, build_ssgrl, gnn_steps_field, sarl_field

LABEL_RULES = ("both", "loss-mix")


def mixup_targets(labels_a: torch.Tensor, labels_b: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(targets, mask)`` of the ``both`` rule: ``lam t_a + (1 - lam) t_b`` where both are known."""
    targets = lam * hard_targets(labels_a) + (1.0 - lam) * hard_targets(labels_b)
    return targets, known_mask(labels_a) * known_mask(labels_b)


def mixup_loss(logits: torch.Tensor, labels_a: torch.Tensor, labels_b: torch.Tensor, lam: float,
               rule: str = "both") -> torch.Tensor:
    """The partial-label mixup loss of mixed-input ``logits`` under ``rule`` (see module docstring)."""
    if rule == "both":
        targets, mask = mixup_targets(labels_a, labels_b, lam)
        return masked_per_image_mean(soft_bce_with_logits(logits, targets), mask)
    return lam * partial_bce(logits, labels_a) + (1.0 - lam) * partial_bce(logits, labels_b)


def sample_mixup(batch_size: int, alpha: float, generator: torch.Generator) -> tuple[float, torch.Tensor]:
    """``(lam, perm)``: ``lam ~ Beta(alpha, alpha)`` and a random permutation, from ``generator``.

    The Beta draw goes through numpy seeded from ``generator`` so the method's randomness stays
    in the one seeded stream the harness gives it.
    """
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha)) if alpha > 0 else 1.0
    perm = torch.randperm(batch_size, generator=generator)
    return lam, perm


MIXUP_CITATION = ("Zhang, Cisse, Dauphin, Lopez-Paz. mixup: Beyond Empirical Risk Minimization. ICLR 2018; "
                  "as a partial-label baseline in Pu, Chen et al., Dual-Perspective Semantic-Aware "
                  "Representation Blending for Multi-Label Image Recognition with Partial Labels")


class MixupMethod(Method):
    """Options and model building shared by the two mixup methods."""

    version = "2.0"  # 2.0: the SARL model follows the official code (docs/fidelity.md)

    @dataclass
    class Options:
        alpha: Annotated[float, Field(ge=0, le=1e3)] = field(default=1.0, metadata={"help": "lam ~ Beta(alpha, alpha) (Zhang et al.: 1.0 on CIFAR, 0.1-0.4 on ImageNet); 0 disables mixing"})
        label_rule: Literal[LABEL_RULES] = field(default="both", metadata={"help": "both: mixed targets only where known in both images; loss-mix: lam*L(y_a)+(1-lam)*L(y_b)"})
        start_epoch: Annotated[int, Field(ge=0)] = field(default=0, metadata={"help": "first (0-based) epoch that mixes; earlier epochs use partial BCE"})
        model: Literal["ssgrl", "linear"] = field(default="ssgrl", metadata={"help": "ssgrl: SSGRL with partial BCE (the DSRB paper's 'SSGRL w/ Mixup'); linear: pooled linear classifier"})
        sarl: SarlKind = sarl_field()
        gnn_steps: GnnSteps = gnn_steps_field()

    def build_model(self, backbone):
        if self.options.model == "ssgrl":
            return build_ssgrl(self, backbone)
        return PooledLinearClassifier(backbone, self.ctx.num_classes)
