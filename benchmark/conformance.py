"""Conformance checks for method plugins, in the manner of scikit-learn's ``check_estimator``.

Each check is a plain function named after the property it checks. It takes a method class
(and optionally option overrides), runs it on tiny seeded synthetic data (see
:mod:`mlrpl_bench.conformance_harness`) and raises :class:`ConformanceError` with a message that
says what to fix, or :class:`CheckSkipped` when it cannot decide (an earlier check it depends on
fails). Use them through:

* ``mlrpl-bench check-plugin NAME`` on a registered method;
* :func:`mlrpl_bench.testing.parametrize_with_checks` in a pytest suite;
* :func:`check_method` from Python.

A method opts out of a check with an explicit reason, as a class attribute::

    conformance_skip = {"check_same_seed_same_result": "cuDNN kernels are non-deterministic"}

and may shrink itself for the checks (e.g. start pseudo-labelling at epoch 1 instead of 5)::

    conformance_options = {"warmup_epochs": 1}
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pluggy
import torch
from torch import nn

from . import hookspecs
from .conformance_harness import (
    EPOCHS, IMAGE_SIZE, KNOWN, N_TEST, N_TRAIN, NUM_CLASSES, LifecycleViolation, MemoryImages, TinyData, cached_run,
    check_step_output, describe_exception, find_hidden_truth, identity, state_trains_on,
    make_context, make_tiny_data, method_setting, predict, seed_everything, single_thread, tiny_backbone,
    tiny_train_config, unpack_optimizers,
)
from .data.base import Dataset, DatasetSplit
from .errors import BenchError
from .method import Method, TrainConfig
from .vocabulary import SETTINGS, is_registry_name


class ConformanceError(AssertionError):
    """A check failed; the message says what to fix."""


class CheckSkipped(Exception):
    """A check could not decide (opted out, or blocked by another failing check)."""


def _fail(message: str) -> None:
    raise ConformanceError(message)


def _options(method_cls: type[Method], overrides: dict[str, Any] | None):
    """Options for the checks: defaults, then ``conformance_options``, then ``overrides``."""
    values = dict(getattr(method_cls, "conformance_options", None) or {})
    values.update(overrides or {})
    try:
        return method_cls.make_options(values)
    except BenchError as exc:
        raise CheckSkipped(f"blocked: the method's options cannot be built ({exc}); fix check_options_are_documented_dataclass") from None
    except Exception as exc:  # noqa: BLE001
        raise CheckSkipped(f"blocked: building {method_cls.__name__}.Options raised {type(exc).__name__}: {exc}") from None


def _run(method_cls, overrides, **kwargs):
    """The shared tiny run; a lifecycle violation blocks every check but the lifecycle one."""
    try:
        return cached_run(method_cls, _options(method_cls, overrides), **kwargs)
    except LifecycleViolation as exc:
        raise CheckSkipped(f"blocked by check_follows_lifecycle: {exc}") from None


def _plugin_of(method_cls: type[Method]) -> tuple[object, str]:
    """The plugin object that registers ``method_cls``: its registry entry's, else its module."""
    try:
        from .plugin_manager import get_plugin_manager, method_registry

        entry = method_registry().get(getattr(method_cls, "name", ""))
        if entry is not None and entry.obj is method_cls:
            return get_plugin_manager().get_plugin(entry.plugin), entry.plugin
    except BenchError:
        pass  # reported by check_name_is_well_formed_and_unique
    module = sys.modules.get(method_cls.__module__)
    return module, method_cls.__module__


# ---------------------------------------------------------------------------------------------
# Checks on the plugin and class (no training)
# ---------------------------------------------------------------------------------------------


