"""Which experiment trackers a run reports to: the ``--log`` choice and what logger plugins share.

The built-in loggers (``plugins/tensorboard_logger.py``, ``wandb_logger.py``, ``mlflow_logger.py``)
are ordinary plugins on the run-level hooks. They are always registered but stay silent unless
the run asked for them: ``mlrpl-bench run --log tensorboard,wandb`` (or ``log = [...]`` in the
config file; the ``log`` field of :class:`~mlrpl_bench.run_config.RunConfig` validates the names)
puts the names in ``run["loggers"]`` of the mapping every run hook receives, and
each logger checks :func:`enabled`. The choice is not part of the run's configuration hash: where
a run is reported does not change what it computes.

A logger never loses a record: the harness calls run-level hooks through
:func:`mlrpl_bench.plugin_manager.call_run_event`, which catches a plugin's exception, warns once
and goes on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

from .errors import BenchError

#: The built-in loggers, by ``--log`` name.
LoggerName = Literal["tensorboard", "wandb", "mlflow"]

#: The pip extra that installs each logger's package (tensorboard is a core dependency).
EXTRAS = {"wandb": "wandb", "mlflow": "mlflow"}


def enabled(run: Mapping[str, Any], name: str) -> bool:
    """Whether the run asked for logger ``name`` (``--log``)."""
    return name in (run.get("loggers") or ())


def require(module: str, name: str):
    """Import a logger's package, or say which extra installs it (one line, exit 2)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise BenchError(f"--log {name}: the {module!r} package is not installed; "
                         f"pip install 'mlrpl-bench[{EXTRAS.get(name, name)}]'") from None


def check_available(names: tuple[str, ...]) -> tuple[str, ...]:
    """``names``, after checking that each chosen logger's package imports (before any training)."""
    modules = {"tensorboard": "torch.utils.tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
    for name in names:
        require(modules[name], name)
    return names


def flat_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested configuration as flat ``a/b`` keys with scalar values (trackers' parameter tables)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        if isinstance(value, Mapping):
            out.update(flat_config(value, f"{name}/"))
        elif isinstance(value, (bool, int, float, str)) or value is None:
            out[name] = "none" if value is None else value
        else:
            out[name] = str(value)
    return out


def scalars(logs: Mapping[str, Any]) -> dict[str, float]:
    """The numeric entries of an epoch log or a metrics dict (lists and text left out)."""
    return {k: float(v) for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def final_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """The record's test and selected-epoch validation metrics as ``test/<m>`` and ``best_val/<m>``."""
    metrics = record.get("metrics", {})
    out = {f"test/{k}": v for k, v in scalars(metrics.get("test", {})).items()}
    out.update({f"best_val/{k}": v for k, v in scalars(metrics.get("val", {})).items()})
    return out
