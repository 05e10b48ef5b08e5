"""The method machinery SST and HST share: model, options, ablation presets, training step.

Both methods are SARL (SSGRL) + IST + CST + a pseudo-label classification loss; they differ by
defaults (see ``plugins/sst.py`` and ``plugins/hst.py``):

================  ===========================================  ==========================================
option            SST (AAAI 2022)                              HST (journal extension)
================  ===========================================  ==========================================
cst_similarity    ``instance``: images with c known positive   ``prototype``: K-means prototypes (K=10)
thresholds        ``schedule``: 0.95 −0.025/epoch, floor 0.75  ``dtl``: learned θ_intra, θ_cross from 1.0
pseudo_target     ``combined``: ŷ = known + pseudo positives   ``pseudo``: known entries set to 0
================  ===========================================  ==========================================

Every ablation row of the papers' tables is an ``ablation`` preset (or the options it sets).
``feature_blending=true`` is HST Table 8's "HST w/ FB": DSRB's instance- and prototype-perspective
blending of category feature maps (:mod:`._blender`) trained alongside the transfer losses.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any, NamedTuple

import torch
from torch import nn

from mlrpl_bench.errors import BenchError
from mlrpl_bench.losses import partial_bce
from mlrpl_bench.method import Batch, Method, TrainConfig
from mlrpl_bench.models.ist import CooccurrenceHead
from mlrpl_bench.models.sarl import SARLModel, SARLOutput, build_label_graph, cam_loss, default_feature_dim, unwrap

from ._blender import BlendSettings, RepresentationBlender
from ._blending import BlendCoefficients

from ._semantic_transfer import (
    TransferSchedule, asymmetric_pair_loss, cst_pair_loss, dtl_loss, instance_scores, ist_scores, kmeans,
    prototype_scores, pseudo_positives, transfer_targets,
)

# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


class TransferOutput(NamedTuple):
    """:ivar sarl: the :class:`SARLOutput`; :ivar cooc_logits: ``(B, C, C)`` φ_intra logits or None;
    :ivar blended: what the ``blend`` callable returned (feature blending), else None."""

    sarl: SARLOutput
    cooc_logits: torch.Tensor | None
    blended: Any = None


class SemanticTransferModel(BlendCoefficients, SARLModel):
    """SARL model + the IST head φ_intra + (HST) the learnable thresholds θ_intra, θ_cross
    (+ with ``blending``, the α, β of feature blending).

    ``model(x)`` gives logits (the IST/CST modules are removed at inference, as in the papers);
    ``model(x, return_all=True)`` a :class:`TransferOutput`; ``blend=fn`` builds the category
    feature maps and runs ``fn(model, maps, features)`` inside forward, as
    :class:`~._blending.DSRBModel` does. The thresholds are parameters of the model so the
    optimizer, gradient averaging and checkpoints see them.
    """

    def __init__(self, backbone, num_classes, word_embeddings, adjacency, *, ist_hidden: tuple[int, int] | None,
                 learn_thresholds: bool, threshold_init: float = 1.0, blending: bool = False, **sarl_kwargs):
        super().__init__(backbone, num_classes, word_embeddings, adjacency, **sarl_kwargs)
        self.ist_head = CooccurrenceHead(self.feature_dim, ist_hidden) if ist_hidden is not None else None
        # [θ_intra, θ_cross]; absent unless learned (DTL).
        self.thresholds = nn.Parameter(torch.full((2,), float(threshold_init))) if learn_thresholds else None
        # α, β only exist with blending, so checkpoints of the plain methods keep their keys.
        if blending:
            self.init_blend_parameters(num_classes)

    def forward(self, x: torch.Tensor, return_all: bool = False, blend=None):
        if blend is None:
            out, blended = super().forward(x, return_all=True), None
        else:
            out, _, blended = self.forward_blended(x, blend)
        if not return_all:
            return out.logits
        cooc = self.ist_head(out.features) if self.ist_head is not None else None
        return TransferOutput(out, cooc, blended)


# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------

#: Presets named after the rows of the ablation tables (SST Table 2, HST Tables 3-7).
ABLATIONS: dict[str, dict[str, Any]] = {
    "": {},
    "baseline": {"modules": "none"},  # "SSGRL": the SARL model with partial BCE only
    "ist-only": {"modules": "ist"},  # "Ours IST"
    "ist-no-loss": {"modules": "ist", "ist_loss": False},  # "Ours IST w/o L_ist"
    "ist-stat": {"modules": "ist", "ist_cooccurrence": "statistical"},  # "Ours IST w/ stat"
    "cst-only": {"modules": "cst"},  # "Ours CST"
    "cst-no-loss": {"modules": "cst", "cst_loss": False},  # "Ours CST w/o L_cst"
    "cst-instance": {"modules": "cst", "cst_similarity": "instance"},  # HST "Ours CST w/ IL"
    "fixed-threshold": {"thresholds": "fixed"},  # HST Table 7, θ_intra = θ_cross = fixed_threshold
    "sa": {"sarl": "sa"},  # "Ours w/ SAM" (SST), "Ours w/ SA" (HST)
}

CHOICES = {
    "modules": ("ist+cst", "ist", "cst", "none"),
    "sarl": ("sd", "sa"),
    "channel_reduction": ("always", "auto"),
    "ist_cooccurrence": ("learned", "statistical"),
    "ist_score": ("sum", "mean"),
    "ist_pairs": ("all", "known"),
    "ist_loss_form": ("paper", "asl"),
    "cst_pairs": ("all", "known"),
    "cst_similarity": ("instance", "prototype"),
    "cst_reference": ("batch", "bank"),
    "thresholds": ("schedule", "fixed", "dtl"),
    "dtl_form": ("paper", "official"),
    "schedule_scale": ("epochs", "none"),
    "pseudo_target": ("combined", "pseudo"),
}

# (name, type, help); defaults come from each plugin.
_OPTION_SPECS: list[tuple[str, type, str]] = [
    ("ablation", str, "preset named after a paper table row: " + ", ".join(k for k in ABLATIONS if k)
     + " (overrides the options it sets; empty = the full method)"),
    ("modules", str, "transfer modules: ist+cst (full), ist (Ours IST), cst (Ours CST), none (SSGRL baseline)"),
    ("sarl", str, "category features: sd = semantic decoupling (paper), sa = semantic attention / class activation maps"),
    ("feature_dim", int, "D of category features after the 1x1 conv+BN reduction; 0 = auto (ResNet 2048->1024, small CNN keeps 128)"),
    ("channel_reduction", str, "always = a 1x1 conv+BN after the backbone as in the papers, even when D equals the backbone's channels "
     "(signed features for the cosine similarities of CST); auto = only when D differs"),
    ("sd_hidden", int, "semantic-decoupling joint embedding; 0 = D/2 (512 in the paper)"),
    ("output_dim", int, "classifier input size after the GGNN; 0 = D (1024 in the paper)"),
    ("gnn_steps", int, "GGNN propagation steps"),
    ("ist_hidden1", int, "φ_intra first hidden layer; 0 = D/2 (512 in the paper)"),
    ("ist_hidden2", int, "φ_intra second hidden layer; 0 = D (1024 in the paper)"),
    ("ist_loss", bool, "train φ_intra with L_ist (false = 'IST w/o L_ist')"),
    ("ist_cooccurrence", str, "learned = image-specific φ_intra (paper); statistical = training-set P(i|j) of known labels ('IST w/ stat')"),
    ("ist_score", str, "eq. 2 aggregation over known positives: sum (paper) or mean (official code)"),
    ("ist_pairs", str, "pairs scored by L_ist: all = every pair not both known positive is a negative (eq. 4, official); known = only pairs with both labels known"),
    ("ist_loss_form", str, "L_ist negative term: paper = max(p-m,0)^γ2·log(1-p); asl = ASL's shifted probability in the log (official)"),
    ("gamma_pos", float, "γ1 of L_ist (eq. 4)"),
    ("gamma_neg", float, "γ2 of L_ist (eq. 4)"),
    ("asl_margin", float, "m of L_ist (eq. 4)"),
    ("cst_loss", bool, "train the category features with L_cst (false = 'CST w/o L_cst')"),
    ("cst_pairs", str, "pairs scored by L_cst: all ('otherwise' of eq. 8 includes unknowns, paper) or known"),
    ("cst_similarity", str, "CST pseudo labels from instance similarities (SST eq. 6) or K-means prototypes (HST eq. 7-8)"),
    ("cst_reference", str, "instance similarity set D_c: batch (paper: images of the batch with c known positive) or bank (official: latest positives per class)"),
    ("bank_size", int, "features kept per class with cst_reference=bank (official: 100)"),
    ("num_prototypes", int, "K prototypes per category (HST: 10)"),
    ("prototype_every", int, "recompute prototypes every N paper-epochs after the first (0 = compute once)"),
    ("thresholds", str, "schedule (SST: 0.95 -0.025/epoch to threshold_min), fixed (fixed_threshold), dtl (HST: learned)"),
    ("threshold_start", float, "scheduled θ at the first pseudo-label epoch"),
    ("threshold_step", float, "scheduled θ decrease per paper-epoch"),
    ("threshold_min", float, "scheduled θ floor (minimum θ_intra = θ_cross)"),
    ("fixed_threshold", float, "θ_intra = θ_cross with thresholds=fixed (HST Table 7 best: 0.7)"),
    ("dtl_init", float, "initial learned thresholds (official: 1.0, i.e. 'set to 1')"),
    ("dtl_form", str, "DTL loss: paper = partial BCE on d/τ = (score-θ)/τ as a logit; official = on clamp(d, 0, 1)"),
    ("dtl_temperature", float, "τ of the DTL surrogate σ((score-θ)/τ) of 1[score ≥ θ] (paper form; the paper gives no scale). "
     "τ=1 lets label imbalance push θ above every score (no pseudo labels); 0.1 puts θ where the known labels' posterior crosses 1/2"),
    ("dtl_detach_scores", bool, "DTL trains only the thresholds (true) or also the scores it compares them to"),
    ("threshold_lr", float, "learning rate of the learned thresholds; 0 = the run's lr"),
    ("pseudo_start_epoch", int, "paper-epochs without pseudo labels (5)"),
    ("reference_epochs", int, "length of the papers' schedule in epochs (20)"),
    ("schedule_scale", str, "epochs = map the 20-epoch paper schedule onto the run's epochs (identical at 20); none = use epochs as given"),
    ("pseudo_target", str, "pseudo-label loss target: combined = known + pseudo (SST) or pseudo = known entries zeroed (HST)"),
    ("lambda_ist", float, "λ1, weight of L_ist"),
    ("lambda_cst", float, "λ2, weight of L_cst"),
    ("lambda_dtl", float, "λ3, weight of L_dtl_ist + L_dtl_cst (HST)"),
    ("sa_cam_loss", bool, "with sarl=sa, supervise the activation maps' max-pooled scores with partial BCE"),
    ("feature_blending", bool, "HST Table 8 'w/ FB': add DSRB's IPRB + PPRB blending of category feature maps (its defaults: "
     "learned α/β from 0.5, 4 quadrant prototypes, from a quarter of the epochs) and the partial BCE of the blended predictions"),
]

COMMON_DEFAULTS: dict[str, Any] = {
    "ablation": "", "modules": "ist+cst", "sarl": "sd", "feature_dim": 0, "channel_reduction": "always", "sd_hidden": 0, "output_dim": 0,
    "gnn_steps": 3, "ist_hidden1": 0, "ist_hidden2": 0, "ist_loss": True, "ist_cooccurrence": "learned",
    "ist_score": "sum", "ist_pairs": "all", "ist_loss_form": "paper", "gamma_pos": 1.0, "gamma_neg": 2.0,
    "asl_margin": 0.05, "cst_loss": True, "cst_pairs": "all", "cst_similarity": "instance", "cst_reference": "batch",
    "bank_size": 100, "num_prototypes": 10, "prototype_every": 5, "thresholds": "schedule", "threshold_start": 0.95,
    "threshold_step": 0.025, "threshold_min": 0.75, "fixed_threshold": 0.7, "dtl_init": 1.0, "dtl_form": "paper", "dtl_temperature": 0.1,
    "dtl_detach_scores": True, "threshold_lr": 0.0, "pseudo_start_epoch": 5, "reference_epochs": 20,
    "schedule_scale": "epochs", "pseudo_target": "combined", "lambda_ist": 10.0, "lambda_cst": 0.05,
    "lambda_dtl": 0.1, "sa_cam_loss": True, "feature_blending": False,
}


def make_options_class(name: str, **defaults: Any) -> type:
    """The ``Options`` dataclass of a semantic-transfer plugin with its own defaults."""
    values = {**COMMON_DEFAULTS, **defaults}
    unknown = set(values) - {n for n, _, _ in _OPTION_SPECS}
    if unknown:
        raise TypeError(f"unknown option defaults: {sorted(unknown)}")
    fields = []
    for opt, typ, help_text in _OPTION_SPECS:
        if opt in CHOICES:
            help_text = f"{help_text} [{'|'.join(CHOICES[opt])}]"
        fields.append((opt, typ, field(default=values[opt], metadata={"help": help_text})))
    return dataclasses.make_dataclass(name, fields)


def resolve_options(options: Any, method: str) -> Any:
    """Apply the ``ablation`` preset and check every choice; BenchError names the bad option."""
    if options.ablation not in ABLATIONS:
        raise BenchError(f"method {method} option ablation={options.ablation!r}: choose one of {', '.join(k for k in ABLATIONS if k)}")
    resolved = dataclasses.replace(options, **ABLATIONS[options.ablation])
    for opt, allowed in CHOICES.items():
        if getattr(resolved, opt) not in allowed:
            raise BenchError(f"method {method} option {opt}={getattr(resolved, opt)!r}: choose one of {', '.join(allowed)}")
    for opt in ("bank_size", "num_prototypes", "gnn_steps"):
        if getattr(resolved, opt) < 1:
            raise BenchError(f"method {method} option {opt}={getattr(resolved, opt)}: must be at least 1")
    if resolved.reference_epochs < 1:
        raise BenchError(f"method {method} option reference_epochs={resolved.reference_epochs}: must be at least 1")
    if not resolved.dtl_temperature > 0:
        raise BenchError(f"method {method} option dtl_temperature={resolved.dtl_temperature}: must be positive (default 0.1)")
    return resolved


# ---------------------------------------------------------------------------------------------
# The method
# ---------------------------------------------------------------------------------------------


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
        graph = build_label_graph(ctx.train_labels)
        self.graph = graph
        # IST w/ stat: p_ij = P(i present | j present) = graph[j, i] on the known training labels.
        self.statistical = torch.from_numpy(graph.T.copy())
        self.prototypes: torch.Tensor | None = None  # (C, K, D)
        self.prototype_valid: torch.Tensor | None = None  # (C, K) bool
        self.prototype_epoch = -1
        self.bank: torch.Tensor | None = None  # (C, S, D), newest first
        self.bank_count: torch.Tensor | None = None  # (C,)
        # HST w/ FB: DSRB's blending with its paper defaults.
        self.blender = RepresentationBlender(BlendSettings(), ctx, sarl=o.sarl, owner=self.name) if o.feature_blending else None

    # -- model ---------------------------------------------------------------------------------

    def build_model(self, backbone: nn.Module) -> nn.Module:
        o = self.opts
        ist_hidden = None
        if self.use_ist and o.ist_cooccurrence == "learned":
            d = o.feature_dim or default_feature_dim(int(backbone.out_channels))
            ist_hidden = (o.ist_hidden1 or max(1, d // 2), o.ist_hidden2 or d)
        return SemanticTransferModel(
            backbone, self.ctx.num_classes, self.ctx.word_embeddings, self.graph, sarl=o.sarl, feature_dim=o.feature_dim,
            sd_hidden=o.sd_hidden, output_dim=o.output_dim, gnn_steps=o.gnn_steps, reduction=o.channel_reduction,
            ist_hidden=ist_hidden,
            learn_thresholds=o.thresholds == "dtl" and (self.use_ist or self.use_cst), threshold_init=o.dtl_init,
            blending=self.blender is not None)

    def configure_optimizers(self, model: nn.Module, train: TrainConfig):
        core = unwrap(model)
        thresholds = core.thresholds if getattr(core, "thresholds", None) is not None else None
        if self.blender is not None:
            params, coefficients = self.blender.split_parameters(model, others=(thresholds,) if thresholds is not None else ())
        else:
            params, coefficients = [p for p in model.parameters() if p.requires_grad and p is not thresholds], []
        groups: list[dict[str, Any]] = [{"params": params}]
        if coefficients:
            groups.append({"params": coefficients, "weight_decay": 0.0})  # bounded mixing ratios, not weights
        if thresholds is not None:
            # Thresholds are not weights: no weight decay; optionally their own learning rate.
            groups.append({"params": [thresholds], "weight_decay": 0.0, "lr": self.opts.threshold_lr or train.lr})
        optimizer = torch.optim.Adam(groups, lr=train.lr, weight_decay=train.weight_decay)
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

    # -- prototypes & bank ---------------------------------------------------------------------

    def on_epoch_start(self, model: nn.Module, epoch: int) -> None:
        if self.blender is not None:
            self.blender.on_epoch_start(model, epoch)
        o = self.opts
        if not (self.use_cst and o.cst_similarity == "prototype"):
            return
        due = self.schedule.prototype_epoch(epoch, self.ctx.epochs)
        missing = self.prototypes is None and self.pseudo_active(epoch)
        if due or missing:
            self.compute_prototypes(model)
            self.prototype_epoch = epoch

    @torch.no_grad()
    def compute_prototypes(self, model: nn.Module) -> None:
        """K-means prototypes per category from the features of its known positives (HST §3.3),
        over one un-augmented pass of the training set (all processes' shares gathered)."""
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
        for cls in range(c):
            centres = kmeans(feats_t[classes_t == cls], k, self.ctx.generator)
            protos[cls, : len(centres)] = centres
            valid[cls, : len(centres)] = True
        self.prototypes, self.prototype_valid = protos, valid

    @torch.no_grad()
    def update_bank(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Official SST: keep the ``bank_size`` latest known-positive features of each class."""
        c, d = features.shape[1], features.shape[2]
        size = self.opts.bank_size
        if self.bank is None:
            self.bank = features.new_zeros((c, size, d))
            self.bank_count = torch.zeros(c, dtype=torch.int64, device=features.device)
        self.bank = self.bank.to(features.device)
        self.bank_count = self.bank_count.to(features.device)
        pos = labels > 0
        for cls in pos.any(dim=0).nonzero(as_tuple=True)[0].tolist():
            new = features[pos[:, cls], cls].detach().to(self.bank.dtype).flip(0)  # newest first
            self.bank[cls] = torch.cat([new, self.bank[cls]])[:size]
            self.bank_count[cls] = min(int(self.bank_count[cls]) + len(new), size)

    def cross_scores(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CST existence scores ``(B, C)`` and where they exist (per the similarity option)."""
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
            valid = torch.arange(bank.shape[1], device=features.device).unsqueeze(0) < self.bank_count.to(features.device).unsqueeze(1)
            scores, has = prototype_scores(features, bank, valid)
            return scores, has.unsqueeze(0).expand(b, c)
        return instance_scores(features, features, labels, exclude_self=True)

    # -- training ------------------------------------------------------------------------------

    def training_step(self, model: nn.Module, batch: Batch, epoch: int) -> dict[str, torch.Tensor]:
        o = self.opts
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
        l_cls, l_ist, l_cst, l_dtl = partial_bce(logits, labels), zero, zero, zero
        n_intra = n_cross = zero

        if self.use_ist:
            if o.ist_cooccurrence == "learned":
                cooc = torch.sigmoid(out.cooc_logits.float())
                if o.ist_loss:
                    l_ist = asymmetric_pair_loss(out.cooc_logits.float(), labels, gamma_pos=o.gamma_pos, gamma_neg=o.gamma_neg,
                                                 margin=o.asl_margin, pairs=o.ist_pairs, form=o.ist_loss_form)
            else:
                cooc = self.statistical.to(logits).unsqueeze(0).expand(labels.shape[0], -1, -1)
            scores = ist_scores(cooc if not o.dtl_detach_scores else cooc.detach(), labels, o.ist_score)
            if active:
                pseudo = pseudo_positives(scores.detach(), labels, th_intra)
                l_cls = l_cls + partial_bce(logits, transfer_targets(labels, pseudo, combine))
                n_intra = pseudo.sum(dim=1).mean()
                if o.thresholds == "dtl":
                    l_dtl = l_dtl + dtl_loss(scores, th_intra, labels, o.dtl_form, o.dtl_temperature)

        if self.use_cst:
            feats = sarl.features.float()
            if o.cst_loss:
                l_cst = cst_pair_loss(feats, labels, o.cst_pairs)
            scores, has = self.cross_scores(feats if not o.dtl_detach_scores else feats.detach(), labels)
            if active:
                pseudo = pseudo_positives(scores.detach(), labels, th_cross, has)
                l_cls = l_cls + partial_bce(logits, transfer_targets(labels, pseudo, combine))
                n_cross = pseudo.sum(dim=1).mean()
                if o.thresholds == "dtl":
                    # Only categories that have a reference set can be scored against θ_cross.
                    l_dtl = l_dtl + dtl_loss(scores, th_cross, labels * has.to(labels.dtype), o.dtl_form,
                                                  o.dtl_temperature)
            if o.cst_similarity == "instance" and o.cst_reference == "bank":
                self.update_bank(feats.detach(), labels)

        blend_logs: dict[str, torch.Tensor] = {}
        if self.blender is not None:
            # DSRB eq. 14-15: the blended predictions' partial BCE joins the classification loss.
            l_blend, blend_logs = self.blender.add_blended_losses(logits.new_zeros(labels.shape[0]), out.blended)
            l_cls = self.blender.keep_coefficients_in_graph(model, l_cls + l_blend.mean())
            blend_logs["blend"] = l_blend.mean().detach()

        loss = l_cls + o.lambda_ist * l_ist + o.lambda_cst * l_cst + o.lambda_dtl * l_dtl
        result = {**blend_logs,"cls": l_cls.detach(), "ist": l_ist.detach(), "cst": l_cst.detach(), "dtl": l_dtl.detach(),
                  "pseudo_intra": n_intra.detach(), "pseudo_cross": n_cross.detach(),
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
        o = self.opts
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
            if o.ist_cooccurrence == "learned":
                cooc = torch.sigmoid(out.cooc_logits.float())
            else:
                cooc = self.statistical.to(labels).unsqueeze(0).expand(labels.shape[0], -1, -1)
            intra = pseudo_positives(ist_scores(cooc, labels, o.ist_score), labels, th_intra)
        if self.use_cst:
            scores, has = self.cross_scores(out.sarl.features.float(), labels)
            cross = pseudo_positives(scores, labels, th_cross, has)
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
            "bank_count": self.bank_count.cpu() if self.bank_count is not None else empty.long(),
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
        has_bank = bank is not None and bank.numel() > 0
        self.bank = bank.clone() if has_bank else None
        self.bank_count = state["bank_count"].clone().long() if has_bank else None
        if self.blender is not None:
            if "blending" not in state:
                raise BenchError(f"{self.name} checkpoint: no feature-blending state; it was saved without "
                                 f"-o feature_blending=true, resume with the same options")
            self.blender.load_state_dict(state["blending"])


def _scalar(value) -> torch.Tensor:
    """A detached 0-d tensor of a threshold (learned tensor or number), for the epoch logs."""
    return value.detach().clone() if torch.is_tensor(value) else torch.tensor(float(value))


def paper_profile(batch_size: int) -> dict[str, Any]:
    """The papers' training recipe (ResNet-101 on ImageNet weights, 448 px, Adam 1e-5, 20 epochs)."""
    return {"backbone": "resnet101", "backbone_weights": "imagenet", "freeze_backbone": "official", "image_size": 448,
            "batch_size": batch_size, "lr": 1e-5, "weight_decay": 5e-4, "lr_step": 10, "lr_gamma": 0.1, "epochs": 20}


__all__ = ["ABLATIONS", "SemanticTransferMethod", "SemanticTransferModel", "TransferOutput", "make_options_class",
           "paper_profile", "resolve_options"]