def check_hooks_match_spec(method_cls: type[Method], options: dict | None = None) -> None:
    """The plugin's hook implementations exist in the spec, take only spec arguments, and
    ``mlrpl_methods`` returns this class."""
    if not (isinstance(method_cls, type) and issubclass(method_cls, Method)):
        _fail(f"{method_cls!r} is not a subclass of mlrpl_bench.method.Method; subclass it")
    plugin, plugin_name = _plugin_of(method_cls)
    if plugin is None:
        _fail(f"cannot find the plugin module {plugin_name!r} of {method_cls.__name__}; define mlrpl_methods() there")
    spec_names = {n for n, f in vars(hookspecs).items() if hasattr(f, f"{hookspecs.PROJECT_NAME}_spec")}
    for attr in dir(plugin):
        value = getattr(plugin, attr, None)
        if attr in spec_names and callable(value) and not hasattr(value, f"{hookspecs.PROJECT_NAME}_impl"):
            _fail(f"{plugin_name}.{attr} is not marked as a hook; decorate it with @hookimpl "
                  "(from mlrpl_bench.hookspecs import hookimpl)")
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    try:
        pm.register(plugin, name=f"conformance:{plugin_name}")
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        _fail(f"{plugin_name}: {exc}; hook names and arguments must match mlrpl_bench.hookspecs (see CONTRIBUTING.md)")
    impls = [i for i in pm.hook.mlrpl_methods.get_hookimpls() if i.plugin is plugin]
    if not impls:
        _fail(f"{plugin_name} has no mlrpl_methods hook; add `@hookimpl def mlrpl_methods(): return [{method_cls.__name__}]`")
    returned = impls[0].function()
    if not isinstance(returned, (list, tuple)):
        _fail(f"{plugin_name}.mlrpl_methods returned {type(returned).__name__}; return a list of Method subclasses")
    if method_cls not in returned:
        _fail(f"{plugin_name}.mlrpl_methods does not return {method_cls.__name__}; add it to the returned list")
    for item in returned:
        if not (isinstance(item, type) and issubclass(item, Method)):
            _fail(f"{plugin_name}.mlrpl_methods returned {item!r}, which is not a Method subclass")


def check_name_is_well_formed_and_unique(method_cls: type[Method], options: dict | None = None) -> None:
    """``name`` is lower case letters, digits and single dashes, and no other method uses it."""
    name = getattr(method_cls, "name", "")
    if not is_registry_name(name):
        _fail(f"{method_cls.__name__}.name is {name!r}; set it to lower-case letters, digits and '-' (e.g. 'my-method')")
    from .plugin_manager import method_registry

    try:
        registry = method_registry()
    except BenchError as exc:
        _fail(f"the method registry cannot be built: {exc}")
    entry = registry.get(name)
    if entry is not None and entry.obj is not method_cls:
        _fail(f"name {name!r} is already used by {entry.obj.__module__}.{entry.obj.__name__} "
              f"(plugin {entry.plugin}, distribution {entry.distribution}); choose another name")


def check_summary_citation_and_version(method_cls: type[Method], options: dict | None = None) -> None:
    """``summary`` is one non-empty line, ``citation`` names the source, ``version`` is a string."""
    summary, citation, version = (getattr(method_cls, a, None) for a in ("summary", "citation", "version"))
    if not isinstance(summary, str) or not summary.strip() or "\n" in summary.strip():
        _fail(f"{method_cls.__name__}.summary is {summary!r}; set it to one line describing the method")
    if not isinstance(citation, str) or len(citation.strip()) < 5:
        _fail(f"{method_cls.__name__}.citation is {citation!r}; cite the paper (authors, title, venue, year) or say 'original'")
    if not isinstance(version, str) or not version.strip():
        _fail(f"{method_cls.__name__}.version is {version!r}; set it to a string such as '1.0' (it is recorded in results)")


def check_options_are_documented_dataclass(method_cls: type[Method], options: dict | None = None) -> None:
    """``Options`` is a dataclass whose fields all have defaults, help text and JSON values."""
    opts = getattr(method_cls, "Options", None)
    if not (isinstance(opts, type) and dataclasses.is_dataclass(opts)):
        _fail(f"{method_cls.__name__}.Options is not a dataclass; decorate it with @dataclass")
    for f in dataclasses.fields(opts):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            _fail(f"option {f.name!r} of {method_cls.__name__} has no default; give it one (field(default=...))")
        help_text = f.metadata.get("help")
        if not isinstance(help_text, str) or not help_text.strip():
            _fail(f"option {f.name!r} of {method_cls.__name__} has no help; use field(default=..., metadata={{'help': '...'}})")
    try:
        built = method_cls.make_options()
    except Exception as exc:  # noqa: BLE001
        _fail(f"{method_cls.__name__}.make_options() raised {describe_exception(exc)}; the defaults must build Options")
    try:
        json.dumps(dataclasses.asdict(built), allow_nan=False)
    except (TypeError, ValueError) as exc:
        _fail(f"{method_cls.__name__} options are not JSON-serialisable ({exc}); use numbers, strings, booleans, lists")


