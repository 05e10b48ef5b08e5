"""The method SST and HST share: SARL + IST + CST (+ DTL) trained with known and pseudo labels.

Both methods are SARL (SSGRL) + IST + CST + a pseudo-label classification loss; they differ by
defaults (see ``plugins/sst.py`` and ``plugins/hst.py``):

================  ===========================================  ==========================================
option            SST (AAAI 2022)                              HST (journal extension)
================  ===========================================  ==========================================
cst_similarity    ``instance``: images with c known positive   ``prototype``: K-means prototypes (K=10)
thresholds        ``schedule``: 0.95 −0.025/epoch, floor 0.75  ``dtl``: learned θ_intra, θ_cross from 1.0
================  ===========================================  ==========================================

Both use ``pseudo_target=combined`` (known + pseudo positives, the official code of both and SST
eq. 10); HST's paper text sets the known entries to 0 instead (``pseudo_target=pseudo``, part of
its ``paper-literal`` profile).

The equations are in :mod:`.equations`, the model in :mod:`.model`, the options and ablation
presets in :mod:`.options`. ``feature_blending=true`` is HST Table 8's "HST w/ FB": DSRB's
instance- and prototype-perspective blending of category feature maps
(:mod:`.._blending.blender`) trained alongside the transfer losses.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mlrpl_bench.errors import BenchError
from mlrpl_bench.losses import partial_bce
from mlrpl_bench.method import Batch, Method, TrainConfig, adam
from mlrpl_bench.resources import check_allocation
from mlrpl_bench.models.sarl import cam_loss, default_feature_dim, unwrap

from .._blending.blender import BlendSettings, RepresentationBlender
from .._sarl.kmeans import kmeans_centres
from .._sarl.losses import LinearRamp, category_contrastive_loss, ramp_steps
from .._sarl.model import label_graph, partial_bce_reduction
from .equations import (
    TransferSchedule, asymmetric_pair_loss, dtl_loss, instance_scores, ist_scores, prototype_contrastive_loss,
    prototype_scores, pseudo_positives, transfer_targets,
)
from .model import SemanticTransferModel, TransferOutput
from .options import make_options_class, resolve_options


class SemanticTransferMethod(Method):
    """SARL + IST + CST (+ DTL) trained with known and pseudo labels; see the module docstring."""

    Options = make_options_class("SemanticTransferOptions")

    def __init__(self, options, ctx):
        super().__init__(options, ctx)
        self.opts = resolve_options(options, self.name)
        o = self.opts
        self.use_ist = o.modules in ("ist+cst", "ist")
        self.use_cst = o.modules in ("ist+cst", "cst")
        self.schedule = TransferSchedule(start_epoch=o.pseudo_start_epoch, start=o.threshold_start, step=o.threshold_step,
                                         minimum=o.threshold_min, prototype_every=o.prototype_every,
                                         reference_epochs=o.reference_epochs, scale=o.schedule_scale)
        self.graph = label_graph(self)
        # IST w/ stat: p_ij = P(i present | j present) = graph[j, i] on the known training labels.
        self.statistical = torch.from_numpy(self.graph.T.copy())
        self.reduction = partial_bce_reduction(o.bce_reduction)
        # The official HST code makes a pseudo positive where clamp(score − θ, 0, 1) > 0.
        self.strict = o.thresholds == "dtl" and o.dtl_form == "official"
        factor = self.schedule.factor(ctx.epochs)
        self.ramp = LinearRamp(ctx.steps_per_epoch, ramp_steps(o.aux_ramp_epochs, factor, ctx.steps_per_epoch))
        self.prototypes: torch.Tensor | None = None  # (C, K, D)
        self.prototype_valid: torch.Tensor | None = None  # (C, K) bool
        self.prototype_epoch = -1
        self.bank: torch.Tensor | None = None  # (C, S, D), newest first, zeros where not yet filled
        # HST w/ FB: DSRB's blending with dsrb's defaults.
        self.blender = (RepresentationBlender(BlendSettings(reduction=self.reduction), ctx, sarl=o.sarl, owner=self.name)
                        if o.feature_blending else None)

    # -- model ---------------------------------------------------------------------------------

    def build_model(self, backbone: nn.Module) -> nn.Module:
        o = self.opts
        ist_hidden = None
        if self.use_ist and o.ist_cooccurrence == "learned":
            d = o.feature_dim or default_feature_dim(int(backbone.out_channels))
            ist_hidden = (o.ist_hidden1 or max(1, d // 2), o.ist_hidden2 or d)
        blend_shape = () if self.blender is None or self.blender.settings.coefficients == "scalar" else (self.ctx.num_classes,)
        return SemanticTransferModel(
            backbone, self.ctx.num_classes, self.ctx.word_embeddings, self.graph, sarl=o.sarl, feature_dim=o.feature_dim,
            sd_hidden=o.sd_hidden, output_dim=o.output_dim, gnn_steps=o.gnn_steps, reduction=o.channel_reduction,
            ist_hidden=ist_hidden, ist_head=o.ist_head,
            learn_thresholds=o.thresholds == "dtl" and (self.use_ist or self.use_cst), threshold_init=o.dtl_init,
            blending=self.blender is not None, blend_shape=blend_shape)

    def configure_optimizers(self, model: nn.Module, train: TrainConfig):
        """Adam + StepLR. With ``threshold_optimizer=shared`` (official) the learned thresholds are
        in the weights' group, weight decay included; Adam skips them until DTL gives them a
        gradient. ``separate``: their own group, no weight decay, ``threshold_lr``."""
        core = unwrap(model)
        thresholds = getattr(core, "thresholds", None)
        others = (thresholds,) if thresholds is not None and self.opts.threshold_optimizer == "separate" else ()
        if self.blender is not None:
            groups = self.blender.parameter_groups(model, others=others)
        else:
            groups = [{"params": [p for p in model.parameters() if p.requires_grad and all(p is not q for q in others)]}]
        if others:
            groups.append({"params": [thresholds], "weight_decay": 0.0, "lr": self.opts.threshold_lr or train.lr})
        optimizer = adam(groups, train)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=train.lr_step, gamma=train.lr_gamma)
        return optimizer, scheduler

    # -- thresholds & schedule -----------------------------------------------------------------

    def pseudo_active(self, epoch: int) -> bool:
        """Whether pseudo labels are generated at ``epoch`` (after the warm-up, any threshold mode)."""
        return self.schedule.active(epoch, self.ctx.epochs)

    def thresholds(self, model: nn.Module, epoch: int) -> tuple[Any, Any]:
        """``(θ_intra, θ_cross)`` at ``epoch``: learned 0-d tensors (DTL), or numbers; 1.0 before pseudo labels start."""
        o = self.opts
        core = unwrap(model)
        if o.thresholds == "dtl":
            learned = getattr(core, "thresholds", None)
            # No transfer module (ablation=baseline): nothing is thresholded.
            return (learned[0], learned[1]) if learned is not None else (1.0, 1.0)
        if not self.pseudo_active(epoch):
            return 1.0, 1.0
        if o.thresholds == "fixed":
            return o.fixed_threshold, o.fixed_threshold
        t = self.schedule.threshold(epoch, self.ctx.epochs)
        return t, t

    # -- the behaviours the options choose (small, so that tests pin them one by one) ----------

    def classification_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Partial BCE with the ``bce_reduction`` option's reduction."""
        return partial_bce(logits, targets, reduction=self.reduction)

    def cooccurrence(self, out: TransferOutput, labels: torch.Tensor) -> torch.Tensor:
        """``(B, C, C)`` co-occurrence probabilities: φ_intra's, or the statistical P(i|j) (IST w/ stat)."""
        if self.opts.ist_cooccurrence == "learned":
            return torch.sigmoid(out.cooc_logits.float())
        return self.statistical.to(labels.device, labels.dtype).unsqueeze(0).expand(labels.shape[0], -1, -1)

    def intra_scores(self, cooc: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The IST score of every entry (``ist_score``, ``ist_self``)."""
        return ist_scores(cooc, labels, self.opts.ist_score, self.opts.ist_self)

    def pseudo_from(self, scores: torch.Tensor, labels: torch.Tensor, threshold, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Pseudo positives on the unknown entries (strictly above θ with the official DTL)."""
        return pseudo_positives(scores, labels, threshold, valid, strict=self.strict)

    def dtl(self, scores: torch.Tensor, threshold, labels: torch.Tensor) -> torch.Tensor:
        """The DTL loss of one module (``dtl_form``, ``dtl_temperature``, ``bce_reduction``)."""
        o = self.opts
        return dtl_loss(scores, threshold, labels, o.dtl_form, o.dtl_temperature, self.reduction)

    # -- prototypes & bank ---------------------------------------------------------------------

    def on_epoch_start(self, model: nn.Module, epoch: int) -> None:
        self.ramp.start_epoch(epoch)
        if self.blender is not None:
            self.blender.on_epoch_start(model, epoch)
        o = self.opts
        if not (self.use_cst and o.cst_similarity == "prototype"):
            return
        due = self.schedule.prototype_epoch(epoch, self.ctx.epochs)
        missing = self.prototypes is None and self.pseudo_active(epoch)
        if due or missing:
            self.compute_prototypes(model, epoch)
            self.prototype_epoch = epoch

    @torch.no_grad()
    def compute_prototypes(self, model: nn.Module, epoch: int = 0) -> None:
        """K-means prototypes per category from the features of its known positives (HST §3.3;
        scikit-learn's K-means as the official ``computePrototype``), over one un-augmented pass
        of the training set (all processes' shares gathered; seeded by the run's seed and the
        epoch, so every process computes the same prototypes)."""
        core = unwrap(model)
        was_training = core.training
        core.eval()
        labels_all = torch.as_tensor(self.ctx.train_labels)
        feats, classes = [], []
        try:
            for batch in self.ctx.feature_batches():
                f, _, _ = core.category_features(batch.inputs)
                pos = labels_all[batch.indices.cpu()] > 0
                rows, cols = pos.nonzero(as_tuple=True)
                feats.append(f[rows.to(f.device), cols.to(f.device)].float().cpu())
                classes.append(cols)
        finally:
            core.train(was_training)
        d = core.feature_dim
        feats_t = torch.cat(feats) if feats else torch.zeros(0, d)
        classes_t = torch.cat(classes) if classes else torch.zeros(0, dtype=torch.int64)
        feats_t = self.ctx.all_gather(feats_t).cpu()
        classes_t = self.ctx.all_gather(classes_t).cpu()
        c, k = self.ctx.num_classes, self.opts.num_prototypes
        protos = torch.zeros(c, k, d)
        valid = torch.zeros(c, k, dtype=torch.bool)
        seed = int(self.ctx.seed) * 1000 + int(epoch)
        for cls in range(c):
            centres = kmeans_centres(feats_t[classes_t == cls], k, seed)
            protos[cls, : len(centres)] = centres
            valid[cls, : len(centres)] = True
        self.prototypes, self.prototype_valid = protos, valid

    @torch.no_grad()
    def update_bank(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Official SST (``model/SST.py:88-96`` ``updateFeature``, called at ``SST.py:143``): a
        zero-initialised bank keeps the ``bank_size`` latest known-positive features of each class;
        called before the step's scores, as the official training loop does.

        The order is the official one: per class, the batch's known positives **in batch order**
        go in front of the old slots (``torch.cat((posFeature, self.posFeature[c]))``) and the bank
        is cut to its size, so the oldest batch leaves first and, within a batch, its *last*
        images leave first (and a batch with more positives than slots keeps its first images)."""
        b, c, d = features.shape
        size = self.opts.bank_size
        if self.bank is None:
            _check_bank_memory(c, size, d, features)
            self.bank = features.new_zeros((c, size, d))
        self.bank = self.bank.to(features.device)
        # All classes at once (pure data movement, so the bank is exactly the per-class loop's):
        # per class, its known positives in batch order, then the old slots, cut to `size`.
        positive = (labels > 0).t()  # (C, B)
        first = torch.argsort((~positive).to(torch.int8), dim=1, stable=True)  # positives to the front, in order
        incoming = features.detach().to(self.bank.dtype).transpose(0, 1).gather(1, first.unsqueeze(-1).expand(c, b, d))
        count = positive.sum(dim=1, keepdim=True)  # (C, 1) positives per class
        slot = torch.arange(size, device=features.device).unsqueeze(0)
        source = torch.where(slot < count, slot, b + slot - count)  # into [incoming ; old bank]
        pool = torch.cat([incoming, self.bank], dim=1)
        self.bank = pool.gather(1, source.unsqueeze(-1).expand(c, size, d))

    def cross_scores(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CST existence scores ``(B, C)`` and where they exist (per the similarity option).

        The bank's score is the mean cosine over all its slots, empty (zero) slots included: the
        official ``getInterPseudoLabel`` averages over its zero-initialised ``posFeature``."""
        o = self.opts
        b, c = labels.shape
        if o.cst_similarity == "prototype":
            if self.prototypes is None:
                return features.new_zeros(b, c), torch.zeros(b, c, dtype=torch.bool, device=features.device)
            scores, has = prototype_scores(features, self.prototypes.to(features), self.prototype_valid.to(features.device))
            return scores, has.unsqueeze(0).expand(b, c)
        if o.cst_reference == "bank":
            if self.bank is None:
                return features.new_zeros(b, c), torch.zeros(b, c, dtype=torch.bool, device=features.device)
            bank = self.bank.to(features)
            slots = torch.ones(bank.shape[:2], dtype=torch.bool, device=features.device)
            scores, _ = prototype_scores(features, bank, slots)
            return scores, torch.ones(b, c, dtype=torch.bool, device=features.device)
        return instance_scores(features, features, labels, exclude_self=True)

    def prototype_loss(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """HST's official prototype contrastive term (``prototype_loss``), 0 without prototypes."""
        if self.opts.prototype_loss == "none" or self.prototypes is None:
            return features.new_zeros(())
        scores, _ = prototype_scores(features, self.prototypes.to(features), self.prototype_valid.to(features.device))
        return prototype_contrastive_loss(scores, labels, self.opts.prototype_loss)

    # -- training ------------------------------------------------------------------------------

    def training_step(self, model: nn.Module, batch: Batch, epoch: int) -> dict[str, torch.Tensor]:
        o = self.opts
        ramp = self.ramp.next()
        blend = None
        if self.blender is not None:
            unwrap(model).clamp_blend_parameters()
            blend = self.blender.blend_fn(batch.labels) if self.blender.active(epoch) else None
        out: TransferOutput = model(batch.inputs, return_all=True, blend=blend)
        sarl = out.sarl
        logits = sarl.logits
        labels = batch.labels.to(logits.dtype)
        active = self.pseudo_active(epoch)
        th_intra, th_cross = self.thresholds(model, epoch)
        combine = o.pseudo_target == "combined"
        zero = logits.new_zeros(())
        l_cls, l_ist, l_cst, l_dtl, l_proto = self.classification_loss(logits, labels), zero, zero, zero, zero
        n_intra = n_cross = zero

        if self.use_ist:
            cooc = self.cooccurrence(out, labels)
            if o.ist_cooccurrence == "learned" and o.ist_loss:
                l_ist = asymmetric_pair_loss(out.cooc_logits.float(), labels, gamma_pos=o.gamma_pos, gamma_neg=o.gamma_neg,
                                             margin=o.asl_margin, pairs=o.ist_pairs, form=o.ist_loss_form)
            scores = self.intra_scores(cooc if not o.dtl_detach_scores else cooc.detach(), labels)
            if active:
                pseudo = self.pseudo_from(scores.detach(), labels, th_intra)
                l_cls = l_cls + self.classification_loss(logits, transfer_targets(labels, pseudo, combine))
                n_intra = pseudo.sum(dim=1).mean()
                if o.thresholds == "dtl":
                    l_dtl = l_dtl + self.dtl(scores, th_intra, labels)

        if self.use_cst:
            feats = sarl.features.float()
            if o.cst_loss:
                l_cst = category_contrastive_loss(feats, labels, o.cst_pairs, self.ctx.generator)
            if o.cst_similarity == "instance" and o.cst_reference == "bank":
                self.update_bank(feats.detach(), labels)
            scores, has = self.cross_scores(feats if not o.dtl_detach_scores else feats.detach(), labels)
            if active:
                pseudo = self.pseudo_from(scores.detach(), labels, th_cross, has)
                l_cls = l_cls + self.classification_loss(logits, transfer_targets(labels, pseudo, combine))
                n_cross = pseudo.sum(dim=1).mean()
                if o.thresholds == "dtl":
                    # Only categories that have a reference set can be scored against θ_cross.
                    l_dtl = l_dtl + self.dtl(scores, th_cross, labels * has.to(labels.dtype))
                if o.cst_similarity == "prototype":
                    l_proto = self.prototype_loss(feats, labels)

        blend_logs: dict[str, torch.Tensor] = {}
        if self.blender is not None:
            # DSRB eq. 14-15: the blended predictions' partial BCE joins the classification loss.
            l_blend, blend_logs = self.blender.blended_loss(out.blended, logits)
            l_cls = self.blender.keep_coefficients_in_graph(model, l_cls + l_blend)
            blend_logs["blend"] = l_blend.detach()

        loss = (l_cls + ramp * (o.lambda_ist * l_ist + o.lambda_cst * l_cst) + o.lambda_dtl * l_dtl
                + o.lambda_proto * l_proto)
        result = {**blend_logs, "cls": l_cls.detach(), "ist": l_ist.detach(), "cst": l_cst.detach(), "dtl": l_dtl.detach(),
                  "proto": l_proto.detach(), "pseudo_intra": n_intra.detach(), "pseudo_cross": n_cross.detach(),
                  "theta_intra": _scalar(th_intra), "theta_cross": _scalar(th_cross)}
        if o.sarl == "sa" and o.sa_cam_loss:
            l_cam = cam_loss(sarl, labels)
            loss = loss + l_cam
            result["cam"] = l_cam.detach()
        result["loss"] = loss
        return result

    @torch.no_grad()
    def pseudo_labels(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The pseudo positives ``(intra (B, C), cross (B, C))`` the method would use at ``epoch``
        (eval-mode forward; zeros for a disabled module or before pseudo labels start). For
        diagnostics and tests; the bank is not updated."""
        core = unwrap(model)
        was_training = core.training
        core.eval()
        try:
            out: TransferOutput = core(inputs, return_all=True)
        finally:
            core.train(was_training)
        labels = labels.to(out.sarl.logits.dtype)
        intra = torch.zeros_like(labels)
        cross = torch.zeros_like(labels)
        if not self.pseudo_active(epoch):
            return intra, cross
        th_intra, th_cross = self.thresholds(model, epoch)
        if self.use_ist:
            intra = self.pseudo_from(self.intra_scores(self.cooccurrence(out, labels), labels), labels, th_intra)
        if self.use_cst:
            scores, has = self.cross_scores(out.sarl.features.float(), labels)
            cross = self.pseudo_from(scores, labels, th_cross, has)
        return intra, cross

    # -- state ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Prototypes, the feature bank and (w/ FB) the blending state; the learned thresholds and
        α/β live in the model's state."""
        empty = torch.zeros(0)
        state: dict[str, Any] = {
            "prototypes": self.prototypes.cpu() if self.prototypes is not None else empty,
            "prototype_valid": self.prototype_valid.cpu() if self.prototype_valid is not None else empty.bool(),
            "prototype_epoch": int(self.prototype_epoch),
            "bank": self.bank.cpu() if self.bank is not None else empty,
        }
        if self.blender is not None:
            state["blending"] = self.blender.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        protos = state.get("prototypes")
        has_protos = protos is not None and protos.numel() > 0
        self.prototypes = protos.clone() if has_protos else None
        self.prototype_valid = state["prototype_valid"].clone().bool() if has_protos else None
        self.prototype_epoch = int(state.get("prototype_epoch", -1))
        bank = state.get("bank")
        self.bank = bank.clone() if bank is not None and bank.numel() > 0 else None
        if self.blender is not None:
            if "blending" not in state:
                raise BenchError(f"{self.name} checkpoint: no feature-blending state; it was saved without "
                                 f"-o feature_blending=true, resume with the same options")
            self.blender.load_state_dict(state["blending"])


def _scalar(value) -> torch.Tensor:
    """A detached 0-d tensor of a threshold (learned tensor or number), for the epoch logs."""
    return value.detach().clone() if torch.is_tensor(value) else torch.tensor(float(value))


__all__ = ["SemanticTransferMethod"]


def _check_bank_memory(classes: int, size: int, dim: int, features: torch.Tensor) -> None:
    """Refuse a bank that cannot fit: the update holds about three copies of it (old bank, incoming
    pool, gathered result) in the features' dtype, on their device."""
    nbytes = 3 * classes * size * dim * features.element_size()
    available = torch.cuda.mem_get_info(features.device)[0] if features.is_cuda else None
    check_allocation(nbytes, what=f"-o bank_size={size}: the feature bank ({classes} classes x {size} x {dim}, "
                                  "three copies while it is updated)",
                     fix="choose a smaller bank_size (official: 100)", available=available)
