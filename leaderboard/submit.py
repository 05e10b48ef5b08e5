"""Validate result records and file them under the leaderboard's results directory.

A batch is all-or-nothing: every record is read, validated against the results schema
(older schema versions upgraded or refused by :func:`mlrpl_bench.results.validate_record`) and
checked for provenance before anything is written. Records are then written atomically
(temp file + rename) at a canonical path::

    <results>/<dataset>/<setting>/<method>/<run_id>__<mask fingerprint[:12]>__<variant>.json

The mask fingerprint in the name keeps runs of different protocols apart, and the variant (a
hash of the method's version, profile and options) runs of different method configurations —
an ablation (``-o ablation=ist-only``) or ``hst -o feature_blending=true`` is filed beside the
default method, never over it. Every record is checked against the leaderboard's own truth
(:mod:`.truth`: for the built-in dataset the scores are required and rescored against the
dataset's own test labels, and the mask must be the protocol's). A record that saved its test
scores (``scores_file``, see :mod:`mlrpl_bench.scores`) is filed with them: the scores file is
checked against the record (sha256, shape, the recomputed metrics) and copied beside the filed record as
``<record stem>.scores.npz``, the record's ``scores_file.path`` naming that file (the sha256 is
unchanged). Re-submitting an identical record is a no-op; a different record
at the same path is refused, naming the fields that differ (``train.epochs: 8 (filed) vs 2
(new)``), unless ``replace=True``. New files are created with an atomic create-if-absent, so of
two processes filing different records of one run exactly one succeeds and the other is told
"already filed". If a write fails half-way, the files this batch created are removed and the
ones it replaced are restored; SIGINT and SIGTERM are held back while the batch is written or
rolled back (:func:`signals_deferred`), so an interrupted submit files all of its batch or none.
The default results directory is :func:`default_results_dir`, never the working folder.
"""

from __future__ import annotations

import hashlib
import json
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from mlrpl_bench.atomic import AlreadyExists, atomic_write_bytes, create_exclusive
from mlrpl_bench.errors import BenchError
from mlrpl_bench.results import dumps_record, read_record, validate_record
from mlrpl_bench.scores import RECORD_FIELD as SCORES_FIELD
from mlrpl_bench.schema import diff_fields, loads_strict
from mlrpl_bench.scores import scores_path
from mlrpl_bench.verification import VERIFICATION_FIELD
from mlrpl_bench.vocabulary import is_sha256, path_component  # noqa: F401 - path_component re-exported

from .aggregate import method_signature, short_hash

#: The project's filed tree, relative to the root of a checkout (pass it explicitly: ``--results leaderboard/results``).
DEFAULT_RESULTS_DIR = Path("leaderboard") / "results"
#: Environment variable naming the results directory ``submit`` files into (and ``build`` reads) by default.
RESULTS_ENV = "MLRPL_BENCH_RESULTS"


def default_results_dir() -> Path:
    """Where ``submit`` files and ``build``/``export`` read when no ``--results`` is given:
    ``$MLRPL_BENCH_RESULTS``, else ``$XDG_DATA_HOME/mlrpl-bench/results`` (``~/.local/share/...``).
    Never relative to the working folder: run from a checkout, a default there would file into it."""
    import os

    if os.environ.get(RESULTS_ENV):
        return Path(os.environ[RESULTS_ENV]).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path("~/.local/share").expanduser())
    return Path(data_home).expanduser() / "mlrpl-bench" / "results"

#: code_version values that do not identify the code that produced a record.
_NO_CODE_VERSION = {"", "unknown", "none", "null"}


class SubmissionRefused(BenchError):
    """One or more records of a batch are invalid; nothing was filed. ``errors`` has one line per problem."""

    def __init__(self, errors: list[str], total: int):
        self.errors = errors
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"refused {len(errors)} of {total} record(s), nothing was filed: {errors[0]}{more}")


@dataclass
class Filed:
    """What happened to one submitted record."""

    source: Path
    target: Path
    status: str  # "filed", "unchanged" (identical record already filed) or "replaced"
    warnings: list[str] = field(default_factory=list)
    scores: Path | None = None  # the filed copy of the record's test scores, if it saved any


