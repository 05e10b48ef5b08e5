"""The sweep of one ``mlrpl-bench run``: every planned (known proportion, seed) of a prepared
configuration, on one dataset, on this process's device.

The configuration is typed and resolved by :mod:`mlrpl_bench.run_config` (:func:`prepare_run`);
one run -- protocol, method, engine, record -- is :func:`mlrpl_bench.single_run.run_single`;
this module loads the data once, picks the device and joins the process group, and walks the
sweep (one run per cell, or one run per tuning candidate with ``--tune``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from . import distributed as D
from . import plugin_manager as P
from .errors import BenchError
from .run_config import DEFAULT_DATASET, PreparedRun, RunConfig, TrainConfig, prepare_run  # noqa: F401 - re-exported
from .single_run import SweepData, run_single
from .vocabulary import DEFAULT_PROPORTIONS  # noqa: F401 - re-exported


def pick_device(name: str) -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise BenchError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None


def planned_runs(config: RunConfig) -> list[tuple[float, int]]:
    """The (known, seed) pairs of this sweep, restricted to this shard (deterministic order)."""
    return config.planned_runs()


def load_sweep_data(prepared: PreparedRun) -> SweepData:
    """Open the dataset, read both splits and the word vectors (once per sweep)."""
    from .data.embeddings import load_word_embeddings

    config = prepared.config
    dataset = prepared.dataset_cls(config.data_root, prepared.dataset_options)
    train_split = dataset.load_split("train")
    test_split = dataset.load_split("test")
    if train_split.class_names != test_split.class_names:
        raise BenchError(f"dataset {dataset.name!r}: train and test splits have different class lists")
    embeddings = load_word_embeddings(train_split.class_names, config.word_embeddings)
    return SweepData(dataset, train_split, test_split, embeddings)


def run_sweep(config: RunConfig | PreparedRun) -> list[dict[str, Any]]:
    """Run every planned (known, seed) pair and return their records (rank 0; [] elsewhere)."""
    prepared = config if isinstance(config, PreparedRun) else prepare_run(config)
    config = prepared.config
    device = pick_device(config.device)
    dist = D.init_from_env(device.type)
    if device.type == "cuda" and dist.enabled:
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    output = config.output_dir
    if dist.is_main:
        _check_writable(output)
    from .loggers import check_available

    check_available(config.log)  # a chosen tracker's package must import before anything trains
    data = load_sweep_data(prepared)
    events = P.run_events()
    records = []
    for known, seed in config.planned_runs():
        if prepared.tune_grid:
            from .tuning import run_tuned

            record, path = run_tuned(prepared, data, known, seed, device=device, dist=dist, output=output,
                                     hooks=events)
        else:
            record, path = run_single(prepared, data, known, seed, device=device, dist=dist, output=output, hooks=events)
        if record is not None and dist.is_main:
            records.append(record)
    if dist.is_main:
        events.mlrpl_sweep_end(records=records)
    return records


def _check_writable(output: Path) -> None:
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        from .atomic import not_a_folder

        raise BenchError(f"--output {output}: not a writable directory ({not_a_folder(output) or exc.strerror or exc}); "
                         "choose another --output") from None
