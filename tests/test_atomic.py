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
