"""The method contract: what a plugin implements to be trained and scored by the harness.

A method is a subclass of :class:`Method` registered through the ``mlrpl_methods`` hook. The
harness owns data, protocol, optimisation loop, devices, distribution, checkpoints and
evaluation; the method owns its model head, its losses and any state it keeps across steps
(pseudo labels, prototypes, memory banks, learned thresholds).

Lifecycle, in call order::

    method = MethodClass(options, ctx)           # options: MethodClass.Options instance
    model = method.build_model(backbone)          # nn.Module; must keep `backbone` as model.backbone
    opt, sched = method.configure_optimizers(model, train)   # train: the run's TrainConfig
    method.on_train_start(model)                  # again after resuming from a checkpoint
    for epoch in range(ctx.epochs):
        method.on_epoch_start(model, epoch)
        for batch in train_loader:                 # Batch(inputs, labels, indices), augmented
            out = method.training_step(model, batch, epoch)   # {"loss": tensor, other scalars}
            # the harness: zero_grad, backward, gradient averaging, optimizer.step()
            method.after_optimizer_step(model, epoch, step)    # step: 0-based within the epoch
        method.on_epoch_end(model, epoch)
        scores = method.predict(model, inputs)     # validation, (B, C) probabilities
    scores = method.predict(model, inputs)         # test, with the best-on-validation weights

Rules the conformance check (``mlrpl-bench check-plugin``) enforces: the method sees only the
partial training labels (``ctx.train_labels`` and ``batch.labels``), never the hidden true labels
of unknown entries -- and nothing it receives can reach them (the context is built from partial
labels and images only); ``predict`` returns finite probabilities in [0, 1] of shape ``(B, C)``
(the engine also checks this on every batch of a real run and stops the run otherwise); the same
seed gives the same result; ``state_dict`` holds only tensors, numbers, strings, lists and dicts
(checkpoints are loaded with ``torch.load(weights_only=True)``) and *all* the state later epochs
depend on: a method restored from it trains on exactly as the original.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from .errors import BenchError
from .train_config import TrainConfig  # noqa: F401 - part of the method API (configure_optimizers' train)
from .schema import build_options, field_default  # noqa: F401 - field_default re-exported
from .vocabulary import SETTINGS



@dataclass
class Batch:
    """One mini-batch as the method sees it.

    :ivar inputs: images ``(B, 3, H, W)`` float32, normalised; in the frozen-backbone track, the
        cached backbone feature maps instead (the model's ``backbone`` is then an identity).
    :ivar labels: partial training labels ``(B, C)`` float32 in {1, -1, 0} (0 = unknown).
    :ivar indices: ``(B,)`` int64 rows of these images in ``ctx.train_labels`` (for per-image state).
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor

    def to(self, device: torch.device, non_blocking: bool = False) -> Batch:
        return Batch(
            self.inputs.to(device, non_blocking=non_blocking),
            self.labels.to(device, non_blocking=non_blocking),
            self.indices.to(device, non_blocking=non_blocking),
        )


@dataclass
class MethodContext:
    """What the harness tells a method about the run. Read-only for the method.

    :ivar num_classes: C.
    :ivar class_names: the C category names, in label-matrix column order.
    :ivar train_labels: the partial training labels ``(N, C)`` int8 — the only labels a method
        may use (the validation split is already removed).
    :ivar word_embeddings: ``(C, D)`` float32 category word vectors (a user file or the
        documented deterministic fallback), for semantic decoupling.
    :ivar epochs: number of training epochs.
    :ivar steps_per_epoch: optimiser steps per epoch on this process.
    :ivar setting: protocol setting (``full``, ``pal``, ``ppl``, ``spl``).
    :ivar known: known-label proportion of the protocol.
    :ivar seed: the run's seed.
    :ivar device: where the model lives.
    :ivar generator: a seeded ``torch.Generator`` on the CPU for the method's own randomness.
    :ivar feature_batches: call it to iterate once over the whole training set *without*
        augmentation (test transform), as :class:`Batch` objects on ``device``; used to compute
        prototypes. Under distributed training each process sees its own shard. It holds the
        images and the partial labels only (:class:`mlrpl_bench.data.loading.FeatureBatches`).
    :ivar all_gather: concatenates a tensor across processes along dim 0 (identity on one process).
    :ivar world_size: number of processes.
    """

    num_classes: int
    class_names: list[str]
    train_labels: np.ndarray
    word_embeddings: np.ndarray
    epochs: int
    steps_per_epoch: int
    setting: str
    known: float
    seed: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    generator: torch.Generator = field(default_factory=torch.Generator)
    feature_batches: Callable[[], Iterator[Batch]] = field(default=lambda: iter(()))
    all_gather: Callable[[torch.Tensor], torch.Tensor] = field(default=lambda t: t)
    world_size: int = 1


#: Parameter tensors from which a CPU run takes Adam's multi-tensor (``foreach``) step: the same
#: floats as the per-parameter loop; measured on one thread, 1.35x faster on the SARL head (25
#: tensors) and 15 % slower on a linear head (2 tensors), where the loop's fewer calls win.
FOREACH_MIN_TENSORS = 8


def adam(params, train: TrainConfig, **kwargs) -> torch.optim.Adam:
    """``torch.optim.Adam`` over ``params`` (tensors or parameter groups) with ``train.lr`` and
    ``train.weight_decay`` (``kwargs`` override), multi-tensor from :data:`FOREACH_MIN_TENSORS`
    parameter tensors on, else torch's own choice (the loop on a CPU, ``foreach`` on a GPU)."""
    params = list(params)
    tensors = sum(len(list(p["params"])) if isinstance(p, dict) else 1 for p in params)
    options = {"lr": train.lr, "weight_decay": train.weight_decay,
               "foreach": True if tensors >= FOREACH_MIN_TENSORS else None, **kwargs}
    return torch.optim.Adam(params, **options)


class Method:
    """Base class of every method plugin. Subclass it, set the class attributes, override hooks.

    Class attributes a subclass sets:

    * ``name``: the registry name (``mlrpl-bench run --plugin NAME``), lower case, ``-`` allowed.
    * ``summary``: one line for ``mlrpl-bench plugins``.
    * ``citation``: the paper (authors, title, venue, year).
    * ``version``: the implementation's version, recorded in results.
    * ``Options``: a dataclass of the method's options with defaults; each field's
      ``metadata["help"]`` documents it. Ablations of a paper are options.
    * ``profiles``: named overrides, e.g. ``{"paper": {"batch_size": 32, "lr": 1e-5, ...}}``;
      keys are :class:`TrainConfig` fields or ``Options`` fields.
    * ``settings``: protocol settings the method supports.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    version: ClassVar[str] = "1.0"
    settings: ClassVar[tuple[str, ...]] = SETTINGS
    profiles: ClassVar[dict[str, dict[str, Any]]] = {}

    @dataclass
    class Options:
        pass

    def __init__(self, options: Any, ctx: MethodContext):
        self.options = options
        self.ctx = ctx

    # -- model ---------------------------------------------------------------------------------

    def build_model(self, backbone: nn.Module) -> nn.Module:
        """Build the model on top of ``backbone`` (``images -> (B, backbone.out_channels, h, w)``).

        The returned module must store the backbone as ``model.backbone`` and apply it first in
        ``forward`` (the frozen-backbone track replaces it by an identity and feeds cached maps).
        """
        raise NotImplementedError(f"method {self.name!r} must implement build_model(backbone)")

    def configure_optimizers(self, model: nn.Module, train: TrainConfig):
        """Return ``(optimizer, scheduler_or_None)``; the scheduler is stepped once per epoch.

        Default: Adam on the trainable parameters with ``train.lr`` / ``train.weight_decay`` and
        StepLR(``train.lr_step``, ``train.lr_gamma``) — the seeds' official recipe (:func:`adam`).
        """
        params = [p for p in model.parameters() if p.requires_grad]
        params += [p for p in self.extra_parameters() if p.requires_grad]
        optimizer = adam(params, train)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=train.lr_step, gamma=train.lr_gamma)
        return optimizer, scheduler

    def extra_parameters(self) -> list[nn.Parameter]:
        """Learnable parameters that live on the method rather than the model (default: none).

        Prefer putting parameters on the model so distributed training synchronises them.
        """
        return []

    # -- training ------------------------------------------------------------------------------

    def on_train_start(self, model: nn.Module) -> None:
        """Called once before the first epoch (and again after resuming from a checkpoint)."""

    def on_epoch_start(self, model: nn.Module, epoch: int) -> None:
        """Called at the start of every epoch (0-based), before the first training step."""

    def training_step(self, model: nn.Module, batch: Batch, epoch: int) -> dict[str, torch.Tensor]:
        """Compute the loss of one mini-batch.

        :return: a dict with ``"loss"`` (the scalar to minimise) and optionally other scalar
            tensors (loss terms) that the harness logs per epoch. The harness reads them at its
            next sync (every ``sync_every`` steps, without a copy per step): return values
            computed by this step (``x.detach()``), not a buffer the method updates in place.
        """
        raise NotImplementedError(f"method {self.name!r} must implement training_step(model, batch, epoch)")

    def after_optimizer_step(self, model: nn.Module, epoch: int, step: int) -> None:
        """Called after every ``optimizer.step()``, with the updated weights (default: nothing).

        The place for what follows an update: an exponential-moving-average teacher
        (``teacher = d * teacher + (1 - d) * student``), weight clipping, a step counter.
        ``step`` is 0-based within the epoch (the global step is ``epoch * ctx.steps_per_epoch +
        step``). Under fp16 a step the gradient scaler skips (non-finite gradients) still calls
        it. State it changes belongs in :meth:`state_dict` like any other.
        """

    def on_epoch_end(self, model: nn.Module, epoch: int) -> None:
        """Called after the last training step of an epoch, before validation."""

    # -- inference -----------------------------------------------------------------------------

    def predict(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """Return probabilities ``(B, C)`` in [0, 1]. Default: ``sigmoid(model(inputs))``."""
        return torch.sigmoid(model(inputs))

    # -- state ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Method state outside the model (prototypes, banks, thresholds, pseudo labels)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    # -- helpers for the harness --------------------------------------------------------------

    @classmethod
    def option_fields(cls) -> list[dataclasses.Field]:
        return list(dataclasses.fields(cls.Options))

    @classmethod
    def make_options(cls, overrides: dict[str, Any] | None = None):
        """Build ``Options`` from defaults plus ``overrides`` (strings are converted by type)."""
        return make_dataclass_options(cls.Options, overrides or {}, owner=f"method {cls.name!r}")


def make_dataclass_options(options_cls: type, overrides: dict[str, Any], *, owner: str, strings: bool = True):
    """Instantiate a dataclass of options from defaults and ``overrides`` through the validation
    layer (:func:`mlrpl_bench.schema.build_options`): types, ranges and choices come from the
    fields' declarations; unknown keys and bad values raise one-line :class:`BenchError` s."""
    return build_options(options_cls, overrides, owner=owner, strings=strings)
