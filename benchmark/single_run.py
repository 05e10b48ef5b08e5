"""One run: protocol -> method context -> engine -> results record, for one (known, seed).

Everything here works on a :class:`~mlrpl_bench.run_config.PreparedRun` (the resolved
configuration) and the loaded data; :mod:`mlrpl_bench.runner` drives the sweep over
(known, seed) pairs, and the conformance kit calls :func:`run_single` on its tiny in-memory
dataset, so both go through the same path.

Where the hidden truth lives: the full training labels (in the dataset split), the validation
targets and the test targets stay in this module's frames and in the engine. The method gets a
:class:`~mlrpl_bench.method.MethodContext` whose every member is built from the *partial*
labels and the images only (:func:`method_context`); nothing it receives holds a reference to
the split, the engine or the targets.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import distributed as D
from .atomic import AlreadyExists, atomic_write_bytes, exclusive_lock
from .checkpoint import check_resumable, load_checkpoint
from .data.base import DatasetSplit
from .data.loading import FeatureBatches, SplitRows
from .engine import Engine, EngineConfig
from .environment import device_description, environment_info
from .errors import BenchError
from .method import MethodContext
from .models.backbones import FrozenBackbone
from .results import RunOutcome, build_record, read_record, to_json_safe, write_record
from .run_config import PreparedRun, TrainConfig
from .schema import diff_fields
from .scores import should_save as should_save_scores, write_scores
from .seeds import method_generator, seed_model_init
from .vocabulary import known_text


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


def run_fingerprint(prepared: PreparedRun, data: SweepData, protocol, known: float, seed: int) -> dict[str, Any]:
    """Everything that defines one run, as a JSON-like dict (stored in its checkpoints)."""
    cls = prepared.method_cls
    return {
        "method": {"name": cls.name, "version": cls.version, "options": dataclasses.asdict(prepared.method_options)},
        "profile": prepared.config.profile,
        "train": dataclasses.asdict(prepared.train),
        "dataset": {"name": prepared.dataset_name, "options": prepared.dataset_options_dict(),
                    "train": data.train_split.fingerprint(), "test": data.test_split.fingerprint()},
        "protocol": {"setting": prepared.config.setting, "known": float(known), "seed": int(seed),
                     "scheme": prepared.config.scheme, "mask_fingerprint": protocol.mask_fingerprint,
                     "val_fingerprint": protocol.val_fingerprint},
        "backbone_weights_sha256": prepared.weights_sha256,
        "word_embeddings": prepared.config.word_embeddings,
    }


def method_context(*, train_labels: np.ndarray, feature_rows, class_names: list[str], embeddings: np.ndarray,
                   epochs: int, batch_size: int, setting: str, known: float, seed: int, device: torch.device,
                   dist: D.DistInfo, workers: int = 0, bad_images: list[str] | None = None,
                   progress: bool = False) -> MethodContext:
    """The method's context, built from partial labels and images only (see the module docstring)."""
    steps = max(1, -(-len(train_labels) // batch_size))
    return MethodContext(
        num_classes=len(class_names), class_names=list(class_names), train_labels=train_labels,
        word_embeddings=embeddings, epochs=epochs, steps_per_epoch=steps, setting=setting, known=known, seed=seed,
        device=device, generator=method_generator(seed),
        feature_batches=FeatureBatches(feature_rows, batch_size=batch_size, device=device, rank=dist.rank,
                                       world_size=dist.world_size, workers=workers, bad_images=bad_images,
                                       progress=progress),
        all_gather=functools.partial(D.all_gather_cat, info=dist), world_size=dist.world_size)


def cell_paths(prepared: PreparedRun, output: Path, known: float, seed: int) -> tuple[str, Path, Path]:
    """``(run_id, run_dir, record_path)`` of one cell (the run id is computed here, once)."""
    run_id = prepared.run_id(known, seed)
    run_dir = output / prepared.run_dir_name(run_id)
    return run_id, run_dir, run_dir / "record.json"


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


@dataclass
class CellRun:
    """What training one cell gave (before a record is made of it)."""

    result: Any            # the engine's TrainResult
    protocol: Any          # the ProtocolSplit
    seconds: float
    started: datetime
    run_info: dict[str, Any]
    precision_used: str = "fp32"  # what the engine's precision ("auto") became on this device


def initial_model(prepared: PreparedRun, ctx: MethodContext, build_backbone: Callable | None = None):
    """``(method, backbone, model)`` of a run before any training, on ``ctx.device``.

    The model-initialisation stream of ``ctx.seed`` (:func:`mlrpl_bench.seeds.seed_model_init`,
    never a raw seed) is seeded first; the method, the backbone and the model then draw from it,
    in this order. On the frozen track the backbone is wrapped in :class:`FrozenBackbone`.
    """
    train = prepared.train
    frozen = train.track == "frozen"
    seed_model_init(ctx.seed)
    method = prepared.method_cls(prepared.method_options, ctx)
    build = build_backbone or prepared.backbone_spec.build
    backbone = build(train.backbone_weights, "all" if frozen else train.freeze_backbone)
    if frozen:
        backbone = FrozenBackbone(backbone)
    return method, backbone, method.build_model(backbone).to(ctx.device)


def run_transforms(dataset, train) -> tuple[Any, Any]:
    """``(train transform, evaluation transform)`` of a run: the dataset's, except on the frozen
    track, where training sees the evaluation transform too (a frozen backbone's outputs on
    un-augmented images are what the feature cache stores, and the no-cache variant must see the
    same inputs to be comparable). The finetune track trains on the dataset's augmentation."""
    eval_tf = dataset.transforms(train.image_size, False)
    if train.track == "frozen":
        return eval_tf, eval_tf
    return dataset.transforms(train.image_size, True), eval_tf


def train_cell(prepared: PreparedRun, data: SweepData, run_id: str, known: float, seed: int, *, device: torch.device,
               dist: D.DistInfo, output: Path, run_dir: Path, hooks: Any = None, build_backbone: Callable | None = None,
               log: Callable[[str], None] = print, observe: Callable[..., None] | None = None,
               score_test: bool = True, resume_state: dict[str, Any] | None = None) -> CellRun:
    """Protocol -> method context -> engine for one (known, seed), in ``run_dir`` (epoch log, checkpoint).

    :param resume_state: a checkpoint to continue from regardless of ``--resume`` (its fingerprint
        is still checked); by default ``--resume`` decides.
    """
    from .metrics import compute_metrics
    from .protocol import prepare_protocol

    config, train = prepared.config, prepared.train
    hooks = hooks if hooks is not None else _NoHooks()
    method_cls = prepared.method_cls
    train_split, test_split = data.train_split, data.test_split
    protocol = prepare_protocol(train_split.labels, setting=config.setting, known=known, seed=seed, scheme=config.scheme,
                                val_fraction=train.val_fraction, key=train_split.fingerprint(),
                                cache_dir=(output / "_protocol") if dist.is_main else None)
    train_labels = protocol.partial[protocol.train_idx]
    val_targets = train_split.labels[protocol.val_idx]
    test_targets = test_split.labels
    fingerprint = run_fingerprint(prepared, data, protocol, known, seed)
    checkpoint_path = run_dir / "checkpoint.pt"
    if resume_state is not None:
        check_resumable(checkpoint_path, resume_state, fingerprint)
    else:
        resume_state = _resume_state(checkpoint_path, fingerprint, resume=config.resume, run_id=run_id,
                                     finished=(run_dir / "record.json").exists(),
                                     log=log if dist.is_main else (lambda _: None))

    dataset = data.dataset
    train_tf, eval_tf = run_transforms(dataset, train)
    frozen = train.track == "frozen"
    skip = config.skip_bad_images
    train_rows = SplitRows(train_split, protocol.train_idx, train_labels, train_tf, skip)
    feature_rows = SplitRows(train_split, protocol.train_idx, train_labels, eval_tf, skip)
    val_rows = SplitRows(train_split, protocol.val_idx, val_targets, eval_tf, skip)
    test_rows = SplitRows(test_split, np.arange(len(test_split)), test_targets, eval_tf, skip)

    bad_images: list[str] = []
    ctx = method_context(train_labels=train_labels, feature_rows=feature_rows, class_names=train_split.class_names,
                         embeddings=data.embeddings, epochs=train.epochs, batch_size=train.batch_size,
                         setting=config.setting, known=known, seed=seed, device=device, dist=dist,
                         workers=train.workers, bad_images=bad_images, progress=config.progress)
    method, backbone, model = initial_model(prepared, ctx, build_backbone)
    if frozen and train.feature_cache:
        from .feature_cache import cached_rows

        train_rows, val_rows, test_rows = cached_rows(
            backbone, train, train_split, test_split, protocol, train_labels, val_targets, eval_tf, device,
            config.progress and dist.is_main, skip_bad_images=skip)
        ctx.feature_batches.rows = train_rows  # cached features and partial labels, like the rows they replace
        model.backbone = torch.nn.Identity()  # the contract: models apply model.backbone first
    optimizer, scheduler = method.configure_optimizers(model, train)

    run_info = {"run_id": run_id, "method": method_cls.name, "dataset": prepared.dataset_name, "setting": config.setting,
                "known": known, "seed": seed, "config": prepared.config_dict(), "output_dir": str(run_dir),
                "resumed": resume_state is not None, "loggers": list(config.log)}
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        hooks.mlrpl_run_start(run=run_info)
    log_path = run_dir / "epochs.jsonl"

    def on_epoch_end(epoch: int, logs: dict) -> None:
        atomic_write_bytes(log_path, "".join(json.dumps(to_json_safe(e)) + "\n" for e in engine.epoch_logs_so_far(logs)).encode())
        hooks.mlrpl_epoch_end(run=run_info, epoch=epoch, logs=logs)

    engine = Engine(method, model, optimizer, scheduler, train_rows=train_rows, val_rows=val_rows, test_rows=test_rows,
                    val_targets=val_targets, test_targets=test_targets, metric_fn=compute_metrics,
                    config=EngineConfig(epochs=train.epochs, batch_size=train.batch_size, seed=seed, device=device,
                                        workers=train.workers, precision=train.precision,
                                        channels_last=train.channels_last, compile=train.compile,
                                        checkpoint_path=checkpoint_path,
                                        run_fingerprint=fingerprint, progress=config.progress, score_test=score_test,
                                        description=f"{method_cls.name} {config.setting} {known_text(known)} s{seed}"),
                    dist=dist, on_epoch_end=on_epoch_end, bad_images=bad_images)
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    result = engine.fit(resume_state)
    seconds = time.perf_counter() - t0
    if observe is not None:
        observe(method, {"full training labels": train_split.labels, "validation targets": val_targets,
                         "test targets": test_targets})
    return CellRun(result, protocol, seconds, started, run_info, engine.precision)


def outcome_of(cell: CellRun, data: SweepData, run_id: str, known: float, seed: int, device: torch.device,
               dist: D.DistInfo, tuning: dict[str, Any] | None = None, scores_dir: Path | None = None) -> RunOutcome:
    """The plain facts of a trained cell, for :func:`~mlrpl_bench.results.build_record`.

    :param scores_dir: where to save the test scores (:mod:`mlrpl_bench.scores`); None saves none.
    """
    result, protocol, train_split, test_split = cell.result, cell.protocol, data.train_split, data.test_split
    scores_file = write_scores(scores_dir, result.test_scores, test_split.labels) if scores_dir is not None else None
    return RunOutcome(
        run_id=run_id, known=known, seed=seed,
        sizes={"train": int(len(protocol.train_idx)), "val": int(len(protocol.val_idx)), "test": len(test_split)},
        fingerprint={"train": train_split.fingerprint(), "test": test_split.fingerprint()},
        class_names=list(train_split.class_names), mask_fingerprint=protocol.mask_fingerprint,
        val_fingerprint=protocol.val_fingerprint, best_epoch=result.best_epoch, epochs_run=result.epochs_run,
        val_metrics=result.val_metrics, test_metrics=result.test_metrics, bad_images=result.bad_images,
        resumed_from_epoch=result.resumed_from_epoch, seconds=cell.seconds, started=cell.started, device=str(device),
        device_description=device_description(device), world_size=dist.world_size, environment=environment_info(),
        tuning=tuning, scores_file=scores_file, precision_used=cell.precision_used,
        per_class_known_positives=np.count_nonzero(protocol.partial[protocol.train_idx] == 1, axis=0).tolist())


def scores_dir(prepared: PreparedRun, run_dir: Path) -> Path | None:
    """``run_dir`` when this configuration keeps its test scores (``--save-scores``), else None."""
    return run_dir if should_save_scores(prepared.config.save_scores, prepared.dataset_name) else None


def file_record(record: dict[str, Any], record_path: Path, *, overwrite: bool) -> None:
    """Write a run's record: create-if-absent unless overwriting, so that of two processes running
    the same run into one output the second to finish is told instead of replacing the first's."""
    try:
        write_record(record_path, record, exclusive=not overwrite)
    except AlreadyExists:
        raise BenchError(f"{record_path}: another process filed this run's record while this one ran; nothing was "
                         "replaced -- pass --overwrite to replace it, or choose another --output") from None


@contextlib.contextmanager
def cell_lock(output: Path, run_dir: Path, dist: D.DistInfo):
    """One process at a time per run directory: a second ``mlrpl-bench run`` of the same run into
    the same output is refused at once, instead of both writing its checkpoint, epoch log and
    scores (the lock file sits beside the run directory, so a refused run creates nothing)."""
    if not dist.is_main:
        yield
        return
    with exclusive_lock(output / f".{run_dir.name}.lock", what=str(run_dir),
                        fix="wait for that run to finish, or choose another --output"):
        yield


def run_single(prepared: PreparedRun, data: SweepData, known: float, seed: int, *, device: torch.device,
               dist: D.DistInfo, output: Path, hooks: Any = None, build_backbone: Callable | None = None,
               log: Callable[[str], None] = print,
               observe: Callable[..., None] | None = None) -> tuple[dict[str, Any] | None, Path]:
    """Train and score one (known, seed) run; write its record, epoch log and checkpoint.

    :param hooks: ``pm.hook`` of the plugin manager (run-level events); None calls none.
    :param build_backbone: ``(weights, freeze) -> nn.Module`` instead of the registered backbone's.
    :param observe: called with ``(method, hidden)`` after training (the conformance kit searches
        what the method holds for the hidden truths named in ``hidden``).
    :return: ``(record or None on ranks > 0, record path)``.
    """
    run_id, run_dir, record_path = cell_paths(prepared, output, known, seed)
    with cell_lock(output, run_dir, dist):
        return _run_single_locked(prepared, data, known, seed, run_id, run_dir, record_path, device=device, dist=dist,
                                  output=output, hooks=hooks, build_backbone=build_backbone, log=log, observe=observe)


def _run_single_locked(prepared: PreparedRun, data: SweepData, known: float, seed: int, run_id: str, run_dir: Path,
                       record_path: Path, *, device: torch.device, dist: D.DistInfo, output: Path, hooks: Any,
                       build_backbone: Callable | None, log: Callable[[str], None],
                       observe: Callable[..., None] | None) -> tuple[dict[str, Any] | None, Path]:
    existing = existing_record(prepared, record_path, run_id, dist=dist, log=log)
    if existing is not None:
        return existing, record_path
    hooks = hooks if hooks is not None else _NoHooks()
    cell = train_cell(prepared, data, run_id, known, seed, device=device, dist=dist, output=output, run_dir=run_dir, hooks=hooks,
                      build_backbone=build_backbone, log=log, observe=observe)
    if not dist.is_main:
        return None, record_path
    record = build_record(prepared, outcome_of(cell, data, run_id, known, seed, device, dist,
                                               scores_dir=scores_dir(prepared, run_dir)))
    file_record(record, record_path, overwrite=prepared.config.overwrite)
    hooks.mlrpl_run_end(run=cell.run_info, record=record, path=str(record_path))
    log(summary_line(record, record_path))
    return record, record_path


def summary_line(record: dict[str, Any], path: Path) -> str:
    """``<run_id>: test mAP .. OF1 .. CF1 .. (best epoch b/n, s) -> path``, printed after each run."""
    test, sel = record["metrics"]["test"], record["selection"]
    fmt = (lambda v: "n/a" if v is None else f"{v:.2f}")
    return (f"{record['run_id']}: test mAP {fmt(test['mAP'])}  OF1 {fmt(test.get('OF1'))}  CF1 {fmt(test.get('CF1'))}  "
            f"(best epoch {sel['best_epoch'] + 1}/{sel['epochs_run']}, {record['runtime']['seconds']:.1f} s) -> {path}")


def _resume_state(path: Path, fingerprint: dict[str, Any], *, resume: bool, run_id: str, finished: bool,
                  log: Callable[[str], None]) -> dict[str, Any] | None:
    """The checkpoint to continue from (``--resume`` and a checkpoint of this same run), or None.

    Without ``--resume`` an existing checkpoint is about to be overwritten: say so, and how to
    continue it instead, before starting over.
    """
    if not path.exists():
        return None
    if not resume:
        if finished:  # --overwrite of a finished run: its last checkpoint goes with its record
            return None
        log(f"{run_id}: {path} holds an interrupted run; starting over (its checkpoint will be overwritten) -- "
            "stop now and pass --resume to continue it instead")
        return None
    state = load_checkpoint(path)
    check_resumable(path, state, fingerprint)
    done = int(state["epoch"]) + 1  # epochs finished; the record's runtime.resumed_from_epoch
    log(f"{run_id}: resumed from epoch {done} of {fingerprint['train']['epochs']} ({path}); training continues "
        f"with epoch {done + 1}")
    return state
