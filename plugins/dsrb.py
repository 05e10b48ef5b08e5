"""``dsrb``: dual-perspective semantic-aware representation blending (Pu, Chen et al.).

The SARL model (semantic decoupling or attention -> GGNN -> per-class classifier) learns
category-specific feature maps ``F_c^n`` with a contrastive loss on their pooled vectors
(eq. 3–4). From the blending epoch on, two modules turn known labels of other images into
soft labels for unknown ones:

* **IPRB** (eq. 6–9): each image is paired with its partner in the flipped batch; where the
  image's label is unknown and the partner's positive, the category maps are blended with a
  learnable per-class α and the label becomes ``1 − α``.
* **PPRB** (eq. 10–13): per class, prototypes of the known positives' maps, one per region of
  the 4^K split by where the maximum response lies; one random unknown category per image is
  blended with a prototype from another region with a learnable per-class β, label ``1 − β``.

Loss eq. 14–16: partial BCE on the original, IPRB and PPRB predictions (equal weights) plus
λ = 0.05 times the contrastive loss; α and β start at 0.5 and are clamped to [0, 1].

Schedule: the paper blends from epoch 5 of 20 and recomputes the prototypes every 5 epochs.
``blend_start_epoch = -1`` and ``prototype_interval = -1`` (defaults) mean *a quarter of the
epochs*, rounded (5 for the paper's 20 epochs, 2 for the built-in dataset's 8, 0 for 1–2
epochs), so that short CPU runs exercise both modules; the ``paper`` profile sets 5 and 5.
Prototypes come from an un-augmented pass over the training set (``ctx.feature_batches()``)
and are saved in the method's ``state_dict``.

Ablations (Table IV rows) are options: ``modules=iprb`` / ``pprb`` (one module),
``fixed_alpha`` / ``fixed_beta`` (0.5, not learned), ``space=vectors`` with ``modules=pprb``
("PPRB w/ RV") or both modules ("w/ RV-Mixup"): blending of the pooled vectors with K-means
vector prototypes as in the preliminary SARB version, ``sarl=sa`` ("w/ SA").

The released DSRB code does not run; the paper is the reference. Facts taken from that code:
the quadrant rule (row/column of the maximum of the channel sum, boundary ⌊h/2⌋), an empty
quadrant falls back to the class's mean map, and the prototype index is drawn among the other
quadrants. Where it differs from the paper the paper wins: α and β are per-class vectors (the
code has scalars), Algorithm 1's partner weight of 1 outside blended entries is not copied,
and the contrastive loss uses all pairs (``contrastive_pairs=known`` gives the code's choice).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from mlrpl_bench.errors import BenchError
from mlrpl_bench.hookspecs import hookimpl
from mlrpl_bench.method import Batch, Method
from mlrpl_bench.models.sarl import build_label_graph, cam_loss, unwrap

from ._blending.blender import BlendSettings, RepresentationBlender, quarter_of
from ._blending.functions import contrastive_loss, soft_partial_bce
from ._blending.model import DSRBModel

__all__ = ["DSRB", "quarter_of"]


class DSRB(Method):
    name = "dsrb"
    summary = "SARL + instance- and prototype-perspective blending of category feature maps (IPRB + PPRB)"
    citation = ("Pu, Chen, Wu, Tang, Lin. Dual-Perspective Semantic-Aware Representation Blending for Multi-Label "
                "Image Recognition with Partial Labels (journal extension of SARB, AAAI 2022)")
    version = "1.0"
    settings = ("full", "pal", "ppl", "spl")
    profiles = {
        # Section 5.1.1: ResNet-101 on ImageNet, the first 91 layers fixed (layers 1-3), Adam,
        # batch 32, lr 1e-5 divided by 10 every 10 epochs, weight decay 5e-4, 20 epochs, 448 px;
        # blending from epoch 5, prototypes every 5 epochs, K = 1.
        "paper": {"backbone": "resnet101", "backbone_weights": "imagenet", "freeze_backbone": "official",
                  "image_size": 448, "batch_size": 32, "lr": 1e-5, "weight_decay": 5e-4, "lr_step": 10,
                  "lr_gamma": 0.1, "epochs": 20, "blend_start_epoch": 5, "prototype_interval": 5},
    }

    @dataclass
    class Options:
        sarl: str = field(default="sd", metadata={"help": "category-specific representation learning: sd (semantic decoupling, the paper's) | sa (semantic attention)"})
        feature_dim: int = field(default=0, metadata={"help": "channels of the category maps; 0 = automatic (1024 for ResNet, the backbone's own for small-cnn)"})
        modules: str = field(default="both", metadata={"help": "blending modules: both | iprb | pprb | none"})
        space: str = field(default="maps", metadata={"help": "blend category feature maps (maps) or pooled vectors with K-means prototypes (vectors: the RV / RV-Mixup ablations)"})
        fixed_alpha: bool = field(default=False, metadata={"help": "ablation: α fixed at 0.5 instead of learned"})
        fixed_beta: bool = field(default=False, metadata={"help": "ablation: β fixed at 0.5 instead of learned"})
        region_k: int = field(default=1, metadata={"help": "K: prototypes per class = 4^K regions (the paper's 1)"})
        vector_prototypes: int = field(default=10, metadata={"help": "K-means prototypes per class with space=vectors"})
        pprb_per_image: int = field(default=1, metadata={"help": "unknown categories blended with a prototype per image (the paper's 1)"})
        blend_start_epoch: int = field(default=-1, metadata={"help": "first epoch (0-based) with blending; -1 = a quarter of the epochs (the paper: 5 of 20)"})
        prototype_interval: int = field(default=-1, metadata={"help": "recompute prototypes every N epochs from the start epoch; -1 = a quarter of the epochs (the paper: 5)"})
        contrastive_weight: float = field(default=0.05, metadata={"help": "λ of eq. 16"})
        contrastive_pairs: str = field(default="all", metadata={"help": "pairs of eq. 3: all (the paper) | known (both labels known, the official code)"})

    def __init__(self, options, ctx):
        super().__init__(options, ctx)
        o = options
        where = "method dsrb option"
        for key, value, allowed in (("sarl", o.sarl, ("sd", "sa")), ("contrastive_pairs", o.contrastive_pairs, ("all", "known"))):
            if value not in allowed:
                raise BenchError(f"{where} {key}={value!r}: use one of {', '.join(allowed)}")
        if o.contrastive_weight < 0:
            raise BenchError(f"{where} contrastive_weight={o.contrastive_weight}: use a value >= 0")
        settings = BlendSettings(modules=o.modules, space=o.space, region_k=o.region_k, vector_prototypes=o.vector_prototypes,
                                 pprb_per_image=o.pprb_per_image, start_epoch=o.blend_start_epoch,
                                 prototype_interval=o.prototype_interval)
        settings.check(where)
        self.blender = RepresentationBlender(settings, ctx, sarl=o.sarl, owner=self.name)

    def build_model(self, backbone):
        o = self.options
        return DSRBModel(backbone, self.ctx.num_classes, self.ctx.word_embeddings, build_label_graph(self.ctx.train_labels),
                         sarl=o.sarl, feature_dim=o.feature_dim, learn_alpha=not o.fixed_alpha, learn_beta=not o.fixed_beta)

    def configure_optimizers(self, model, train):
        """The default Adam + StepLR, with α and β exempt from weight decay (see
        :meth:`RepresentationBlender.split_parameters`)."""
        weights, coefficients = self.blender.split_parameters(model)
        groups = [{"params": weights}]
        if coefficients:
            groups.append({"params": coefficients, "weight_decay": 0.0})
        optimizer = torch.optim.Adam(groups, lr=train.lr, weight_decay=train.weight_decay)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=train.lr_step, gamma=train.lr_gamma)
        return optimizer, scheduler

    def on_epoch_start(self, model, epoch: int) -> None:
        self.blender.on_epoch_start(model, epoch)

    def training_step(self, model, batch: Batch, epoch: int):
        o = self.options
        net = unwrap(model)
        net.clamp_blend_parameters()
        labels = batch.labels
        blend = self.blender.blend_fn(labels) if self.blender.active(epoch) else None
        out = model(batch.inputs, return_all=True, blend=blend)
        cls, logs = self.blender.add_blended_losses(soft_partial_bce(out.logits, labels), out.blended)
        cst = contrastive_loss(out.features, labels, o.contrastive_pairs)
        loss = cls.mean() + o.contrastive_weight * cst + cam_loss(out, labels)
        loss = self.blender.keep_coefficients_in_graph(model, loss)
        logs.update({"loss": loss, "loss_contrastive": cst.detach(), "alpha_mean": net.alpha.detach().mean(),
                     "beta_mean": net.beta.detach().mean()})
        return logs

    def state_dict(self) -> dict[str, Any]:
        return self.blender.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.blender.load_state_dict(state)


@hookimpl
def mlrpl_methods():
    return [DSRB]
