"""The DSRB model: the shared SARL model with the learnable blending coefficients α (IPRB), β (PPRB).

:class:`BlendCoefficients` is a mixin for any :class:`~mlrpl_bench.models.sarl.SARLModel`
(DSRB's :class:`DSRBModel`, and the semantic-transfer model with ``feature_blending``): it owns
α and β and the forward through the category feature maps that blending mixes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from mlrpl_bench.models.sarl import SARLModel, SARLOutput


def coefficient_shape(coefficients: str, num_classes: int) -> tuple[int, ...]:
    """The shape of α and β: ``()`` for ``scalar``, ``(C,)`` for ``per-class``."""
    if coefficients == "scalar":
        return ()
    if coefficients == "per-class":
        return (num_classes,)
    raise ValueError(f"coefficients must be scalar or per-class, got {coefficients!r}")


class DSRBOutput(NamedTuple):
    """What :class:`DSRBModel` computes in training.

    :ivar logits: ``(B, C)``.
    :ivar features: ``(B, C, D)`` category vectors ``f_c^n`` (eq. 2).
    :ivar maps: ``(B, C, D, h, w)`` category feature maps ``F_c^n`` (eq. 1).
    :ivar attention: ``(B, C, h, w)``.
    :ivar cam_logits: SA's activation-map scores, else ``None``.
    :ivar blended: whatever the ``blend`` callable returned (``None`` without one).
    """

    logits: torch.Tensor
    features: torch.Tensor
    maps: torch.Tensor
    attention: torch.Tensor
    cam_logits: torch.Tensor | None
    blended: Any


class BlendCoefficients:
    """Mixin for a :class:`SARLModel`: the learnable α (IPRB) and β (PPRB) of blending.

    They are parameters of the model so the optimizer, gradient averaging and checkpoints see
    them; :meth:`clamp_blend_parameters` keeps them in [0, 1] (called before every use). Shape
    ``()``: one scalar each (the official code's ``nn.Parameter(torch.tensor(0.5))``); ``(C,)``:
    one per class (the paper's ``A = [α_1, ..., α_C]``, eq. 8-9 and 12-13).
    """

    def init_blend_parameters(self, shape: tuple[int, ...] = (), *, alpha_init: float = 0.5, beta_init: float = 0.5,
                              learn_alpha: bool = True, learn_beta: bool = True) -> None:
        self.alpha = nn.Parameter(torch.full(tuple(shape), float(alpha_init)), requires_grad=learn_alpha)
        self.beta = nn.Parameter(torch.full(tuple(shape), float(beta_init)), requires_grad=learn_beta)

    def clamp_blend_parameters(self) -> None:
        """Keep α and β in [0, 1]."""
        with torch.no_grad():
            self.alpha.clamp_(0.0, 1.0)
            self.beta.clamp_(0.0, 1.0)

    def forward_blended(self, x: torch.Tensor, blend) -> tuple[SARLOutput, torch.Tensor, Any]:
        """The SARL forward through the category feature maps: ``(SARLOutput, maps, blended)``.

        ``blend(self, maps, features)`` (None: no blending) returns ``{module: (vectors (B, C, D),
        labels, mask)}``, the blended category vectors; they go through the head together with
        the images' own features, as one batch (the head works image by image: the same logits
        as one call each, in fewer, larger operations), and ``blended`` is ``{module: (logits,
        labels, mask)}``. Run inside the model's forward so that DistributedDataParallel sees
        every parameter blending uses."""
        maps, features, attention, cam_logits = self.category_maps(x)
        pending = blend(self, maps, features) if blend is not None else None
        if not pending:
            graph, outputs, logits = self.head(features)
            return SARLOutput(logits, features, graph, outputs, attention, cam_logits), maps, pending
        b = features.shape[0]
        graph, outputs, logits = self.head(torch.cat([features, *(vec for vec, _, _ in pending.values())]))
        parts = logits.split(b)
        blended = {key: (part, labels, mask) for (key, (_, labels, mask)), part in zip(pending.items(), parts[1:])}
        return SARLOutput(parts[0], features, graph[:b], outputs[:b], attention, cam_logits), maps, blended


class DSRBModel(BlendCoefficients, SARLModel):
    """The SARL model with the learnable α, β of blending.

    ``model(x)`` gives logits (no maps are built); ``model(x, return_all=True, blend=fn)``
    builds the category feature maps (:meth:`SARLModel.category_maps`) and calls
    ``fn(model, maps, features)`` *inside* forward, so that every parameter the blending uses is
    seen by DistributedDataParallel.

    :param coefficients: ``scalar`` (official code) or ``per-class`` (paper) α and β.
    :param alpha_init: initial α (0.5 in paper and code); ``learn_alpha=False`` fixes it.
    :param beta_init: initial β; ``learn_beta=False`` fixes it.
    Other parameters as :class:`~mlrpl_bench.models.sarl.SARLModel`.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, word_embeddings, adjacency, *, sarl: str = "sd",
                 feature_dim: int = 0, coefficients: str = "scalar", alpha_init: float = 0.5, beta_init: float = 0.5,
                 learn_alpha: bool = True, learn_beta: bool = True):
        super().__init__(backbone, num_classes, word_embeddings, adjacency, sarl=sarl, feature_dim=feature_dim)
        self.init_blend_parameters(coefficient_shape(coefficients, num_classes), alpha_init=alpha_init,
                                   beta_init=beta_init, learn_alpha=learn_alpha, learn_beta=learn_beta)

    def forward(self, x: torch.Tensor, return_all: bool = False, blend=None):
        if not return_all and blend is None:
            return super().forward(x)
        out, maps, blended = self.forward_blended(x, blend)
        return DSRBOutput(out.logits, out.features, maps, out.attention, out.cam_logits, blended)


__all__ = ["BlendCoefficients", "DSRBModel", "DSRBOutput", "coefficient_shape"]
