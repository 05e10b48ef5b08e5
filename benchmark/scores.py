"""Saved test scores: the one format ``mlrpl-bench run --save-scores`` writes beside a record.

A run's test predictions are what a per-image bootstrap of its metrics needs (the leaderboard's
intervals and paired tests use them where they exist). The format, in one place:

* ``<run_dir>/test_scores.npz`` written with :func:`numpy.savez_compressed`, two arrays:
  ``scores`` ``(N, C)`` (the method's probabilities; NaN rows are images skipped as
  unreadable), float16 — or float32 when float16 would change a class's AP, see below — and
  ``targets`` int8 ``(N, C)`` (the test labels under the 1 / -1 / 0 contract);
* the record gets ``"scores_file": {"path": "test_scores.npz", "sha256": "<hex digest of the
  file>", "dtype": "float16" | "float32"}``, the path relative to the record's directory.

float16 is checked, not assumed: it keeps ~3 significant digits, and a model whose
probabilities all sit near one value (an under-trained one: 0.47..0.53 after one epoch) loses
its ranking to ties — one such run's mAP fell from 24.9 to 21.8. So :func:`write_scores` keeps
float16 only when every class's AP is unchanged to :data:`AP_TOLERANCE`, else writes float32,
and :func:`verify_scores` checks a file against its record's mAP. Saving is on by default for
the built-in datasets (digit-scenes: 600 x 20 scores, ~20 kB compressed; voc2007-scenes: 4,952 x
20) and off for the others (MS-COCO's test set is 40,504 x 80), see :func:`save_by_default`.

Pure numpy: the leaderboard reads these files without torch.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np

from .atomic import atomic_write_bytes
from .errors import BenchError

#: The file name a run writes (relative to its run directory).
SCORES_FILE = "test_scores.npz"
#: The record field that points at the file.
RECORD_FIELD = "scores_file"
#: Datasets whose runs save their test scores unless ``--no-save-scores`` is given.
SAVE_BY_DEFAULT = frozenset({"digit-scenes", "voc2007-scenes"})
#: Largest change of any class's AP (points) that float16 storage may cause; else float32 is written.
AP_TOLERANCE = 0.01
#: Largest |recomputed - recorded| test mAP (points) accepted when a scores file is read back.
MAP_TOLERANCE = 0.05
#: Largest scores file read (compressed on disk, or any one array unpacked from it): MS-COCO's
#: test set in float32 is 13 MB; a larger file, or an endless one (``/dev/zero``), is refused unread.
MAX_SCORES_BYTES = 1 << 30


def save_by_default(dataset: str) -> bool:
    """Whether a run on ``dataset`` saves its test scores when neither flag is given."""
    return dataset in SAVE_BY_DEFAULT


def should_save(requested: bool | None, dataset: str) -> bool:
    """``--save-scores`` / ``--no-save-scores`` when given, else the dataset's default."""
    return save_by_default(dataset) if requested is None else bool(requested)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_scores(run_dir: str | Path, scores: np.ndarray, targets: np.ndarray) -> dict:
    """Write ``test_scores.npz`` into ``run_dir`` atomically; return the record's ``scores_file`` block.

    :raises BenchError: when the two matrices do not have the same 2-D shape.
    """
    scores, targets = np.asarray(scores, dtype=np.float32), np.asarray(targets).astype(np.int8)
    if scores.ndim != 2 or scores.shape != targets.shape:
        raise BenchError(f"test scores have shape {scores.shape} but targets {targets.shape}; expected one (N, C) pair")
    stored = scores.astype(np.float16) if _float16_keeps_ap(scores, targets) else scores
    buf = io.BytesIO()
    np.savez_compressed(buf, scores=stored, targets=targets)
    data = buf.getvalue()
    atomic_write_bytes(Path(run_dir) / SCORES_FILE, data)
    return {"path": SCORES_FILE, "sha256": _sha256(data), "dtype": str(stored.dtype)}


def _float16_keeps_ap(scores: np.ndarray, targets: np.ndarray) -> bool:
    """True when rounding ``scores`` to float16 changes no class's AP by more than :data:`AP_TOLERANCE`."""
    from .metrics import average_precision

    scored = ~np.isnan(scores).any(axis=1)
    if not scored.any():
        return True
    s, y = scores[scored], targets[scored]
    exact = average_precision(s, y)[0]
    rounded = average_precision(s.astype(np.float16).astype(np.float32), y)[0]
    both = ~np.isnan(exact)
    return bool(np.all(np.abs(exact[both] - rounded[both]) * 100 <= AP_TOLERANCE))


