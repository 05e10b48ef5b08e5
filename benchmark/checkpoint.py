"""Checkpoints: written atomically, read back with ``torch.load(weights_only=True)``.

Checkpoints are per epoch: the engine writes one after every epoch's validation, so a run
interrupted mid-epoch resumes at the start of that epoch. Nothing in a checkpoint is executable:
model/optimizer/scheduler state dicts, the method's own state (tensors, numbers, strings, lists,
dicts), the run's bookkeeping, and the *run fingerprint* -- everything that defines the run
(train settings, method name, version and options, dataset and mask fingerprints, backbone
weights sha256). ``--resume`` continues a checkpoint only when its fingerprint equals the new
run's (:func:`check_resumable`). Global RNG states are not stored because the engine reseeds
every RNG from ``(seed, epoch)`` at the start of each epoch, which is what makes a resumed run
equal an uninterrupted one.

Every checkpoint is written with its sha256 in a sidecar (``checkpoint.pt.sha256``,
:func:`~mlrpl_bench.atomic.write_checked`) and checked before ``torch.load`` sees a byte: flipped
bytes are refused with one line, never resumed (a checkpoint cannot be rebuilt; the run starts over).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from .errors import BenchError
from .atomic import read_checked, write_checked
from .schema import diff_fields

CHECKPOINT_VERSION = 2  # 2: stores the run fingerprint


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (the engine's per-epoch state) atomically."""
    buf = io.BytesIO()
    torch.save({"checkpoint_version": CHECKPOINT_VERSION, **state}, buf)
    write_checked(path, buf.getvalue())


#: How to start over when a checkpoint cannot be used (the same words for every refusal).
START_OVER = "delete it, or rerun without --resume, to restart the run from scratch"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)`` after checking its sha256; refuse
    damaged files and other versions with a fix.

    :raises CorruptArtefact: when the bytes differ from the sidecar's sha256.
    """
    path = Path(path)
    try:
        data = read_checked(path, fix=START_OVER)
    except OSError as exc:
        raise BenchError(f"{path}: cannot read checkpoint ({exc.strerror or exc}); {START_OVER}") from None
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - report any unreadable checkpoint as the user's problem
        # torch's own text runs on for lines ("... there is a high likelihood that ..."): its first sentence says it.
        first = (str(exc).strip().splitlines() or [""])[0].split(". ")[0][:160]
        raise BenchError(f"{path}: cannot load checkpoint ({type(exc).__name__}: {first}; the file is damaged or "
                         f"incomplete); {START_OVER}") from None
    if not isinstance(state, dict) or state.get("checkpoint_version") != CHECKPOINT_VERSION:
        raise BenchError(f"{path}: not an mlrpl-bench checkpoint of version {CHECKPOINT_VERSION} (an older mlrpl-bench "
                         "wrote it, without a run fingerprint); delete it to restart the run")
    return state


def check_resumable(path: str | Path, state: dict[str, Any], fingerprint: dict[str, Any]) -> None:
    """Refuse to resume a checkpoint of another run: one line naming the fields that differ."""
    saved = state.get("run_fingerprint") or {}
    differences = diff_fields(saved, fingerprint, old="checkpoint", new="this run")
    if differences:
        shown = "; ".join(differences[:4]) + (f"; and {len(differences) - 4} more" if len(differences) > 4 else "")
        raise BenchError(f"{path}: --resume refused, the checkpoint is of a different run ({shown}); rerun with the "
                         "checkpoint's settings, or without --resume to start over")
