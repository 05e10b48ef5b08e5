"""The results record: one JSON file per (method, dataset, setting, known proportion, seed).

This module is the written-down schema -- a pydantic model (:class:`Record`) with strict types,
ranges and choices declared once beside each field -- its reader and writer (strict JSON: no
``NaN``/``Infinity``), and :func:`build_record`, the one function that assembles a record from a
prepared run and what the run measured. It is torch-free: the leaderboard reads records through
it without importing torch, a plugin or the engine. Older schema versions are upgraded by
:func:`upgrade_record` or refused with a reason.

Schema version 1 is the first published one. Blocks may carry further keys (a record names its
own ``train`` settings, ``runtime`` facts ...); the keys listed here are required and typed.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from .atomic import atomic_write_bytes, create_exclusive
from .errors import BenchError
from .metrics import SUMMARY_METRICS, metric_names
from .schema import dumps_strict, loads_strict, read_json_file, validate_model
from .vocabulary import (check_proportion, check_seed, check_setting, check_sha256, make_run_id,  # noqa: F401
                         safe_name)

if TYPE_CHECKING:  # pragma: no cover
    from .run_config import PreparedRun

SCHEMA_VERSION = 1

#: Metric names of every metrics block (percentages, 0-100; None where undefined): the metric
#: specification's (:data:`mlrpl_bench.metrics.METRICS`).
METRIC_NAMES = metric_names()

Sha256 = Annotated[str, AfterValidator(check_sha256)]
Percent = Annotated[float, Field(ge=0, le=100)]
Setting = Annotated[str, AfterValidator(check_setting)]
Known = Annotated[float, AfterValidator(check_proportion)]
Seed = Annotated[int, AfterValidator(check_seed)]


class _Block(BaseModel):
    """A record block: the declared keys are required and typed; further keys are kept."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class MethodInfo(_Block):
    name: str                 # registry name, e.g. "hst"
    version: str              # the plugin's implementation version
    options: dict[str, Any]   # resolved method options (after profile and overrides)
    profile: str              # "default", "paper", ...


class DatasetInfo(_Block):
    name: str
    num_classes: Annotated[int, Field(ge=1)]
    sizes: dict[str, Annotated[int, Field(ge=0)]]   # {"train": n, "val": n, "test": n} after the validation split
    fingerprint: dict[str, str]                     # {"train": sha256, "test": sha256} of ids + labels + options


class ProtocolInfo(_Block):
    setting: Setting          # full | pal | ppl | spl
    known: Known              # known proportion in (0, 1]
    seed: Seed
    scheme: str               # "generator" (default) or "hcp" (bit-exact official release)
    mask_fingerprint: Sha256  # sha256 of the partial training label matrix
    val_fingerprint: Sha256 | None = None   # sha256 of the validation row indices


class SelectionInfo(_Block):
    metric: str               # the validation metric used to choose the epoch ("mAP")
    best_epoch: Annotated[int, Field(ge=0)]   # 0-based


#: A record's test metrics: every summary metric of the specification is required (a percentage or None).
TestMetrics = create_model("TestMetrics", __base__=_Block,
                           **{name: (Percent | None, ...) for name in SUMMARY_METRICS})  # type: ignore[call-overload]


class Metrics(_Block):
    test: TestMetrics         # {metric: value, "classes_skipped": n}


class Environment(_Block):
    code_version: str         # git commit (+dirty) of the code that ran
    mlrpl_bench: str


