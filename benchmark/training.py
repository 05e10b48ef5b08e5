"""Training one cell: protocol -> method context -> model -> engine, in the cell's run folder.

Where the hidden truth lives: the full training labels (in the dataset split), the validation
targets and the test targets stay in this module's frames and in the engine. The method gets a
:class:`~mlrpl_bench.method.MethodContext` whose every member is built from the *partial*
labels and the images only (:func:`method_context`); nothing it receives holds a reference to
the split, the engine or the targets.
"""

from __future__ import annotations

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
from .atomic import atomic_write_bytes
from .cell import Cell, run_fingerprint
from .checkpoint import check_resumable, load_checkpoint
from .data.loading import FeatureBatches, SplitRows
from .engine import Engine, EngineConfig
from .method import MethodContext
from .models.backbones import FrozenBackbone
from .results import to_json_safe
from .run_config import PreparedRun
from .seeds import method_generator, seed_model_init
from .vocabulary import known_text


@dataclass(frozen=True)
class ContextSpec:
    """What a method may see of its run, besides the partial labels and the rows: the class names
    and word vectors, the schedule, the protocol's setting, known proportion and seed."""

    class_names: list[str]
    embeddings: np.ndarray
    epochs: int
    batch_size: int
    setting: str
    known: float
    seed: int


