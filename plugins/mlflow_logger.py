"""``--log mlflow``: every run as an MLflow run (``pip install 'mlrpl-bench[mlflow]'``).

MLflow is configured the usual way: ``MLFLOW_TRACKING_URI`` (a tracking server, a database, or
a local file store such as ``file:./mlruns`` -- MLflow 3 asks for ``MLFLOW_ALLOW_FILE_STORE=true``
with the latter) and ``MLFLOW_EXPERIMENT_NAME`` (default ``mlrpl-bench``). The MLflow run is named
after the run directory and tagged with the run's identity; its parameters are the flattened
configuration; each epoch logs the numeric epoch-log entries at step = epoch; the end of a run
logs the test and best-validation metrics (``test/<m>``, ``best_val/<m>``) and closes the run.
The MLflow run id is kept in ``<run dir>/mlflow_run_id``, so a resumed run continues it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from mlrpl_bench.hookspecs import hookimpl
from mlrpl_bench.loggers import enabled, final_metrics, flat_config, require, scalars

NAME = "mlflow"
RUN_ID_FILE = "mlflow_run_id"
#: mlflow's own limit on a parameter value's length.
_MAX_PARAM = 6000
_RUNS: dict[str, tuple[Any, str]] = {}


def _client():
    require("mlflow", NAME)
    from mlflow.tracking import MlflowClient

    return MlflowClient()


def _log(client, mlflow_run: str, values: dict[str, float], step: int) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    client.log_batch(mlflow_run, metrics=[Metric(k, v, now, step) for k, v in values.items()])


@hookimpl
def mlrpl_run_start(run):
    if not enabled(run, NAME):
        return
    client = _client()
    from mlflow.entities import Param

    out = Path(run["output_dir"])
    id_file = out / RUN_ID_FILE
    if id_file.exists():  # a resumed attempt continues the MLflow run of the interrupted one
        mlflow_run = id_file.read_text().strip()
        client.update_run(mlflow_run, status="RUNNING")
    else:
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "mlrpl-bench")
        experiment = client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment is not None else client.create_experiment(name)
        tags = {k: str(run[k]) for k in ("run_id", "method", "dataset", "setting", "known", "seed")}
        mlflow_run = client.create_run(experiment_id, run_name=out.name, tags=tags).info.run_id
        params = {**{k: run[k] for k in ("method", "dataset", "setting", "known", "seed")},
                  **flat_config(run.get("config", {}))}
        client.log_batch(mlflow_run, params=[Param(k, str(v)[:_MAX_PARAM]) for k, v in params.items()])
        out.mkdir(parents=True, exist_ok=True)
        id_file.write_text(mlflow_run + "\n")
    _RUNS[run["run_id"]] = (client, mlflow_run)


@hookimpl
def mlrpl_epoch_end(run, epoch, logs):
    entry = _RUNS.get(run["run_id"]) if enabled(run, NAME) else None
    if entry is not None:
        _log(*entry, {k: v for k, v in scalars(logs).items() if k != "epoch"}, epoch)


@hookimpl
def mlrpl_run_end(run, record, path):
    entry = _RUNS.pop(run["run_id"], None) if enabled(run, NAME) else None
    if entry is not None:
        client, mlflow_run = entry
        try:
            _log(client, mlflow_run, final_metrics(record), int(record.get("selection", {}).get("best_epoch", 0)))
            client.set_tag(mlflow_run, "record", path)
        finally:
            client.set_terminated(mlflow_run, status="FINISHED")
