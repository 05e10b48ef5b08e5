"""``fm-mixup``: mixup of the global feature maps (the backbone output), the "FM-Mixup" baseline
of the DSRB paper, adapted to partial labels (label rule: see ``_mixup``).

The backbone maps ``f = backbone(x)`` of the batch are blended with those of a permutation of the
batch, ``lam f + (1 - lam) f[perm]``, then the rest of the model runs on the mixed maps. Model: SSGRL
trained with partial BCE (``model=ssgrl``, default: the paper's "SSGRL w/ FM-Mixup"; the maps are
mixed before its channel reduction and semantic decoupling), or the pooled linear classifier
(``model=linear``: mixed maps -> pooling -> classifier).
"""

from __future__ import annotations

from mlrpl_bench.hookspecs import hookimpl
from mlrpl_bench.losses import partial_bce
from mlrpl_bench.method import Batch

from ._baseline_common import SEED_RECIPE
from ._mixup import MIXUP_CITATION, MixupMethod, mixup_loss, sample_mixup
from ._sarl.model import ssgrl_logits_from_backbone_maps


class FeatureMapMixup(MixupMethod):
    name = "fm-mixup"
    summary = "mixup of backbone feature maps; mixed targets only where the label is known in both images"
    citation = MIXUP_CITATION
    profiles = {"paper": dict(SEED_RECIPE)}  # the seed papers' recipe (ResNet-101, 448 px, batch 32, lr 1e-5, 20 epochs)

    def training_step(self, model, batch: Batch, epoch: int):
        if epoch < self.options.start_epoch:
            return {"loss": partial_bce(model(batch.inputs), batch.labels)}
        net = getattr(model, "module", model)  # the head's parts, also under DistributedDataParallel
        maps = net.backbone(batch.inputs)
        lam, perm = sample_mixup(maps.shape[0], self.options.alpha, self.ctx.generator)
        perm = perm.to(maps.device)
        mixed = lam * maps + (1.0 - lam) * maps[perm]
        if self.options.model == "ssgrl":
            logits = ssgrl_logits_from_backbone_maps(net, mixed)
        else:
            logits = net.classifier(mixed.mean(dim=(2, 3)))
        loss = mixup_loss(logits, batch.labels, batch.labels[perm], lam, self.options.label_rule)
        return {"loss": loss}


@hookimpl
def mlrpl_methods():
    return [FeatureMapMixup]
