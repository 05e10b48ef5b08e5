"""``--log tensorboard``: every run's epochs, final metrics and hyper-parameters as TensorBoard events.

Events go to ``<run dir>/tensorboard/`` beside the record, so ``tensorboard --logdir runs`` shows
every run of an output directory, named by its run directory. Per epoch: each numeric entry of
the epoch log (``train/<loss>``, ``val/<metric>``, ``lr``, ``time``) at step = epoch. At the end:
the test and best-validation metrics (``test/<m>``, ``best_val/<m>``) at step = best epoch, and
the HParams plugin's summary (flattened configuration plus the run's identity; metrics
``test/mAP`` ...), so that runs can be compared in the HParams dashboard.

The writer is opened at the first epoch this process reports, with ``purge_step`` at that
epoch: a run resumed from a checkpoint drops the events an interrupted attempt wrote for the
epochs it trains again, so every step appears once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlrpl_bench.hookspecs import hookimpl
from mlrpl_bench.loggers import enabled, final_metrics, flat_config, scalars

NAME = "tensorboard"
#: run_id -> open SummaryWriter (one process trains its runs one after another).
_WRITERS: dict[str, Any] = {}


def _writer(run: dict, first_epoch: int):
    writer = _WRITERS.get(run["run_id"])
    if writer is None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(Path(run["output_dir"]) / "tensorboard"), purge_step=first_epoch)
        _WRITERS[run["run_id"]] = writer
    return writer


def hparams(run: dict) -> dict[str, Any]:
    """The run's configuration and identity as TensorBoard hyper-parameters (scalars and text)."""
    identity = {k: run[k] for k in ("method", "dataset", "setting", "known", "seed")}
    return {**identity, **flat_config(run.get("config", {}))}


@hookimpl
def mlrpl_epoch_end(run, epoch, logs):
    if not enabled(run, NAME):
        return
    writer = _writer(run, epoch)
    for key, value in scalars(logs).items():
        if key != "epoch":
            writer.add_scalar(key, value, global_step=epoch)
    writer.flush()


@hookimpl
def mlrpl_run_end(run, record, path):
    if not enabled(run, NAME):
        return
    from torch.utils.tensorboard.summary import hparams as hparams_summary

    best_epoch = int(record.get("selection", {}).get("best_epoch", 0))
    writer = _writer(run, best_epoch)
    try:
        metrics = final_metrics(record)
        for key, value in metrics.items():
            writer.add_scalar(key, value, global_step=best_epoch)
        # Written into this run's own event file (SummaryWriter.add_hparams would open a sub-run).
        for summary in hparams_summary(hparams(run), {k: v for k, v in metrics.items() if k.startswith("test/")}):
            writer.file_writer.add_summary(summary)
    finally:
        writer.close()
        _WRITERS.pop(run["run_id"], None)
