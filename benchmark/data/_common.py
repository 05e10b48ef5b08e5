"""Shared helpers of the real-dataset loaders: reading files with one-line errors, caches.

Every reader here turns a problem with the user's files into a :class:`BenchError` that names
the file (and the line or field) and says what to do, so each loader stays about its format.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import BenchError
from ..atomic import atomic_write_bytes, atomic_write_text  # noqa: F401 - re-exported to the loaders

#: Environment variable naming the user-wide cache directory of the suite.
CACHE_ENV = "MLRPL_BENCH_CACHE"
#: Folder created inside a data root for derived files (splits, category lists, exports).
DATA_ROOT_CACHE = "mlrpl_bench_cache"


def require_dir(path: Path, what: str, fix: str) -> Path:
    """Return ``path`` if it is a directory, else raise a :class:`BenchError` saying ``fix``."""
    if not path.is_dir():
        raise BenchError(f"{path}: {what} not found (no such directory); {fix}")
    return path


def require_file(path: Path, what: str, fix: str) -> Path:
    """Return ``path`` if it is a file, else raise a :class:`BenchError` saying ``fix``."""
    if not path.is_file():
        raise BenchError(f"{path}: {what} not found; {fix}")
    return path


def first_existing(candidates: list[Path]) -> Path | None:
    """The first of ``candidates`` that exists, or None."""
    for path in candidates:
        if path.exists():
            return path
    return None


def read_text(path: Path, fix: str = "check the file") -> str:
    """Read a UTF-8 text file, reporting unreadable or non-UTF-8 files on one line."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BenchError(f"{path}: file not found; {fix}") from None
    except UnicodeDecodeError as exc:
        raise BenchError(f"{path}: not UTF-8 text (byte {exc.start}); {fix}") from None
    except OSError as exc:
        raise BenchError(f"{path}: cannot read ({exc.strerror}); {fix}") from None


def read_lines(path: Path, fix: str = "check the file") -> list[tuple[int, str]]:
    """Non-empty stripped lines of a text file as ``(line_number, text)`` (1-based)."""
    text = read_text(path, fix)
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1) if line.strip()]


def read_json(path: Path, fix: str = "check the file") -> Any:
    """Parse a JSON file; a syntax error names the file, line and column; a key named twice in one
    object is refused (:func:`mlrpl_bench.schema.loads_strict` for everything but the syntax message)."""
    from ..schema import SchemaError, loads_strict

    text = read_text(path, fix)
    try:
        return loads_strict(text, source=str(path))
    except SchemaError as exc:
        try:  # parsed again, only on failure, for the line and column of a syntax error
            json.loads(text)
        except json.JSONDecodeError as syntax:
            raise BenchError(f"{path}:{syntax.lineno}:{syntax.colno}: malformed JSON ({syntax.msg}); {fix}") from None
        raise BenchError(f"{exc}; {fix}") from None


def json_error(path: Path, exc: json.JSONDecodeError, fix: str) -> BenchError:
    """A one-line error for a JSON syntax error raised by a third-party reader."""
    return BenchError(f"{path}:{exc.lineno}:{exc.colno}: malformed JSON ({exc.msg}); {fix}")


def parse_xml(path: Path, fix: str = "restore the file from the dataset archive"):
    """Parse an XML file with the standard library; a syntax error names the file and line.

    The files are the user's own local dataset annotations, so the stdlib parser is adequate.
    """
    import xml.etree.ElementTree as ET

    try:
        return ET.parse(path).getroot()
    except FileNotFoundError:
        raise BenchError(f"{path}: annotation file not found; {fix}") from None
    except ET.ParseError as exc:
        line, col = getattr(exc, "position", (0, 0))
        raise BenchError(f"{path}:{line}:{col}: malformed XML ({str(exc).split(':')[0]}); {fix}") from None


def read_csv(path: Path, required: list[str], fix: str = "check the file",
             optional: list[str] | None = None) -> list[tuple[int, dict[str, str]]]:
    """Read a CSV with a header row; return ``(line_number, row)`` pairs.

    :param required: columns that must be in the header (a missing one is an error).
    :param optional: further columns that are kept when present.
    :raises BenchError: missing file or column, a row with the wrong number of fields.
    """
    text = read_text(path, fix)
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise BenchError(f"{path}: empty file; expected a header row with columns {', '.join(required)}") from None
    except csv.Error as exc:
        raise BenchError(f"{path}:1: malformed CSV ({exc}); {fix}") from None
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        raise BenchError(f"{path}:1: missing column {missing[0]!r} in header {header}; "
                         f"the header must name the columns {', '.join(required)}")
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise BenchError(f"{path}:{line}: {len(row)} fields but the header has {len(header)}; "
                                 f"quote fields that contain commas ({fix})")
            rows.append((line, {h: cell.strip() for h, cell in zip(header, row)}))
    except csv.Error as exc:
        raise BenchError(f"{path}:{reader.line_num}: malformed CSV ({exc}); {fix}") from None
    return rows


def user_cache_dir() -> Path:
    """The user-wide cache directory: ``$MLRPL_BENCH_CACHE`` or ``~/.cache/mlrpl-bench``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path("~/.cache/mlrpl-bench").expanduser()


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK)


def derived_dir(root: Path, dataset: str, key: str, option: str = "") -> Path:
    """Where a loader keeps files derived from a data root (splits, category lists, exports).

    ``option`` (the loader's ``cache_dir`` option) wins; otherwise ``<root>/mlrpl_bench_cache``
    when writable, else the user cache. ``key`` separates different inputs/options.
    """
    if option:
        base = Path(option).expanduser()
    else:
        base = root / DATA_ROOT_CACHE
        if not _writable(base):
            base = user_cache_dir() / "datasets"
    path = base / dataset / key
    if not _writable(path):
        raise BenchError(f"{path}: cannot write the {dataset} cache here; pass --dataset-option cache_dir=DIR with a writable folder")
    return path


def file_key(*parts: Any) -> str:
    """A short stable hash of ``parts`` (file identities and options) naming a cache folder."""
    h = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def file_identity(path: Path) -> list:
    """Name, size and mtime of a file: enough to notice that an annotation file changed."""
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def check_split(dataset: str, split: str) -> str:
    """Validate a split name."""
    if split not in ("train", "test"):
        raise BenchError(f"dataset {dataset}: unknown split {split!r}; use train or test")
    return split


def load_or_build_arrays(path: Path, build) -> dict:
    """Arrays saved at ``path`` (``.npz``), or ``build()``'s, saved there atomically first.

    ``build`` returns a dict of numpy arrays (numbers or unicode strings; no objects), so the
    file loads without pickle. Callers put the identity of every input file in ``path``'s
    folder name (:func:`file_key`), so a changed annotation file is re-read.
    """
    import numpy as np

    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError):
            pass  # unreadable cache: rebuild it
    arrays = build()
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    return arrays


class PathList(Sequence):
    """``folder / (name + suffix)`` for many names, built on access.

    A list of millions of ``Path`` objects takes tens of seconds to build; loaders of very large
    datasets hand this sequence to :class:`DatasetSplit` instead (indexing, ``len`` and
    iteration behave like a list of paths).
    """

    def __init__(self, folder: Path, names: list[str], suffix: str = ""):
        self.folder, self.names, self.suffix = Path(folder), list(names), suffix

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self.folder / f"{n}{self.suffix}" for n in self.names[index]]
        return self.folder / f"{self.names[index]}{self.suffix}"

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and len(other) == len(self) and all(a == b for a, b in zip(self, other))

    def __repr__(self) -> str:
        return f"PathList({self.folder}, {len(self)} files)"
