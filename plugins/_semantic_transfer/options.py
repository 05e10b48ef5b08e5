"""The options of SST and HST: one option set, per-plugin defaults, the ablation presets."""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any

from mlrpl_bench.errors import BenchError

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


def paper_profile(batch_size: int) -> dict[str, Any]:
    """The papers' training recipe (ResNet-101 on ImageNet weights, 448 px, Adam 1e-5, 20 epochs)."""
    return {"backbone": "resnet101", "backbone_weights": "imagenet", "freeze_backbone": "official", "image_size": 448,
            "batch_size": batch_size, "lr": 1e-5, "weight_decay": 5e-4, "lr_step": 10, "lr_gamma": 0.1, "epochs": 20}
