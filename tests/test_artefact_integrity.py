"""Issue 22.1: every artefact a run reuses is checked against the sha256 written with it; a damaged
cache is said in one line and built again, a damaged checkpoint is refused with how to start over."""

from __future__ import annotations

import json

import pytest

from conftest import TINY_SCENES

from mlrpl_bench import atomic
from mlrpl_bench.atomic import CorruptArtefact, checksum_path, read_checked, write_checked


def _flip(path, offset_from_end=64, count=32):
    """Flip ``count`` bytes near the end of ``path`` (the data, not the header): same size, other content."""
    data = bytearray(path.read_bytes())
    start = len(data) - offset_from_end
    for i in range(start, start + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_write_checked_keeps_a_sidecar_and_refuses_changed_bytes(tmp_path):
    path = tmp_path / "a.bin"
    digest = write_checked(path, b"hello")
    assert checksum_path(path).read_text().split() == [digest, "a.bin"]
    assert read_checked(path, fix="start over") == b"hello"
    path.write_bytes(b"hellO")
    with pytest.raises(CorruptArtefact, match=r"a.bin: sha256 differs from a.bin.sha256 .*; start over"):
        read_checked(path, fix="start over")


def test_a_crash_between_sidecar_and_file_leaves_the_previous_file_usable(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    write_checked(path, b"epoch 1")

    def crash(target, data):
        raise KeyboardInterrupt  # killed after the sidecar, before the file's rename

    monkeypatch.setattr(atomic, "atomic_write_bytes", crash)
    with pytest.raises(KeyboardInterrupt):
        write_checked(path, b"epoch 2")
    monkeypatch.undo()
    assert read_checked(path, fix="x") == b"epoch 1"
    write_checked(path, b"epoch 2")  # the next write goes through and lists only the newest two
    assert read_checked(path, fix="x") == b"epoch 2" and len(checksum_path(path).read_text().splitlines()) == 2


def test_a_damaged_checkpoint_is_refused_with_how_to_start_over(cli, tmp_path):
    out = tmp_path / "out"
    base = ["run", "--plugin", "partial-bce", "--known", "0.5", "--epochs", "1", "--output", out, *TINY_SCENES]
    assert cli(*base).exit_code == 0
    next(out.glob("*/record.json")).unlink()  # as if interrupted after its last checkpoint
    checkpoint = next(out.glob("*/checkpoint.pt"))
    _flip(checkpoint, offset_from_end=4000, count=285)
    res = cli(*base, "--resume")
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "checkpoint.pt: sha256 differs from checkpoint.pt.sha256" in res.stderr
    assert "rerun without --resume" in res.stderr
    assert cli(*base).exit_code == 0  # starting over works, and writes a checkpoint the sidecar accepts
    next(out.glob("*/record.json")).unlink()
    assert cli(*base, "--resume").exit_code == 0


def test_a_damaged_feature_cache_is_said_and_built_again(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("MLRPL_BENCH_CACHE", str(tmp_path / "cache"))
    base = ["run", "--plugin", "partial-bce", "--known", "0.5", "--epochs", "1", *TINY_SCENES]
    assert cli(*base, "--output", tmp_path / "a").exit_code == 0
    first = json.loads(next((tmp_path / "a").glob("*/record.json")).read_text())["metrics"]["test"]["mAP"]
    caches = sorted((tmp_path / "cache" / "features").glob("*.npy"))
    assert caches and all("sha256" in json.loads(p.with_suffix(".json").read_text()) for p in caches)
    for cache in caches:
        _flip(cache, offset_from_end=256, count=128)
    res = cli(*base, "--output", tmp_path / "b")
    assert res.exit_code == 0, res.stderr
    warnings = [line for line in res.stderr.splitlines() if "sha256 differs" in line]
    assert len(warnings) == len(caches) and all("building it again" in w for w in warnings)
    again = json.loads(next((tmp_path / "b").glob("*/record.json")).read_text())["metrics"]["test"]["mAP"]
    assert again == first