def scores_path(record_path: str | Path, record: dict) -> Path | None:
    """Where a record's scores file should be (None when the record names none)."""
    block = record.get(RECORD_FIELD)
    if not isinstance(block, dict) or not isinstance(block.get("path"), str):
        return None
    return Path(record_path).parent / block["path"]


def read_scores(record_path: str | Path, record: dict) -> tuple[np.ndarray, np.ndarray]:
    """The ``(scores float32, targets int8)`` saved beside ``record_path``, after checking the sha256.

    :raises BenchError: naming the file when it is missing, changed (sha256), unreadable, or its
        arrays do not match the record's test set (shape, dtypes).
    """
    path = scores_path(record_path, record)
    if path is None:
        raise BenchError(f"{record_path}: field '{RECORD_FIELD}' is missing or has no 'path'")
    from .schema import read_bounded

    try:
        data = read_bounded(path, MAX_SCORES_BYTES)
    except ValueError as exc:
        raise BenchError(f"{path}: {exc} is more than a scores file holds (at most {MAX_SCORES_BYTES} bytes are read); "
                         f"pass the test_scores.npz written with {record_path}") from None
    except OSError as exc:
        raise BenchError(f"{path}: cannot read the test scores named by {record_path} ({exc.strerror or exc}); "
                         f"copy the file beside the record or remove '{RECORD_FIELD}' from it") from None
    expected = record[RECORD_FIELD].get("sha256")
    if _sha256(data) != expected:
        raise BenchError(f"{path}: sha256 differs from field '{RECORD_FIELD}.sha256' of {record_path} (file changed "
                         "or belongs to another run); use the scores file written with this record")
    try:
        _refuse_large_members(path, data)
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            scores, targets = npz["scores"], npz["targets"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise BenchError(f"{path}: not a test-scores file with arrays 'scores' and 'targets' ({exc})") from None
    n_test = record.get("dataset", {}).get("sizes", {}).get("test")
    n_classes = record.get("dataset", {}).get("num_classes")
    if scores.dtype not in (np.float16, np.float32) or targets.dtype != np.int8 or scores.shape != targets.shape \
            or scores.ndim != 2:
        raise BenchError(f"{path}: expected float16/float32 'scores' and int8 'targets' of one (N, C) shape, got "
                         f"{scores.dtype} {scores.shape} and {targets.dtype} {targets.shape}")
    if (n_test is not None and scores.shape[0] != n_test) or (n_classes is not None and scores.shape[1] != n_classes):
        raise BenchError(f"{path}: scores have shape {scores.shape} but {record_path} has {n_test} test images and "
                         f"{n_classes} classes; the file belongs to another run")
    return scores.astype(np.float32), targets


def _refuse_large_members(path: Path, data: bytes) -> None:
    """Refuse an archive whose arrays unpack to more than :data:`MAX_SCORES_BYTES` (a zip bomb), before unpacking."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for member in archive.infolist():
            if member.file_size > MAX_SCORES_BYTES:
                raise BenchError(f"{path}: array {member.filename} unpacks to {member.file_size} bytes, more than a "
                                 f"scores file holds (at most {MAX_SCORES_BYTES})")


def verify_scores(record_path: str | Path, record: dict) -> tuple[np.ndarray, np.ndarray]:
    """:func:`read_scores`, plus: the scores give back the record's test mAP (to :data:`MAP_TOLERANCE`).

    :raises BenchError: when the recomputed mAP is more than :data:`MAP_TOLERANCE` points away.
    """
    from .metrics import mean_average_precision

    scores, targets = read_scores(record_path, record)
    scored = ~np.isnan(scores).any(axis=1)
    recomputed = mean_average_precision(scores[scored], targets[scored])
    recorded = record.get("metrics", {}).get("test", {}).get("mAP")
    if recomputed is not None and recorded is not None and abs(recomputed - recorded) > MAP_TOLERANCE:
        raise BenchError(f"{scores_path(record_path, record)}: the saved scores give test mAP {recomputed:.2f} but "
                         f"{record_path} says {recorded:.2f}; the file does not belong to this record")
    return scores, targets
