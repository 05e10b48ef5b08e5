"""A run's identity: the :class:`Cell` one (known, seed) run of a prepared configuration is, where
it files its outputs, its fingerprint, and the record already filed for it.

A :class:`Cell` carries everything a single run needs -- the prepared configuration, the loaded
data, the known proportion and seed, and the :class:`Station` it runs on (device, distributed
context, output folder, run-level hooks, log) -- so the functions of the run path
(:mod:`.training`, :mod:`.filing`, :mod:`.single_run`, :mod:`.tuning`) take a cell instead of a
dozen loose values. Its run id, run folder and record path are computed once, when it is made
(:meth:`Cell.of`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import distributed as D
from .atomic import exclusive_lock
from .data.base import DatasetSplit
from .errors import BenchError
from .results import read_record, to_json_safe
from .run_config import PreparedRun, TrainConfig
from .schema import diff_fields


@dataclass
class SweepData:
    """What every run of a sweep shares: the dataset and its loaded splits and word vectors."""

    dataset: Any
    train_split: DatasetSplit
    test_split: DatasetSplit
    embeddings: np.ndarray


class _NoHooks:
    """Stands in for ``pm.hook`` when a caller (the conformance kit) runs without run-level hooks."""

    def __getattr__(self, name: str) -> Callable[..., list]:
        return lambda **kwargs: []


@dataclass(frozen=True)
class Station:
    """Where this process runs cells: its device, distributed context, output folder, run-level
    hooks (``pm.hook``; None calls none) and log."""

    device: torch.device
    dist: D.DistInfo = field(default_factory=D.DistInfo)
    output: Path = Path("runs")
    hooks: Any = None
    log: Callable[[str], None] = print

    def __post_init__(self) -> None:
        if self.hooks is None:
            object.__setattr__(self, "hooks", _NoHooks())

    @property
    def main_log(self) -> Callable[[str], None]:
        """The log on the main process; silence on the others."""
        return self.log if self.dist.is_main else (lambda _: None)


@dataclass(frozen=True)
class Cell:
    """One (known, seed) run of ``prepared`` on ``data``, at ``station``.

    ``run_dir`` is where training writes (epoch log, checkpoint): the run's own folder, or a
    tuning candidate's folder inside it (``dataclasses.replace(cell, prepared=..., run_dir=...)``
    keeps the run's id and record path).

    :ivar build_backbone: ``(weights, freeze) -> nn.Module`` instead of the registered backbone's.
    :ivar observe: called with ``(method, hidden)`` after training (the conformance kit searches
        what the method holds for the hidden truths named in ``hidden``).
    """

    prepared: PreparedRun
    data: SweepData
    known: float
    seed: int
    station: Station
    run_id: str
    run_dir: Path
    record_path: Path
    build_backbone: Callable | None = None
    observe: Callable[..., None] | None = None

    @classmethod
    def of(cls, prepared: PreparedRun, data: SweepData, known: float, seed: int, station: Station,
           **extras: Any) -> Cell:
        """The cell of ``(known, seed)``, its paths computed here, once (``extras``: ``build_backbone``, ``observe``)."""
        run_id, run_dir, record_path = cell_paths(prepared, station.output, known, seed)
        return cls(prepared, data, known, seed, station, run_id, run_dir, record_path, **extras)

    device = property(lambda self: self.station.device, doc="The device this cell trains on.")
    dist = property(lambda self: self.station.dist, doc="The distributed context of this process.")
    output = property(lambda self: self.station.output, doc="The output folder of the sweep.")
    hooks = property(lambda self: self.station.hooks, doc="Run-level hooks (``pm.hook``).")
    log = property(lambda self: self.station.log, doc="Where progress lines go.")


def cell_paths(prepared: PreparedRun, output: Path, known: float, seed: int) -> tuple[str, Path, Path]:
    """``(run_id, run_dir, record_path)`` of one cell (the run id is computed here, once)."""
    run_id = prepared.run_id(known, seed)
    run_dir = output / prepared.run_dir_name(run_id)
    return run_id, run_dir, run_dir / "record.json"


def run_fingerprint(cell: Cell, protocol) -> dict[str, Any]:
    """Everything that defines one run, as a JSON-like dict (stored in its checkpoints)."""
    prepared, data = cell.prepared, cell.data
    cls = prepared.method_cls
    return {
        "method": {"name": cls.name, "version": cls.version, "options": dataclasses.asdict(prepared.method_options)},
        "profile": prepared.config.profile,
        "train": dataclasses.asdict(prepared.train),
        "dataset": {"name": prepared.dataset_name, "options": prepared.dataset_options_dict(),
                    "train": data.train_split.fingerprint(), "test": data.test_split.fingerprint()},
        "protocol": {"setting": prepared.config.setting, "known": float(cell.known), "seed": int(cell.seed),
                     "scheme": prepared.config.scheme, "mask_fingerprint": protocol.mask_fingerprint,
                     "val_fingerprint": protocol.val_fingerprint},
        "backbone_weights_sha256": prepared.weights_sha256,
        "word_embeddings": prepared.config.word_embeddings,
    }


def existing_record(prepared: PreparedRun, record_path: Path, run_id: str, *, dist: D.DistInfo,
                    log: Callable[[str], None]) -> dict[str, Any] | None:
    """The record already filed for this run and configuration (None when there is none, or with
    --overwrite); a record of another configuration at the same place is refused."""
    if not record_path.exists() or prepared.config.overwrite:
        return None
    try:
        existing = read_record(record_path)
    except BenchError as exc:
        raise BenchError(f"{exc}; the run's record is damaged: pass --overwrite to run it again, or move it away") from None
    if existing.get("config_hash") == prepared.config_hash:
        if dist.is_main:
            log(f"{run_id}: already done ({record_path}), skipping; pass --overwrite to run it again")
        return existing
    differences = diff_fields(_configuration_of(existing), _configuration_of(_record_stub(prepared)),
                              old="record", new="this run")
    shown = f" ({'; '.join(differences[:3])}{'; ...' if len(differences) > 3 else ''})" if differences else ""
    raise BenchError(f"{record_path}: a record from a different configuration exists{shown}; pass --overwrite to "
                     "replace it or choose another --output")


def existing_record_of(cell: Cell) -> dict[str, Any] | None:
    """:func:`existing_record` of a cell."""
    return existing_record(cell.prepared, cell.record_path, cell.run_id, dist=cell.dist, log=cell.log)


def _record_stub(prepared: PreparedRun) -> dict[str, Any]:
    """The configuration blocks a record of ``prepared`` would have (for naming what differs)."""
    return {"method": {"name": prepared.method_cls.name, "version": prepared.method_cls.version,
                       "options": dataclasses.asdict(prepared.method_options),
                       "profile": prepared.config.profile or "default"},
            "dataset": {"options": prepared.dataset_options_dict()},
            "train": {**dataclasses.asdict(prepared.train), "backbone_weights_sha256": prepared.weights_sha256},
            "tuning": {"grid": prepared.tune_grid_lists(), "chosen_on_seed": prepared.config.tune_seed}
            if prepared.tune_grid else None}


def _configuration_of(record: dict[str, Any]) -> dict[str, Any]:
    """The parts of a record that its configuration decides (JSON values, for :func:`diff_fields`)."""
    method, train = record.get("method") or {}, record.get("train") or {}
    tuning = record.get("tuning") or {}
    return to_json_safe({
        "method": {k: method.get(k) for k in ("name", "version", "options", "profile")},
        "dataset.options": (record.get("dataset") or {}).get("options"),
        "train": {k: train.get(k) for k in (*TrainConfig.field_names(), "backbone_weights_sha256") if k in train},
        "tuning.grid": tuning.get("grid"), "tuning.chosen_on_seed": tuning.get("chosen_on_seed")})


@contextlib.contextmanager
def cell_lock(cell: Cell):
    """One process at a time per run directory: a second ``mlrpl-bench run`` of the same run into
    the same output is refused at once, instead of both writing its checkpoint, epoch log and
    scores (the lock file sits beside the run directory, so a refused run creates nothing)."""
    if not cell.dist.is_main:
        yield
        return
    with exclusive_lock(cell.output / f".{cell.run_dir.name}.lock", what=str(cell.run_dir),
                        fix="wait for that run to finish, or choose another --output"):
        yield
