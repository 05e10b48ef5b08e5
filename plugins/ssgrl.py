"""``ssgrl``: SSGRL (semantic decoupling + gated GNN) trained with partial BCE.

The "SSGRL" row of the SST, HST and DSRB tables: the seeds adapt it to partial labels "by
replacing the BCE loss with partial BCE loss while keeping other components unchanged". Model:
:class:`mlrpl_bench.models.sarl.SARLModel` with the label graph from the co-occurrence of known
positives. With ``sarl=sa`` (semantic attention) the activation-map scores get a partial BCE too.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlrpl_bench.hookspecs import hookimpl
from mlrpl_bench.losses import partial_bce
from mlrpl_bench.method import Batch, Method
from mlrpl_bench.models.sarl import cam_loss

from ._baseline_common import SEED_RECIPE
from ._ssgrl_common import SSGRL_CITATION, build_ssgrl, GnnSteps, SarlKind, gnn_steps_field, sarl_field


class SSGRL(Method):
    name = "ssgrl"
    summary = "SSGRL (semantic decoupling + GGNN over the known-label graph) with partial BCE"
    citation = SSGRL_CITATION
    profiles = {"paper": dict(SEED_RECIPE)}  # the seed papers' recipe (ResNet-101, 448 px, batch 32, lr 1e-5, 20 epochs)

    @dataclass
    class Options:
        sarl: SarlKind = sarl_field()
        gnn_steps: GnnSteps = gnn_steps_field()

    def build_model(self, backbone):
        return build_ssgrl(self, backbone)

    def training_step(self, model, batch: Batch, epoch: int):
        out = model(batch.inputs, return_all=True)
        loss = partial_bce(out.logits, batch.labels)
        return {"loss": loss + cam_loss(out, batch.labels)}


@hookimpl
def mlrpl_methods():
    return [SSGRL]
