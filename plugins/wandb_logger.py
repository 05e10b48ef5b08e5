"""``--log wandb``: every run as a Weights & Biases run (``pip install 'mlrpl-bench[wandb]'``).

W&B is configured the usual way, through its environment: ``WANDB_PROJECT`` (default
``mlrpl-bench``), ``WANDB_ENTITY``, ``WANDB_MODE=offline`` to write runs locally and
``wandb sync`` them later (how the tests run it: nothing leaves the machine). The W&B run is
named after the run directory; its id is derived from that directory, so a run resumed from its
checkpoint continues the same W&B run. The run's configuration (flattened) is the W&B config;
each epoch logs the numeric epoch-log entries at step = epoch; the end of a run puts the test and
best-validation metrics (``test/<m>``, ``best_val/<m>``) in the W&B summary.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from mlrpl_bench.hookspecs import hookimpl
from mlrpl_bench.loggers import enabled, final_metrics, flat_config, require, scalars

NAME = "wandb"
_RUNS: dict[str, Any] = {}


def wandb_run_id(output_dir: str) -> str:
    """A W&B run id that is the same for every attempt of one run directory."""
    return hashlib.sha256(str(Path(output_dir).resolve()).encode()).hexdigest()[:16]


@hookimpl
def mlrpl_run_start(run):
    if not enabled(run, NAME):
        return
    wandb = require("wandb", NAME)
    out = Path(run["output_dir"])
    identity = {k: run[k] for k in ("method", "dataset", "setting", "known", "seed")}
    _RUNS[run["run_id"]] = wandb.init(
        project=os.environ.get("WANDB_PROJECT", "mlrpl-bench"), name=out.name, id=wandb_run_id(run["output_dir"]),
        resume="allow", dir=str(out), config={**identity, **flat_config(run.get("config", {}))},
        tags=[run["method"], run["dataset"], run["setting"]], reinit="create_new")


@hookimpl
def mlrpl_epoch_end(run, epoch, logs):
    wb_run = _RUNS.get(run["run_id"]) if enabled(run, NAME) else None
    if wb_run is not None:
        wb_run.log({k: v for k, v in scalars(logs).items() if k != "epoch"}, step=epoch)


@hookimpl
def mlrpl_run_end(run, record, path):
    wb_run = _RUNS.pop(run["run_id"], None) if enabled(run, NAME) else None
    if wb_run is not None:
        try:
            wb_run.summary.update({**final_metrics(record), "record": path})
        finally:
            wb_run.finish()
