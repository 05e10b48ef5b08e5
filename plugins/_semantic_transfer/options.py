"""The options of SST and HST: one option set, per-plugin defaults, the ablation presets.

Every option declares its choices or range in its type (the schema layer validates them). The
defaults follow the official code (``docs/fidelity.md``); :data:`PAPER_LITERAL` holds the option
values that follow the papers' text instead (the plugins' ``paper-literal`` profile).
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Annotated, Any, Literal

from pydantic import Field

from mlrpl_bench.errors import BenchError

from .._baseline_common import SEED_RECIPE
from .._sarl.losses import CONTRASTIVE_PAIRS_HELP, ContrastivePairs
from .._sarl.model import BCE_REDUCTION_HELP, GRAPH_DIAGONAL_HELP, BceReduction, GnnSteps, GraphDiagonal, SarlKind

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

NonNegInt = Annotated[int, Field(ge=0)]
PosInt = Annotated[int, Field(ge=1)]
NonNegFloat = Annotated[float, Field(ge=0)]
#: A pseudo-label threshold: the scores it is compared with are probabilities (intra-image, [0, 1]) or
#: cosine similarities (cross-image, [-1, 1]), so a threshold outside [-1, 1] means nothing.
Threshold = Annotated[float, Field(ge=-1, le=1)]

# (name, type, help); defaults come from COMMON_DEFAULTS and each plugin.
_OPTION_SPECS: list[tuple[str, Any, str]] = [
    ("ablation", Literal[tuple(ABLATIONS)], "preset named after a paper table row (overrides the options it sets; empty = the full method)"),
    ("modules", Literal["ist+cst", "ist", "cst", "none"], "transfer modules: ist+cst (full), ist (Ours IST), cst (Ours CST), none (SSGRL baseline)"),
    ("sarl", SarlKind, "category features: sd = semantic decoupling (paper), sa = semantic attention / class activation maps"),
    ("feature_dim", NonNegInt, "D of category features after the 1x1 conv+BN reduction; 0 = auto: half the backbone's channels, the official ratio (ResNet 2048->1024, small CNN 128->64)"),
    ("channel_reduction", Literal["auto", "always"], "auto = a 1x1 conv+BN after the backbone only when D differs from its channels "
     "(official code); always = also when they are equal"),
    ("graph_diagonal", GraphDiagonal, GRAPH_DIAGONAL_HELP),
    ("sd_hidden", NonNegInt, "semantic-decoupling joint embedding; 0 = D/2 (512 in the paper)"),
    ("output_dim", NonNegInt, "classifier input size after the GGNN; 0 = D (1024 in the paper)"),
    ("gnn_steps", GnnSteps, "GGNN propagation steps"),
    ("ist_head", Literal["official", "paper"], "φ_intra: official = per-category fc, unordered pairs, fc+ReLU, fc, one classifier "
     "per pair (model/SST.py, model/HST.py); paper = three fc layers on [f_i; f_j] to one score (ordered pairs)"),
    ("ist_hidden1", NonNegInt, "φ_intra first hidden size; 0 = D/2 (512 in paper and code)"),
    ("ist_hidden2", NonNegInt, "φ_intra second hidden size; 0 = D (1024 in paper and code)"),
    ("ist_loss", bool, "train φ_intra with L_ist (false = 'IST w/o L_ist')"),
    ("ist_cooccurrence", Literal["learned", "statistical"], "learned = image-specific φ_intra (paper); statistical = training-set "
     "P(i|j) of known labels ('IST w/ stat')"),
    ("ist_score", Literal["mean", "sum"], "IST score over the known positives: mean (official code) or sum (paper eq. 2/4/12)"),
    ("ist_self", Literal["one", "matrix", "exclude"], "what a known positive contributes to its own IST score (HST's DTL scores "
     "known labels): one = P(i,i) = 1 (official code), matrix = p_ii of φ_intra (paper's sum, with ist_head=paper), exclude = j≠i only"),
    ("ist_pairs", Literal["all", "known"], "pairs scored by L_ist: all = every pair not both known positive is a negative (eq. 4, "
     "official); known = only pairs with both labels known"),
    ("ist_loss_form", Literal["asl", "paper"], "L_ist negative term: asl = ASL's shifted probability in the log too (official code); "
     "paper = max(p-m,0)^γ2·log(1-p)"),
    ("gamma_pos", NonNegFloat, "γ1 of L_ist (eq. 4)"),
    ("gamma_neg", NonNegFloat, "γ2 of L_ist (eq. 4)"),
    ("asl_margin", Annotated[float, Field(ge=0, le=1)], "m of L_ist (eq. 4)"),
    ("cst_loss", bool, "train the category features with L_cst (false = 'CST w/o L_cst')"),
    ("cst_pairs", ContrastivePairs, CONTRASTIVE_PAIRS_HELP),
    ("cst_similarity", Literal["instance", "prototype"], "CST pseudo labels from instance similarities (SST eq. 6) or K-means "
     "prototypes (HST eq. 7-8)"),
    ("cst_reference", Literal["bank", "batch"], "instance similarity set D_c: bank = the bank_size latest known-positive features "
     "per class, empty slots counting as zero vectors (official code); batch = images of the batch with c known positive (paper)"),
    ("bank_size", PosInt, "features kept per class with cst_reference=bank (official: 100)"),
    ("num_prototypes", PosInt, "K prototypes per category (HST: 10)"),
    ("prototype_every", NonNegInt, "recompute prototypes every N paper-epochs after the first (0 = compute once)"),
    ("prototype_loss", Literal["official", "pull", "none"], "HST's prototype contrastive term (official code only, weight "
     "lambda_proto): official = 1 + s·y (pushes known positives away from their prototypes, as the code does), pull = 1 − s·y, "
     "none = no term (paper)"),
    ("lambda_proto", NonNegFloat, "weight of the prototype contrastive term (official: 0.05)"),
    ("thresholds", Literal["schedule", "fixed", "dtl"], "schedule (SST: 0.95 -0.025/epoch to threshold_min), fixed "
     "(fixed_threshold), dtl (HST: learned)"),
    ("threshold_start", Threshold, "scheduled θ at the first pseudo-label epoch"),
    ("threshold_step", Threshold, "scheduled θ decrease per paper-epoch"),
    ("threshold_min", Threshold, "scheduled θ floor (minimum θ_intra = θ_cross)"),
    ("fixed_threshold", Threshold, "θ_intra = θ_cross with thresholds=fixed (HST Table 7 best: 0.7)"),
    ("dtl_init", float, "initial learned thresholds (official: 1.0, i.e. 'set to 1')"),
    ("dtl_form", Literal["official", "paper"], "DTL: official = soft label clamp(score-θ, 0, 1) as the BCE logit, pseudo positive "
     "where it is > 0; paper = partial BCE on (score-θ)/τ, pseudo positive where score ≥ θ"),
    ("dtl_temperature", Annotated[float, Field(gt=0)], "τ of the paper-form DTL surrogate σ((score-θ)/τ) (the paper gives no scale; "
     "τ=1 lets label imbalance push θ above every score)"),
    ("dtl_detach_scores", bool, "DTL trains only the thresholds (true) or also the scores it compares them to (false, official code)"),
    ("threshold_optimizer", Literal["shared", "separate"], "learned thresholds in the weights' Adam group with weight decay "
     "(shared, official code) or in their own group without weight decay at threshold_lr (separate)"),
    ("threshold_lr", NonNegFloat, "learning rate of the learned thresholds with threshold_optimizer=separate; 0 = the run's lr"),
    ("pseudo_start_epoch", NonNegInt, "paper-epochs without pseudo labels (5)"),
    ("reference_epochs", PosInt, "length of the papers' schedule in epochs (20)"),
    ("schedule_scale", Literal["epochs", "none"], "epochs = map the 20-epoch paper schedule onto the run's epochs (identical at "
     "20); none = use epochs as given"),
    ("pseudo_target", Literal["combined", "pseudo"], "pseudo-label loss target: combined = known + pseudo positives (official code, "
     "SST paper) or pseudo = known entries zeroed (HST paper)"),
    ("bce_reduction", BceReduction, BCE_REDUCTION_HELP),
    ("aux_ramp_epochs", NonNegFloat, "L_ist and L_cst ramp linearly from 0 over this many paper-epochs (official: the first "
     "epoch; 0 = full weight from the start, paper)"),
    ("lambda_ist", NonNegFloat, "λ1, weight of L_ist"),
    ("lambda_cst", NonNegFloat, "λ2, weight of L_cst"),
    ("lambda_dtl", NonNegFloat, "λ3, weight of L_dtl_ist + L_dtl_cst (HST)"),
    ("sa_cam_loss", bool, "with sarl=sa, supervise the activation maps' max-pooled scores with partial BCE"),
    ("feature_blending", bool, "HST Table 8 'w/ FB': add DSRB's IPRB + PPRB blending of category feature maps (dsrb's defaults: "
     "α/β from 0.5, 4 quadrant prototypes, from a quarter of the epochs) and the partial BCE of the blended predictions"),
]

#: The official code's behaviour (the defaults of both plugins, see docs/fidelity.md).
COMMON_DEFAULTS: dict[str, Any] = {
    "ablation": "", "modules": "ist+cst", "sarl": "sd", "feature_dim": 0, "channel_reduction": "auto", "graph_diagonal": "one",
    "sd_hidden": 0, "output_dim": 0, "gnn_steps": 3, "ist_head": "official", "ist_hidden1": 0, "ist_hidden2": 0,
    "ist_loss": True, "ist_cooccurrence": "learned", "ist_score": "mean", "ist_self": "one", "ist_pairs": "all",
    "ist_loss_form": "asl", "gamma_pos": 1.0, "gamma_neg": 2.0, "asl_margin": 0.05, "cst_loss": True, "cst_pairs": "sampled",
    "cst_similarity": "instance", "cst_reference": "bank", "bank_size": 100, "num_prototypes": 10, "prototype_every": 5,
    "prototype_loss": "official", "lambda_proto": 0.05, "thresholds": "schedule", "threshold_start": 0.95,
    "threshold_step": 0.025, "threshold_min": 0.75, "fixed_threshold": 0.7, "dtl_init": 1.0, "dtl_form": "official",
    "dtl_temperature": 0.1, "dtl_detach_scores": False, "threshold_optimizer": "shared", "threshold_lr": 0.0,
    "pseudo_start_epoch": 5, "reference_epochs": 20, "schedule_scale": "epochs", "pseudo_target": "combined",
    "bce_reduction": "entries", "aux_ramp_epochs": 1.0, "lambda_ist": 10.0, "lambda_cst": 0.05, "lambda_dtl": 0.1,
    "sa_cam_loss": True, "feature_blending": False,
}

#: The option values that follow the papers' text where the official code differs.
PAPER_LITERAL: dict[str, Any] = {
    "ist_head": "paper", "ist_score": "sum", "ist_self": "matrix", "ist_loss_form": "paper", "cst_pairs": "all",
    "cst_reference": "batch", "bce_reduction": "image", "aux_ramp_epochs": 0.0,
}
#: HST's paper additionally: DTL on (score − θ)/τ training the thresholds only, pseudo-label
#: vectors with the known entries zeroed (eq. 4/8), no prototype contrastive term.
HST_PAPER_LITERAL: dict[str, Any] = {**PAPER_LITERAL, "dtl_form": "paper", "dtl_detach_scores": True,
                                     "pseudo_target": "pseudo", "prototype_loss": "none"}


def make_options_class(name: str, **defaults: Any) -> type:
    """The ``Options`` dataclass of a semantic-transfer plugin with its own defaults."""
    values = {**COMMON_DEFAULTS, **defaults}
    unknown = set(values) - {n for n, _, _ in _OPTION_SPECS}
    if unknown:
        raise TypeError(f"unknown option defaults: {sorted(unknown)}")
    fields = [(opt, typ, field(default=values[opt], metadata={"help": help_text})) for opt, typ, help_text in _OPTION_SPECS]
    return dataclasses.make_dataclass(name, fields)


def resolve_options(options: Any, method: str) -> Any:
    """Apply the ``ablation`` preset (choices and ranges were checked by the schema layer) and
    refuse the one combination no type can express."""
    resolved = dataclasses.replace(options, **ABLATIONS[options.ablation])
    if resolved.ist_self == "matrix" and resolved.ist_head == "official" and resolved.modules in ("ist+cst", "ist"):
        raise BenchError(f"method {method} option ist_self=matrix: the official head scores no pair of a category with "
                         f"itself; use it with -o ist_head=paper, or ist_self=one")
    return resolved


def paper_profile(batch_size: int) -> dict[str, Any]:
    """The papers' training recipe as the official code runs it (:data:`SEED_RECIPE`: the image
    track, ResNet-101 + the official 2x2 pool, layer4 trained, fp32, 448 px, Adam 1e-5, 20 epochs)
    at ``batch_size``."""
    return {**SEED_RECIPE, "batch_size": batch_size}
