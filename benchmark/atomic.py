"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Everything the suite writes that someone may read concurrently or after a crash — results
records, epoch logs, checkpoints, protocol masks, feature caches, dataset caches — goes through
here: write a temporary file in the target's directory, flush and fsync it, then rename it over
the target (``os.replace`` is atomic on POSIX and Windows).
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from .errors import BenchError


def _current_umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def not_a_folder(folder: str | os.PathLike) -> str:
    """``"<x> is a file, not a folder"`` when ``folder`` or one of its parents exists as a non-folder
    (the reason ``mkdir`` gives, "File exists" or "Not a directory", says it less plainly), else ``""``."""
    for candidate in (Path(folder), *Path(folder).parents):
        if candidate.exists() or candidate.is_symlink():
            if candidate.is_dir():
                return ""
            return f"{candidate} is {'a broken or looping symlink' if candidate.is_symlink() and not candidate.exists() else 'a file'}, not a folder"
    return ""


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
        raise BenchError(f"{path.parent}: cannot write here ({not_a_folder(path.parent) or exc.strerror}); choose a "
                         "writable output directory") from None


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) during the block and deliver it, as ``KeyboardInterrupt``, when the
    block ends.

    A write is short, and an interrupt between creating its temporary file and renaming or
    removing it would leave the temporary file behind. Only where Python's own SIGINT handler is
    installed and only in the main thread (the one that receives signals); elsewhere the block
    runs as is.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            raise KeyboardInterrupt


@contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a binary handle whose content replaces ``path`` only if the block finishes.

    Ctrl-C during the write takes effect once the target is replaced (:func:`interrupts_deferred`),
    so an interrupted run never leaves a temporary file beside its outputs.

    :raises BenchError: when the directory cannot be created or written.
    """
    path = Path(path)
    with interrupts_deferred():
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
    """:func:`create_exclusive` found the target already there (another writer won).

    Callers that know the command's flags re-raise it with the fix (``--replace``, ``--overwrite``).
    """

    def __init__(self, path: Path):
        super().__init__(f"{path}: already exists (another process wrote it first); nothing was changed")
        self.path = path


class Busy(BenchError):
    """:func:`exclusive_lock` found the lock held by another process."""


@contextmanager
def exclusive_lock(path: str | os.PathLike, *, what: str, fix: str) -> Iterator[None]:
    """Hold an exclusive advisory lock (``flock``) on the file ``path`` for the block.

    The lock goes with the process: a killed holder never leaves a stale lock behind. The file
    names the holder (pid and host) for the message and is removed on release; a process that
    opened it just before that retries on the new file, so two holders never overlap. Where
    ``fcntl`` does not exist (Windows) the block runs unlocked.

    :param what: what the lock protects, for the message (``runs/hst__...``).
    :param fix: what the user can do, for the message.
    :raises Busy: when another process holds the lock (one line naming it, its holder and ``fix``).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    import socket

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"{path.parent}: cannot write here ({not_a_folder(path.parent) or exc.strerror}); choose a "
                         "writable output directory") from None
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_current_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip()
            os.close(fd)
            raise Busy(f"{what}: in use by another process ({holder or 'pid unknown'}, lock {path}); {fix}") from None
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)  # the previous holder removed this file after we opened it: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        yield
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
        os.close(fd)


def create_exclusive(path: str | os.PathLike, data: bytes) -> None:
    """Create ``path`` with ``data`` only if it does not exist, atomically.

    The content is written to a temporary file first and then ``os.link``-ed to ``path``: the
    link fails if ``path`` exists, so of two concurrent writers exactly one succeeds, and a
    reader never sees a half-written file.

    :raises AlreadyExists: when ``path`` exists (nothing is changed).
    """
    path = Path(path)
    with interrupts_deferred():
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