def method_context(spec: ContextSpec, train_labels: np.ndarray, feature_rows, *, device: torch.device,
                   dist: D.DistInfo, loading: dict[str, Any] | None = None) -> MethodContext:
    """The method's context, built from partial labels and images only (see the module docstring).

    :param loading: keyword arguments of :class:`~mlrpl_bench.data.loading.FeatureBatches`
        (``workers``, ``bad_images``, ``progress``).
    """
    steps = max(1, -(-len(train_labels) // spec.batch_size))
    return MethodContext(
        num_classes=len(spec.class_names), class_names=list(spec.class_names), train_labels=train_labels,
        word_embeddings=spec.embeddings, epochs=spec.epochs, steps_per_epoch=steps, setting=spec.setting,
        known=spec.known, seed=spec.seed, device=device, generator=method_generator(spec.seed),
        feature_batches=FeatureBatches(feature_rows, batch_size=spec.batch_size, device=device, rank=dist.rank,
                                       world_size=dist.world_size, **(loading or {})),
        all_gather=functools.partial(D.all_gather_cat, info=dist), world_size=dist.world_size)


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


def train_cell(cell: Cell, *, score_test: bool = True, resume_state: dict[str, Any] | None = None) -> CellRun:
    """Protocol -> method context -> engine for one cell, in ``cell.run_dir`` (epoch log, checkpoint).

    :param resume_state: a checkpoint to continue from regardless of ``--resume`` (its fingerprint
        is still checked); by default ``--resume`` decides.
    """
    from .metrics import compute_metrics
    from .protocol import prepare_protocol

    prepared, data, dist, device = cell.prepared, cell.data, cell.dist, cell.device
    config, train = prepared.config, prepared.train
    train_split, test_split = data.train_split, data.test_split
    protocol = prepare_protocol(train_split.labels, setting=config.setting, known=cell.known, seed=cell.seed,
                                scheme=config.scheme, val_fraction=train.val_fraction, key=train_split.fingerprint(),
                                cache_dir=(cell.output / "_protocol") if dist.is_main else None)
    train_labels = protocol.partial[protocol.train_idx]
    val_targets = train_split.labels[protocol.val_idx]
    test_targets = test_split.labels
    fingerprint = run_fingerprint(cell, protocol)
    checkpoint_path = cell.run_dir / "checkpoint.pt"
    if resume_state is not None:
        check_resumable(checkpoint_path, resume_state, fingerprint)
    else:
        resume_state = _resume_state(cell, checkpoint_path, fingerprint)

    train_tf, eval_tf = run_transforms(data.dataset, train)
    skip = config.skip_bad_images
    train_rows = SplitRows(train_split, protocol.train_idx, train_labels, train_tf, skip)
    feature_rows = SplitRows(train_split, protocol.train_idx, train_labels, eval_tf, skip)
    val_rows = SplitRows(train_split, protocol.val_idx, val_targets, eval_tf, skip)
    test_rows = SplitRows(test_split, np.arange(len(test_split)), test_targets, eval_tf, skip)

    bad_images: list[str] = []
    spec = ContextSpec(class_names=train_split.class_names, embeddings=data.embeddings, epochs=train.epochs,
                       batch_size=train.batch_size, setting=config.setting, known=cell.known, seed=cell.seed)
    ctx = method_context(spec, train_labels, feature_rows, device=device, dist=dist,
                         loading=dict(workers=train.workers, bad_images=bad_images, progress=config.progress))
    method, backbone, model = initial_model(prepared, ctx, cell.build_backbone)
    if train.track == "frozen" and train.feature_cache:
        from .feature_cache import cached_rows

        train_rows, val_rows, test_rows = cached_rows(
            backbone, train, train_split, test_split, protocol, train_labels, val_targets, eval_tf, device,
            config.progress and dist.is_main, skip_bad_images=skip)
        ctx.feature_batches.rows = train_rows  # cached features and partial labels, like the rows they replace
        model.backbone = torch.nn.Identity()  # the contract: models apply model.backbone first
    optimizer, scheduler = method.configure_optimizers(model, train)

    run_info = {"run_id": cell.run_id, "method": prepared.method_cls.name, "dataset": prepared.dataset_name,
                "setting": config.setting, "known": cell.known, "seed": cell.seed, "config": prepared.config_dict(),
                "output_dir": str(cell.run_dir), "resumed": resume_state is not None, "loggers": list(config.log)}
    hooks = cell.hooks
    if dist.is_main:
        cell.run_dir.mkdir(parents=True, exist_ok=True)
        hooks.mlrpl_run_start(run=run_info)
    log_path = cell.run_dir / "epochs.jsonl"

    def on_epoch_end(epoch: int, logs: dict) -> None:
        atomic_write_bytes(log_path, "".join(json.dumps(to_json_safe(e)) + "\n" for e in engine.epoch_logs_so_far(logs)).encode())
        hooks.mlrpl_epoch_end(run=run_info, epoch=epoch, logs=logs)

    engine_config = EngineConfig(
        epochs=train.epochs, batch_size=train.batch_size, seed=cell.seed, device=device, workers=train.workers,
        precision=train.precision, channels_last=train.channels_last, compile=train.compile,
        checkpoint_path=checkpoint_path, run_fingerprint=fingerprint, progress=config.progress, score_test=score_test,
        description=f"{prepared.method_cls.name} {config.setting} {known_text(cell.known)} s{cell.seed}")
    engine = Engine(method, model, optimizer, scheduler, train_rows=train_rows, val_rows=val_rows, test_rows=test_rows,
                    val_targets=val_targets, test_targets=test_targets, metric_fn=compute_metrics,
                    config=engine_config, dist=dist, on_epoch_end=on_epoch_end, bad_images=bad_images)
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    result = engine.fit(resume_state)
    seconds = time.perf_counter() - t0
    if cell.observe is not None:
        cell.observe(method, {"full training labels": train_split.labels, "validation targets": val_targets,
                              "test targets": test_targets})
    return CellRun(result, protocol, seconds, started, run_info, engine.precision)


def _resume_state(cell: Cell, path: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint to continue from (``--resume`` and a checkpoint of this same run), or None.

    Without ``--resume`` an existing checkpoint is about to be overwritten: say so, and how to
    continue it instead, before starting over.
    """
    if not path.exists():
        return None
    log = cell.station.main_log
    if not cell.prepared.config.resume:
        if (cell.run_dir / "record.json").exists():  # --overwrite of a finished run: its last checkpoint goes with its record
            return None
        log(f"{cell.run_id}: {path} holds an interrupted run; starting over (its checkpoint will be overwritten) -- "
            "stop now and pass --resume to continue it instead")
        return None
    state = load_checkpoint(path)
    check_resumable(path, state, fingerprint)
    done = int(state["epoch"]) + 1  # epochs finished; the record's runtime.resumed_from_epoch
    log(f"{cell.run_id}: resumed from epoch {done} of {fingerprint['train']['epochs']} ({path}); training continues "
        f"with epoch {done + 1}")
    return state