def check_settings_are_known(method_cls: type[Method], options: dict | None = None) -> None:
    """``settings`` is a non-empty subset of the protocol settings."""
    settings = getattr(method_cls, "settings", None)
    if not isinstance(settings, (tuple, list)) or not settings:
        _fail(f"{method_cls.__name__}.settings is {settings!r}; set a tuple of settings from {SETTINGS}")
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        _fail(f"{method_cls.__name__}.settings has unknown setting {unknown[0]!r}; choose from {', '.join(SETTINGS)}")


def check_profiles_use_known_fields(method_cls: type[Method], options: dict | None = None) -> None:
    """Every profile overrides only TrainConfig or Options fields, with values of the right type."""
    profiles = getattr(method_cls, "profiles", None)
    if not isinstance(profiles, dict):
        _fail(f"{method_cls.__name__}.profiles is {type(profiles).__name__}; set a dict {{profile name: {{field: value}}}}")
    train_fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    option_fields = {f.name for f in dataclasses.fields(method_cls.Options)} if dataclasses.is_dataclass(method_cls.Options) else set()
    for profile, overrides in profiles.items():
        if not is_registry_name(profile) or not isinstance(overrides, dict):
            _fail(f"{method_cls.__name__}.profiles[{profile!r}] must be named in lower case and map field names to values")
        unknown = sorted(set(overrides) - set(train_fields) - option_fields)
        if unknown:
            _fail(f"profile {profile!r} of {method_cls.__name__} sets unknown field {unknown[0]!r}; use a TrainConfig field "
                  f"({', '.join(sorted(train_fields))}) or an option ({', '.join(sorted(option_fields)) or 'none'})")
        for key, value in overrides.items():
            if key in option_fields:
                continue
            default = train_fields[key].default
            ok = isinstance(value, type(default)) or (isinstance(default, float) and isinstance(value, int))
            if not ok or (isinstance(value, bool) and not isinstance(default, bool)):
                _fail(f"profile {profile!r} of {method_cls.__name__} sets {key}={value!r}; TrainConfig.{key} is {type(default).__name__}")
        try:
            method_cls.make_options({k: v for k, v in overrides.items() if k in option_fields})
        except Exception as exc:  # noqa: BLE001
            _fail(f"profile {profile!r} of {method_cls.__name__} gives invalid options: {exc}")


def check_opt_outs_have_reasons(method_cls: type[Method], options: dict | None = None) -> None:
    """``conformance_skip`` names real checks and gives each a reason; ``conformance_options`` are options."""
    skips = getattr(method_cls, "conformance_skip", None) or {}
    if not isinstance(skips, dict):
        _fail(f"{method_cls.__name__}.conformance_skip must be a dict {{check name: reason}}")
    for name, reason in skips.items():
        if name not in CHECKS_BY_NAME:
            _fail(f"{method_cls.__name__}.conformance_skip names unknown check {name!r}; choose from {', '.join(CHECKS_BY_NAME)}")
        if name == "check_opt_outs_have_reasons":
            _fail("check_opt_outs_have_reasons cannot be skipped; remove it from conformance_skip")
        if not isinstance(reason, str) or len(reason.strip()) < 10:
            _fail(f"{method_cls.__name__}.conformance_skip[{name!r}] needs a reason (a sentence saying why), got {reason!r}")
    extra = getattr(method_cls, "conformance_options", None) or {}
    if not isinstance(extra, dict):
        _fail(f"{method_cls.__name__}.conformance_options must be a dict of option overrides")
    try:
        method_cls.make_options(dict(extra))
    except Exception as exc:  # noqa: BLE001
        _fail(f"{method_cls.__name__}.conformance_options are not valid options: {exc}")


