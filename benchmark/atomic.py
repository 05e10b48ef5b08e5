"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Everything the suite writes that someone may read concurrently or after a crash — results
records, epoch logs, checkpoints, protocol masks, feature caches, dataset caches — goes through
here: write a temporary file in the target's directory, flush and fsync it, then rename it over
the target (``os.replace`` is atomic on POSIX and Windows).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from .errors import BenchError


def _current_umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def _temp_beside(path: Path, suffix: str) -> tuple[int, str]:
    """A new temporary file in ``path``'s directory (created if needed), with a plain file's mode."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        # mkstemp creates the file 0600; give it the mode a plain open() would (0666 minus the
        # umask), so records and checkpoints stay readable by the group that shares a runs/ tree.
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o666 & ~_current_umask())
        return fd, tmp
    except OSError as exc:
        raise BenchError(f"{path.parent}: cannot write here ({exc.strerror}); choose a writable output directory") from None


@contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a binary handle whose content replaces ``path`` only if the block finishes.

    :raises BenchError: when the directory cannot be created or written.
    """
    path = Path(path)
    fd, tmp = _temp_beside(path, ".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    with atomic_open(path) as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` with UTF-8 ``text`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


class AlreadyExists(BenchError):
    """:func:`create_exclusive` found the target already there (another writer won)."""

    def __init__(self, path: Path):
        super().__init__(f"{path}: already filed (another process wrote it first); pass --replace to overwrite it")
        self.path = path


def create_exclusive(path: str | os.PathLike, data: bytes) -> None:
    """Create ``path`` with ``data`` only if it does not exist, atomically.

    The content is written to a temporary file first and then ``os.link``-ed to ``path``: the
    link fails if ``path`` exists, so of two concurrent writers exactly one succeeds, and a
    reader never sees a half-written file.

    :raises AlreadyExists: when ``path`` exists (nothing is changed).
    """
    path = Path(path)
    fd, tmp = _temp_beside(path, ".new")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp, path)  # fails if path exists: the create-if-absent step
    except FileExistsError:
        raise AlreadyExists(path) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file: equal paths, a symlink to it, or a hard link."""
    pa, pb = Path(a), Path(b)
    try:
        if pa.resolve() == pb.resolve():
            return True
        return pa.exists() and pb.exists() and os.path.samefile(pa, pb)
    except OSError:
        return False


def refuse_overwriting_inputs(output: str | os.PathLike, inputs: dict[str, str | os.PathLike], *, flag: str = "--out") -> None:
    """Refuse an output path that is one of the inputs (the same file, a hard link or a symlink to it).

    :param inputs: ``{"--labels": path, ...}`` the command reads.
    :raises BenchError: naming both options, before anything is written.
    """
    for name, path in inputs.items():
        if path is not None and same_file(output, path):
            raise BenchError(f"{flag} {output} is the same file as {name} {path}; writing it would destroy the input -- "
                             f"choose another {flag}")
