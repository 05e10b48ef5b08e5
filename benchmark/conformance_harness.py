"""The tiny, seeded training harness behind the conformance checks.

:mod:`mlrpl_bench.conformance` asks questions about a method ("does it train?", "does the same
seed give the same scores?"); this module answers them by running the method's whole lifecycle
on synthetic data small enough for a CPU in well under a second: 24 training images and 12 test
images of 32 px, 5 classes, a narrow :class:`~mlrpl_bench.models.backbones.SmallCNN`, 2 epochs of
2 steps. Runs are cached per (method, options, seed, hidden truth) so that the checks share them.

The harness keeps the *full* training labels (the hidden truth) in its own frame only, the way
the real engine keeps them in the dataset split; the method receives the partial labels through
``ctx.train_labels`` and ``batch.labels`` and nothing else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import random
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .method import SETTINGS, Batch, Method, MethodContext, TrainConfig
from .models.backbones import SmallCNN

#: Sizes of the synthetic data every check uses (documented in CONTRIBUTING.md).
N_TRAIN, N_TEST, NUM_CLASSES, IMAGE_SIZE, KNOWN = 24, 12, 5, 32, 0.5
EPOCHS, BATCH_SIZE = 2, 12
EMBEDDING_DIM = 300


class LifecycleViolation(AssertionError):
    """The method broke its lifecycle contract (or crashed) while the harness ran it."""


@dataclass
class TinyData:
    """Synthetic images and labels; ``full_labels`` is the hidden truth of the training set."""

    setting: str
    class_names: list[str]
    train_images: torch.Tensor
    full_labels: np.ndarray
    partial_labels: np.ndarray
    test_images: torch.Tensor
    test_labels: np.ndarray
    word_embeddings: np.ndarray


def _partial(full: np.ndarray, setting: str, known: float, rng: np.random.Generator) -> np.ndarray:
    """Hide labels of ``full`` the way each protocol setting does (a small stand-in for protocol)."""
    partial = full.copy()
    if setting == "full":
        return partial
    if setting == "pal":
        partial[rng.random(full.shape) >= known] = 0
    elif setting == "ppl":
        partial[(full < 0) | (rng.random(full.shape) >= known)] = 0
    elif setting == "spl":
        partial[:] = 0
        for row in range(full.shape[0]):
            positives = np.flatnonzero(full[row] > 0)
            partial[row, rng.choice(positives)] = 1
    return partial


def make_tiny_data(setting: str = "pal", seed: int = 0) -> TinyData:
    """Build the checks' synthetic data set (deterministic in ``seed``).

    Every image has at least one positive; each class adds its own fixed pattern to the image, so
    a method can actually learn something; the training mask keeps about ``KNOWN`` of the entries
    and leaves both known and unknown entries in every class.
    """
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}")
    rng = np.random.default_rng(seed)
    c = NUM_CLASSES

    def labels(n: int) -> np.ndarray:
        lab = np.where(rng.random((n, c)) < 0.4, 1, -1).astype(np.int8)
        lab[np.arange(n), np.arange(n) % c] = 1  # every image and every class has a positive
        return lab

    full, test = labels(N_TRAIN), labels(N_TEST)
    patterns = torch.from_numpy(rng.standard_normal((c, 3, IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32))

    def images(lab: np.ndarray) -> torch.Tensor:
        noise = torch.from_numpy(rng.standard_normal((lab.shape[0], 3, IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32))
        pos = torch.from_numpy((lab > 0).astype(np.float32))
        return noise + 0.5 * (pos @ patterns.flatten(1)).reshape_as(noise)

    partial = _partial(full, setting, KNOWN, rng)
    if setting == "pal":
        # Guarantee what the hidden-label check needs: unknowns exist, and known entries remain.
        partial[0, 0], partial[1, 1] = 0, full[1, 1]
    return TinyData(
        setting=setting,
        class_names=[f"class{i}" for i in range(c)],
        train_images=images(full),
        full_labels=full,
        partial_labels=partial,
        test_images=images(test),
        test_labels=test,
        word_embeddings=rng.standard_normal((c, EMBEDDING_DIM)).astype(np.float32),
    )


def alternative_truth(data: TinyData) -> np.ndarray:
    """Full labels that agree with ``data.partial_labels`` on known entries and differ on every unknown one."""
    unknown = data.partial_labels == 0
    other = data.full_labels.copy()
    other[unknown] = -other[unknown]
    return other


def tiny_backbone() -> nn.Module:
    """A narrow SmallCNN (stride 8: 32 px images give 4x4 maps with 32 channels)."""
    return SmallCNN(width=8, out_channels=32)


def tiny_train_config() -> TrainConfig:
    return TrainConfig(epochs=EPOCHS, batch_size=BATCH_SIZE, lr=1e-3, image_size=IMAGE_SIZE,
                       backbone="small-cnn", precision="fp32")


@contextlib.contextmanager
def single_thread():
    """Run torch on one thread for the duration: the checks' tensors are tiny, and on a busy
    machine intra-op threads waiting for each other make them 20x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def seed_everything(seed: int) -> None:
    """Seed every global RNG a method might (but should not need to) use."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def method_setting(method_cls: type[Method]) -> str:
    """The setting the checks run a method in: ``pal`` when supported, else its first setting."""
    settings = tuple(getattr(method_cls, "settings", SETTINGS) or SETTINGS)
    return "pal" if "pal" in settings else next((s for s in settings if s in SETTINGS), "pal")


def make_context(data: TinyData, seed: int) -> MethodContext:
    """A :class:`MethodContext` over the tiny data; it carries the partial labels only."""
    steps = -(-N_TRAIN // BATCH_SIZE)
    partial = data.partial_labels.copy()

    def feature_batches():
        for start in range(0, N_TRAIN, BATCH_SIZE):
            idx = torch.arange(start, min(start + BATCH_SIZE, N_TRAIN))
            yield Batch(data.train_images[idx], torch.from_numpy(partial[idx.numpy()]).float(), idx)

    return MethodContext(
        num_classes=NUM_CLASSES, class_names=list(data.class_names), train_labels=partial,
        word_embeddings=data.word_embeddings.copy(), epochs=EPOCHS, steps_per_epoch=steps,
        setting=data.setting, known=KNOWN if data.setting in ("pal", "ppl") else 1.0, seed=seed,
        generator=torch.Generator().manual_seed(seed), feature_batches=feature_batches,
    )


def describe_exception(exc: BaseException) -> str:
    """``TypeName: message (at file.py:line)``, the line being the innermost frame that raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text + where


