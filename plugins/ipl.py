"""``ipl``: imbalance-aware pseudo-labeling for partially annotated labels (Zhang et al. 2023).

A plain backbone + linear head. Each training label entry is either *existing* (known, 1/-1)
or *non-existing* (unknown, 0). Non-existing entries get a pseudo label, one per image and
class, initialised at 0.5 and replaced by the model's prediction every time the image is seen
(eq. 5). The loss (eq. 12) weighs the positive and negative halves of BCE by α and β taken from
the batch's label statistics (eq. 8), the non-existing part by the epoch schedule ``d`` (eq. 9),
doubles the loss of an image whose predictions are all near zero (``p``, eq. 10), and uses only
a random ``q`` fraction of each image's non-existing entries per step (eq. 12).

There is no official code, so the paper is the spec; where its text contradicts itself or its
own results, the default is the reading consistent with what it reports, the printed form
stays an option, and ``--profile paper-literal`` selects every printed form (docs/ipl.md gives
the measurements behind each choice):

* **α/β scope.** Eq. 12 as printed puts α on ``ỹ log ŷ`` and β on ``(1 − ỹ) log(1 − ŷ)`` of the
  pseudo-labelled entries too. Their loss is then minimised at ``αỹ / (αỹ + β(1 − ỹ)) > ỹ``
  (α > β whenever positives are rare), and since ỹ is the previous prediction every pseudo
  label climbs to 1 whatever the data (measured: all of them; the paper's tables cannot come
  from that).
  ``alpha_beta_scope="existing"`` (default) weighs the existing entries by α/β and leaves the
  pseudo-labelled terms as the plain BCE of eq. 7; ``"all"`` is the printed eq. 12.
* **d (eq. 9)** prints ``exp((e_c + m) / e_T)``, > 1 at every epoch, yet the text says the two
  parts weigh the same at epoch ``e_T − m`` and the existing part dominates before it.
  ``d_form="prose"`` (default) uses ``exp((e_c + m) / e_T − 1)``, 1 exactly there; ``"printed"``.
* **p (eq. 10)** prints ``1 + |sign(Σ max(ŷ − 0.1, 0))|``, 2 when *some* prediction exceeds 0.1,
  yet the text says p = 2 when *all* predictions are below 0.1. ``p_form="prose"`` (default)
  follows the text, ``"printed"`` the formula.

Facts the paper leaves open: ``P / T`` in ``β = max(P / T, γ)`` is the number of known positives
over the batch's label entries ``B × C`` (``ratio_denominator="all"``; ``"known"`` divides by the
known entries, which gives β = 1, α = 0 -- no positive term at all -- in the PPL and SPL
settings the paper reports); ``q`` is not given (default 0.5, see docs/ipl.md); a sampled
count is ``round(q · N_ne)``, at least one when an image has non-existing entries.

**Scores** (not in the paper). α/β move the optimum of every existing entry's loss from the
probability π of a positive to ``απ / (απ + β(1 − π))``, i.e. the logit by ``log(α/β)`` (≈ 2.9
at the γ floor), and the pseudo labels follow, so a plain sigmoid puts far too many scores
above the harness's 0.5 threshold. :meth:`predict` subtracts a constant logit shift (the mAP is
unchanged; only thresholded metrics such as OF1/CF1 move), fitted on training data only:

* ``calibration="prior-count"`` (default): at every epoch end, the shift that makes the share of
  shifted pseudo labels ≥ 0.5 equal to the positive rate of the known labels (under PAL a
  random sample of the same entries), i.e. as many predicted positives as the training labels
  imply. Without known negatives (PPL, SPL) or unknown entries (FAL) that rate says nothing and
  the ``prior-shift`` value stays.
* ``"prior-match"``: the same, matching the shifted pseudo labels' mean instead of their count.
* ``"prior-shift"``: ``log(α/β)`` with α, β the rule of eq. 8 applied to the whole training table.
* ``"none"``: the paper's plain sigmoid.

Per epoch the log holds α, β, d, the share of penalised images (p = 2), the sampled
non-existing entries per batch, and the pseudo labels: ``pseudo_pos`` (non-existing entries of
a batch whose updated ỹ >= 0.5; its epoch mean times the steps is the table's count at the end
of the epoch, every image being seen once) and ``pseudo_pos_rate`` (their share).

Table VII's ablations are ``without_alpha_beta``, ``without_d``, ``without_p`` and
``without_q``; the paper's PPL and SPL settings are the harness's ``--setting ppl|spl``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
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


def prior_logit_shift(alpha: float, beta: float) -> float:
    """``log(α / β)``: how far α/β move the logit of the existing part's optimum.

    Weighing the positive term of BCE by α and the negative term by β moves the minimiser of
    ``−απ log ŷ − β(1 − π) log(1 − ŷ)`` from ŷ = π to ``απ / (απ + β(1 − π))``, whose logit is
    ``logit(π) + log(α / β)``; subtracting this shift from the logits undoes it.
    """
    if alpha <= 0 or beta <= 0:
        raise ValueError(f"alpha and beta must be positive, got {alpha}, {beta}")
    return math.log(alpha / beta)


def prior_matching_shift(probs: torch.Tensor, rate: float, match: str = "mean", iterations: int = 60) -> float:
    """The logit shift ``s`` that makes shifted predictions agree with a positive rate.

    ``match="mean"``: ``mean(sigmoid(logit(probs) − s)) = rate`` (bisection); ``"count"``: a
    share ``rate`` of ``logit(probs) − s`` is above 0, i.e. ``s`` is the ``1 − rate`` quantile of
    the logits (linear interpolation, as ``numpy.quantile``, which has no size limit). With the pseudo labels of the
    non-existing entries as ``probs`` (the model's own predictions on the training images) and
    the positive rate of the known entries as ``rate`` (under PAL a random sample of the same
    entries), the shifted scores predict as many positives as the training labels contain: in
    expectation (``mean``) or above the 0.5 threshold (``count``).

    :param probs: predictions in [0, 1], any shape (clamped to [1e-6, 1 − 1e-6]).
    :param rate: the target rate, in (0, 1).
    """
    if not 0.0 < rate < 1.0:
        raise ValueError(f"rate must be in (0, 1), got {rate}")
    if probs.numel() == 0:
        raise ValueError("no predictions to match")
    z = torch.logit(probs.double().clamp(1e-6, 1 - 1e-6)).flatten()
    if match == "count":
        return float(np.quantile(z.numpy(), 1.0 - rate))
    if match != "mean":
        raise ValueError(f"match must be 'mean' or 'count', got {match!r}")
    lo, hi = -30.0, 30.0  # mean(sigmoid(z - s)) decreases in s
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if torch.sigmoid(z - mid).mean().item() > rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


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
    version = "2.0"  # 2.0: α/β on the existing labels only and prior-shifted scores by default (docs/ipl.md)
    settings = ("full", "pal", "ppl", "spl")
    profiles = {
        # Section V: ResNet-50 pre-trained on ImageNet + FC, 448x448 inputs. The paper gives no
        # optimiser, batch size or epoch count, so the harness defaults stay.
        "paper": {"backbone": "resnet50", "backbone_weights": "imagenet", "image_size": 448},
        # The equations exactly as printed (eq. 9, 10, 12) and the paper's plain sigmoid scores.
        "paper-literal": {"alpha_beta_scope": "all", "d_form": "printed", "p_form": "printed", "calibration": "none"},
    }

    @dataclass
    class Options:
        gamma: Annotated[float, Field(ge=0, le=1)] = field(default=0.05, metadata={"help": "floor γ of β = max(P/T, γ) (eq. 8); the paper's 0.05"})
        m: float = field(default=3.0, metadata={"help": "shift m of the epoch schedule d (eq. 9); the paper's 3"})
        q: Annotated[float, Field(gt=0, le=1)] = field(default=0.5, metadata={"help": "fraction of each image's non-existing entries used per step (eq. 12); not given in the paper"})
        pseudo_init: Annotated[float, Field(ge=0, le=1)] = field(default=0.5, metadata={"help": "initial pseudo label of non-existing entries (eq. 5)"})
        p_threshold: Annotated[float, Field(ge=0, le=1)] = field(default=0.1, metadata={"help": "predictions below this count as negative for the penalty p (eq. 10)"})
        alpha_beta_scope: Literal["all", "existing"] = field(default="existing", metadata={"help": "where α/β act: existing (the known labels; pseudo-labelled terms are plain BCE, eq. 7) | all (printed eq. 12: pseudo labels drift to 1)"})
        ratio_denominator: Literal["all", "known"] = field(default="all", metadata={"help": "T of P/T: all (B*C entries of the batch) | known (known entries only; α = 0 under PPL/SPL)"})
        d_form: Literal["prose", "printed"] = field(default="prose", metadata={"help": "eq. 9: prose (d = exp((e+m)/E - 1), 1 at epoch E-m as the text says) | printed (exp((e+m)/E))"})
        p_form: Literal["prose", "printed"] = field(default="prose", metadata={"help": "eq. 10: prose (p = 2 iff all predictions < 0.1) | printed (1 + |sign(sum max(y-0.1, 0))|)"})
        calibration: Literal["prior-shift", "prior-match", "prior-count", "none"] = field(default="prior-count", metadata={"help": "scores (mAP unchanged): prior-shift (logits minus log(α/β) of the training labels) | prior-match / prior-count (minus the shift that makes the pseudo labels' mean / share >= 0.5 the known labels' positive rate, each epoch; PAL) | none (sigmoid, the paper)"})
        without_alpha_beta: bool = field(default=False, metadata={"help": "ablation (Table VII): α = β = 1"})
        without_d: bool = field(default=False, metadata={"help": "ablation (Table VII): d = 1"})
        without_p: bool = field(default=False, metadata={"help": "ablation (Table VII): p = 1"})
        without_q: bool = field(default=False, metadata={"help": "ablation (Table VII): every non-existing entry takes part (q = 100%)"})

    def __init__(self, options, ctx):
        super().__init__(options, ctx)
        n, c = ctx.train_labels.shape
        # Eq. 5: one pseudo label per image and class; only the unknown entries are ever read.
        self.pseudo_labels = torch.full((n, c), float(options.pseudo_init), dtype=torch.float32)
        self.score_shift = self._score_shift()

    def _score_shift(self) -> float:
        """The logit shift :meth:`predict` subtracts before any epoch end: ``log(α/β)`` of the whole
        training table (0 for ``calibration=none`` or without α/β); ``prior-count`` and
        ``prior-match`` re-fit it at every epoch end where they can (:meth:`on_epoch_end`)."""
        o = self.options
        if o.calibration == "none" or o.without_alpha_beta:
            return 0.0
        alpha, beta = batch_alpha_beta(torch.as_tensor(self.ctx.train_labels), o.gamma, o.ratio_denominator)
        if alpha <= 0 or beta <= 0:
            raise BenchError(f"method 'ipl': α = {alpha:g}, β = {beta:g} on these training labels leave no finite score "
                             f"shift; use -o calibration=none (or ratio_denominator=all, gamma > 0)")
        return prior_logit_shift(alpha, beta)

    def build_model(self, backbone):
        return PooledLinearClassifier(backbone, self.ctx.num_classes)

    def predict(self, model, inputs):
        """Probabilities ``sigmoid(logits − score_shift)`` (see ``calibration``; 0 with ``none``)."""
        return torch.sigmoid(model(inputs) - self.score_shift)

    def on_epoch_end(self, model, epoch: int) -> None:
        """``calibration=prior-match|prior-count``: re-fit the score shift on this epoch's pseudo labels.

        Needs known negatives (the known entries' positive rate estimates the unknown entries'
        only when both kinds are known, i.e. PAL) and non-existing entries; otherwise the
        ``prior-shift`` value stays.
        """
        if self.options.calibration not in ("prior-match", "prior-count"):
            return
        labels = torch.as_tensor(self.ctx.train_labels)
        unknown = labels == 0
        known = ~unknown
        positives, negatives = int((labels > 0).sum()), int((labels < 0).sum())
        if positives and negatives and unknown.any():
            match = "mean" if self.options.calibration == "prior-match" else "count"
            self.score_shift = prior_matching_shift(self.pseudo_labels[unknown], positives / int(known.sum()), match)

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
        # Pseudo labels of this batch's non-existing entries after the update (= probs there).
        pseudo_pos = ((probs >= 0.5) & unknown).sum()
        n_unknown = unknown.sum()
        return {
            "loss": per_image.mean(),
            "alpha": torch.tensor(alpha),
            "beta": torch.tensor(beta),
            "d": torch.tensor(d),
            "penalised": (p > 1).float().mean().detach(),
            "sampled": sampled.sum().float(),
            "pseudo_pos": pseudo_pos.float(),
            "pseudo_pos_rate": pseudo_pos.float() / n_unknown.clamp(min=1),
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
        return {"pseudo_labels": self.pseudo_labels.clone(), "score_shift": float(self.score_shift)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        table = state.get("pseudo_labels")
        if not isinstance(table, torch.Tensor) or tuple(table.shape) != tuple(self.pseudo_labels.shape):
            got = tuple(table.shape) if isinstance(table, torch.Tensor) else type(table).__name__
            raise BenchError(f"ipl checkpoint: pseudo_labels has shape {got}, expected {tuple(self.pseudo_labels.shape)}; "
                             f"resume with the same dataset and protocol")
        self.pseudo_labels = table.detach().float().cpu().clone()
        self.score_shift = float(state.get("score_shift", self._score_shift()))


@hookimpl
def mlrpl_methods():
    return [ImbalancePseudoLabeling]