class Record(BaseModel):
    """A results record (schema version 1)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    schema_version: int
    run_id: str
    config_hash: str | None = None
    method: MethodInfo
    dataset: DatasetInfo
    protocol: ProtocolInfo
    train: dict[str, Any]     # resolved TrainConfig + device, world_size, word_embeddings
    selection: SelectionInfo
    metrics: Metrics
    per_class_ap: dict[str, Any]   # {"test": [C percentages or None]}
    runtime: dict[str, Any]   # seconds, started, finished (ISO 8601 UTC), device, resumed_from_epoch
    environment: Environment  # python, torch, torchvision, numpy, mlrpl_bench, code_version, platform
    data_issues: dict[str, Any] = Field(default_factory=dict)   # {"bad_images_skipped": n}
    epoch_log: str = "epochs.jsonl"   # the per-epoch log (JSON lines) beside the record
    tuning: dict[str, Any] | None = None       # the --tune grid, every candidate's validation score, the choice
    scores_file: dict[str, Any] | None = None  # {"path": "test_scores.npz", "sha256": ..., "dtype": ...} (mlrpl_bench.scores)
    submission: dict[str, Any] | None = None   # added by `leaderboard submit`
    verification: dict[str, Any] | None = None  # added by `leaderboard verify --stamp` (mlrpl_bench.leaderboard.verify)


def validate_record(record: Any, *, source: str = "record") -> dict:
    """Check a record against the schema (upgrading older versions) and return it.

    :raises BenchError: one line naming the source, the first wrong field, its value and the rule.
    """
    if not isinstance(record, dict):
        raise BenchError(f"{source}: a results record must be a JSON object")
    record = upgrade_record(record, source=source)
    validate_model(Record, record, owner=source)
    proto = record["protocol"]
    expected_id = make_run_id(record["method"]["name"], record["dataset"]["name"], proto["setting"], proto["known"],
                              proto["seed"])
    if record["run_id"] != expected_id:
        raise BenchError(f"{source}: field 'run_id' is {record['run_id']!r} but method/dataset/protocol say {expected_id!r}")
    return record


def upgrade_record(record: dict, *, source: str = "record") -> dict:
    """Bring an older record to :data:`SCHEMA_VERSION`, or refuse it with a reason.

    Version 1 is the first published version, so today this only refuses unknown versions.
    """
    version = record.get("schema_version")
    if version == SCHEMA_VERSION and not isinstance(version, bool):
        return record
    if not isinstance(version, int) or isinstance(version, bool):
        raise BenchError(f"{source}: field 'schema_version' is missing or not an integer; is this a results record "
                         "(runs/<run>/record.json)?")
    if version > SCHEMA_VERSION:
        raise BenchError(f"{source}: schema_version {version} is newer than this mlrpl-bench understands ({SCHEMA_VERSION}); upgrade mlrpl-bench")
    raise BenchError(f"{source}: schema_version {version} is not supported (no upgrade path to {SCHEMA_VERSION})")


def plain(value: Any, *, nan_to_none: bool = False) -> Any:
    """``value`` with numpy scalars/arrays and tuples turned into Python values and lists.

    :param nan_to_none: also turn NaN/inf into None -- for logs and printed metrics, never for
        records (a record with a non-finite number is refused instead).
    """
    if isinstance(value, dict):
        return {str(k): plain(v, nan_to_none=nan_to_none) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, nan_to_none=nan_to_none) for v in value]
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":
        return plain(value.tolist(), nan_to_none=nan_to_none)
    if nan_to_none and isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_json_safe(value: Any) -> Any:
    """:func:`plain` with NaN/inf as None (epoch logs, ``evaluate --json``)."""
    return plain(value, nan_to_none=True)


def dumps_record(record: dict, *, source: str = "record") -> str:
    """The record as JSON text; a NaN or infinity anywhere is refused (naming where)."""
    return dumps_strict(plain(record), source=source) + "\n"


def write_record(path: str | Path, record: dict, *, exclusive: bool = False) -> Path:
    """Validate and write a record atomically.

    :param exclusive: create the file only if it does not exist (two writers of one run cannot
        both succeed; the second gets :class:`~mlrpl_bench.atomic.AlreadyExists`).
    """
    path = Path(path)
    record = plain(record)
    validate_record(record, source=str(path))
    data = dumps_record(record, source=str(path)).encode()
    if exclusive:
        create_exclusive(path, data)
    else:
        atomic_write_bytes(path, data)
    return path


def read_record_text(data: str | bytes, *, source: str) -> dict:
    """Parse (strict JSON) and validate a record's text. Never unpickles or executes anything."""
    return validate_record(loads_strict(data, source=source), source=source)


def read_record(path: str | Path) -> dict:
    """Read and validate a record file."""
    path = Path(path)
    data = read_json_file(path, what="record file", hint="pass the record JSON files (e.g. runs/*/record.json)")
    return validate_record(data, source=str(path))


def is_record_path(path: str | Path) -> bool:
    """Whether a file under a runs tree is a results record (``<run>/record.json``), not a
    protocol cache (``_protocol/*.json``), an epoch log or a checkpoint."""
    path = Path(path)
    return path.name == "record.json" and not any(part.startswith("_") for part in path.parts[:-1])


@dataclasses.dataclass(frozen=True)
class DataFacts:
    """What one run's data was: split sizes, fingerprints, classes, the protocol's mask."""

    sizes: dict[str, int]
    fingerprint: dict[str, str]
    class_names: list[str]
    mask_fingerprint: str
    val_fingerprint: str
    per_class_known_positives: list[int] | None = None  # known positives per class in the training rows


@dataclasses.dataclass(frozen=True)
class TrainingFacts:
    """What training measured: the selected epoch, its metrics, the images skipped."""

    best_epoch: int
    epochs_run: int
    val_metrics: dict[str, Any]
    test_metrics: dict[str, Any]
    bad_images: list[str]
    resumed_from_epoch: int | None
    precision_used: str | None = None  # what the train setting `precision` became on the device


