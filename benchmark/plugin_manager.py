"""The plugin manager and the registries built from it.

Built-in plugins are the modules in :data:`DEFAULT_PLUGINS`; they are registered exactly like
third-party plugins, which are found through the ``mlrpl_bench`` entry-point group and loaded
after them. ``MLRPL_BENCH_LOAD_PLUGINS`` (comma-separated plugin names, empty for none) restricts
which third-party plugins load; ``MLRPL_BENCH_DISABLE_ENTRYPOINTS=1`` loads none.
"""

from __future__ import annotations

import functools
import importlib
import os
from dataclasses import dataclass
from typing import Any

import pluggy

from . import __version__, hookspecs
from .errors import BenchError, UnknownNameError

ENTRY_POINT_GROUP = "mlrpl_bench"

#: Modules that implement the built-in hooks, registered in this order.
DEFAULT_PLUGINS = [
    "mlrpl_bench.models.backbones",
    "mlrpl_bench.data.builtin",
    "mlrpl_bench.data.voc_scenes",
    "mlrpl_bench.data.voc",
    "mlrpl_bench.data.coco",
    "mlrpl_bench.data.vg",
    "mlrpl_bench.data.nuswide",
    "mlrpl_bench.data.cub",
    "mlrpl_bench.data.openimages",
    "mlrpl_bench.data.hf",
    "mlrpl_bench.data.folder",
    "mlrpl_bench.plugins.bce",
    "mlrpl_bench.plugins.partial_bce",
    "mlrpl_bench.plugins.ipl",
    "mlrpl_bench.plugins.dsrb",
    "mlrpl_bench.plugins.bce_ls",
    "mlrpl_bench.plugins.focal",
    "mlrpl_bench.plugins.asl",
    "mlrpl_bench.plugins.an",
    "mlrpl_bench.plugins.an_ls",
    "mlrpl_bench.plugins.wan",
    "mlrpl_bench.plugins.epr",
    "mlrpl_bench.plugins.role",
    "mlrpl_bench.plugins.curriculum",
    "mlrpl_bench.plugins.ll_r",
    "mlrpl_bench.plugins.ip_mixup",
    "mlrpl_bench.plugins.fm_mixup",
    "mlrpl_bench.plugins.ssgrl",
    "mlrpl_bench.plugins.ssgrl_pl",
    "mlrpl_bench.plugins.sst",
    "mlrpl_bench.plugins.hst",
    "mlrpl_bench.plugins.tensorboard_logger", "mlrpl_bench.plugins.wandb_logger", "mlrpl_bench.plugins.mlflow_logger",
]


@functools.lru_cache(maxsize=1)
def get_plugin_manager() -> pluggy.PluginManager:
    """Build (once) the plugin manager with built-in and entry-point plugins."""
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for module_name in DEFAULT_PLUGINS:
        module = importlib.import_module(module_name)
        pm.register(module, name=module_name)
    if os.environ.get("MLRPL_BENCH_DISABLE_ENTRYPOINTS") != "1":
        allowed = os.environ.get("MLRPL_BENCH_LOAD_PLUGINS")
        if allowed is None:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        else:
            for name in filter(None, (s.strip() for s in allowed.split(","))):
                pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=name)
    pm.check_pending()
    return pm


@dataclass(frozen=True)
class RegistryEntry:
    """One registered item and where it came from."""

    kind: str
    name: str
    obj: Any
    plugin: str
    distribution: str
    version: str


def _plugin_source(pm: pluggy.PluginManager, plugin: object) -> tuple[str, str, str]:
    plugin_name = pm.get_name(plugin) or repr(plugin)
    for plug, dist in pm.list_plugin_distinfo():
        if plug is plugin:
            return plugin_name, dist.metadata["name"], dist.version
    return plugin_name, "mlrpl-bench", __version__


def _collect(kind: str, hook_name: str, name_of) -> dict[str, RegistryEntry]:
    pm = get_plugin_manager()
    hook = getattr(pm.hook, hook_name)
    entries: dict[str, RegistryEntry] = {}
    for impl in hook.get_hookimpls():
        plugin_name, dist, version = _plugin_source(pm, impl.plugin)
        for obj in impl.function() or []:
            name = name_of(obj)
            if not name:
                raise BenchError(f"plugin {plugin_name}: a {kind} without a name; set its `name`")
            if name in entries:
                raise BenchError(f"{kind} name {name!r} is registered twice (by {entries[name].plugin} and {plugin_name}); rename one")
            entries[name] = RegistryEntry(kind, name, obj, plugin_name, dist, version)
    # pluggy calls the most recently registered plugin first; present built-ins first.
    return dict(sorted(entries.items(), key=lambda kv: (kv[1].distribution != "mlrpl-bench", kv[0])))


