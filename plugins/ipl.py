"""``ipl``: imbalance-aware pseudo-labeling for partially annotated labels (Zhang et al. 2023).

A plain backbone + linear head. Each training label entry is either *existing* (known, 1/-1)
or *non-existing* (unknown, 0). Non-existing entries get a pseudo label, one per image and
class, initialised at 0.5 and replaced by the model's prediction every time the image is seen
(eq. 5). The loss (eq. 12) weighs the positive and negative halves of BCE by α and β taken from
the batch's label statistics (eq. 8), the non-existing part by the epoch schedule ``d`` (eq. 9),
doubles the loss of an image whose predictions are all near zero (``p``, eq. 10), and uses only
a random ``q`` fraction of each image's non-existing entries per step (eq. 12).

Where the extracted paper is self-contradictory the surrounding prose decides (the papers'
README says so), and the literal printed form stays available as an option:

* eq. 9 prints ``d = exp((e_c + m) / e_T)``, which is > 1 at every epoch, yet the text says the
  two parts are weighted equally at epoch ``e_T - m`` and the existing part dominates before
  it. ``d_form="prose"`` (default) uses ``exp((e_c + m) / e_T - 1)``, which is 1 exactly there;
  ``d_form="printed"`` uses the printed formula.
* eq. 10 prints ``p = 1 + |sign(sum max(ŷ - 0.1, 0))|``, which is 2 when *some* prediction
  exceeds 0.1, yet the text says p = 2 when *all* predictions are below 0.1 (the penalty
  against all-negative outputs). ``p_form="prose"`` (default) follows the text,
  ``p_form="printed"`` the formula.

A measured caveat of the literal eq. 12: α (≈ 0.95 when positives are rare) on ``ỹ log ŷ`` and β
(≈ 0.05) on ``(1 − ỹ) log(1 − ŷ)`` move the optimum of every pseudo-labelled entry to
``αỹ / (αỹ + β(1 − ỹ)) > ỹ``; since ỹ is the previous prediction, the pseudo labels climb to ≈ 1
whatever the data. On a synthetic linear problem (20 classes, 10% positives, PAL 50%) the
literal loss reaches 54 mAP against 95 for partial BCE, while ``alpha_beta_scope="existing"``
(α/β on the existing part only) reaches 97 and the FAL setting — where eq. 12 has no
pseudo-labelled part — gains over BCE (98 vs 97) as the paper reports. On the built-in
digit-scenes (PAL 50%, 8 epochs, seed 0) the test mAP is 17.1 (literal; its best validation
epoch is the first), 27.9 (``existing``) and 28.8 for partial BCE. The default stays the
paper's equation.

Facts the paper leaves open, chosen here and documented: ``P / T`` in ``β = max(P / T, γ)`` is
the number of known positives over the number of label entries of the batch (``B × C``;
``ratio_denominator="known"`` divides by the known entries instead, which makes α = 0 in the
PPL/SPL settings); the paper gives no value of ``q`` (default 0.5 here); a sampled count is
``round(q · N_ne)``, at least one when an image has non-existing entries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from mlrpl_bench.errors import BenchError
from mlrpl_bench.hookspecs import hookimpl
from mlrpl_bench.method import Batch, Method
from mlrpl_bench.models.heads import PooledLinearClassifier

# -------------------------------------------------------------------------------------------------
# The equations, as pure functions of tensors (pinned one by one in tests/test_ipl.py)
# -------------------------------------------------------------------------------------------------


def batch_alpha_beta(labels: torch.Tensor, gamma: float = 0.05, denominator: str = "all") -> tuple[float, float]:
    """α and β of eq. 8 from one batch: ``β = max(P / T, γ)``, ``α = 1 − β``.

    :param labels: ``(B, C)`` partial labels in {1, -1, 0}.
    :param gamma: the floor γ of β (0.05 in the paper), which caps α at ``1 − γ``.
    :param denominator: ``all``: T = B·C label entries; ``known``: T = the known entries.
    :return: ``(alpha, beta)`` as Python floats (they are batch statistics, not learned).
    """
    positives = float((labels > 0).sum())
    if denominator == "all":
        total = float(labels.numel())
    elif denominator == "known":
        total = float((labels != 0).sum())
    else:
        raise ValueError(f"denominator must be 'all' or 'known', got {denominator!r}")
    ratio = positives / total if total > 0 else 0.0
    beta = max(ratio, gamma)
    return 1.0 - beta, beta


def epoch_weight_d(epoch: int, total_epochs: int, m: float = 3.0, form: str = "prose") -> float:
    """The weight ``d`` of the non-existing part at 0-based ``epoch`` (eq. 9).

    ``printed``: ``exp((e_c + m) / e_T)``; ``prose``: ``exp((e_c + m) / e_T − 1)``, equal to 1 at
    epoch ``e_T − m`` as the paper's text requires (see the module docstring).
    """
    if total_epochs <= 0:
        raise ValueError("total_epochs must be positive")
    exponent = (epoch + m) / total_epochs
    if form == "prose":
        exponent -= 1.0
    elif form != "printed":
        raise ValueError(f"form must be 'prose' or 'printed', got {form!r}")
    return math.exp(exponent)


def all_negative_penalty(probs: torch.Tensor, threshold: float = 0.1, form: str = "prose") -> torch.Tensor:
    """The per-image penalty ``p`` of eq. 10, ``(B,)`` in {1, 2}.

    ``prose``: 2 when every prediction of the image is below ``threshold`` (an all-negative
    output), else 1. ``printed``: ``1 + |sign(Σ_j max(ŷ_j − threshold, 0))|`` as typeset.
    """
    probs = probs.detach()
    exceed = (probs - threshold).clamp(min=0).sum(dim=1)
    any_above = torch.sign(exceed).abs()  # 1 if some prediction exceeds the threshold, else 0
    if form == "prose":
        return 2.0 - any_above
    if form == "printed":
        return 1.0 + any_above
    raise ValueError(f"form must be 'prose' or 'printed', got {form!r}")


def sample_non_existing(unknown: torch.Tensor, q: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick ``round(q · N_ne)`` (at least one) of each row's non-existing entries at random (eq. 12).

    :param unknown: ``(B, C)`` bool, the non-existing entries.
    :param q: the fraction kept, in (0, 1]; 1 keeps them all.
    :param generator: CPU generator for the draw (the method passes ``ctx.generator``).
    :return: ``(B, C)`` bool mask, a subset of ``unknown``.
    """
    if not 0.0 < q <= 1.0:
        raise ValueError(f"q must be in (0, 1], got {q}")
    unknown = unknown.bool()
    if q >= 1.0:
        return unknown.clone()
    counts = unknown.sum(dim=1)
    keep = torch.floor(counts.double() * q + 0.5).long()
    keep = torch.where(counts > 0, keep.clamp(min=1), keep)
    draw = torch.rand(unknown.shape, generator=generator).to(unknown.device)
    # Known entries sort last, so the first `keep` ranks of a row are random unknown entries.
    draw = torch.where(unknown, draw, torch.full_like(draw, 2.0))
    rank = draw.argsort(dim=1).argsort(dim=1)
    return (rank < keep.unsqueeze(1)) & unknown


