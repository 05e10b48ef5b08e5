"""Every hook of mlrpl-bench, in one place.

Two kinds of hooks:

* **registration hooks** (``mlrpl_methods``, ``mlrpl_datasets``, ``mlrpl_backbones``) are called
  once when the plugin manager is built; each returns a list of classes/specs to add to a registry.
  Built-in plugins answer them exactly like third-party plugins do.
* **run-level events** (``mlrpl_run_start`` … ``mlrpl_sweep_end``) are called by the harness while
  it trains; loggers and reporters implement them. Per-step behaviour of a method lives on the
  :class:`~mlrpl_bench.method.Method` object, not in hooks.

Every hook is documented in CONTRIBUTING.md (a test fails when one is not).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .data.base import Dataset
    from .method import Method
    from .models.backbones import BackboneSpec

PROJECT_NAME = "mlrpl_bench"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# ---------------------------------------------------------------------------------------------
# Registration hooks
# ---------------------------------------------------------------------------------------------


@hookspec
def mlrpl_methods() -> list[type[Method]]:
    """Return the method classes (subclasses of :class:`mlrpl_bench.method.Method`) this plugin adds.

    Called once when the plugin manager is built. Each class's ``name`` must be unique across
    all plugins.

    :return: a list of ``Method`` subclasses.
    """


@hookspec
def mlrpl_datasets() -> list[type[Dataset]]:
    """Return the dataset classes (subclasses of :class:`mlrpl_bench.data.base.Dataset`) this plugin adds.

    Called once when the plugin manager is built. Each class's ``name`` must be unique.

    :return: a list of ``Dataset`` subclasses.
    """


@hookspec
def mlrpl_backbones() -> list[BackboneSpec]:
    """Return the backbones (:class:`mlrpl_bench.models.backbones.BackboneSpec`) this plugin adds.

    Called once when the plugin manager is built. A spec names a factory that builds an
    ``nn.Module`` mapping images to feature maps and says how many channels they have.

    :return: a list of ``BackboneSpec``.
    """


# ---------------------------------------------------------------------------------------------
# Run-level events (loggers, reporters)
# ---------------------------------------------------------------------------------------------


@hookspec
def mlrpl_run_start(run: dict[str, Any]) -> None:
    """Called on rank 0 when one run (method, dataset, setting, known proportion, seed) starts.

    :param run: the run's identity and resolved configuration (``run_id``, ``method``,
        ``dataset``, ``setting``, ``known``, ``seed``, ``config``, ``output_dir``), ``resumed``
        (True when the run continues from its checkpoint: its earlier epochs are not reported again)
        and ``loggers`` (the built-in trackers chosen with ``--log``, see :mod:`mlrpl_bench.loggers`).
    """


@hookspec
def mlrpl_epoch_end(run: dict[str, Any], epoch: int, logs: dict[str, float]) -> None:
    """Called on rank 0 after each epoch's validation.

    :param run: the same mapping as passed to :func:`mlrpl_run_start`.
    :param epoch: the 0-based epoch that just finished.
    :param logs: the epoch's training losses (``train/<name>``), validation metrics
        (``val/<metric>``), learning rate (``lr``) and wall time in seconds (``time``).
    """


@hookspec
def mlrpl_run_end(run: dict[str, Any], record: dict[str, Any], path: str) -> None:
    """Called on rank 0 after a run's results record has been written.

    :param run: the same mapping as passed to :func:`mlrpl_run_start`.
    :param record: the results record (see :mod:`mlrpl_bench.results`).
    :param path: where the record was written.
    """


@hookspec
def mlrpl_sweep_end(records: list[dict[str, Any]]) -> None:
    """Called on rank 0 once every run of a ``mlrpl-bench run`` invocation has finished.

    :param records: the results records of the sweep, in run order.
    """
