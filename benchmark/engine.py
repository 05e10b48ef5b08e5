"""The training engine: epochs, validation every epoch, best-on-validation selection, test.

The engine knows nothing about where data come from or which method runs: it drives a
:class:`~mlrpl_bench.method.Method` through its lifecycle on the loaders it is given. The test set
is scored once, with the weights of the epoch that was best on the *validation* split.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from . import distributed as D
from .atomic import interrupts_kept, raise_if_interrupted
from .checkpoint import save_checkpoint
from .data.loading import EpochShuffleSampler, make_loader
from .errors import BenchError
from .method import Method

#: Keys of an epoch log that are wall-clock measurements: the only entries in which two executions
#: of the same run may differ (everything else is a function of the configuration and seed).
WALL_CLOCK_KEYS = frozenset({"time", "train_time", "data_wait"})


class NonFiniteLossError(BenchError):
    """A NaN/inf training loss: the run stops and no record is written."""


@dataclass
class EngineConfig:
    """How the engine runs (what it trains is given separately)."""

    epochs: int
    batch_size: int
    seed: int
    device: torch.device
    workers: int = 0
    precision: str = "fp32"  # auto | fp32 | bf16 | fp16: autocast dtype (fp16 adds loss scaling); see resolve_precision
    channels_last: bool = False  # images and the model's 4-D weights in NHWC (faster convolutions on tensor cores)
    compile: bool = False  # torch.compile the backbone (the model when the backbone is an identity)
    persistent_workers: bool | None = None  # keep DataLoader workers across epochs; None: on CUDA with workers > 0
    sync_every: int = 50  # steps between host reads of the running losses and the finiteness flag
    selection_metric: str = "mAP"
    checkpoint_path: Path | None = None  # written after every epoch when set
    run_fingerprint: dict[str, Any] | None = None  # stored in every checkpoint (what defines the run)
    progress: bool = True
    description: str = ""
    score_test: bool = True  # False: stop after selecting the best epoch (a --tune candidate)


@dataclass
class TrainResult:
    best_epoch: int
    epochs_run: int
    val_metrics: dict[str, Any]
    test_metrics: dict[str, Any]
    test_scores: np.ndarray
    epoch_logs: list[dict[str, Any]]
    bad_images: list[str] = field(default_factory=list)
    resumed_from_epoch: int | None = None


class ContractViolation(BenchError):
    """A method broke its contract during a real run (e.g. ``predict`` returned logits)."""


def check_score_shape(scores: Any, shape: tuple[int, int], method: str) -> None:
    """Stop the run unless ``scores`` is a tensor of ``shape`` (B, C) (no device sync)."""
    if not isinstance(scores, torch.Tensor):
        raise ContractViolation(f"method {method!r}: predict returned {type(scores).__name__}; return a (B, C) tensor of "
                                "probabilities in [0, 1]")
    if tuple(scores.shape) != shape:
        raise ContractViolation(f"method {method!r}: predict returned shape {tuple(scores.shape)}, expected {shape} "
                                "(one row per image, one column per class)")


def check_scores(scores: Any, shape: tuple[int, int], method: str) -> None:
    """Stop the run unless ``scores`` are finite probabilities in [0, 1] of ``shape`` (B, C).

    Cheap enough to stay on: one fused min/max reduction (a single device read-back) over the
    scores of a whole prediction pass, next to forward passes that cost orders of magnitude more.
    """
    check_score_shape(scores, shape, method)
    low, high = torch.aminmax(scores.detach().float())
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high) and 0.0 <= low and high <= 1.0):
        raise ContractViolation(f"method {method!r}: predict returned scores in [{low:.4g}, {high:.4g}]; it must return "
                                "finite probabilities in [0, 1] (apply torch.sigmoid to logits); the run is stopped")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch global RNGs (used at the start of every epoch)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + 17) % 2**31


class Engine:
    """Trains one method on one protocol split.

    :param method: the method object (its ``ctx`` already set up).
    :param model: the model built by ``method.build_model`` (moved to the device here).
    :param train_rows: dataset of training rows (partial labels), augmented transform.
    :param val_rows: dataset of validation rows (full labels), evaluation transform.
    :param test_rows: dataset of test rows (full labels), evaluation transform.
    :param val_targets: ``(n_val, C)`` full labels of ``val_rows`` (for metrics).
    :param test_targets: ``(n_test, C)`` labels of ``test_rows``.
    :param metric_fn: ``(scores, targets) -> metrics dict`` (see :mod:`mlrpl_bench.metrics`).
    :param on_epoch_end: called on rank 0 with ``(epoch, logs)`` after validation.
    :param bad_images: the list that collects the paths of skipped unreadable images (shared
        with ``ctx.feature_batches``).
    """

    def __init__(self, method: Method, model: torch.nn.Module, optimizer, scheduler, *, train_rows: Dataset,
                 val_rows: Dataset, test_rows: Dataset, val_targets: np.ndarray, test_targets: np.ndarray,
                 metric_fn: Callable[[np.ndarray, np.ndarray], dict], config: EngineConfig,
                 dist: D.DistInfo = D.DistInfo(), on_epoch_end: Callable[[int, dict], None] | None = None,
                 bad_images: list[str] | None = None):
        self.method, self.model = method, model
        self.optimizer, self.scheduler = optimizer, scheduler
        self.train_rows, self.val_rows, self.test_rows = train_rows, val_rows, test_rows
        self.val_targets, self.test_targets = val_targets, test_targets
        self.metric_fn = metric_fn
        self.cfg = config
        self.dist = dist
        self.on_epoch_end = on_epoch_end
        self.bad_images: list[str] = bad_images if bad_images is not None else []
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        self.precision = resolve_precision(config.precision, config.device)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        device_type = config.device.type
        self.autocast = (lambda: torch.autocast(device_type, dtype=dtype)) if dtype is not None else nullcontext
        # bf16 keeps fp32's exponent range: only fp16 needs its gradients scaled.
        self.scaler = torch.amp.GradScaler(device_type) if self.precision == "fp16" else None
        self.memory_format = torch.channels_last if config.channels_last else None
        if self.memory_format is not None:
            model.to(memory_format=self.memory_format)
        if config.compile:
            _compile_in_place(model)
        if config.batch_size % dist.world_size:
            raise BenchError(f"--batch-size {config.batch_size} is the global batch and must be divisible by the "
                             f"{dist.world_size} processes")
        # --batch-size is the global batch: each process takes an equal share of every step's batch.
        self.local_batch = config.batch_size // dist.world_size
        self.train_sampler = EpochShuffleSampler(len(train_rows), config.seed, rank=dist.rank, world_size=dist.world_size)
        self.pin = config.device.type == "cuda"
        persistent = config.persistent_workers
        self.persistent = (self.pin if persistent is None else persistent) and config.workers > 0
        self._loaders: dict[str, Any] = {}
        self.data_wait = 0.0

    # -- data ---------------------------------------------------------------------------------

    def _batches(self, loader, desc: str):
        from tqdm.auto import tqdm

        bar = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, disable=not (self.cfg.progress and self.dist.is_main))
        batches = iter(bar)
        while True:
            t0 = time.perf_counter()
            item = next(batches, None)
            self.data_wait += time.perf_counter() - t0  # the host blocked on the loader
            if item is None:
                return
            batch, bad = item
            if bad:
                self.bad_images.extend(bad)
            if batch is None:
                continue
            batch = batch.to(self.cfg.device, non_blocking=self.pin)
            if self.memory_format is not None and batch.inputs.dim() == 4:
                batch.inputs = batch.inputs.contiguous(memory_format=self.memory_format)
            yield batch, bar

    def _loader(self, name: str, rows: Dataset, sampler, batch_size: int):
        """A loader over ``rows``; with persistent workers, the same loader (and workers) every epoch."""
        if not self.persistent:
            return make_loader(rows, sampler, batch_size, workers=self.cfg.workers, pin_memory=self.pin)
        if name not in self._loaders:
            self._loaders[name] = make_loader(rows, sampler, batch_size, workers=self.cfg.workers, pin_memory=self.pin,
                                              persistent_workers=True)
        return self._loaders[name]

    def predict(self, rows: Dataset, desc: str) -> np.ndarray:
        """Scores ``(len(rows), C)`` for every row exactly once (sharded across processes)."""
        sampler = D.shard_indices(len(rows), self.dist)
        loader = self._loader(f"predict-{id(rows)}", rows, sampler, self.cfg.batch_size)
        self.model.eval()
        scores, indices = [], []
        num_classes = self.val_targets.shape[1]
        with torch.no_grad(), self.autocast():
            for batch, _ in self._batches(loader, desc):
                probs = self.method.predict(self.model, batch.inputs)
                check_score_shape(probs, (batch.inputs.shape[0], num_classes), self.method.name)
                scores.append(probs.float())  # stays on the device
                indices.append(batch.indices)
        local_scores = torch.cat(scores) if scores else torch.zeros(0, num_classes)
        # One read-back per pass: the contract check of the whole pass, then the scores themselves.
        check_scores(local_scores, (local_scores.shape[0], num_classes), self.method.name)
        local_scores = local_scores.cpu()
        local_idx = torch.cat(indices).cpu() if indices else torch.zeros(0, dtype=torch.int64)
        all_scores = D.all_gather_cat(local_scores, self.dist)
        all_idx = D.all_gather_cat(local_idx, self.dist)
        out = np.full((len(rows), num_classes), np.nan, dtype=np.float32)
        out[all_idx.numpy()] = all_scores.numpy()
        return out

    def evaluate(self, scores: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
        """Metrics of ``scores``; rows of images skipped as unreadable (NaN) are left out."""
        scored = ~np.isnan(scores).any(axis=1)
        if not scored.any():
            raise BenchError("every evaluation image was unreadable; fix the dataset's image files")
        return self.metric_fn(scores[scored], targets[scored])

    # -- training -----------------------------------------------------------------------------

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        self.train_sampler.set_epoch(epoch)
        loader = self._loader("train", self.train_rows, self.train_sampler, self.local_batch)
        # The losses stay on the device: no step waits for the GPU to finish the previous one.
        monitor = _LossMonitor(self.cfg.device, self.last_finite_loss)
        desc = f"{self.cfg.description} epoch {epoch + 1}/{self.cfg.epochs}".strip()
        self.data_wait, t0, bar = 0.0, time.perf_counter(), None
        for step, (batch, bar) in enumerate(self._batches(loader, desc)):
            raise_if_interrupted()  # a Ctrl-C swallowed by a finaliser still stops the run here
            with self.autocast():
                out = self.method.training_step(self.model, batch, epoch)
            if not isinstance(out, dict) or "loss" not in out:
                raise BenchError(f"method {self.method.name!r}: training_step must return a dict with a 'loss' tensor")
            loss = out["loss"]
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                raise BenchError(f"method {self.method.name!r}: training_step's 'loss' must be a scalar tensor")
            monitor.add(step, out)
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(self.optimizer)
                D.average_gradients(self.params, self.dist)
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                loss.backward()
                D.average_gradients(self.params, self.dist)
                self.optimizer.step()
            self.method.after_optimizer_step(self.model, epoch, step)
            if (step + 1) % self.cfg.sync_every == 0:
                self._check_finite(monitor, epoch, bar)
        self._check_finite(monitor, epoch, bar)
        logs = monitor.means()
        logs.update({"train_time": time.perf_counter() - t0, "data_wait": self.data_wait})
        return logs

    def _check_finite(self, monitor: _LossMonitor, epoch: int, bar) -> None:
        """Read the device-side flags back (one host sync); stop at the first non-finite loss.

        Under several processes every rank reads at the same steps and all stop together, at the
        earliest bad step of any rank.
        """
        first_bad, bad_value, last_good, mean = monitor.read(self.dist)
        if math.isfinite(last_good):
            self.last_finite_loss = last_good
        if first_bad >= 0:
            last = last_good if math.isfinite(last_good) else None
            raise NonFiniteLossError(
                f"method {self.method.name!r}: training loss is {bad_value} at epoch {epoch}, step {first_bad} "
                f"(last finite loss: {last if last is not None else 'none'}); no record written — "
                f"lower the learning rate or check the method's options")
        if self.cfg.progress and bar is not None and mean is not None:
            bar.set_postfix(loss=f"{mean:.4f}", refresh=False)

    def epoch_logs_so_far(self, latest: dict) -> list[dict]:
        """The per-epoch logs up to and including ``latest`` (also those restored on resume)."""
        return list(self._epoch_logs)

    def fit(self, resume_state: dict[str, Any] | None = None) -> TrainResult:
        """Train, select the best epoch on validation, score the test set.

        :param resume_state: a checkpoint (:func:`~mlrpl_bench.checkpoint.load_checkpoint`) of this
            same run to continue from; the caller has checked that it belongs to this run.
        """
        with interrupts_kept():  # a Ctrl-C stops the run even if a finaliser swallows its exception
            return self._fit(resume_state)

    def _fit(self, resume_state: dict[str, Any] | None) -> TrainResult:
        cfg = self.cfg
        self.last_finite_loss: float | None = None
        start_epoch = 0
        epoch_logs: list[dict[str, Any]] = []
        self._epoch_logs = epoch_logs
        best = {"epoch": -1, "score": -math.inf, "model": None, "method": None, "val_metrics": {}}
        resumed_from = None
        if resume_state is not None:
            state = resume_state
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None and state.get("scheduler") is not None:
                self.scheduler.load_state_dict(state["scheduler"])
            self.method.load_state_dict(state["method"])
            best = state["best"]
            epoch_logs[:] = list(state["epoch_logs"])
            self.bad_images[:] = list(state.get("bad_images", []))
            start_epoch = int(state["epoch"]) + 1
            resumed_from = start_epoch
        D.broadcast_parameters(self.model, self.dist)
        self.method.on_train_start(self.model)
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            raise_if_interrupted()
            seed_everything(epoch_seed(cfg.seed, epoch))
            self.method.ctx.generator.manual_seed(epoch_seed(cfg.seed + 1, epoch))
            self.method.on_epoch_start(self.model, epoch)
            logs = self._train_epoch(epoch)
            self.method.on_epoch_end(self.model, epoch)
            lr = float(self.optimizer.param_groups[0]["lr"])
            if self.scheduler is not None:
                self.scheduler.step()
            val_scores = self.predict(self.val_rows, "validate")
            val_metrics = self.evaluate(val_scores, self.val_targets) if self.dist.is_main else {}
            val_metrics = D.broadcast_object(val_metrics, self.dist)
            score = val_metrics.get(cfg.selection_metric)
            score = -math.inf if score is None or not math.isfinite(score) else float(score)
            logs.update({f"val/{k}": v for k, v in val_metrics.items() if not isinstance(v, list)})
            logs.update({"epoch": epoch, "lr": lr, "time": time.perf_counter() - t0})
            epoch_logs.append(logs)
            if score > best["score"] or best["model"] is None:
                best = {"epoch": epoch, "score": score, "model": copy.deepcopy(self.model.state_dict()),
                        "method": copy.deepcopy(self.method.state_dict()),
                        "val_metrics": {k: v for k, v in val_metrics.items() if not isinstance(v, list)}}
            if self.dist.is_main and self.on_epoch_end is not None:
                self.on_epoch_end(epoch, logs)
            if cfg.checkpoint_path is not None and self.dist.is_main:
                save_checkpoint(cfg.checkpoint_path, {
                    "epoch": epoch, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                    "method": self.method.state_dict(), "best": best, "epoch_logs": epoch_logs,
                    "bad_images": self.bad_images, "run_fingerprint": cfg.run_fingerprint or {}})
            D.barrier(self.dist)
        if best["model"] is None:
            raise BenchError("no epoch was trained: --epochs must be at least 1")
        self.model.load_state_dict(best["model"])
        self.method.load_state_dict(best["method"])
        if not cfg.score_test:  # a tuning candidate: chosen on validation, never looks at the test split
            return TrainResult(best_epoch=int(best["epoch"]), epochs_run=len(epoch_logs), val_metrics=best["val_metrics"],
                               test_metrics={}, test_scores=np.zeros((0, self.val_targets.shape[1]), np.float32),
                               epoch_logs=epoch_logs, bad_images=sorted(set(self.bad_images)),
                               resumed_from_epoch=resumed_from)
        test_scores = self.predict(self.test_rows, "test")
        test_metrics = self.evaluate(test_scores, self.test_targets) if self.dist.is_main else {}
        return TrainResult(best_epoch=int(best["epoch"]), epochs_run=len(epoch_logs), val_metrics=best["val_metrics"],
                           test_metrics=test_metrics, test_scores=test_scores, epoch_logs=epoch_logs,
                           bad_images=sorted(set(self.bad_images)), resumed_from_epoch=resumed_from)


def resolve_precision(precision: str, device: torch.device) -> str:
    """The autocast precision a run uses on ``device``.

    ``auto``: bf16 on CUDA GPUs that support it (no loss scaling needed), fp16 with a gradient
    scaler on older GPUs, fp32 on CPUs (where mixed precision rarely pays). An explicit choice is
    kept: bf16 and fp16 autocast also work on CPUs; bf16 on a GPU without it is refused.
    """
    if precision == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise BenchError("--precision bf16: this GPU has no bfloat16 support; use fp16 (with loss scaling) or fp32")
    return precision


def _compile_in_place(model: torch.nn.Module) -> None:
    """``torch.compile`` the backbone, where the time goes (the whole model when the backbone is an
    identity, as in the frozen track). ``Module.compile`` works in place: parameter names, state
    dicts and checkpoints stay those of the plain model, and methods that call ``model.backbone``
    directly get the compiled one too."""
    backbone = getattr(model, "backbone", None)
    target = backbone if backbone is not None and any(True for _ in backbone.parameters()) else model
    target.compile()


class _LossMonitor:
    """A training epoch's running loss sums and its first non-finite loss.

    Every step only keeps its scalar tensors, detached (no kernel, no ``float(loss)``), so the
    host can queue the next batch while the GPU still runs this one; :meth:`read` stacks the kept
    values into one tensor and brings it back in one copy, every ``EngineConfig.sync_every`` steps
    and at the epoch end, and adds them on the host. The sums are float64 and add the float32
    values in step order, which is what summing their Python floats did (and what the per-step
    device-side sums this replaced gave, bit for bit).
    """

    def __init__(self, device: torch.device, last_finite: float | None):
        self.pending: list[tuple[int, tuple[str, ...], list[torch.Tensor]]] = []  # (step, names, values)
        self.tensor_sums: dict[str, float] = {}
        self.number_sums: dict[str, float] = {}
        self.count = 0
        self.first_bad = -1
        self.bad_value = 0.0
        self.last_good = math.nan if last_finite is None else float(last_finite)

    def add(self, step: int, out: dict[str, Any]) -> None:
        names, values = [], []
        for key, value in out.items():
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                names.append(key)
                values.append(value.detach())
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                # logged as float32, as the scalar tensors are
                self.number_sums[key] = self.number_sums.get(key, 0.0) + float(np.float32(value))
        self.pending.append((step, tuple(names), values))
        self.count += 1

    def _drain(self) -> None:
        """Add the kept values into the host sums in step order and find the first non-finite loss."""
        if not self.pending:
            return
        rows, self.pending = self.pending, []
        flat = torch.stack([v.reshape(()).float() for _, _, values in rows for v in values]).tolist()  # one copy
        at = 0
        for step, names, values in rows:
            row = flat[at:at + len(values)]
            at += len(values)
            for key, value in zip(names, row):
                self.tensor_sums[key] = self.tensor_sums.get(key, 0.0) + value
            loss = row[names.index("loss")]
            if self.first_bad < 0:
                if math.isfinite(loss):
                    self.last_good = loss
                else:
                    self.first_bad, self.bad_value = step, loss

    def read(self, dist: D.DistInfo) -> tuple[int, float, float, float | None]:
        """``(first bad step or -1, its loss, last finite loss before it, mean loss so far)``; the
        step is the earliest of every rank's, so all ranks take the same decision."""
        self._drain()
        total = self.tensor_sums.get("loss", 0.0)
        values = torch.tensor([[float(self.first_bad), self.bad_value, self.last_good, total / max(self.count, 1)]],
                              dtype=torch.float64)
        rows = D.all_gather_cat(values, dist).tolist()
        mine = rows[dist.rank] if dist.enabled else rows[0]
        bad = [row for row in rows if row[0] >= 0]
        if bad:
            first = min(bad, key=lambda row: row[0])
            return int(first[0]), first[1], mine[2], None
        return -1, 0.0, mine[2], mine[3] if self.count else None

    def means(self) -> dict[str, float]:
        """The epoch's mean of every logged scalar, as ``train/<name>`` (tensors first, in the order logged)."""
        self._drain()
        sums = dict(self.tensor_sums)
        sums.update(self.number_sums)
        return {f"train/{k}": v / max(self.count, 1) for k, v in sums.items()}
