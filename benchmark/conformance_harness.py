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
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .method import Batch, Method, MethodContext, TrainConfig
from .engine import seed_everything  # noqa: F401 - the checks seed like the engine
from .vocabulary import SETTINGS
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

    from .protocol import make_partial_labels

    partial = make_partial_labels(full, setting, KNOWN, seed, key="conformance")
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
                       backbone="small-cnn", precision="fp32", track="finetune")  # the kit feeds images


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


def method_setting(method_cls: type[Method]) -> str:
    """The setting the checks run a method in: ``pal`` when supported, else its first setting."""
    settings = tuple(getattr(method_cls, "settings", SETTINGS) or SETTINGS)
    return "pal" if "pal" in settings else next((s for s in settings if s in SETTINGS), "pal")


class MemoryImages:
    """``index -> image tensor`` over an in-memory batch of images (and nothing else)."""

    __slots__ = ("images",)

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __call__(self, index: int) -> torch.Tensor:
        return self.images[index]


def identity(x):
    """The checks' image transform: the images are already tensors."""
    return x


def make_context(data: TinyData, seed: int) -> MethodContext:
    """The method's context over the tiny data, built by the real run's
    :func:`~mlrpl_bench.training.method_context` (partial labels and images only)."""
    from .data.loading import SplitRows
    from .distributed import DistInfo
    from .training import ContextSpec, method_context

    partial = data.partial_labels.copy()
    rows = SplitRows(MemoryImages(data.train_images), np.arange(N_TRAIN), partial, identity)
    spec = ContextSpec(class_names=data.class_names, embeddings=data.word_embeddings.copy(), epochs=EPOCHS,
                       batch_size=BATCH_SIZE, setting=data.setting,
                       known=KNOWN if data.setting in ("pal", "ppl") else 1.0, seed=seed)
    return method_context(spec, partial, rows, device=torch.device("cpu"), dist=DistInfo())


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
    inspection_events: list[str] = field(default_factory=list)  # gc.get_referents ... called by the method


def train_tiny(method_cls: type[Method], options: Any, *, seed: int, hidden_labels: np.ndarray,
               data: TinyData) -> Trace:
    """Run the whole lifecycle of ``method_cls`` like the engine does, on the tiny data.

    ``hidden_labels`` is the full training label matrix. It stays in this frame (as the dataset
    split stays in the engine's) and is never passed to the method.
    """
    with recording_inspection() as events:
        trace = _train_tiny(method_cls, options, seed=seed, hidden_labels=hidden_labels, data=data)
    trace.inspection_events = sorted(set(events))
    return trace