@dataclasses.dataclass(frozen=True)
class RuntimeFacts:
    """Where and how long it ran."""

    seconds: float
    started: datetime
    device: str
    device_description: str
    world_size: int
    environment: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class RunOutcome:
    """What one run measured, in plain values (the engine's result and the harness's facts)."""

    run_id: str
    known: float
    seed: int
    data: DataFacts
    training: TrainingFacts
    runtime: RuntimeFacts
    tuning: dict[str, Any] | None = None
    scores_file: dict[str, Any] | None = None  # where the saved test scores are (mlrpl_bench.scores)


def method_source_sha256(method_cls: type) -> str | None:
    """sha256 of the source file that defines ``method_cls`` (None when it has none, e.g. a class
    made in a notebook): with the distribution's name and version, what says which code trained a run."""
    import hashlib
    import inspect

    try:
        path = inspect.getsourcefile(method_cls)
        return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None
    except (OSError, TypeError):
        return None


def build_record(prepared: PreparedRun, outcome: RunOutcome, *, config_hash: str | None = None) -> dict[str, Any]:
    """The results record of one run of ``prepared`` (schema: :class:`Record`).

    :param config_hash: the configuration's hash when ``prepared`` is one candidate of a tuned
        configuration (the record carries the tuned configuration's, which names the grid).
    """
    config, train = prepared.config, prepared.train
    test = dict(outcome.training.test_metrics)
    per_class = test.pop("per_class_ap", None)
    test.pop("per_class_ap_noninterp", None)
    entry = prepared.method_entry
    record = {
        "schema_version": SCHEMA_VERSION,
        "run_id": outcome.run_id,
        "config_hash": config_hash or prepared.config_hash,
        "method": {"name": prepared.method_cls.name, "version": prepared.method_cls.version,
                   "options": dataclasses.asdict(prepared.method_options), "profile": config.profile or "default",
                   "citation": prepared.method_cls.citation, "distribution": entry.distribution,
                   "distribution_version": entry.version, "source_sha256": method_source_sha256(prepared.method_cls)},
        "dataset": {"name": prepared.dataset_name, "options": prepared.dataset_options_dict(),
                    "num_classes": len(outcome.data.class_names), "class_names": list(outcome.data.class_names),
                    "sizes": dict(outcome.data.sizes), "fingerprint": dict(outcome.data.fingerprint),
                    **prepared.dataset_cls.record_info()},
        "protocol": {"setting": config.setting, "known": float(outcome.known), "seed": int(outcome.seed),
                     "scheme": config.scheme, "val_fraction": train.val_fraction,
                     "mask_fingerprint": outcome.data.mask_fingerprint, "val_fingerprint": outcome.data.val_fingerprint},
        "train": {**dataclasses.asdict(train), "device": outcome.runtime.device, "world_size": outcome.runtime.world_size,
                  "word_embeddings": config.word_embeddings or "fallback"},
        "selection": {"metric": "mAP", "best_epoch": outcome.training.best_epoch, "epochs_run": outcome.training.epochs_run,
                      "split": "validation"},
        "metrics": {"val": outcome.training.val_metrics, "test": test},
        "per_class_ap": {"test": per_class},
        "runtime": {"seconds": round(outcome.runtime.seconds, 3), "started": outcome.runtime.started.isoformat(timespec="seconds"),
                    "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "device": outcome.runtime.device_description, "resumed_from_epoch": outcome.training.resumed_from_epoch},
        "environment": outcome.runtime.environment,
        "data_issues": {"bad_images_skipped": len(outcome.training.bad_images), "bad_images": outcome.training.bad_images[:100]},
        "epoch_log": "epochs.jsonl",
    }
    # Always present (null for weights that are no file: none), so the leaderboard can tell runs
    # from scratch from runs of older records that did not say.
    record["train"]["backbone_weights_sha256"] = prepared.weights_sha256
    if outcome.training.precision_used is not None:
        record["train"]["precision_used"] = outcome.training.precision_used
    draw = getattr(prepared.dataset_cls, "test_draw", None)
    if isinstance(draw, str):  # a dataset with a generated test split says which draw scored the run
        record["dataset"]["test_draw"] = draw
    family = getattr(prepared.method_cls, "family", None)
    if family:
        record["method"]["family"] = family
    if outcome.data.per_class_known_positives is not None:
        # the leaderboard's class-frequency bins
        record["protocol"]["per_class_known_positives"] = list(outcome.data.per_class_known_positives)
    if outcome.tuning is not None:
        record["tuning"] = outcome.tuning
    if outcome.scores_file is not None:
        record["scores_file"] = outcome.scores_file
    return plain(record)