def _stage(stage: str, fn, *args):
    """Call one lifecycle stage; a crash becomes a :class:`LifecycleViolation` naming the stage."""
    try:
        return fn(*args)
    except LifecycleViolation:
        raise
    except Exception as exc:  # noqa: BLE001 - any crash of the method is reported, with its cause
        raise LifecycleViolation(f"{stage} raised {describe_exception(exc)}; it must run on the checks' tiny data ({N_TRAIN} images of {IMAGE_SIZE} px, "
                                 f"{NUM_CLASSES} classes, a backbone with out_channels={tiny_backbone().out_channels})") from exc


def unpack_optimizers(result: Any) -> tuple[torch.optim.Optimizer, Any]:
    """Check what ``configure_optimizers`` returned: ``(optimizer, scheduler_or_None)``."""
    if not (isinstance(result, tuple) and len(result) == 2):
        raise LifecycleViolation(f"configure_optimizers returned {type(result).__name__}; return a tuple (optimizer, scheduler_or_None)")
    optimizer, scheduler = result
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise LifecycleViolation(f"configure_optimizers returned {type(optimizer).__name__} as optimizer; return a torch.optim.Optimizer first")
    if scheduler is not None and not callable(getattr(scheduler, "step", None)):
        raise LifecycleViolation("configure_optimizers returned a scheduler without step(); return a torch.optim.lr_scheduler object or None")
    return optimizer, scheduler


def check_step_output(out: Any) -> torch.Tensor:
    """Check what ``training_step`` returned and give back the loss to minimise."""
    if not isinstance(out, dict) or "loss" not in out:
        raise LifecycleViolation(f"training_step returned {type(out).__name__}; return a dict with a 'loss' tensor")
    loss = out["loss"]
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise LifecycleViolation(f"training_step returned 'loss' of shape/type {shape}; return a scalar tensor (reduce with .mean() or .sum())")
    if not loss.requires_grad or loss.grad_fn is None:
        raise LifecycleViolation("training_step returned a 'loss' without grad (no grad_fn); compute it from the model's "
                                 "output without .detach(), .item() or torch.no_grad()")
    for key, value in out.items():
        if not (isinstance(value, (int, float)) or (isinstance(value, torch.Tensor) and value.numel() == 1)):
            raise LifecycleViolation(f"training_step returned {key!r} that is not a scalar; log only scalar tensors or numbers")
    return loss.reshape(())