def _train_tiny(method_cls: type[Method], options: Any, *, seed: int, hidden_labels: np.ndarray,
                data: TinyData) -> Trace:
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
            _stage("after_optimizer_step(model, epoch, step)", method.after_optimizer_step, model, epoch,
                   start // BATCH_SIZE)
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


# --------------------------------------------------------------------------- what a method can reach


def _module_dict_ids() -> set[int]:
    import sys

    return {id(vars(m)) for m in list(sys.modules.values()) if m is not None}


def _children(obj: Any, module_dicts: set[int]):
    """(label, child) pairs an object refers to: attributes, items, closures, then gc referents."""
    import functools
    import gc
    import types

    if isinstance(obj, (type, types.ModuleType, types.CodeType, str, bytes, int, float, bool)) or obj is None:
        return
    if isinstance(obj, dict):
        if id(obj) in module_dicts:  # a module's globals: the whole program, not what the method was given
            return
        for key, value in list(obj.items()):
            yield f"[{key!r}]", value
        return
    if isinstance(obj, (list, tuple, set, frozenset)):
        for i, value in enumerate(list(obj)):
            yield f"[{i}]", value
        return
    if isinstance(obj, types.FunctionType):
        for i, cell in enumerate(obj.__closure__ or ()):
            try:
                yield f".__closure__[{i}].cell_contents", cell.cell_contents
            except ValueError:  # an empty cell
                pass
        yield ".__defaults__", obj.__defaults__
        yield ".__kwdefaults__", obj.__kwdefaults__
        return
    if isinstance(obj, types.MethodType):
        yield ".__self__", obj.__self__
        yield ".__func__", obj.__func__
        return
    if isinstance(obj, functools.partial):
        yield ".func", obj.func
        yield ".args", obj.args
        yield ".keywords", obj.keywords
        return
    if isinstance(obj, np.ndarray):
        if obj.base is not None:
            yield ".base", obj.base
        return
    if isinstance(obj, torch.Tensor):
        return
    seen_attrs = False
    if hasattr(obj, "__dict__") and isinstance(vars(obj), dict):
        seen_attrs = True
        for key, value in list(vars(obj).items()):
            yield f".{key}", value
    for cls in type(obj).__mro__:
        for slot in getattr(cls, "__slots__", ()) if isinstance(getattr(cls, "__slots__", ()), (tuple, list)) else ():
            if hasattr(obj, slot):
                seen_attrs = True
                yield f".{slot}", getattr(obj, slot)
    if not seen_attrs:
        for i, ref in enumerate(gc.get_referents(obj)):
            yield f"<referent {i}>", ref


def _matches(obj: Any, truths: dict[str, np.ndarray]) -> str | None:
    """The name of the hidden truth ``obj`` is, shares memory with or equals, if any."""
    if isinstance(obj, torch.Tensor):
        if obj.is_sparse or obj.device.type == "meta":
            return None
        for name, truth in truths.items():
            if tuple(obj.shape) == truth.shape and torch.equal(obj.detach().cpu().double(), torch.from_numpy(truth).double()):
                return name
        return None
    if isinstance(obj, np.ndarray):
        for name, truth in truths.items():
            if obj is truth or np.may_share_memory(obj, truth):
                return name
            if obj.shape == truth.shape and obj.dtype.kind in "iufb" and np.array_equal(obj, truth):
                return name
    return None


def find_hidden_truth(roots: dict[str, Any], truths: dict[str, np.ndarray], *, max_depth: int = 10,
                      max_objects: int = 200_000) -> str | None:
    """Search everything reachable from ``roots`` (attributes, items, closures, gc referents; a
    bounded breadth-first walk that leaves module globals and classes out) for the hidden truth,
    by identity, shared memory and equal content.

    :return: ``"<path> is the <truth name>"`` for the first hit, or None.
    """
    from collections import deque

    module_dicts = _module_dict_ids()
    protected = {id(t) for t in truths.values()}
    queue = deque((name, obj, 0) for name, obj in roots.items())
    seen: set[int] = set()
    while queue and len(seen) < max_objects:
        path, obj, depth = queue.popleft()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if id(obj) in protected or isinstance(obj, (np.ndarray, torch.Tensor)):
            hit = _matches(obj, truths)
            if hit is not None:
                return f"{path} is the {hit}"
        if depth < max_depth:
            queue.extend((path + label, child, depth + 1) for label, child in _children(obj, module_dicts))
    return None


# Heap and stack inspection by a method is recorded through Python's audit events while the
# checks run its lifecycle (the hook is installed once per process and otherwise does nothing).
_INSPECTION_EVENTS = ("gc.get_objects", "gc.get_referents", "gc.get_referrers")
_AUDIT = {"active": False, "events": [], "installed": False}


def _audit(event: str, args) -> None:
    if _AUDIT["active"] and event in _INSPECTION_EVENTS:
        _AUDIT["events"].append(event)


@contextlib.contextmanager
def recording_inspection():
    """Record the heap-inspection calls (``gc.get_referents`` ...) made inside the block."""
    import sys

    if not _AUDIT["installed"]:
        sys.addaudithook(_audit)
        _AUDIT["installed"] = True
    events: list[str] = []
    _AUDIT["events"], _AUDIT["active"] = events, True
    try:
        yield events
    finally:
        _AUDIT["active"] = False


def state_trains_on(method_cls: type[Method], options: Any, data: TinyData) -> str | None:
    """Train one epoch, save model/optimizer/method state, restore it into a fresh method, train
    both one more epoch on the same batches: None when losses and predictions agree, else what
    differs (naming the method attribute that was not restored, when one can be found)."""
    import io

    def fresh(seed: int):
        seed_everything(seed)
        ctx = make_context(data, 0)
        method = method_cls(options, ctx)
        model = method.build_model(tiny_backbone())
        optimizer, scheduler = unpack_optimizers(method.configure_optimizers(model, tiny_train_config()))
        return method, model, optimizer, scheduler

    def epoch(method, model, optimizer, scheduler, e: int) -> list[dict[str, float]]:
        from .engine import epoch_seed, seed_everything as engine_seed

        engine_seed(epoch_seed(0, e))
        method.ctx.generator.manual_seed(epoch_seed(1, e))
        model.train()
        method.on_epoch_start(model, e)
        order = torch.randperm(N_TRAIN, generator=torch.Generator().manual_seed(1000 + e))
        losses = []
        for start in range(0, N_TRAIN, BATCH_SIZE):
            idx = order[start:start + BATCH_SIZE]
            batch = Batch(data.train_images[idx].clone(), torch.from_numpy(data.partial_labels[idx.numpy()]).float(), idx.clone())
            out = method.training_step(model, batch, e)
            loss = check_step_output(out)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            method.after_optimizer_step(model, e, start // BATCH_SIZE)
            losses.append({k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for k, v in out.items()})
        method.on_epoch_end(model, e)
        if scheduler is not None:
            scheduler.step()
        return losses

    def roundtrip(obj):
        buf = io.BytesIO()
        torch.save(obj, buf)
        buf.seek(0)
        return torch.load(buf, weights_only=True)

    a = fresh(0)
    a[0].on_train_start(a[1])
    epoch(*a, 0)
    saved = {"model": roundtrip(a[1].state_dict()), "optimizer": roundtrip(a[2].state_dict()),
             "scheduler": roundtrip(a[3].state_dict()) if a[3] is not None else None,
             "method": roundtrip(a[0].state_dict())}
    b = fresh(1)  # another seed: restoring must not depend on re-drawing the same random numbers
    b[1].load_state_dict(saved["model"])
    b[2].load_state_dict(saved["optimizer"])
    if b[3] is not None and saved["scheduler"] is not None:
        b[3].load_state_dict(saved["scheduler"])
    b[0].load_state_dict(saved["method"])
    b[0].on_train_start(b[1])
    unrestored = _differing_attribute(a[0], b[0])
    losses_a, losses_b = epoch(*a, 1), epoch(*b, 1)
    same_scores = torch.equal(predict(a[0], a[1], data.test_images), predict(b[0], b[1], data.test_images))
    if losses_a == losses_b and same_scores:
        return None
    what = "losses" if losses_a != losses_b else "scores"
    where = f"; attribute {unrestored} differs after load_state_dict (put it in state_dict)" if unrestored else ""
    return f"a method restored from its state after one epoch trains on differently than the original ({what} differ){where}"


def _differing_attribute(a: Method, b: Method) -> str | None:
    """The first attribute of method ``a`` whose value ``b`` does not have after restoring."""
    for name, value in vars(a).items():
        if name in ("ctx", "options"):
            continue
        other = getattr(b, name, None)
        if isinstance(value, torch.Tensor):
            if not (isinstance(other, torch.Tensor) and value.shape == other.shape and torch.equal(value.detach().cpu(), other.detach().cpu())):
                return f"self.{name}"
        elif isinstance(value, (int, float, str, bool)) and value != other:
            return f"self.{name}"
    return None