def canonical_path(record: dict, results_dir: str | Path | None = None) -> Path:
    """Where a validated record is filed under ``results_dir`` (default: :func:`default_results_dir`)."""
    results_dir = default_results_dir() if results_dir is None else results_dir
    mask = record["protocol"]["mask_fingerprint"][:12]
    variant = short_hash(method_signature(record))
    return (Path(results_dir) / path_component(record["dataset"]["name"]) / path_component(record["protocol"]["setting"])
            / path_component(record["method"]["name"]) / f"{path_component(record['run_id'])}__{mask}__{variant}.json")


def check_provenance(record: dict, source: str) -> list[str]:
    """Raise a :class:`BenchError` for missing provenance; return warnings for weak provenance.

    Required: ``environment.code_version`` (a commit, not "unknown"), ``method.version``,
    ``dataset.fingerprint.train``/``.test`` and ``protocol.mask_fingerprint`` as sha256 digests
    (``protocol.val_fingerprint`` too when present).
    """
    code = str(record["environment"].get("code_version", "")).strip()
    if code.lower() in _NO_CODE_VERSION:
        raise BenchError(f"{source}: field 'environment.code_version' is {code!r}; re-run from a git checkout "
                         "or set MLRPL_BENCH_CODE_VERSION to the commit that produced the record")
    if not record["method"]["version"].strip():
        raise BenchError(f"{source}: field 'method.version' is empty; the plugin must declare its implementation version")
    fingerprint = record["dataset"]["fingerprint"]
    for split in ("train", "test"):
        value = fingerprint.get(split)
        if not is_sha256(value):
            raise BenchError(f"{source}: field 'dataset.fingerprint.{split}' is {value!r}; expected the sha256 "
                             "hex digest mlrpl-bench run writes")
    for key in ("mask_fingerprint", "val_fingerprint"):
        value = record["protocol"].get(key)
        if key == "val_fingerprint" and value is None:
            continue
        if not is_sha256(value):
            raise BenchError(f"{source}: field 'protocol.{key}' is {value!r}; expected a sha256 hex digest")
    if not record["method"]["name"].strip() or not record["dataset"]["name"].strip():
        raise BenchError(f"{source}: field 'method.name' or 'dataset.name' is empty")
    _check_per_class_ap(record, source)
    warnings = []
    if code.endswith("+dirty"):
        warnings.append(f"{source}: produced from modified code ({code}); the leaderboard marks it")
    return warnings


def _check_per_class_ap(record: dict, source: str) -> None:
    """The test mAP must be the mean of the per-class APs it was computed from (catches edited numbers)."""
    per_class = record.get("per_class_ap", {}).get("test")
    if per_class is None:
        return
    n = record["dataset"]["num_classes"]
    if not isinstance(per_class, list) or len(per_class) != n:
        size = len(per_class) if isinstance(per_class, list) else type(per_class).__name__
        raise BenchError(f"{source}: field 'per_class_ap.test' has {size} entries; expected one per class ({n})")
    values = []
    for i, v in enumerate(per_class):
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 100:
            raise BenchError(f"{source}: field 'per_class_ap.test[{i}]' is {v!r}; expected a percentage or null")
        values.append(float(v))
    reported = record["metrics"]["test"].get("mAP")
    if values and reported is not None and abs(sum(values) / len(values) - reported) > 0.01:
        raise BenchError(f"{source}: field 'metrics.test.mAP' is {reported} but the mean of 'per_class_ap.test' is "
                         f"{sum(values) / len(values):.4f}; records must not be edited by hand")