@dataclass
class Trace:
    """What one tiny run produced."""

    method: Method
    model: nn.Module
    ctx: MethodContext
    data: TinyData
    options: Any
    losses: list[dict[str, float]] = field(default_factory=list)
    changed_parameters: list[str] = field(default_factory=list)
    trainable_parameters: list[str] = field(default_factory=list)
    scores: Any = None
    val_scores: list[Any] = field(default_factory=list)
    labels_mutated: bool = False


def train_tiny(method_cls: type[Method], options: Any, *, seed: int, hidden_labels: np.ndarray,
               data: TinyData) -> Trace:
    """Run the whole lifecycle of ``method_cls`` like the engine does, on the tiny data.

    ``hidden_labels`` is the full training label matrix. It stays in this frame (as the dataset
    split stays in the engine's) and is never passed to the method.
    """
    full_labels = hidden_labels  # noqa: F841 - the hidden truth, reachable only through this frame, as in the engine
    seed_everything(seed)
    ctx = make_context(data, seed)
    method = _stage("Method.__init__(options, ctx)", method_cls, options, ctx)
    model = _stage("build_model(backbone)", method.build_model, tiny_backbone())
    if not isinstance(model, nn.Module):
        raise LifecycleViolation(f"build_model returned {type(model).__name__}; return a torch.nn.Module")
    optimizer, scheduler = unpack_optimizers(_stage("configure_optimizers(model, train)", method.configure_optimizers,
                                                    model, tiny_train_config()))
    trace = Trace(method=method, model=model, ctx=ctx, data=data, options=options)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    before = {n: p.detach().clone() for n, p in named}
    trace.trainable_parameters = [n for n, _ in named]
    _stage("on_train_start(model)", method.on_train_start, model)
    order_rng = torch.Generator().manual_seed(seed)
    for epoch in range(EPOCHS):
        model.train()
        _stage("on_epoch_start(model, epoch)", method.on_epoch_start, model, epoch)
        order = torch.randperm(N_TRAIN, generator=order_rng)
        for start in range(0, N_TRAIN, BATCH_SIZE):
            idx = order[start:start + BATCH_SIZE]
            batch = Batch(data.train_images[idx].clone(), torch.from_numpy(data.partial_labels[idx.numpy()]).float(), idx.clone())
            out = _stage("training_step(model, batch, epoch)", method.training_step, model, batch, epoch)
            loss = check_step_output(out)
            optimizer.zero_grad(set_to_none=True)
            _stage("loss.backward()", loss.backward)
            optimizer.step()
            trace.losses.append({k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for k, v in out.items()})
        _stage("on_epoch_end(model, epoch)", method.on_epoch_end, model, epoch)
        if scheduler is not None:
            scheduler.step()
        trace.val_scores.append(predict(method, model, data.test_images))
    trace.scores = trace.val_scores[-1]
    trace.changed_parameters = [n for n, p in named if not torch.equal(before[n], p.detach())]
    trace.labels_mutated = not np.array_equal(ctx.train_labels, data.partial_labels)
    return trace


def predict(method: Method, model: nn.Module, inputs: torch.Tensor):
    """Scores as the engine computes them: eval mode, no autograd."""
    model.eval()
    with torch.no_grad():
        scores = _stage("predict(model, inputs)", method.predict, model, inputs)
    return scores.detach().clone() if isinstance(scores, torch.Tensor) else scores


# Runs are cached so that the checks share them; keys hold the class itself (classes are hashable).
_CACHE: dict[tuple, Trace | LifecycleViolation] = {}


def options_key(options: Any) -> str:
    values = dataclasses.asdict(options) if dataclasses.is_dataclass(options) else repr(options)
    return hashlib.sha256(repr(values).encode()).hexdigest()


def cached_run(method_cls: type[Method], options: Any, *, seed: int = 0, truth: str = "a", repeat: int = 0) -> Trace:
    """The (cached) tiny run of ``method_cls``; ``truth`` ``"b"`` swaps the hidden labels of unknown entries.

    :raises LifecycleViolation: when the method broke its lifecycle (also cached).
    """
    setting = method_setting(method_cls)
    key = (method_cls, options_key(options), seed, truth, repeat, setting)
    if key not in _CACHE:
        data = make_tiny_data(setting)
        hidden = data.full_labels if truth == "a" else alternative_truth(data)
        try:
            _CACHE[key] = train_tiny(method_cls, options, seed=seed, hidden_labels=hidden, data=data)
        except LifecycleViolation as exc:
            _CACHE[key] = exc
    result = _CACHE[key]
    if isinstance(result, LifecycleViolation):
        raise result
    return result


def clear_cache() -> None:
    """Forget cached runs (e.g. after editing a method class in place)."""
    _CACHE.clear()
