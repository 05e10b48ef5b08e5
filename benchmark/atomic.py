"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Everything the suite writes that someone may read concurrently or after a crash — results
records, epoch logs, checkpoints, protocol masks, feature caches, dataset caches — goes through
here: write a temporary file in the target's directory, flush and fsync it, then rename it over
the target (``os.replace`` is atomic on POSIX and Windows).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
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


#: ``errno`` values of a full disk: no space left (ENOSPC), or the user's quota spent (EDQUOT).
FULL_DISK = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


class DiskFull(BenchError):
    """A write that found no space left (ENOSPC) or the quota spent (EDQUOT): one line naming the
    path and the space it needs; the temporary file is removed, the target is untouched."""


def _size_text(n: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)  # pragma: no cover


def disk_full(path: str | os.PathLike, exc: OSError, needed: int | None) -> DiskFull:
    """The one-line :class:`DiskFull` for ``exc`` raised while writing ``needed`` bytes to ``path``."""
    path = Path(path)
    folder = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("."))
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    what = "the disk quota is spent (EDQUOT)" if exc.errno == getattr(errno, "EDQUOT", None) else "no space left on the device (ENOSPC)"
    need = f"it needs {_size_text(needed)}" if needed else "it needs more space"
    have = f", {_size_text(free)} free in {folder}" if free is not None else ""
    more = f"; free at least {_size_text(max(needed - (free or 0), 1))}" if needed else "; free some space"
    return DiskFull(f"{path}: {what}; {need}{have}{more} and run again (nothing was half-written)")


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
        if exc.errno in FULL_DISK:
            raise disk_full(path, exc, None) from None
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
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) not in (signal.default_int_handler, _interrupt_handler):
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            _PENDING[0] = True
            raise KeyboardInterrupt


#: Whether a Ctrl-C arrived that has not yet stopped the run (see :func:`interrupts_kept`).
_PENDING = [False]


def _interrupt_handler(signum, frame):
    _PENDING[0] = True
    raise KeyboardInterrupt