def load_submission(path: str | Path) -> tuple[dict, list[str]]:
    """Read, validate and provenance-check one record file; returns (record, warnings).

    The record is checked against the leaderboard's own truth (:func:`.truth.check_against_truth`:
    for the built-in dataset its scores are required and rescored against the dataset's own test
    labels, its mask against the protocol's; elsewhere a scores file it names is checked against
    the record). A ``verification`` block is dropped with a warning: only ``leaderboard verify
    --stamp``, run by the leaderboard on its filed tree, writes one.
    """
    from .truth import check_against_truth, implausibility

    path = Path(path)
    record = read_record(path)
    warnings = check_provenance(record, str(path))
    check_against_truth(path, record)
    if record.get(VERIFICATION_FIELD) is not None:
        record = {k: v for k, v in record.items() if k != VERIFICATION_FIELD}
        warnings.append(f"{path}: its '{VERIFICATION_FIELD}' block was dropped; the leaderboard's runner verifies "
                        "filed records itself (`mlrpl-bench leaderboard verify --stamp`)")
    warnings += [f"{path}: implausible: {why}; the leaderboard flags it" for why in implausibility(record)]
    return record, warnings


def scores_target(target: Path) -> Path:
    """Where the test scores of the record filed at ``target`` go: ``<stem>.scores.npz`` beside it."""
    return target.with_name(f"{target.stem}.scores.npz")


def _with_filed_scores(record: dict, target: Path) -> dict:
    """``record`` with ``scores_file.path`` naming the copy filed beside ``target`` (unchanged without scores)."""
    block = record.get(SCORES_FIELD)
    if not isinstance(block, dict):
        return record
    return {**record, SCORES_FIELD: {**block, "path": scores_target(target).name}}


def _content(record: dict) -> bytes:
    return dumps_record(record).encode()


#: Record parts that may differ between two submissions of the same result.
_VOLATILE = ("submission", VERIFICATION_FIELD)
#: Record parts left out of a collision message (they always differ between two runs).
_NOT_SHOWN = ("submission", "runtime", "environment", "config_hash")


def _differences(existing: bytes, new: dict) -> list[str] | None:
    """The fields where a filed record differs from ``new`` (``[]`` when it is the same record),
    or None when the filed file is not a readable record."""
    try:
        old = loads_strict(existing, source="filed record")
    except BenchError:
        return None
    old = {k: v for k, v in old.items() if k not in _VOLATILE}
    new = json.loads(dumps_record({k: v for k, v in new.items() if k not in _VOLATILE}))
    if old == new:
        return []
    shown = diff_fields(old, new, old="filed", new="new", ignore=_NOT_SHOWN)
    return shown or ["runtime or environment"]


def _same_record(existing: bytes, new: dict) -> bool:
    return _differences(existing, new) == []


def _collision(path: Path, target: Path, differences: list[str] | None) -> str:
    what = "; ".join((differences or ["unreadable file"])[:4])
    more = f" and {len(differences) - 4} more" if differences and len(differences) > 4 else ""
    return (f"{path}: {target} already holds a different record for this run and protocol ({what}{more}); "
            "pass --replace to overwrite it")


def expand_runs(paths: list[str | Path]) -> list[Path]:
    """Record files as given; a folder stands for every ``<run>/record.json`` below it (a runs tree),
    leaving out protocol caches (``_protocol/``), epoch logs, checkpoints and tuning candidates."""
    from mlrpl_bench.results import is_record_path

    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("record.json") if is_record_path(p.relative_to(path)))
            out.extend(found or [path])  # a folder without records is refused as one, with the others
        else:
            out.append(path)
    return out