# ---------------------------------------------------------------------------------------------
# Checks that run the method on tiny data
# ---------------------------------------------------------------------------------------------


def check_follows_lifecycle(method_cls: type[Method], options: dict | None = None) -> None:
    """Construct, build_model (keeping ``.backbone``), configure_optimizers, training_step, predict,
    epoch hooks: each returns what the contract says, on tiny data."""
    opts = _options(method_cls, options)
    data = make_tiny_data(method_setting(method_cls))
    try:
        seed_everything(0)
        ctx = make_context(data, 0)
        method = method_cls(opts, ctx)
        backbone = tiny_backbone()
        model = method.build_model(backbone)
        if not isinstance(model, nn.Module):
            _fail(f"build_model returned {type(model).__name__}; return a torch.nn.Module")
        if getattr(model, "backbone", None) is not backbone:
            _fail("build_model's module has no .backbone (the backbone it was given); store it as `self.backbone = backbone` "
                  "and apply it first in forward (the frozen-backbone track swaps it for an identity)")
        unpack_optimizers(method.configure_optimizers(model, tiny_train_config()))
        method.on_train_start(model)
        model.train()
        method.on_epoch_start(model, 0)
        from .method import Batch

        idx = torch.arange(4)
        batch = Batch(data.train_images[idx], torch.from_numpy(data.partial_labels[:4]).float(), idx)
        loss = check_step_output(method.training_step(model, batch, 0))
        if not torch.isfinite(loss.detach()):
            _fail(f"training_step returned a non-finite loss ({float(loss.detach())}) on the first batch; check logs of 0 and divisions by 0")
        loss.backward()
        method.on_epoch_end(model, 0)
        scores = predict(method, model, data.test_images[:3])
        if not isinstance(scores, torch.Tensor):
            _fail(f"predict returned {type(scores).__name__}; return a tensor of probabilities (B, C)")
        state = method.state_dict()
        if not isinstance(state, dict):
            _fail(f"state_dict returned {type(state).__name__}; return a dict (empty when the method keeps no state)")
    except LifecycleViolation as exc:
        _fail(str(exc))
    except ConformanceError:
        raise
    except Exception as exc:  # noqa: BLE001 - a crash anywhere in the lifecycle is this check's failure
        _fail(f"the lifecycle raised {describe_exception(exc)}; it must run on tiny data ({N_TRAIN} images, {NUM_CLASSES} classes, "
              f"backbone out_channels={tiny_backbone().out_channels})")
    # The full tiny run must also go through (it surfaces errors of later epochs and batches).
    try:
        cached_run(method_cls, opts)
    except LifecycleViolation as exc:
        _fail(str(exc))


def check_trains_a_few_steps(method_cls: type[Method], options: dict | None = None) -> None:
    """A few optimiser steps give finite losses and change the model's trainable parameters."""
    trace = _run(method_cls, options)
    for step, logs in enumerate(trace.losses):
        for key, value in logs.items():
            if not math.isfinite(value):
                _fail(f"training_step returned {key}={value} at step {step}; the loss must stay finite "
                      "(clamp probabilities before log, avoid dividing by a zero count)")
    if not trace.trainable_parameters:
        _fail("the model has no trainable parameters; build_model must add at least a classifier with requires_grad=True")
    if not trace.changed_parameters:
        _fail(f"no parameter changed after {len(trace.losses)} optimiser steps; the loss must depend on the model's "
              "parameters and configure_optimizers must hand them to the optimizer")


