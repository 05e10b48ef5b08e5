"""The label contract and label-file I/O (pure numpy).

Label matrices are ``int8`` arrays of shape ``(N, C)``: ``1`` positive, ``-1`` negative,
``0`` unknown. On disk they are ``.npy`` files or comma-separated text with one image per row
(the format of the official SST/HST partial-label files).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .atomic import atomic_write_bytes
from .errors import BenchError

POSITIVE, NEGATIVE, UNKNOWN = 1, -1, 0


def check_label_matrix(labels: np.ndarray, *, source: str = "labels", allow_unknown: bool = True) -> np.ndarray:
    """Validate a label matrix against the contract and return it as ``int8``.

    :param labels: array-like of shape ``(N, C)``.
    :param source: where the labels came from (a file name), used in error messages.
    :param allow_unknown: whether ``0`` entries are allowed.
    :raises BenchError: on a wrong shape, non-integer values or values outside the contract.
    """
    arr = np.asarray(labels)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise BenchError(f"{source}: expected a 2-D label matrix (images x classes), got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise BenchError(f"{source}: labels contain NaN or inf; use 1 (positive), -1 (negative), 0 (unknown)")
        if not np.all(arr == np.round(arr)):
            raise BenchError(f"{source}: labels must be integers 1, -1 or 0, found fractional values")
    elif arr.dtype.kind not in "iub":
        raise BenchError(f"{source}: labels must be numeric 1/-1/0, got dtype {arr.dtype}")
    allowed = (-1, 0, 1) if allow_unknown else (-1, 1)
    # A range check is a single pass (np.isin sorts); only when it fails do we locate the culprit.
    out_of_range = (arr.min() < -1) | (arr.max() > 1) | (not allow_unknown and not arr.all())
    if out_of_range:
        bad = ~np.isin(arr, allowed)
        row, col = map(int, np.argwhere(bad)[0])
        raise BenchError(
            f"{source}: value {arr[row, col].item()!r} at row {row}, column {col} is not allowed; "
            f"labels must be in {{{', '.join(map(str, allowed))}}} (1 positive, -1 negative"
            + (", 0 unknown)" if allow_unknown else ")")
        )
    return arr.astype(np.int8, copy=False)


def refuse_zero_one(labels: np.ndarray, *, source: str = "labels", fix: str = "labels * 2 - 1") -> None:
    """Refuse a checked label matrix in the 0/1 convention: 0s but not a single -1.

    Under the contract 0 means "unknown"; a 0/1 (scikit-learn style, or boolean) matrix would
    silently turn every negative into an unknown -- a protocol that drops them all, or metrics
    that ignore them. A matrix of only 1s and -1s, or with at least one -1, passes.

    :param fix: the expression that converts the file, named in the message.
    :raises BenchError: one line naming ``source`` and the conversion.
    """
    if labels.size and labels.min() == 0 and not (labels == -1).any():
        raise BenchError(
            f"{source}: no entry is -1 (negative) but some are 0, which means 'not annotated' and is ignored; "
            f"if 0 means negative in this file, convert it to the 1/-1/0 contract (e.g. {fix})"
        )


def read_matrix_file(path: str | os.PathLike, *, what: str = "label matrix") -> np.ndarray:
    """Read a 2-D matrix from ``.npy`` (no pickles; any case of the suffix) or comma-separated text, unvalidated.

    The one reader behind :func:`read_label_file` and :func:`mlrpl_bench.metrics.read_score_file`.

    :raises BenchError: a missing file, a directory, or unreadable content, in one line.
    """
    import warnings

    path = Path(path)
    if path.is_dir():
        raise BenchError(f"{path}: is a directory; pass the {what} file inside it (.npy or comma-separated text)")
    if path.exists() and not path.is_file():
        raise BenchError(f"{path}: not a regular file (a device, pipe or socket); pass a .npy or comma-separated text file")
    if not path.is_file():
        raise BenchError(f"{path}: file not found; pass an existing .npy or comma-separated text file")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        raise BenchError(f"{path}: an .npz archive holds several arrays; save the {what} alone with numpy.save "
                         "(.npy) or as comma-separated text")
    try:
        if path.stat().st_size == 0:
            raise BenchError(f"{path}: the file is empty; expected a {what} (.npy or comma-separated numbers)")
        if suffix == ".npy":
            with path.open("rb") as handle:
                if handle.read(6) != b"\x93NUMPY":
                    raise BenchError(f"{path}: not a .npy file (no NumPy header); if it holds comma-separated "
                                     "numbers, give it another suffix such as .txt or .csv")
            return np.load(path, allow_pickle=False)
        with warnings.catch_warnings():  # an empty text file: refused below, as one line
            warnings.simplefilter("ignore", UserWarning)
            arr = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
        if arr.size == 0:
            raise BenchError(f"{path}: holds no numbers; expected a {what} (comma-separated numbers, one row per image)")
        return arr
    except OSError as exc:
        raise BenchError(f"{path}: cannot read ({exc.strerror or type(exc).__name__}); check the file's permissions "
                         "or pass another file") from None
    except (ValueError, EOFError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BenchError(f"{path}: cannot read a {what} ({first}); expected .npy or comma-separated numbers, one row "
                         "per image, no header line") from None


def read_label_file(path: str | os.PathLike, *, allow_unknown: bool = True) -> np.ndarray:
    """Read a label matrix from ``.npy`` or comma-separated text and validate it."""
    arr = read_matrix_file(path, what="label matrix")
    return check_label_matrix(arr, source=str(path), allow_unknown=allow_unknown)


def write_label_file(path: str | os.PathLike, labels: np.ndarray) -> None:
    """Write a label matrix atomically as ``.npy`` or, for any other suffix, comma-separated text."""
    import io

    path = Path(path)
    labels = check_label_matrix(labels, source=str(path))
    buf = io.BytesIO()
    if path.suffix.lower() == ".npy":  # as read_matrix_file reads it: x.NPY is a .npy file too
        np.save(buf, labels)
    else:
        np.savetxt(buf, labels, fmt="%d", delimiter=",")
    atomic_write_bytes(path, buf.getvalue())