def submit_records(paths: list[str | Path], results_dir: str | Path | None = None, *,
                   replace: bool = False) -> list[Filed]:
    """Validate every record of the batch, then file them all (or none).

    :raises SubmissionRefused: when any record is invalid or would overwrite a different
        record (without ``replace``); nothing is written in that case.
    """
    paths = expand_runs(paths)
    if not paths:
        raise BenchError("no record files given; pass one or more RECORD.json files or a runs/ folder")
    results_dir = default_results_dir() if results_dir is None else Path(results_dir)
    errors: list[str] = []
    planned: dict[Path, tuple[Path, dict, list[str], Path | None]] = {}
    for raw_path in paths:
        path = Path(raw_path)
        try:
            record, warnings = load_submission(path)
        except BenchError as exc:
            errors.append(str(exc))
            continue
        target = canonical_path(record, results_dir)
        source_scores = scores_path(path, record)
        record = _with_filed_scores(record, target)
        if target in planned:
            other = planned[target][0]
            if not _same_record(_content(planned[target][1]), record):
                errors.append(f"{path}: same run_id, protocol and method options as {other} but a different record; submit one of them")
            continue
        planned[target] = (path, record, warnings, source_scores)
    if errors:
        raise SubmissionRefused(errors, len(paths))

    actions: list[tuple[Filed, bytes | None, bytes]] = []
    scores_actions: list[tuple[Path, bytes]] = []
    for target, (path, record, warnings, source_scores) in planned.items():
        original = path.read_bytes()
        stored = dict(record)
        stored["submission"] = {"submitted": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                "source_name": path.name, "source_sha256": hashlib.sha256(original).hexdigest()}
        previous = target.read_bytes() if target.exists() else None
        differences = _differences(previous, record) if previous is not None else None
        scores = scores_target(target) if source_scores is not None else None
        if scores is not None:  # copied whatever happens to the record (only written if it differs)
            scores_actions.append((scores, source_scores.read_bytes()))
        if previous is not None and differences == []:
            actions.append((Filed(path, target, "unchanged", warnings, scores), previous, b""))
            continue
        if previous is not None and not replace:
            errors.append(_collision(path, target, differences))
            continue
        actions.append((Filed(path, target, "replaced" if previous is not None else "filed", warnings, scores), previous,
                        _content(stored)))
    if errors:
        raise SubmissionRefused(errors, len(paths))

    done: list[tuple[Path, bytes | None]] = []  # (file written or about to be, its previous content or None)
    with signals_deferred():  # Ctrl-C / SIGTERM take effect once the batch is filed or rolled back
        try:
            # The scores first: a filed record never names a scores file that is not there yet.
            for target, data in scores_actions:
                previous = target.read_bytes() if target.exists() else None
                if previous != data:
                    done.append((target, previous))  # before the write: an interrupted write is undone too
                    atomic_write_bytes(target, data)
            for filed, previous, data in actions:
                if filed.status == "unchanged":
                    continue
                if filed.status == "filed":
                    done.append((filed.target, None))
                    try:
                        _create(filed, data)
                    except BenchError:  # filed meanwhile by another process: never roll that file back
                        done.pop()
                        raise
                    if filed.status == "unchanged":  # the same record, filed meanwhile by another process
                        done.pop()
                else:
                    done.append((filed.target, previous))
                    atomic_write_bytes(filed.target, data)
        except BaseException:
            _roll_back(done)
            raise
    return [filed for filed, _, _ in actions]


#: The signals :func:`signals_deferred` holds back (SIGTERM: a CI job cancelled, a container stopped).
_DEFERRED_SIGNALS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s is not None)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold back SIGINT and SIGTERM during the block and deliver them when it ends.

    ``submit`` writes a batch and, when a write fails, removes what it wrote: a signal in the
    middle of either would leave a half-filed batch (a record without the scores file it names).
    Held back, a Ctrl-C arrives as ``KeyboardInterrupt`` after the batch is complete, and a
    SIGTERM is raised again under the handler that was installed before (the default one ends
    the process). Only in the main thread, the one Python delivers signals to; elsewhere the
    block runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in _DEFERRED_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(received):
            if s == signal.SIGINT:
                raise KeyboardInterrupt
            signal.raise_signal(s)


def _create(filed: Filed, data: bytes) -> None:
    """File a new record with create-if-absent: a concurrent writer of the same run loses cleanly."""
    try:
        create_exclusive(filed.target, data)
    except AlreadyExists:
        existing = filed.target.read_bytes()
        differences = _differences(existing, json.loads(data))
        if differences == []:
            filed.status = "unchanged"
            return
        raise BenchError(_collision(filed.source, filed.target, differences).replace(
            "already holds", "was filed meanwhile by another process and holds")) from None


def _roll_back(done: list[tuple[Path, bytes | None]]) -> None:
    """Undo this batch's writes (records and scores files): remove new files, restore replaced ones."""
    for target, previous in reversed(done):
        try:
            if previous is None:
                target.unlink(missing_ok=True)
            else:
                atomic_write_bytes(target, previous)
        except (OSError, BenchError):  # best effort: the original error is what the user sees
            pass