def ipl_loss(logits: torch.Tensor, labels: torch.Tensor, pseudo: torch.Tensor, sampled: torch.Tensor,
             alpha: float, beta: float, d: float, p: torch.Tensor,
             alpha_ne: float | None = None, beta_ne: float | None = None) -> torch.Tensor:
    """Per-image loss of eq. 12, ``(B,)``.

    ``L = −pα[Σ_e y log ŷ / N_e + d Σ_s ỹ log ŷ / N_s] − pβ[Σ_e (1−y) log(1−ŷ) / N_e
    + d Σ_s (1−ỹ) log(1−ŷ) / N_s]`` with e over the existing entries (N_e of them) and s over the
    sampled non-existing entries (N_s = qN_ne); an empty part contributes nothing.

    :param logits: ``(B, C)`` raw scores (ŷ = sigmoid(logits)).
    :param labels: ``(B, C)`` in {1, -1, 0}.
    :param pseudo: ``(B, C)`` pseudo labels ỹ in [0, 1] (read only where ``sampled``).
    :param sampled: ``(B, C)`` bool, the non-existing entries that take part.
    :param p: ``(B,)`` per-image penalties.
    :param alpha_ne: the α of the non-existing terms (default ``alpha``, as in eq. 12).
    :param beta_ne: the β of the non-existing terms (default ``beta``).
    """
    log_pos = F.logsigmoid(logits)  # log ŷ, stable for large |logits|
    log_neg = F.logsigmoid(-logits)  # log(1 − ŷ)
    existing = (labels != 0).to(logits.dtype)
    y = (labels > 0).to(logits.dtype)
    s = sampled.to(logits.dtype)
    t = pseudo.to(logits.dtype)
    n_e = existing.sum(dim=1).clamp(min=1.0)
    n_s = s.sum(dim=1).clamp(min=1.0)
    pos_e = (existing * y * log_pos).sum(dim=1) / n_e
    neg_e = (existing * (1 - y) * log_neg).sum(dim=1) / n_e
    pos_s = (s * t * log_pos).sum(dim=1) / n_s
    neg_s = (s * (1 - t) * log_neg).sum(dim=1) / n_s
    alpha_ne = alpha if alpha_ne is None else alpha_ne
    beta_ne = beta if beta_ne is None else beta_ne
    return -p * (alpha * pos_e + alpha_ne * d * pos_s) - p * (beta * neg_e + beta_ne * d * neg_s)