def check_scores_have_right_shape_and_range(method_cls: type[Method], options: dict | None = None) -> None:
    """``predict`` returns finite floating probabilities in [0, 1] of shape (B, C), for any B."""
    trace = _run(method_cls, options)
    for inputs in (trace.data.test_images, trace.data.test_images[:3]):
        scores = trace.scores if inputs is trace.data.test_images else predict(trace.method, trace.model, inputs)
        expected = (inputs.shape[0], NUM_CLASSES)
        if not isinstance(scores, torch.Tensor):
            _fail(f"predict returned {type(scores).__name__}; return a tensor of shape (B, C)")
        if tuple(scores.shape) != expected:
            _fail(f"predict returned shape {tuple(scores.shape)} for {expected[0]} images and {NUM_CLASSES} classes; return (B, C)")
        if not scores.is_floating_point():
            _fail(f"predict returned dtype {scores.dtype}; return float probabilities")
        if not torch.isfinite(scores).all():
            _fail("predict returned NaN or inf; return finite probabilities")
        low, high = float(scores.min()), float(scores.max())
        if low < 0 or high > 1:
            _fail(f"predict returned scores in [{low:.4g}, {high:.4g}]; return probabilities in [0, 1] (apply torch.sigmoid to logits)")


def check_same_seed_same_result(method_cls: type[Method], options: dict | None = None) -> None:
    """Two fresh runs with the same seed give identical losses and scores."""
    first, second = _run(method_cls, options, repeat=0), _run(method_cls, options, repeat=1)
    if [sorted(a.items()) for a in first.losses] != [sorted(b.items()) for b in second.losses]:
        step = next(i for i, (a, b) in enumerate(zip(first.losses, second.losses)) if a != b)
        _fail(f"two runs with seed 0 gave different losses from step {step} on; draw random numbers from ctx.generator "
              "(or the seeded global torch RNG), never from an unseeded source (time, os.urandom, a fresh Generator)")
    if not (isinstance(first.scores, torch.Tensor) and isinstance(second.scores, torch.Tensor)
            and first.scores.shape == second.scores.shape and torch.equal(first.scores, second.scores)):
        _fail("two runs with seed 0 gave different scores; make predict deterministic and seed all randomness from ctx.generator")


def check_never_sees_hidden_labels(method_cls: type[Method], options: dict | None = None) -> None:
    """The method uses only the partial labels: two runs whose hidden true labels differ on every
    unknown entry (and agree on the known ones) give identical losses and scores."""
    first = _run(method_cls, options)
    if first.labels_mutated:
        _fail("the method modified ctx.train_labels in place; it is read-only: copy it (ctx.train_labels.copy()) "
              "before writing pseudo labels into it")
    if not (first.data.partial_labels == 0).any():
        raise CheckSkipped(f"not applicable: the method runs only in setting {first.data.setting!r}, without unknown labels")
    if not np.array_equal(first.ctx.train_labels, first.data.partial_labels):
        _fail("internal: the harness did not hand the method partial labels")  # guards the check itself
    other = _run(method_cls, options, truth="b")
    same = ([sorted(a.items()) for a in first.losses] == [sorted(b.items()) for b in other.losses]
            and isinstance(first.scores, torch.Tensor) and isinstance(other.scores, torch.Tensor)
            and first.scores.shape == other.scores.shape and torch.equal(first.scores, other.scores))
    if same:
        return
    repeat = _run(method_cls, options, repeat=1)
    if repeat.losses != first.losses or not torch.equal(repeat.scores, first.scores):
        raise CheckSkipped("inconclusive: the method is not deterministic (see check_same_seed_same_result), "
                           "so runs with different hidden labels cannot be compared")
    _fail("the method's losses or scores changed when only the hidden labels of unknown entries changed: it reads "
          "the true labels through a side channel; use only batch.labels and ctx.train_labels (0 = unknown)")


def check_cannot_reach_hidden_labels(method_cls: type[Method], options: dict | None = None) -> None:
    """Nothing the method receives in a real run (its context, options, model, batches) or keeps
    reaches the hidden truth: a bounded walk of attributes, closures and ``gc`` referents from the
    method object finds no full training labels, validation or test targets -- by identity,
    shared memory or equal content -- and the method does not walk the heap itself."""
    trace = _run(method_cls, options)
    _require_scores(method_cls, options)
    if trace.inspection_events:
        _fail(f"the method called {', '.join(trace.inspection_events)} while training; a method must not search the "
              "heap (the harness's objects are off limits): use only what ctx and the batches give")
    _, found = _engine_run(method_cls, options)
    if found:
        _fail(f"{found} (reachable from what the method was given or keeps); the method must not hold or reach the "
              "harness's data: use only ctx.train_labels, ctx.feature_batches() and batch.labels")