@contextmanager
def interrupts_kept() -> Iterator[None]:
    """Keep a Ctrl-C even when its ``KeyboardInterrupt`` is swallowed.

    Python raises ``KeyboardInterrupt`` in whatever code runs when SIGINT arrives; inside a
    finaliser (an object's ``__del__``, e.g. a progress bar's) it is printed as "Exception ignored"
    and lost, and a long run would go on. Within this block the interrupt is also remembered, and
    :func:`raise_if_interrupted`, called at safe points (each training step), raises it again.
    Main thread only, and only over Python's own handler; elsewhere the block runs as is.
    """
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    _PENDING[0] = False
    previous = signal.signal(signal.SIGINT, _interrupt_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _PENDING[0] = False


def raise_if_interrupted() -> None:
    """Raise ``KeyboardInterrupt`` when a Ctrl-C arrived whose own exception was swallowed."""
    if _PENDING[0]:
        _PENDING[0] = False
        raise KeyboardInterrupt


@contextmanager
def atomic_open(path: str | os.PathLike, *, size: int | None = None) -> Iterator[BinaryIO]:
    """Open a binary handle whose content replaces ``path`` only if the block finishes.

    Ctrl-C during the write takes effect once the target is replaced (:func:`interrupts_deferred`),
    so an interrupted run never leaves a temporary file beside its outputs. A full disk (ENOSPC,
    EDQUOT) removes the temporary file and is one line (:class:`DiskFull`).

    :param size: how many bytes will be written, when known (for the full-disk message).
    :raises BenchError: when the directory cannot be created or written.
    """
    path = Path(path)
    with interrupts_deferred():
        fd, tmp = _temp_beside(path, ".tmp")
        written = None
        try:
            with os.fdopen(fd, "wb") as handle:
                try:
                    yield handle
                    handle.flush()
                    os.fsync(handle.fileno())
                except OSError:
                    written = handle.tell() if not handle.closed else None
                    raise
            os.replace(tmp, path)
        except BaseException as exc:
            if os.path.exists(tmp):
                os.unlink(tmp)
            if isinstance(exc, OSError) and exc.errno in FULL_DISK:
                raise disk_full(path, exc, size or written) from None
            raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (a full disk: one line, :class:`DiskFull`)."""
    with atomic_open(path, size=len(data)) as handle:
        handle.write(data)


def replace_folder(folder: str | os.PathLike, files: dict[str, bytes]) -> None:
    """Make ``folder`` hold exactly ``files`` (relative path -> bytes), swapped in at once.

    Everything is written into a new folder beside it first; only when every file is there does
    the new folder take the old one's place (two renames, the old one then removed), so a reader
    never sees old files beside new ones, and a failure (a full disk: :class:`DiskFull`) leaves
    the old folder as it was.
    """
    folder = Path(folder)
    with interrupts_deferred():
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            new = Path(tempfile.mkdtemp(prefix=f".{folder.name}.new-", dir=folder.parent))
        except OSError as exc:
            if exc.errno in FULL_DISK:
                raise disk_full(folder, exc, sum(map(len, files.values()))) from None
            raise BenchError(f"{folder.parent}: cannot write here ({not_a_folder(folder.parent) or exc.strerror}); "
                             "choose a writable output directory") from None
        old = None
        try:
            os.chmod(new, 0o777 & ~_current_umask())
            for relative, data in files.items():
                target = new / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
            if folder.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
                os.replace(folder, old / folder.name)
            os.replace(new, folder)
        except BaseException as exc:
            if old is not None and not folder.exists() and (old / folder.name).exists():
                os.replace(old / folder.name, folder)  # put the old folder back
            shutil.rmtree(new, ignore_errors=True)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
            if isinstance(exc, OSError) and exc.errno in FULL_DISK:
                raise disk_full(folder, exc, sum(map(len, files.values()))) from None
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- checksummed artefacts
#: The sidecar beside an artefact a run reuses (``checkpoint.pt`` -> ``checkpoint.pt.sha256``).
CHECKSUM_SUFFIX = ".sha256"


class CorruptArtefact(BenchError):
    """An artefact whose bytes differ from the sha256 written with it (one line naming the file)."""


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """The sha256 hex digest of a file's bytes, read in chunks (a feature cache may be gigabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def checksum_path(path: str | os.PathLike) -> Path:
    """The sidecar that holds ``path``'s sha256."""
    path = Path(path)
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def _sidecar_digests(path: Path) -> list[str]:
    """The digests a sidecar accepts (``sha256sum`` format: ``<hex>  <name>``, newest first); [] if none."""
    try:
        text = checksum_path(path).read_text(encoding="ascii")[:1000]
    except (OSError, UnicodeDecodeError):
        return []
    return [line.split()[0] for line in text.splitlines() if line.split() and len(line.split()[0]) == 64]


def write_checked(path: str | os.PathLike, data: bytes) -> str:
    """Replace ``path`` with ``data`` atomically, with its sha256 in the sidecar :func:`checksum_path`.

    The sidecar goes first and keeps the previous digest too, so a crash between the two renames
    leaves the previous file (still listed) rather than a file the sidecar refuses.

    :return: the digest of ``data``.
    """
    path = Path(path)
    digest = hashlib.sha256(data).hexdigest()
    previous = _sidecar_digests(path)[:1]
    lines = [digest] + [d for d in previous if d != digest]
    atomic_write_text(checksum_path(path), "".join(f"{d}  {path.name}\n" for d in lines))
    atomic_write_bytes(path, data)
    return digest


def check_digest(path: str | os.PathLike, digest: str, *, fix: str) -> None:
    """Refuse ``path`` when ``digest`` (of the bytes just read from it) is not one its sidecar lists.

    A file without a sidecar (written before sidecars existed) passes.

    :raises CorruptArtefact: one line naming the file and ``fix``.
    """
    path = Path(path)
    accepted = _sidecar_digests(path)
    if checksum_path(path).exists() and digest not in accepted:
        raise CorruptArtefact(f"{path}: sha256 differs from {checksum_path(path).name} (the file is damaged or was "
                              f"changed after it was written); {fix}")


def read_checked(path: str | os.PathLike, *, fix: str) -> bytes:
    """The bytes of ``path`` after :func:`check_digest` against its sidecar."""
    data = Path(path).read_bytes()
    check_digest(path, hashlib.sha256(data).hexdigest(), fix=fix)
    return data


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
        except OSError as exc:
            if exc.errno in FULL_DISK:
                raise disk_full(path, exc, len(data)) from None
            raise
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


#: The one flag every command that writes a named file takes to overwrite an existing one.
REPLACE_FLAG = "--replace"


def refuse_existing_outputs(outputs: dict[str, str | os.PathLike], *, replace: bool) -> None:
    """The one overwrite policy of commands that write named files: an existing output is refused
    unless ``--replace`` was given (checked before anything is written).

    :param outputs: ``{"--out": path, ...}`` the command is about to write.
    :raises BenchError: naming the flag, the file and :data:`REPLACE_FLAG`.
    """
    for flag, path in outputs.items():
        if path is not None and Path(path).exists() and not Path(path).is_file():
            # os.replace would put a plain file in a device's place (/dev/full, as root): never.
            raise BenchError(f"{flag} {path}: is not a regular file (a device, pipe or folder); choose a file path")
    if replace:
        return
    for flag, path in outputs.items():
        if path is not None and (Path(path).exists() or Path(path).is_symlink()):
            raise BenchError(f"{flag} {path}: already exists; pass {REPLACE_FLAG} to overwrite it, or choose another {flag}")


def refuse_overwriting_inputs(output: str | os.PathLike, inputs: dict[str, str | os.PathLike], *, flag: str = "--out") -> None:
    """Refuse an output path that is one of the inputs (the same file, a hard link or a symlink to it).

    :param inputs: ``{"--labels": path, ...}`` the command reads.
    :raises BenchError: naming both options, before anything is written.
    """
    for name, path in inputs.items():
        if path is not None and same_file(output, path):
            raise BenchError(f"{flag} {output} is the same file as {name} {path}; writing it would destroy the input -- "
                             f"choose another {flag}")
