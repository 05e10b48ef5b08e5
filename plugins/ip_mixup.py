"""``ip-mixup``: mixup in image pixel space (Zhang et al., ICLR 2018), the "IP-Mixup" baseline
of the DSRB paper, adapted to partial labels (label rule: see ``_mixup``).

Each training batch is replaced by its mixup ``lam x + (1 - lam) x[perm]`` from ``start_epoch``
on; earlier epochs and prediction use the images as they are. Model: SSGRL trained with partial
BCE (``model=ssgrl``, default: the paper's "SSGRL w/ IP-Mixup"), or the pooled linear classifier
(``model=linear``). In the frozen-backbone track the inputs are the cached backbone maps, so
mixing them is feature-map mixup (``fm-mixup``), not pixel mixup.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlrpl_bench.hookspecs import hookimpl
from mlrpl_bench.losses import partial_bce
from mlrpl_bench.method import Batch, Method
from mlrpl_bench.models.heads import PooledLinearClassifier

from ._baseline_common import SEED_RECIPE, check_choice, check_range
from ._mixup import LABEL_RULES, mixup_loss, sample_mixup
from ._sarl.model import GnnSteps, SarlKind, build_ssgrl, gnn_steps_field, sarl_field

MIXUP_CITATION = ("Zhang, Cisse, Dauphin, Lopez-Paz. mixup: Beyond Empirical Risk Minimization. ICLR 2018; "
                  "as a partial-label baseline in Pu, Chen et al., Dual-Perspective Semantic-Aware "
                  "Representation Blending for Multi-Label Image Recognition with Partial Labels")


class MixupMethod(Method):
    """Options, option checks and model building shared by the two mixup methods."""

    version = "2.0"  # 2.0: the SARL model follows the official code (docs/fidelity.md)

    @dataclass
    class Options:
        alpha: float = field(default=1.0, metadata={"help": "lam ~ Beta(alpha, alpha) (Zhang et al.: 1.0 on CIFAR, 0.1-0.4 on ImageNet); 0 disables mixing"})
        label_rule: str = field(default="both", metadata={"help": "both: mixed targets only where known in both images; loss-mix: lam*L(y_a)+(1-lam)*L(y_b)"})
        start_epoch: int = field(default=0, metadata={"help": "first (0-based) epoch that mixes; earlier epochs use partial BCE"})
        model: str = field(default="ssgrl", metadata={"help": "ssgrl: SSGRL with partial BCE (the DSRB paper's 'SSGRL w/ Mixup'); linear: pooled linear classifier"})
        sarl: SarlKind = sarl_field()
        gnn_steps: GnnSteps = gnn_steps_field()

    def __init__(self, options, ctx):
        super().__init__(options, ctx)
        check_range(self.name, "alpha", options.alpha, 0.0, 1e3)
        check_choice(self.name, "label_rule", options.label_rule, LABEL_RULES)
        check_range(self.name, "start_epoch", options.start_epoch, 0, 10**6)
        check_choice(self.name, "model", options.model, ("ssgrl", "linear"))

    def build_model(self, backbone):
        if self.options.model == "ssgrl":
            return build_ssgrl(self, backbone)
        return PooledLinearClassifier(backbone, self.ctx.num_classes)


class PixelMixup(MixupMethod):
    name = "ip-mixup"
    summary = "mixup of image pixels; mixed targets only where the label is known in both images"
    citation = MIXUP_CITATION
    profiles = {"paper": dict(SEED_RECIPE)}  # the seed papers' recipe (ResNet-101, 448 px, batch 32, lr 1e-5, 20 epochs)

    def training_step(self, model, batch: Batch, epoch: int):
        if epoch < self.options.start_epoch:
            return {"loss": partial_bce(model(batch.inputs), batch.labels)}
        lam, perm = sample_mixup(batch.inputs.shape[0], self.options.alpha, self.ctx.generator)
        perm = perm.to(batch.inputs.device)
        mixed = lam * batch.inputs + (1.0 - lam) * batch.inputs[perm]
        loss = mixup_loss(model(mixed), batch.labels, batch.labels[perm], lam, self.options.label_rule)
        return {"loss": loss}


@hookimpl
def mlrpl_methods():
    return [PixelMixup]