# -------------------------------------------------------------------------------------------------
# The method
# -------------------------------------------------------------------------------------------------


class ImbalancePseudoLabeling(Method):
    name = "ipl"
    summary = "pseudo labels for unknown entries + batch-statistics loss weights, epoch schedule, all-negative penalty, sampling"
    citation = ("Zhang, Song, Zuo, Wang. Towards Imbalanced Large Scale Multi-label Classification with "
                "Partially Annotated Labels. arXiv 2023 (no public code)")
    version = "1.0"
    settings = ("full", "pal", "ppl", "spl")
    profiles = {
        # Section V: ResNet-50 pre-trained on ImageNet + FC, 448x448 inputs. The paper gives no
        # optimiser, batch size or epoch count, so the harness defaults stay.
        "paper": {"backbone": "resnet50", "backbone_weights": "imagenet", "image_size": 448},
        # The equations exactly as printed where the text says otherwise (eq. 9 and 10).
        "paper-literal": {"d_form": "printed", "p_form": "printed"},
    }

    @dataclass
    class Options:
        gamma: Annotated[float, Field(ge=0, le=1)] = field(default=0.05, metadata={"help": "floor γ of β = max(P/T, γ) (eq. 8); the paper's 0.05"})
        m: float = field(default=3.0, metadata={"help": "shift m of the epoch schedule d (eq. 9); the paper's 3"})
        q: Annotated[float, Field(gt=0, le=1)] = field(default=0.5, metadata={"help": "fraction of each image's non-existing entries used per step (eq. 12); not given in the paper"})
        pseudo_init: Annotated[float, Field(ge=0, le=1)] = field(default=0.5, metadata={"help": "initial pseudo label of non-existing entries (eq. 5)"})
        p_threshold: Annotated[float, Field(ge=0, le=1)] = field(default=0.1, metadata={"help": "predictions below this count as negative for the penalty p (eq. 10)"})
        alpha_beta_scope: Literal["all", "existing"] = field(default="all", metadata={"help": "where α/β act: all (eq. 12: existing and pseudo-labelled terms) | existing (pseudo-labelled terms unweighted, which stops the pseudo labels drifting to 1)"})
        ratio_denominator: Literal["all", "known"] = field(default="all", metadata={"help": "T of P/T: all (B*C entries of the batch) | known (known entries only)"})
        d_form: Literal["prose", "printed"] = field(default="prose", metadata={"help": "eq. 9: prose (d = exp((e+m)/E - 1), 1 at epoch E-m as the text says) | printed (exp((e+m)/E))"})
        p_form: Literal["prose", "printed"] = field(default="prose", metadata={"help": "eq. 10: prose (p = 2 iff all predictions < 0.1) | printed (1 + |sign(sum max(y-0.1, 0))|)"})
        without_alpha_beta: bool = field(default=False, metadata={"help": "ablation (Table VII): α = β = 1"})
        without_d: bool = field(default=False, metadata={"help": "ablation (Table VII): d = 1"})
        without_p: bool = field(default=False, metadata={"help": "ablation (Table VII): p = 1"})
        without_q: bool = field(default=False, metadata={"help": "ablation (Table VII): every non-existing entry takes part (q = 100%)"})

    def __init__(self, options, ctx):
        super().__init__(options, ctx)
        n, c = ctx.train_labels.shape
        # Eq. 5: one pseudo label per image and class; only the unknown entries are ever read.
        self.pseudo_labels = torch.full((n, c), float(options.pseudo_init), dtype=torch.float32)

    def build_model(self, backbone):
        return PooledLinearClassifier(backbone, self.ctx.num_classes)

    # -- coefficients of one step ---------------------------------------------------------------

    def coefficients(self, labels: torch.Tensor, probs: torch.Tensor, epoch: int):
        """α, β, d and p for a batch, with the ablations applied."""
        o = self.options
        alpha, beta = (1.0, 1.0) if o.without_alpha_beta else batch_alpha_beta(labels, o.gamma, o.ratio_denominator)
        d = 1.0 if o.without_d else epoch_weight_d(epoch, self.ctx.epochs, o.m, o.d_form)
        if o.without_p:
            p = torch.ones(labels.shape[0], dtype=probs.dtype, device=probs.device)
        else:
            p = all_negative_penalty(probs, o.p_threshold, o.p_form)
        return alpha, beta, d, p

    def training_step(self, model, batch: Batch, epoch: int):
        o = self.options
        logits = model(batch.inputs)
        labels = batch.labels
        probs = torch.sigmoid(logits.detach())
        unknown = labels == 0
        sampled = unknown if o.without_q else sample_non_existing(unknown, o.q, self.ctx.generator)
        # The target is the pseudo label from the image's previous visit: using the current
        # prediction itself would make the non-existing part's gradient vanish (ŷ − ŷ = 0).
        rows = batch.indices.long().cpu()
        pseudo = self.pseudo_labels[rows].to(logits.device)
        alpha, beta, d, p = self.coefficients(labels, probs, epoch)
        ne_weights = (1.0, 1.0) if o.alpha_beta_scope == "existing" else (None, None)
        per_image = ipl_loss(logits, labels, pseudo, sampled, alpha, beta, d, p, *ne_weights)
        self._update_pseudo_labels(batch.indices, probs, unknown)
        return {
            "loss": per_image.mean(),
            "alpha": torch.tensor(alpha),
            "d": torch.tensor(d),
            "penalised": (p > 1).float().mean().detach().cpu(),
        }

    def _update_pseudo_labels(self, indices: torch.Tensor, probs: torch.Tensor, unknown: torch.Tensor) -> None:
        """Eq. 5 'update': the unknown entries of these images take the current predictions.

        Gathered across processes so every replica keeps the same full table (and any rank's
        checkpoint holds it all).
        """
        indices = self.ctx.all_gather(indices.long()).cpu()
        probs = self.ctx.all_gather(probs.float()).cpu()
        # uint8 because not every distributed backend gathers bool tensors.
        unknown = self.ctx.all_gather(unknown.to(torch.uint8)).cpu().bool()
        current = self.pseudo_labels[indices]
        self.pseudo_labels[indices] = torch.where(unknown, probs, current)

    # -- state ----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"pseudo_labels": self.pseudo_labels.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        table = state.get("pseudo_labels")
        if not isinstance(table, torch.Tensor) or tuple(table.shape) != tuple(self.pseudo_labels.shape):
            got = tuple(table.shape) if isinstance(table, torch.Tensor) else type(table).__name__
            raise BenchError(f"ipl checkpoint: pseudo_labels has shape {got}, expected {tuple(self.pseudo_labels.shape)}; "
                             f"resume with the same dataset and protocol")
        self.pseudo_labels = table.detach().float().cpu().clone()


@hookimpl
def mlrpl_methods():
    return [ImbalancePseudoLabeling]
