"""Atomic writes: the old or the new content, never half; file modes as a plain open() gives."""

from __future__ import annotations

import os
import stat

import pytest

from mlrpl_bench.atomic import atomic_open, atomic_write_text
from mlrpl_bench.errors import BenchError


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    saved = os.umask(0o022)
    os.umask(saved)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(saved)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_new_files_get_the_umask_mode_not_mkstemps_0600(tmp_path, umask, mask, mode):
    umask(mask)
    target = tmp_path / "runs" / "record.json"
    atomic_write_text(target, "{}")
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert target.read_text() == "{}"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "record.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as handle:
            handle.write(b"half of the new")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_unwritable_directory_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BenchError, match="cannot write here"):
        atomic_write_text(blocker / "sub" / "record.json", "{}")


def test_create_exclusive_creates_once_and_leaves_no_temporary_files(tmp_path):
    from mlrpl_bench.atomic import AlreadyExists, create_exclusive

    target = tmp_path / "d" / "r.json"
    create_exclusive(target, b"first")
    with pytest.raises(AlreadyExists, match="already exists"):
        create_exclusive(target, b"second")
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["r.json"]


def test_same_file_sees_paths_hard_links_and_symlinks(tmp_path):
    import os

    from mlrpl_bench.atomic import refuse_overwriting_inputs, same_file

    a = tmp_path / "a.npy"
    a.write_bytes(b"x")
    os.link(a, tmp_path / "hard.npy")
    (tmp_path / "soft.npy").symlink_to(a)
    assert same_file(a, tmp_path / "." / "a.npy") and same_file(a, tmp_path / "hard.npy") and same_file(a, tmp_path / "soft.npy")
    assert not same_file(a, tmp_path / "new.npy")
    with pytest.raises(BenchError, match="--out .* is the same file as --labels"):
        refuse_overwriting_inputs(tmp_path / "soft.npy", {"--labels": a})


def test_ctrl_c_during_a_write_lands_after_the_file_is_replaced(tmp_path):
    """SIGINT in the middle of a write is held back: the new file is complete, no temporary file
    is left, and the interrupt is then raised as KeyboardInterrupt."""
    import signal

    target = tmp_path / "record.json"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(target) as handle:
            handle.write(b"new, ")
            os.kill(os.getpid(), signal.SIGINT)  # delivered to this (main) thread at once
            handle.write(b"and whole")
    assert target.read_text() == "new, and whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back


def test_without_an_interrupt_nothing_is_raised_and_the_handler_is_restored(tmp_path):
    import signal

    atomic_write_text(tmp_path / "a.txt", "x")
    assert (tmp_path / "a.txt").read_text() == "x"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_ctrl_c_swallowed_by_a_finaliser_is_kept_and_raised_at_the_next_safe_point():
    """Python raises KeyboardInterrupt wherever the signal lands; inside a ``__del__`` it is printed
    as "Exception ignored" and lost (seen in CI: a progress bar's finaliser ate the Ctrl-C of a
    100000-epoch run). Within ``interrupts_kept`` the engine's next step raises it again."""
    import gc
    import signal as _signal

    from mlrpl_bench.atomic import interrupts_kept, raise_if_interrupted

    class SwallowsCtrlC:
        def __del__(self):
            _signal.raise_signal(_signal.SIGINT)  # the handler runs here, inside the finaliser
            for _ in range(10):
                pass

    with interrupts_kept():
        holder = SwallowsCtrlC()
        del holder
        gc.collect()
        with pytest.raises(KeyboardInterrupt):
            raise_if_interrupted()
        raise_if_interrupted()  # raised once, then cleared
    raise_if_interrupted()  # nothing pending outside the block
