"""Issue 22.2: a full disk (ENOSPC) or a spent quota (EDQUOT) anywhere is one line naming the path
and the space needed, exit 2, nothing half-written; ``leaderboard build`` swaps the site in whole.

The full disk is simulated by making ``fsync`` fail with ENOSPC for the files whose temporary name
matches (Linux: the name behind the descriptor, ``/proc/self/fd``); one test uses a real 1 MB tmpfs
where ``mount`` is allowed."""

from __future__ import annotations

import errno
import os
import subprocess

import pytest

from conftest import TINY_SCENES
from record_factory import make_record, write_record_file

from mlrpl_bench import atomic
from mlrpl_bench.atomic import DiskFull, atomic_write_bytes, replace_folder

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd (Linux)")


def _fill_disk_for(monkeypatch, fragment: str, code: int = errno.ENOSPC):
    """``fsync`` of any file whose path contains ``fragment`` fails as on a full disk."""
    real = os.fsync

    def fsync(fd):
        if fragment in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(code, os.strerror(code))
        return real(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)


def _one_line_exit_2(res, *fragments):
    assert res.exit_code == 2, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    for fragment in fragments:
        assert fragment in res.stderr, res.stderr


def _leftovers(folder):
    return [p for p in folder.rglob("*") if p.name.startswith(".") and (".tmp" in p.name or ".new" in p.name)]


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "no space left on the device (ENOSPC)"),
                                         (errno.EDQUOT, "the disk quota is spent (EDQUOT)")])
def test_an_atomic_write_on_a_full_disk_is_one_line_and_leaves_the_old_file(tmp_path, monkeypatch, code, words):
    target = tmp_path / "a.json"
    target.write_bytes(b"old")
    _fill_disk_for(monkeypatch, "a.json", code)
    with pytest.raises(DiskFull) as caught:
        atomic_write_bytes(target, b"x" * 5000)
    message = str(caught.value)
    assert message.startswith(f"{target}: {words}; it needs 5.0 kB") and "free in" in message
    assert "\n" not in message and target.read_bytes() == b"old" and not _leftovers(tmp_path)


@pytest.mark.parametrize("fragment, name", [("checkpoint.pt", "checkpoint.pt"), ("test_scores.npz", "test_scores.npz"),
                                            ("/features/", ".npy"), ("record.json", "record.json")])
def test_a_run_on_a_full_disk_is_one_line_naming_the_file(cli, tmp_path, monkeypatch, fragment, name):
    monkeypatch.setenv("MLRPL_BENCH_CACHE", str(tmp_path / "cache"))
    _fill_disk_for(monkeypatch, fragment)
    out = tmp_path / "out"
    res = cli("run", "--plugin", "partial-bce", "--known", "0.5", "--epochs", "1", "--output", out, *TINY_SCENES)
    _one_line_exit_2(res, "no space left on the device", "free at least")
    assert name in res.stderr
    assert not list(out.glob("*/record.json")) and not _leftovers(tmp_path)


def test_submit_and_replace_on_a_full_disk_change_nothing(cli, tmp_path, monkeypatch):
    results = tmp_path / "results"
    first = write_record_file(tmp_path / "a", make_record(mAP=70.0))
    assert cli("leaderboard", "submit", first, "--results", results).exit_code == 0
    filed = {p: p.read_bytes() for p in results.rglob("*") if p.is_file()}
    other = write_record_file(tmp_path / "b", make_record(mAP=71.0))
    new = write_record_file(tmp_path / "c", make_record(mAP=72.0, seed=1))
    _fill_disk_for(monkeypatch, str(results))
    _one_line_exit_2(cli("leaderboard", "submit", new, "--results", results), "no space left", str(results))
    _one_line_exit_2(cli("leaderboard", "submit", other, "--results", results, "--replace"), "no space left")
    assert {p: p.read_bytes() for p in results.rglob("*") if p.is_file()} == filed


def test_build_swaps_the_whole_site_or_nothing(cli, tmp_path, monkeypatch):
    results, site = tmp_path / "results", tmp_path / "site"
    assert cli("leaderboard", "submit", write_record_file(tmp_path / "a", make_record()), "--results", results).exit_code == 0
    assert cli("leaderboard", "build", "--results", results, "--out", site).exit_code == 0
    before = {p.relative_to(site): p.read_bytes() for p in site.rglob("*") if p.is_file()}
    assert cli("leaderboard", "submit", write_record_file(tmp_path / "b", make_record(dataset="coco2014")),
               "--results", results).exit_code == 0
    _fill_disk_for(monkeypatch, "index.html")  # the last file of the new site
    _one_line_exit_2(cli("leaderboard", "build", "--results", results, "--out", site), "no space left", str(site))
    assert {p.relative_to(site): p.read_bytes() for p in site.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "results", "site"]  # no temporary folder left
    monkeypatch.undo()
    assert cli("leaderboard", "build", "--results", results, "--out", site).exit_code == 0
    assert any("coco2014" in p.name for p in (site / "tables").iterdir())


def test_build_refuses_an_output_folder_holding_other_files(cli, tmp_path):
    results, site = tmp_path / "results", tmp_path / "site"
    site.mkdir()
    (site / "notes.txt").write_text("mine")
    assert cli("leaderboard", "submit", write_record_file(tmp_path / "a", make_record()), "--results", results).exit_code == 0
    _one_line_exit_2(cli("leaderboard", "build", "--results", results, "--out", site), "holds notes.txt")
    assert (site / "notes.txt").read_text() == "mine"


def test_replace_folder_on_a_real_full_tmpfs(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root and a kernel that allows it here")
    try:
        replace_folder(mount / "site", {"a.txt": b"old"})
        with pytest.raises(DiskFull, match=r"site: no space left on the device \(ENOSPC\); it needs 2.0 MB"):
            replace_folder(mount / "site", {"a.txt": b"new", "big.bin": b"\0" * 2_000_000})
        assert sorted(p.name for p in mount.iterdir()) == ["site"]
        assert (mount / "site" / "a.txt").read_bytes() == b"old" and not (mount / "site" / "big.bin").exists()
    finally:
        subprocess.run(["umount", str(mount)], check=False)