@functools.lru_cache(maxsize=1)
def method_registry() -> dict[str, RegistryEntry]:
    return _collect("method", "mlrpl_methods", lambda cls: getattr(cls, "name", ""))


@functools.lru_cache(maxsize=1)
def dataset_registry() -> dict[str, RegistryEntry]:
    return _collect("dataset", "mlrpl_datasets", lambda cls: getattr(cls, "name", ""))


@functools.lru_cache(maxsize=1)
def backbone_registry() -> dict[str, RegistryEntry]:
    return _collect("backbone", "mlrpl_backbones", lambda spec: getattr(spec, "name", ""))


def get_method_entry(name: str) -> RegistryEntry:
    """The registry entry (class, plugin, distribution) of method ``name``; :class:`UnknownNameError`
    lists the choices."""
    reg = method_registry()
    if name not in reg:
        raise UnknownNameError("plugin", name, reg)
    return reg[name]


def get_method(name: str):
    """The method class registered as ``name``; :class:`UnknownNameError` lists the choices."""
    return get_method_entry(name).obj


def method_class(method) -> type:
    """A method class from a class or a registered name (:class:`UnknownNameError` for unknown names)."""
    return get_method(method) if isinstance(method, str) else method


def entry_for_class(method_cls: type) -> RegistryEntry:
    """The registry entry of ``method_cls`` if it is registered, else an entry naming its module
    (a class given as ``module:Class`` that is not installed yet)."""
    try:
        entry = method_registry().get(getattr(method_cls, "name", ""))
    except BenchError:
        entry = None
    if entry is not None and entry.obj is method_cls:
        return entry
    return RegistryEntry("method", str(getattr(method_cls, "name", "")), method_cls, method_cls.__module__, "unknown", "0")


def get_dataset(name: str):
    """The dataset class registered as ``name``."""
    reg = dataset_registry()
    if name not in reg:
        raise UnknownNameError("dataset", name, reg)
    return reg[name].obj


def get_backbone(name: str):
    """The :class:`~mlrpl_bench.models.backbones.BackboneSpec` registered as ``name``."""
    reg = backbone_registry()
    if name not in reg:
        raise UnknownNameError("backbone", name, reg)
    return reg[name].obj


def reset_registries() -> None:
    """Forget the plugin manager and registries (tests that install plugins call this)."""
    get_plugin_manager.cache_clear()
    method_registry.cache_clear()
    dataset_registry.cache_clear()
    backbone_registry.cache_clear()


#: Plugins whose run-level hook already failed in this process (each is warned about once).
_FAILED_RUN_HOOKS: set[str] = set()


def call_run_event(hook_name: str, **kwargs: Any) -> None:
    """Call a run-level event (``mlrpl_run_start`` ...) on every plugin, each in isolation.

    A plugin that raises (a logger whose tracker is down, a full disk) must not stop the run nor
    lose its record: its exception is caught, reported once per plugin on stderr, and the other
    plugins and the run go on. ``KeyboardInterrupt`` and ``SystemExit`` (a preempted job being
    requeued) still propagate.
    """
    import sys

    hook = getattr(get_plugin_manager().hook, hook_name)
    impls = hook.get_hookimpls()
    if any(impl.hookwrapper or impl.wrapper for impl in impls):  # wrappers need pluggy's own call loop
        calls = [("hook wrappers", lambda: hook(**kwargs))]
    else:  # pluggy's order: last registered first
        calls = [(impl.plugin_name, lambda impl=impl: impl.function(*[kwargs[a] for a in impl.argnames]))
                 for impl in reversed(impls)]
    for plugin_name, call in calls:
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - any failure of a reporter is the reporter's, not the run's
            if plugin_name not in _FAILED_RUN_HOOKS:
                _FAILED_RUN_HOOKS.add(plugin_name)
                detail = str(exc).splitlines()[0][:200] if str(exc) else ""
                print(f"warning: plugin {plugin_name} failed in {hook_name} ({type(exc).__name__}: {detail}); "
                      f"the run goes on and its later failures are not reported", file=sys.stderr)


class RunEvents:
    """``pm.hook`` for run-level events, each call going through :func:`call_run_event` (a failing
    reporter never stops a run): ``run_events().mlrpl_run_start(run=...)``."""

    def __getattr__(self, hook_name: str):
        if not hook_name.startswith("mlrpl_"):
            raise AttributeError(hook_name)
        return lambda **kwargs: call_run_event(hook_name, **kwargs)


def run_events() -> RunEvents:
    """The run-level events of the current plugin manager, failure-isolated per plugin."""
    return RunEvents()