def check_state_trains_on(method_cls: type[Method], options: dict | None = None) -> None:
    """A method restored from ``state_dict`` (with the model and optimizer) after one epoch trains on
    exactly as the original: same losses and predictions over the next epoch (what ``--resume``
    relies on)."""
    _run(method_cls, options)  # blocked by the lifecycle check when the method does not run
    try:
        check_state_dict_round_trips(method_cls, options)
    except ConformanceError:
        raise CheckSkipped("blocked by check_state_dict_round_trips: the state must first survive saving") from None
    opts = _options(method_cls, options)
    problem = state_trains_on(method_cls, opts, make_tiny_data(method_setting(method_cls)))
    if problem is not None:
        _fail(problem + "; every state later epochs depend on (pseudo labels, memories, counters) belongs in "
              "state_dict() and load_state_dict()")


def _tensor_tree_equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_tensor_tree_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_tensor_tree_equal(x, y) for x, y in zip(a, b))
    return a == b


def check_state_dict_round_trips(method_cls: type[Method], options: dict | None = None) -> None:
    """After training, model and method state survive torch.save / torch.load(weights_only=True),
    and a fresh method restored from them predicts the same scores."""
    trace = _run(method_cls, options)
    state = trace.method.state_dict()
    if not isinstance(state, dict):
        _fail(f"state_dict returned {type(state).__name__}; return a dict")
    buffers = []
    for what, obj in (("method.state_dict()", state), ("model.state_dict()", trace.model.state_dict())):
        buf = io.BytesIO()
        torch.save(obj, buf)
        buf.seek(0)
        try:
            buffers.append(torch.load(buf, weights_only=True))
        except Exception as exc:  # noqa: BLE001 - pickle errors name the offending type
            first = str(exc).strip().splitlines()
            detail = next((line for line in first if "GLOBAL" in line or "Unsupported" in line), first[0] if first else "")
            _fail(f"{what} cannot be loaded with torch.load(weights_only=True) ({detail.strip()[:200]}); keep only tensors, "
                  "numbers, strings, lists and dicts in it (convert numpy arrays with torch.from_numpy)")
    loaded_state, loaded_model = buffers
    seed_everything(1)  # a different seed: restoring must not depend on re-drawing the same random numbers
    ctx = make_context(trace.data, 1)
    try:
        fresh = method_cls(trace.options, ctx)
        model = fresh.build_model(tiny_backbone())
        model.load_state_dict(loaded_model)
        fresh.load_state_dict(loaded_state)
    except Exception as exc:  # noqa: BLE001
        _fail(f"restoring a fresh method from its saved state raised {describe_exception(exc)}; load_state_dict must accept "
              "what state_dict returned")
    if not _tensor_tree_equal(fresh.state_dict(), state):
        _fail("load_state_dict did not restore the state: state_dict() after loading differs from what was saved; "
              "restore every entry of state_dict in load_state_dict")
    try:
        restored = predict(fresh, model, trace.data.test_images)
    except LifecycleViolation as exc:
        _fail(f"after restoring: {exc}")
    original = predict(trace.method, trace.model, trace.data.test_images)
    if not (isinstance(restored, torch.Tensor) and restored.shape == original.shape and torch.equal(restored, original)):
        _fail("a method restored from state_dict predicts different scores; put all state predict depends on in the model "
              "or in state_dict (tensors), and restore it in load_state_dict")


class _MemorySplit(DatasetSplit):
    """A split whose images are tensors in memory (the checks' tiny data); the opener holds the images only."""

    images: torch.Tensor

    def open_image(self, index: int):
        return self.images[index]

    def image_opener(self):
        return MemoryImages(self.images)


class _MemoryDataset(Dataset):
    """The checks' tiny synthetic data as a dataset (images in memory, no files, identity transform)."""

    name = "conformance-synthetic"
    summary = "the conformance checks' tiny synthetic data"
    needs_data_root = False
    default_image_size = IMAGE_SIZE
    default_backbone = "small-cnn"

    def transforms(self, image_size: int, train: bool):
        return identity


