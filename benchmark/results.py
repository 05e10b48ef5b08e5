"""The results record: one JSON file per (method, dataset, setting, known proportion, seed).

This module is the written-down schema (commented TypedDicts), its validator and its atomic
writer. It is pure Python + json: the leaderboard reads records through it without importing
torch, a plugin or the engine. Older schema versions are upgraded by :func:`upgrade_record` or
refused with a reason.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, TypedDict

from .errors import BenchError
from .atomic import atomic_write_bytes

SCHEMA_VERSION = 1

#: Metric names of every metrics block (percentages, 0-100; None where undefined).
METRIC_NAMES = (
    "mAP", "mAP_noninterp",
    "OP", "OR", "OF1", "CP", "CR", "CF1",
    "OP_top3", "OR_top3", "OF1_top3", "CP_top3", "CR_top3", "CF1_top3",
)


class MethodInfo(TypedDict):
    name: str            # registry name, e.g. "hst"
    version: str         # the plugin's implementation version
    options: dict        # resolved method options (after profile and overrides)
    profile: str         # "default", "paper", ...
    citation: str
    distribution: str    # the Python distribution that provided the plugin
    distribution_version: str


class DatasetInfo(TypedDict):
    name: str
    options: dict        # loader options that shaped the labels (e.g. VOC difficult handling)
    num_classes: int
    class_names: list
    sizes: dict          # {"train": n, "val": n, "test": n} after the validation split
    fingerprint: dict    # {"train": sha256, "test": sha256} of ids + labels + options


class ProtocolInfo(TypedDict):
    setting: str         # full | pal | ppl | spl
    known: float         # known proportion in (0, 1]
    seed: int
    scheme: str          # "generator" (default) or "hcp" (bit-exact official release)
    val_fraction: float
    mask_fingerprint: str  # sha256 of the partial training label matrix (incl. val rows removed)
    val_fingerprint: str   # sha256 of the validation row indices


class SelectionInfo(TypedDict):
    metric: str          # the validation metric used to choose the epoch ("mAP")
    best_epoch: int      # 0-based
    epochs_run: int


class Record(TypedDict):
    schema_version: int
    run_id: str
    method: MethodInfo
    dataset: DatasetInfo
    protocol: ProtocolInfo
    train: dict          # resolved TrainConfig + device, world_size, track
    selection: SelectionInfo
    metrics: dict        # {"val": {metric: value}, "test": {metric: value, "classes_skipped": n}}
    per_class_ap: dict   # {"test": [C floats or None]}
    runtime: dict        # seconds, started, finished (ISO 8601 UTC)
    environment: dict    # python, torch, torchvision, numpy, mlrpl_bench, code_version, platform
    data_issues: dict    # {"bad_images_skipped": n}
    epoch_log: str       # file name of the per-epoch log (JSON lines) beside the record


_RUN_ID_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def make_run_id(method: str, dataset: str, setting: str, known: float, seed: int) -> str:
    """A file-system safe identifier, e.g. ``hst__voc2007__pal__0.3__seed0``."""
    parts = [method, dataset, setting, f"{known:g}", f"seed{seed}"]
    return "__".join(safe_name(p) for p in parts)


def safe_name(text: Any) -> str:
    """``text`` with every run of characters other than letters, digits, ``._-`` replaced by ``-``
    (run ids and run-directory names)."""
    return _RUN_ID_SAFE.sub("-", str(text))


_REQUIRED: dict[str, dict[str, type | tuple[type, ...]]] = {
    "": {"schema_version": int, "run_id": str, "method": dict, "dataset": dict, "protocol": dict,
         "train": dict, "selection": dict, "metrics": dict, "per_class_ap": dict, "runtime": dict,
         "environment": dict},
    "method": {"name": str, "version": str, "options": dict, "profile": str},
    "dataset": {"name": str, "num_classes": int, "sizes": dict, "fingerprint": dict},
    "protocol": {"setting": str, "known": (int, float), "seed": int, "scheme": str, "mask_fingerprint": str},
    "selection": {"metric": str, "best_epoch": int},
    "environment": {"code_version": str, "mlrpl_bench": str},
}


def validate_record(record: Any, *, source: str = "record") -> dict:
    """Check a record against the schema (upgrading older versions) and return it.

    :raises BenchError: naming the source and the first field that is wrong.
    """
    if not isinstance(record, dict):
        raise BenchError(f"{source}: a results record must be a JSON object")
    record = upgrade_record(record, source=source)
    for section, fields in _REQUIRED.items():
        block = record if not section else record[section]
        for key, typ in fields.items():
            where = f"{section}.{key}" if section else key
            if key not in block:
                raise BenchError(f"{source}: field {where!r} is missing")
            value = block[key]
            if isinstance(value, bool) and typ is not bool:
                raise BenchError(f"{source}: field {where!r} must be {_tname(typ)}, got a boolean")
            if not isinstance(value, typ):
                raise BenchError(f"{source}: field {where!r} must be {_tname(typ)}, got {type(value).__name__}")
    proto = record["protocol"]
    if proto["setting"] not in ("full", "pal", "ppl", "spl"):
        raise BenchError(f"{source}: field 'protocol.setting' is {proto['setting']!r}; expected full, pal, ppl or spl")
    if not 0 < float(proto["known"]) <= 1:
        raise BenchError(f"{source}: field 'protocol.known' is {proto['known']}; expected a proportion in (0, 1]")
    if not re.fullmatch(r"[0-9a-f]{64}", proto["mask_fingerprint"]):
        raise BenchError(f"{source}: field 'protocol.mask_fingerprint' must be a sha256 hex digest")
    test = record["metrics"].get("test")
    if not isinstance(test, dict):
        raise BenchError(f"{source}: field 'metrics.test' is missing")
    for name in ("mAP", "OF1", "CF1"):
        value = test.get(name)
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or not 0 <= value <= 100):
            raise BenchError(f"{source}: field 'metrics.test.{name}' is {value!r}; expected a percentage in [0, 100]")
        if name not in test:
            raise BenchError(f"{source}: field 'metrics.test.{name}' is missing")
    expected_id = make_run_id(record["method"]["name"], record["dataset"]["name"], proto["setting"], float(proto["known"]), proto["seed"])
    if record["run_id"] != expected_id:
        raise BenchError(f"{source}: field 'run_id' is {record['run_id']!r} but method/dataset/protocol say {expected_id!r}")
    return record


def _tname(typ) -> str:
    if isinstance(typ, tuple):
        return " or ".join(t.__name__ for t in typ)
    return {"dict": "an object", "str": "a string", "int": "an integer", "float": "a number", "list": "a list"}.get(typ.__name__, typ.__name__)


def upgrade_record(record: dict, *, source: str = "record") -> dict:
    """Bring an older record to :data:`SCHEMA_VERSION`, or refuse it with a reason.

    Version 1 is the first published version, so today this only refuses unknown versions.
    """
    version = record.get("schema_version")
    if version == SCHEMA_VERSION:
        return record
    if not isinstance(version, int) or isinstance(version, bool):
        raise BenchError(f"{source}: field 'schema_version' is missing or not an integer")
    if version > SCHEMA_VERSION:
        raise BenchError(f"{source}: schema_version {version} is newer than this mlrpl-bench understands ({SCHEMA_VERSION}); upgrade mlrpl-bench")
    raise BenchError(f"{source}: schema_version {version} is not supported (no upgrade path to {SCHEMA_VERSION})")


def to_json_safe(value: Any) -> Any:
    """Replace NaN/inf by None and numpy scalars/arrays by Python values, recursively."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None
    if isinstance(value, dict):
        return {str(k): to_json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_safe(v) for v in value]
    if np is not None:
        if isinstance(value, np.ndarray):
            return to_json_safe(value.tolist())
        if isinstance(value, np.generic):
            value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps_record(record: dict) -> str:
    return json.dumps(to_json_safe(record), indent=2, sort_keys=False, allow_nan=False) + "\n"


def write_record(path: str | Path, record: dict) -> Path:
    """Validate and write a record atomically (temp file + rename)."""
    path = Path(path)
    validate_record(to_json_safe(record), source=str(path))
    atomic_write_bytes(path, dumps_record(record).encode())
    return path


def read_record(path: str | Path) -> dict:
    """Read and validate a record file. Never unpickles or executes anything."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BenchError(f"{path}: record file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchError(f"{path}: not valid JSON ({exc}); results records are JSON files written by mlrpl-bench run") from None
    return validate_record(data, source=str(path))
