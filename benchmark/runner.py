"""One ``mlrpl-bench run``: resolve the configuration, then for every (known proportion, seed)
apply the protocol, train the method, score the test set and write a results record.

This is the only module that ties datasets, protocol, methods, engine and records together; the
CLI's ``run`` command only parses options into a :class:`RunRequest` and calls :func:`run_sweep`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import distributed as D
from . import plugin_manager as P
from .data.base import DatasetSplit
from .data.loading import SplitRows
from .engine import Engine, EngineConfig, TrainResult
from .environment import device_description, environment_info
from .errors import BenchError
from .atomic import atomic_write_bytes
from .method import Method, MethodContext, TrainConfig, make_dataclass_options
from .models.backbones import FrozenBackbone, default_weights, weights_sha256
from .results import make_run_id, read_record, safe_name, write_record
from .scores import RECORD_FIELD as SCORES_FIELD, should_save as should_save_scores, write_scores

DEFAULT_DATASET = "digit-scenes"
DEFAULT_PROPORTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass
class RunRequest:
    """Everything ``mlrpl-bench run`` was asked to do (before defaults are resolved)."""

    method: str
    dataset: str = DEFAULT_DATASET
    data_root: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    setting: str = "pal"
    known: tuple[float, ...] = DEFAULT_PROPORTIONS
    seeds: tuple[int, ...] = (0,)
    scheme: str = "generator"
    profile: str = "default"
    method_options: dict[str, Any] = field(default_factory=dict)
    train_overrides: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    output: Path = Path("runs")
    resume: bool = False
    overwrite: bool = False
    skip_bad_images: bool = False
    word_embeddings: str | None = None
    shard: tuple[int, int] = (0, 1)
    progress: bool = True
    save_scores: bool | None = None  # None: scores.save_by_default(dataset)
    loggers: tuple[str, ...] = ()  # built-in experiment trackers to report to (mlrpl_bench.loggers)


@dataclass
class ResolvedRun:
    """The fully resolved configuration shared by every run of a sweep."""

    request: RunRequest
    method_cls: type[Method]
    method_options: Any
    train: TrainConfig
    dataset_cls: Any
    dataset_options: Any

    def config_dict(self) -> dict[str, Any]:
        return {"method": self.method_cls.name, "method_options": dataclasses.asdict(self.method_options),
                "profile": self.request.profile, "train": dataclasses.asdict(self.train),
                "dataset": self.dataset_cls.name, "dataset_options": dataclasses.asdict(self.dataset_options),
                "setting": self.request.setting, "scheme": self.request.scheme,
                "word_embeddings": self.request.word_embeddings}

    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.config_dict(), sort_keys=True, default=str).encode()).hexdigest()


def resolve(request: RunRequest) -> ResolvedRun:
    """Apply defaults in order: TrainConfig -> dataset defaults -> profile -> config file / CLI."""
    from .protocol import SCHEMES, SETTINGS

    method_cls = P.get_method(request.method)
    dataset_cls = P.get_dataset(request.dataset)
    if request.setting not in SETTINGS:
        raise BenchError(f"--setting {request.setting!r} is not one of {', '.join(SETTINGS)}")
    if request.setting not in method_cls.settings:
        raise BenchError(f"method {method_cls.name!r} does not support setting {request.setting!r}; it supports {', '.join(method_cls.settings)}")
    if request.scheme not in SCHEMES:
        raise BenchError(f"--scheme {request.scheme!r} is not one of {', '.join(SCHEMES)}")
    if request.scheme == "hcp" and request.setting != "pal":
        raise BenchError("--scheme hcp reproduces the official PAL masks only; use it with --setting pal")
    for k in request.known:
        if not 0 < k <= 1:
            raise BenchError(f"--known {k}: known-label proportions must be in (0, 1]")
    i, n = request.shard
    if not (n >= 1 and 0 <= i < n):
        raise BenchError(f"--shard {i}/{n}: expected i/n with 0 <= i < n")

    train_values: dict[str, Any] = {"backbone": dataset_cls.default_backbone, "image_size": dataset_cls.default_image_size}
    method_values: dict[str, Any] = {}
    train_fields = TrainConfig.field_names()
    option_fields = {f.name for f in dataclasses.fields(method_cls.Options)}
    if request.profile not in ("default", "", None):
        if request.profile not in method_cls.profiles:
            raise BenchError(f"method {method_cls.name!r} has no profile {request.profile!r}; profiles: default"
                             + "".join(f", {p}" for p in sorted(method_cls.profiles)))
        for key, value in method_cls.profiles[request.profile].items():
            if key in train_fields:
                train_values[key] = value
            elif key in option_fields:
                method_values[key] = value
            else:
                raise BenchError(f"method {method_cls.name!r} profile {request.profile!r}: {key!r} is neither a train setting nor an option")
    train_values.update(request.train_overrides)
    train_values.setdefault("backbone_weights", default_weights(dataset_cls, train_values["backbone"]))
    method_values.update(request.method_options)
    train = make_dataclass_options(TrainConfig, train_values, owner="train settings")
    if train.epochs < 1 or train.batch_size < 1:
        raise BenchError("--epochs and --batch-size must be at least 1")
    if train.track not in ("finetune", "frozen"):
        raise BenchError(f"--track {train.track!r}: use finetune or frozen")
    if train.frozen_features not in ("maps", "pooled"):
        raise BenchError(f"frozen_features {train.frozen_features!r}: use maps or pooled")
    if not 0 <= train.val_fraction < 1:
        raise BenchError(f"val_fraction {train.val_fraction}: must be in [0, 1)")
    P.get_backbone(train.backbone)
    options = make_dataclass_options(method_cls.Options, method_values, owner=f"method {method_cls.name!r}")
    dataset_options = make_dataclass_options(dataset_cls.Options, request.dataset_options, owner=f"dataset {dataset_cls.name!r}")
    return ResolvedRun(request, method_cls, options, train, dataset_cls, dataset_options)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise BenchError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None


def planned_runs(request: RunRequest) -> list[tuple[float, int]]:
    """The (known, seed) pairs of this sweep, restricted to this shard (deterministic order)."""
    knowns = (1.0,) if request.setting == "full" else tuple(request.known)
    runs = [(k, s) for k in knowns for s in request.seeds]
    i, n = request.shard
    return [r for j, r in enumerate(runs) if j % n == i]


def run_sweep(request: RunRequest) -> list[dict[str, Any]]:
    """Run every planned (known, seed) pair and return their records (rank 0; [] elsewhere)."""
    resolved = resolve(request)
    device = pick_device(request.device)
    dist = D.init_from_env(device.type)
    if device.type == "cuda" and dist.enabled:
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    output = Path(request.output).expanduser()
    if dist.is_main:
        _check_writable(output)
    dataset = resolved.dataset_cls(request.data_root, resolved.dataset_options)
    train_split = dataset.load_split("train")
    test_split = dataset.load_split("test")
    if train_split.class_names != test_split.class_names:
        raise BenchError(f"dataset {dataset.name!r}: train and test splits have different class lists")
    from .data.embeddings import load_word_embeddings

    embeddings = load_word_embeddings(train_split.class_names, request.word_embeddings)
    records = []
    for known, seed in planned_runs(request):
        record = run_single(resolved, dataset, train_split, test_split, embeddings, known, seed, device, dist, output)
        if record is not None and dist.is_main:
            records.append(record)
    if dist.is_main:
        P.call_run_event("mlrpl_sweep_end", records=records)
    return records


def _check_writable(output: Path) -> None:
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise BenchError(f"--output {output}: not a writable directory ({exc.strerror or exc}); choose another --output") from None


def variant_suffix(profile: str, options: dict, defaults: dict, max_len: int = 48) -> str:
    """What tells a run's directory from the default configuration's.

    ``""`` for the default profile with the method's default options; otherwise the profile name
    and the changed options as ``key-value`` joined by ``_`` (``ablation-ist-only``,
    ``feature_blending-True``), file-system safe; past ``max_len`` characters ``opts-`` and 8
    hex digits of their hash. (Train settings such as ``--epochs`` are not part of it: a run
    with other train settings in the same output directory is refused with a message.)
    """
    changed = {k: v for k, v in sorted(options.items()) if k not in defaults or defaults[k] != v}
    parts = ([] if profile in ("default", "", None) else [str(profile)]) + [f"{k}-{v}" for k, v in changed.items()]
    if not parts:
        return ""
    text = safe_name("_".join(parts))
    if len(text) > max_len:
        text = "opts-" + hashlib.sha256(json.dumps([profile, changed], sort_keys=True, default=str).encode()).hexdigest()[:8]
    return text


def run_dir_name(resolved: ResolvedRun, run_id: str) -> str:
    """``<run_id>`` for the method's defaults, ``<run_id>__<variant>`` for an ablation or a profile,
    so that both can live in one output directory."""
    options = dataclasses.asdict(resolved.method_options)
    defaults = dataclasses.asdict(resolved.method_cls.Options())
    suffix = variant_suffix(resolved.request.profile, options, defaults)
    return f"{run_id}__{suffix}" if suffix else run_id


def run_single(resolved: ResolvedRun, dataset, train_split: DatasetSplit, test_split: DatasetSplit,
               embeddings: np.ndarray, known: float, seed: int, device: torch.device, dist: D.DistInfo,
               output: Path) -> dict[str, Any] | None:
    """Train and score one (known, seed) run; write its record, epoch log and checkpoint."""
    from .metrics import compute_metrics
    from .protocol import prepare_protocol

    request, train = resolved.request, resolved.train
    method_cls = resolved.method_cls
    run_id = make_run_id(method_cls.name, dataset.name, request.setting, known, seed)
    run_dir = output / run_dir_name(resolved, run_id)
    record_path = run_dir / "record.json"
    config_hash = resolved.config_hash()
    if record_path.exists() and not request.overwrite:
        existing = read_record(record_path)
        if existing.get("config_hash") == config_hash:
            if dist.is_main:
                print(f"{run_id}: already done ({record_path}), skipping; pass --overwrite to run it again")
            return existing
        raise BenchError(f"{record_path}: a record from a different configuration exists; pass --overwrite to replace it or choose another --output")

    protocol = prepare_protocol(train_split.labels, setting=request.setting, known=known, seed=seed, scheme=request.scheme,
                                val_fraction=train.val_fraction, key=train_split.fingerprint(),
                                cache_dir=(output / "_protocol") if dist.is_main else None)
    train_labels = protocol.partial[protocol.train_idx]
    val_targets = train_split.labels[protocol.val_idx]
    test_targets = test_split.labels
    image_size = train.image_size
    train_tf, eval_tf = dataset.transforms(image_size, True), dataset.transforms(image_size, False)
    frozen = train.track == "frozen"
    if frozen:
        # A frozen backbone sees un-augmented images: that is what makes its outputs cacheable,
        # and the no-cache variant must see the same inputs to be comparable.
        train_tf = eval_tf
    skip = request.skip_bad_images
    train_rows = SplitRows(train_split, protocol.train_idx, train_labels, train_tf, skip)
    feature_rows = SplitRows(train_split, protocol.train_idx, train_labels, eval_tf, skip)
    val_rows = SplitRows(train_split, protocol.val_idx, val_targets, eval_tf, skip)
    test_rows = SplitRows(test_split, np.arange(len(test_split)), test_targets, eval_tf, skip)

    torch.manual_seed(seed)
    engine_ref: dict[str, Engine] = {}
    steps = max(1, -(-len(train_rows) // train.batch_size))
    ctx = MethodContext(
        num_classes=train_split.num_classes, class_names=list(train_split.class_names), train_labels=train_labels,
        word_embeddings=embeddings, epochs=train.epochs, steps_per_epoch=steps, setting=request.setting, known=known,
        seed=seed, device=device, generator=torch.Generator().manual_seed(seed),
        feature_batches=lambda: engine_ref["engine"].feature_batches(),
        all_gather=lambda t: D.all_gather_cat(t, dist), world_size=dist.world_size)
    method = method_cls(resolved.method_options, ctx)
    backbone_spec = P.get_backbone(train.backbone)
    backbone = backbone_spec.build(train.backbone_weights, "all" if frozen else train.freeze_backbone)
    if frozen:
        backbone = FrozenBackbone(backbone)
    model = method.build_model(backbone).to(device)
    if frozen and train.feature_cache:
        train_rows, feature_rows, val_rows, test_rows = _cached_rows(
            backbone, train, dataset, train_split, test_split, protocol, train_labels, val_targets, eval_tf, device,
            request.progress, dist)
        model.backbone = torch.nn.Identity()  # the contract: models apply model.backbone first
    optimizer, scheduler = method.configure_optimizers(model, train)

    run_info = {"run_id": run_id, "method": method_cls.name, "dataset": dataset.name, "setting": request.setting,
                "known": known, "seed": seed, "config": resolved.config_dict(), "output_dir": str(run_dir),
                "loggers": list(request.loggers)}
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        P.call_run_event("mlrpl_run_start", run=run_info)
    log_path = run_dir / "epochs.jsonl"
    epoch_logs: list[dict] = []

    def on_epoch_end(epoch: int, logs: dict) -> None:
        epoch_logs[:] = engine.epoch_logs_so_far(logs)
        atomic_write_bytes(log_path, "".join(json.dumps(_json_safe(e)) + "\n" for e in epoch_logs).encode())
        P.call_run_event("mlrpl_epoch_end", run=run_info, epoch=epoch, logs=logs)

    engine = Engine(method, model, optimizer, scheduler, train_rows=train_rows, val_rows=val_rows, test_rows=test_rows,
                    feature_rows=feature_rows, val_targets=val_targets, test_targets=test_targets,
                    metric_fn=compute_metrics,
                    config=EngineConfig(epochs=train.epochs, batch_size=train.batch_size, seed=seed, device=device,
                                        workers=train.workers, precision=train.precision, channels_last=train.channels_last,
                                        compile=train.compile, checkpoint_path=run_dir / "checkpoint.pt",
                                        resume=request.resume, progress=request.progress,
                                        description=f"{method_cls.name} {request.setting} {known:g} s{seed}"),
                    dist=dist, on_epoch_end=on_epoch_end)
    engine_ref["engine"] = engine
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    result = engine.fit()
    seconds = time.perf_counter() - t0
    if not dist.is_main:
        return None
    if result.bad_images and not skip:  # pragma: no cover - the loader raises before this
        raise BenchError(f"{len(result.bad_images)} unreadable images")
    entry = P.method_registry()[method_cls.name]
    record = build_record(resolved, dataset, train_split, test_split, protocol, known, seed, result, device, dist,
                          seconds, started, entry, config_hash)
    record["train"]["precision_used"] = engine.precision  # what "auto" became on this device
    if should_save_scores(request.save_scores, dataset.name):  # test scores beside the record (benchmark/scores.py)
        record[SCORES_FIELD] = write_scores(run_dir, result.test_scores, test_targets)
    write_record(record_path, record)
    P.call_run_event("mlrpl_run_end", run=run_info, record=record, path=str(record_path))
    test = result.test_metrics
    print(f"{run_id}: test mAP {test['mAP']:.2f}  OF1 {_fmt(test.get('OF1'))}  CF1 {_fmt(test.get('CF1'))}  "
          f"(best epoch {result.best_epoch + 1}/{result.epochs_run}, {seconds:.1f} s) -> {record_path}")
    return record


def feature_cache_dir() -> Path:
    root = os.environ.get("MLRPL_BENCH_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "mlrpl-bench") / "features"


def _cached_rows(backbone, train: TrainConfig, dataset, train_split, test_split, protocol, train_labels, val_targets,
                 eval_tf, device, progress, dist):
    """Frozen track: the train/val/test rows served from the feature cache (computed once)."""
    from .data.transforms import describe
    from .feature_cache import CachedRows, cache_key, load_or_compute, module_fingerprint

    backbone_fp = module_fingerprint(backbone)
    transform = describe(eval_tf)
    pooled = train.frozen_features == "pooled"
    out = []
    for split, rows in ((train_split, np.arange(len(train_split))), (test_split, np.arange(len(test_split)))):
        key = cache_key(split_fingerprint=split.fingerprint(), rows=rows, backbone_fingerprint=backbone_fp,
                        transform=transform, pooled=pooled, dtype="float32")
        features, _ = load_or_compute(feature_cache_dir(), key, SplitRows(split, rows, split.labels, eval_tf), backbone,
                                      batch_size=train.batch_size, device=device, pooled=pooled, workers=train.workers,
                                      progress=progress and dist.is_main)
        out.append(features)
    train_features, test_features = out
    # One cache per split; the protocol's rows are views into it (no copy for the big train part).
    train_rows = CachedRows(_RowView(train_features, protocol.train_idx), train_labels)
    val_rows = CachedRows(_RowView(train_features, protocol.val_idx), val_targets)
    test_rows = CachedRows(test_features, test_split.labels)
    return train_rows, train_rows, val_rows, test_rows


class _RowView:
    """Rows ``idx`` of a (memory-mapped) array, read lazily."""

    def __init__(self, array, idx):
        self.array, self.idx = array, np.asarray(idx)

    def __len__(self):
        return len(self.idx)

    def __getitem__(self, i):
        return self.array[self.idx[i]]


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _json_safe(obj):
    from .results import to_json_safe

    return to_json_safe(obj)


def build_record(resolved: ResolvedRun, dataset, train_split, test_split, protocol, known, seed, result: TrainResult,
                 device, dist, seconds, started, entry, config_hash) -> dict[str, Any]:
    """Assemble the results record (schema in :mod:`mlrpl_bench.results`)."""
    request, train = resolved.request, resolved.train
    test = dict(result.test_metrics)
    per_class = test.pop("per_class_ap", None)
    test.pop("per_class_ap_noninterp", None)
    return {
        "schema_version": 1,
        "run_id": make_run_id(resolved.method_cls.name, dataset.name, request.setting, known, seed),
        "config_hash": config_hash,
        "method": {"name": resolved.method_cls.name, "version": resolved.method_cls.version,
                   "options": dataclasses.asdict(resolved.method_options), "profile": request.profile or "default",
                   "citation": resolved.method_cls.citation, "distribution": entry.distribution,
                   "distribution_version": entry.version,
                   **({"family": resolved.method_cls.family} if getattr(resolved.method_cls, "family", None) else {})},
        "dataset": {"name": dataset.name, "options": dataset.options_dict(), "num_classes": train_split.num_classes,
                    "class_names": list(train_split.class_names),
                    "sizes": {"train": int(len(protocol.train_idx)), "val": int(len(protocol.val_idx)), "test": len(test_split)},
                    "fingerprint": {"train": train_split.fingerprint(), "test": test_split.fingerprint()}},
        "protocol": {"setting": request.setting, "known": float(known), "seed": int(seed), "scheme": request.scheme,
                     "val_fraction": train.val_fraction, "mask_fingerprint": protocol.mask_fingerprint,
                     "val_fingerprint": protocol.val_fingerprint,
                     # per class, the known positives of the training rows (the leaderboard's frequency bins)
                     "per_class_known_positives": np.count_nonzero(protocol.partial[protocol.train_idx] == 1, axis=0).tolist()},
        "train": {**dataclasses.asdict(train), "backbone_weights_sha256": weights_sha256(train.backbone, train.backbone_weights),
                  "device": str(device), "world_size": dist.world_size,
                  "word_embeddings": request.word_embeddings or "fallback"},
        "selection": {"metric": "mAP", "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                      "split": "validation"},
        "metrics": {"val": result.val_metrics, "test": test},
        "per_class_ap": {"test": per_class},
        "runtime": {"seconds": round(seconds, 3), "started": started.isoformat(timespec="seconds"),
                    "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "device": device_description(device), "resumed_from_epoch": result.resumed_from_epoch},
        "environment": environment_info(),
        "data_issues": {"bad_images_skipped": len(result.bad_images), "bad_images": result.bad_images[:100]},
        "epoch_log": "epochs.jsonl",
    }