def _memory_split(data: TinyData, name: str, labels: np.ndarray, images: torch.Tensor) -> _MemorySplit:
    out = _MemorySplit(dataset=_MemoryDataset.name, split=name, class_names=list(data.class_names), labels=labels,
                       image_ids=[f"{name}{i}" for i in range(len(labels))],
                       image_paths=[Path(f"memory/{name}{i}") for i in range(len(labels))])
    out.images = images
    return out


def engine_record(method_cls: type[Method], options: dict | None = None, *,
                  observe: Callable[..., None] | None = None) -> dict:
    """Train the method through the real run path -- :func:`~mlrpl_bench.run_config.prepare_run`
    and :func:`~mlrpl_bench.single_run.run_single`, the ones ``mlrpl-bench run`` uses -- on the tiny
    data, and return its results record (validated and written to a temporary directory).

    :param observe: called with ``(method, hidden)`` after training, where ``hidden`` maps the
        names of the hidden truths (full training labels, validation and test targets) to arrays.
    """
    import tempfile

    from .cell import Cell, Station, SweepData
    from .plugin_manager import entry_for_class
    from .run_config import CliText, make_run_config, prepare_run
    from .single_run import run_single

    values = dict(getattr(method_cls, "conformance_options", None) or {})
    values.update({k: CliText(v) if isinstance(v, str) else v for k, v in (options or {}).items()})
    data = make_tiny_data(method_setting(method_cls))
    train = tiny_train_config()
    config = make_run_config(file={"plugin": str(method_cls.name or "unnamed"), "dataset": _MemoryDataset.name,
                                   "setting": data.setting, "known": [KNOWN], "seeds": [0],
                                   "train": {"epochs": train.epochs, "batch_size": train.batch_size, "lr": train.lr,
                                             "image_size": train.image_size, "backbone": train.backbone,
                                             "precision": train.precision, "track": train.track,
                                             "val_fraction": 4 / N_TRAIN}})
    config = dataclasses.replace(config, method_options=values, progress=False)
    try:
        prepared = prepare_run(config, method_entry=entry_for_class(method_cls), dataset_cls=_MemoryDataset)
    except BenchError as exc:
        raise CheckSkipped(f"blocked: the method's options cannot be built ({exc})") from None
    sweep = SweepData(_MemoryDataset(None), _memory_split(data, "train", data.full_labels, data.train_images),
                      _memory_split(data, "test", data.test_labels, data.test_images), data.word_embeddings.copy())
    seen: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="mlrpl-conformance-") as tmp:
            station = Station(torch.device("cpu"), output=Path(tmp), log=lambda _: None)
            record, _ = run_single(Cell.of(prepared, sweep, KNOWN, 0, station,
                                           build_backbone=lambda weights, freeze: tiny_backbone(),
                                           observe=lambda method, hidden: seen.update(method=method, hidden=hidden)))
    except BenchError as exc:
        _fail(f"the engine stopped the run: {exc}")
    except Exception as exc:  # noqa: BLE001
        _fail(f"training with the engine raised {describe_exception(exc)}; the method must run under mlrpl-bench run")
    if observe is not None and seen:
        observe(seen["method"], seen["hidden"])
    return record


def _engine_run(method_cls: type[Method], options: dict | None) -> tuple[dict, str | None]:
    """The real-path tiny run shared by the checks that need one (cached like the tiny runs):
    its record, and what the search for the hidden truth from the trained method found."""
    from .conformance_harness import _CACHE

    key = ("engine", method_cls, repr(sorted((options or {}).items())))
    if key not in _CACHE:
        found: list[str] = []

        def search(method, hidden):
            hit = find_hidden_truth({"method": method}, hidden)
            if hit:
                found.append(hit)

        try:
            _CACHE[key] = (engine_record(method_cls, options, observe=search), found[0] if found else None)
        except (ConformanceError, CheckSkipped) as exc:
            _CACHE[key] = exc
    result = _CACHE[key]
    if isinstance(result, Exception):
        raise result
    return result


def _require_scores(method_cls: type[Method], options: dict | None) -> None:
    """Skip a check that needs a real run when the scores are not probabilities (the engine stops it)."""
    try:
        check_scores_have_right_shape_and_range(method_cls, options)
    except ConformanceError:
        raise CheckSkipped("blocked by check_scores_have_right_shape_and_range: a real run needs probabilities") from None


