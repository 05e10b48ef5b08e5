"""``ip-mixup``: mixup in image pixel space (Zhang et al., ICLR 2018), the "IP-Mixup" baseline
of the DSRB paper, adapted to partial labels (label rule: see ``_mixup``).

Each training batch is replaced by its mixup ``lam x + (1 - lam) x[perm]`` from ``start_epoch``
on; earlier epochs and prediction use the images as they are. Model: SSGRL trained with partial
BCE (``model=ssgrl``, default: the paper's "SSGRL w/ IP-Mixup"), or the pooled linear classifier
(``model=linear``). In the frozen-backbone track the inputs are the cached backbone maps, so
mixing them is feature-map mixup (``fm-mixup``), not pixel mixup.
"""

from __future__ import annotations

from mlrpl_bench.hookspecs import hookimpl
from mlrpl_bench.losses import partial_bce
from mlrpl_bench.method import Batch

from ._baseline_common import SEED_RECIPE
from ._mixup import MIXUP_CITATION, MixupMethod, mixup_loss, sample_mixup

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