def check_record_validates(method_cls: type[Method], options: dict | None = None) -> None:
    """The results record of a tiny run passes :func:`mlrpl_bench.results.validate_record`."""
    _require_scores(method_cls, options)
    from .results import validate_record

    record, _ = _engine_run(method_cls, options)
    try:
        validate_record(json.loads(json.dumps(record, allow_nan=False)), source=f"record of {method_cls.__name__}")
    except (BenchError, TypeError, ValueError) as exc:
        _fail(f"{exc}; the record is built from the class attributes (name, version, citation), the options and the scores")


# ---------------------------------------------------------------------------------------------
# Running the checks
# ---------------------------------------------------------------------------------------------

CHECKS: list[Callable[..., None]] = [
    check_hooks_match_spec,
    check_name_is_well_formed_and_unique,
    check_summary_citation_and_version,
    check_options_are_documented_dataclass,
    check_settings_are_known,
    check_profiles_use_known_fields,
    check_opt_outs_have_reasons,
    check_follows_lifecycle,
    check_trains_a_few_steps,
    check_scores_have_right_shape_and_range,
    check_same_seed_same_result,
    check_never_sees_hidden_labels,
    check_cannot_reach_hidden_labels,
    check_state_dict_round_trips,
    check_state_trains_on,
    check_record_validates,
]
CHECKS_BY_NAME: dict[str, Callable[..., None]] = {c.__name__: c for c in CHECKS}


@dataclass
class CheckResult:
    """The outcome of one check: ``status`` is ``passed``, ``failed`` or ``skipped``."""

    check: str
    status: str
    message: str = ""


def skip_reason(method_cls: type[Method], check_name: str) -> str | None:
    """The reason ``method_cls`` gives for opting out of ``check_name``, if it does (validly)."""
    skips = getattr(method_cls, "conformance_skip", None)
    if not isinstance(skips, dict) or check_name == "check_opt_outs_have_reasons":
        return None
    reason = skips.get(check_name)
    return reason.strip() if isinstance(reason, str) and len(reason.strip()) >= 10 else None


def run_check(method_cls: type[Method], check: Callable[..., None], options: dict | None = None) -> CheckResult:
    """Run one check, turning its outcome into a :class:`CheckResult` (a crash is a failure)."""
    name = check.__name__
    reason = skip_reason(method_cls, name)
    if reason:
        return CheckResult(name, "skipped", f"opted out: {reason}")
    try:
        with single_thread():
            check(method_cls, options)
    except ConformanceError as exc:
        return CheckResult(name, "failed", str(exc))
    except CheckSkipped as exc:
        return CheckResult(name, "skipped", str(exc))
    except Exception as exc:  # noqa: BLE001 - a crash inside the method is reported as a failure of this check
        return CheckResult(name, "failed", f"raised {describe_exception(exc)}")
    return CheckResult(name, "passed")


def check_method(method: str | type[Method], *, checks: list[str] | None = None, options: dict | None = None,
                 raise_on_failure: bool = False) -> list[CheckResult]:
    """Run the conformance checks on a method class or registered name.

    :param checks: names of the checks to run (default: all, in :data:`CHECKS` order).
    :param options: option overrides on top of the method's ``conformance_options``.
    :param raise_on_failure: raise :class:`ConformanceError` listing the failures instead of returning.
    """
    from .plugin_manager import method_class

    method_cls = method_class(method)
    selected = CHECKS if checks is None else [_check_by_name(n) for n in checks]
    results = [run_check(method_cls, c, options) for c in selected]
    failures = [r for r in results if r.status == "failed"]
    if raise_on_failure and failures:
        raise ConformanceError("; ".join(f"{r.check}: {r.message}" for r in failures))
    return results


def _check_by_name(name: str) -> Callable[..., None]:
    if name not in CHECKS_BY_NAME:
        from .errors import UnknownNameError

        raise UnknownNameError("check", name, CHECKS_BY_NAME)
    return CHECKS_BY_NAME[name]

