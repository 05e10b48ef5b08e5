"""The frozen-backbone track's feature cache.

With ``--track frozen`` the backbone never trains, so its output for an image is a constant:
it is computed once per (split fingerprint, backbone weights, transform, rows) and stored on disk
as a memory-mapped ``.npy`` array; every method and every known proportion then trains on the
cache. This is what makes VOC/COCO-sized datasets usable on a CPU. Images go through the
evaluation transform (a cache of augmented images would freeze one random augmentation).

Concurrent builders are safe and do the work once: a process that finds no cache takes an
advisory lock on the key (POSIX ``flock``) and looks again before building, so the workers of a
parallel sweep wait for the first one's cache; without the lock (other platforms) each writes its
own temporary file and renames it into place, and since the content is a deterministic function
of the key, whichever rename lands last is equally right.
A ``.json`` manifest written after the array makes a half-written cache impossible to mistake
for a finished one; it holds the array's sha256, checked whenever the cache is opened, so a
damaged cache (flipped bytes of the same size) is said in one line and built again, never used. It also lists the images that could not be read (their rows hold no
features): whether a run stops on them or skips them (``--skip-bad-images``) is decided when the
cache is used, so the cache itself does not depend on that flag.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .atomic import CorruptArtefact, atomic_open, atomic_write_bytes, sha256_file
from .data.base import BadImageError
from .data.loading import ArrayRows, make_loader
from .errors import BenchError
from .schema import SchemaError, read_json_file


def module_fingerprint(module: torch.nn.Module) -> str:
    """sha256 over a module's parameter and buffer names, shapes and values, and the
    ``fingerprint_extra()`` text of any submodule that has one (a setting without weights that
    changes the outputs, e.g. the ``resnet101-pool2`` trunk's pool; empty texts add nothing)."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        t = tensor.detach().cpu().contiguous()
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    for name, sub in module.named_modules():
        extra = sub.fingerprint_extra() if hasattr(sub, "fingerprint_extra") else ""
        if extra:
            h.update(f"{name}:{extra}".encode())
    return h.hexdigest()


def cache_key(*, split_fingerprint: str, rows: np.ndarray, backbone_fingerprint: str, transform: str, pooled: bool,
              dtype: str) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"split": split_fingerprint, "backbone": backbone_fingerprint, "transform": transform,
                         "pooled": pooled, "dtype": dtype}, sort_keys=True).encode())
    h.update(np.ascontiguousarray(rows, dtype=np.int64).tobytes())
    return h.hexdigest()


class CachedRows(ArrayRows):
    """Rows served from a cached feature array: item ``i`` is ``(features[rows[i]], labels[i], i)``;
    the loaders serve whole batches by index (:class:`~mlrpl_bench.data.loading.ArrayRows`)."""


def load_or_compute(cache_dir: Path, key: str, rows: Dataset, backbone: torch.nn.Module, *, batch_size: int,
                    device: torch.device, pooled: bool = False, dtype: str = "float32", workers: int = 0,
                    progress: bool = False) -> tuple[np.ndarray, bool]:
    """The cached features of ``rows`` under ``key`` (memory-mapped), computing them if absent.

    :return: ``(features, hit)`` where ``hit`` says whether the cache already had them; the rows
        of unreadable images are :func:`unreadable_rows` of the same key.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    array_path, manifest_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    found = _read_cache(array_path, manifest_path, len(rows), warn=False)
    if found is not None:
        return found, True
    # Processes that need the same cache at once (the workers of a parallel sweep) wait for the
    # first to build it instead of each building it.
    with _build_lock(cache_dir / f"{key}.lock"):
        found = _read_cache(array_path, manifest_path, len(rows))
        if found is not None:
            return found, True
        return _compute(array_path, manifest_path, key, rows, backbone, batch_size=batch_size, device=device,
                        pooled=pooled, dtype=dtype, workers=workers, progress=progress), False


def unreadable_rows(cache_dir: Path, key: str) -> dict[int, dict[str, str]]:
    """Rows of the cache ``key`` whose image could not be read -> ``{"path": ..., "message": ...}``
    (the message is the run's one-line error for that image)."""
    manifest = read_json_file(cache_dir / f"{key}.json", what="feature-cache manifest")
    return {int(row): entry for row, entry in manifest.get("unreadable", {}).items()}


def _read_cache(array_path: Path, manifest_path: Path, n_rows: int, *, warn: bool = True) -> np.ndarray | None:
    """The finished cache (memory-mapped) after checking its sha256, or None when there is none
    yet -- or when it is damaged: then one line says so on stderr and the caller builds it again."""
    if not (manifest_path.exists() and array_path.exists()):
        return None
    try:
        return _open_checked(array_path, manifest_path, n_rows)
    except CorruptArtefact as exc:
        if warn:
            print(f"warning: {exc}; building it again", file=sys.stderr)
        return None


def _open_checked(array_path: Path, manifest_path: Path, n_rows: int) -> np.ndarray:
    """The memory-mapped array of a finished cache.

    :raises CorruptArtefact: naming the file that is unreadable, of the wrong shape, or whose
        sha256 differs from the manifest's (a cache written before manifests held one counts too).
    """
    try:
        manifest = read_json_file(manifest_path, what="feature-cache manifest")
    except SchemaError as exc:
        raise CorruptArtefact(str(exc)) from None
    digest = manifest.get("sha256") if isinstance(manifest, dict) else None
    if not isinstance(digest, str):
        raise CorruptArtefact(f"{manifest_path}: no field 'sha256' (written by an older mlrpl-bench, or damaged)")
    try:
        actual = sha256_file(array_path)
        features = np.load(array_path, mmap_mode="r")
    except (ValueError, OSError) as exc:
        raise CorruptArtefact(f"{array_path}: unreadable feature cache ({exc})") from None
    if actual != digest:
        raise CorruptArtefact(f"{array_path}: sha256 differs from field 'sha256' of {manifest_path.name} (the file is "
                              "damaged or was changed after it was written)")
    if list(features.shape) != manifest.get("shape") or len(features) != n_rows:
        raise CorruptArtefact(f"{array_path}: feature cache does not match its manifest (shape)")
    return features


@contextlib.contextmanager
def _build_lock(path: Path):
    """An exclusive advisory lock on ``path`` (POSIX ``flock``; elsewhere none: the atomic renames
    still make concurrent builds safe, only wasteful)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _compute(array_path: Path, manifest_path: Path, key: str, rows: Dataset, backbone: torch.nn.Module, *,
             batch_size: int, device: torch.device, pooled: bool, dtype: str, workers: int,
             progress: bool) -> np.ndarray:
    from tqdm.auto import tqdm

    backbone = backbone.to(device).eval()
    loader = make_loader(_Reasons(rows), range(len(rows)), batch_size, workers=workers)
    out: np.ndarray | None = None
    unreadable: dict[int, dict[str, str]] = {}
    with torch.no_grad():
        for batch, bad in tqdm(loader, desc="caching features", leave=False, disable=not progress):
            # Unreadable images are noted (row -> path and message), not fatal: the run decides.
            unreadable.update(bad)
            if batch is None:
                continue
            maps = backbone(batch.inputs.to(device))
            if pooled:
                maps = maps.mean(dim=(2, 3), keepdim=True)
            maps = maps.cpu().numpy().astype(dtype)
            if out is None:
                out = np.empty((len(rows), *maps.shape[1:]), dtype=dtype)
            out[batch.indices.numpy()] = maps
    if out is None:  # not one readable image: nothing to cache
        raise BadImageError(next(iter(unreadable.values()), {"message": "every image of the split"})["message"])
    out[sorted(unreadable)] = 0.0  # rows without an image hold zeros, never served
    digest = hashlib.sha256()
    with atomic_open(array_path) as handle:
        np.save(_Hashing(handle, digest), out)
    atomic_write_bytes(manifest_path, json.dumps({"key": key, "shape": list(out.shape), "dtype": dtype,
                                                  "sha256": digest.hexdigest(),
                                                  "unreadable": {str(k): v for k, v in sorted(unreadable.items())}}).encode())
    return np.load(array_path, mmap_mode="r")


class _Hashing:
    """A write-only handle that hashes what passes through it (the cache's sha256 without reading it back)."""

    def __init__(self, handle, digest):
        self.handle, self.digest = handle, digest

    def write(self, data) -> int:
        self.digest.update(data)
        return self.handle.write(data)


class _Reasons:
    """Rows of images for the cache pass: an unreadable image becomes the marker
    ``(None, (row, {"path": ..., "message": ...}), i)`` instead of an exception."""

    def __init__(self, rows):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        try:
            return self.rows[i]
        except BadImageError as exc:
            return None, (int(i), {"path": exc.path, "message": str(exc)}), i


def feature_cache_dir() -> Path:
    """Where frozen-backbone features are cached (``$MLRPL_BENCH_CACHE/features``)."""
    import os

    root = os.environ.get("MLRPL_BENCH_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "mlrpl-bench") / "features"


def cached_rows(backbone, train, train_split, test_split, protocol, train_labels, val_targets, eval_tf, device,
                progress: bool, skip_bad_images: bool = False):
    """Frozen track: the train/val/test rows served from the feature cache (computed once).

    An unreadable image of a row the run uses stops the run with its path, as on the image track,
    unless ``skip_bad_images``: then its rows are left out of every batch and reported as skipped.

    :return: ``(train_rows, val_rows, test_rows)``; the training rows also serve
        ``ctx.feature_batches`` (they hold features and partial labels only).
    """
    from .data.loading import SplitRows
    from .data.transforms import describe

    backbone_fp = module_fingerprint(backbone)
    transform = describe(eval_tf)
    pooled = train.frozen_features == "pooled"
    out, bad = [], []
    for split in (train_split, test_split):
        rows = np.arange(len(split))
        key = cache_key(split_fingerprint=split.fingerprint(), rows=rows, backbone_fingerprint=backbone_fp,
                        transform=transform, pooled=pooled, dtype="float32")
        features, _ = load_or_compute(feature_cache_dir(), key, SplitRows(split, rows, split.labels, eval_tf), backbone,
                                      batch_size=train.batch_size, device=device, pooled=pooled, workers=train.workers,
                                      progress=progress)
        out.append(features)
        bad.append(unreadable_rows(feature_cache_dir(), key))
    (train_features, test_features), (train_bad, test_bad) = out, bad
    if not skip_bad_images:
        used = set(map(int, protocol.train_idx)) | set(map(int, protocol.val_idx))
        first = [entry for row, entry in sorted(train_bad.items()) if row in used] + list(test_bad.values())
        if first:
            raise BadImageError(first[0]["message"])
    paths = [{row: entry["path"] for row, entry in part.items()} for part in (train_bad, test_bad)]
    # One cache per split; the protocol's rows are views into it (no copy for the big train part).
    train_rows = CachedRows(train_features, train_labels, protocol.train_idx, paths[0])
    val_rows = CachedRows(train_features, val_targets, protocol.val_idx, paths[0])
    test_rows = CachedRows(test_features, test_split.labels, None, paths[1])
    return train_rows, val_rows, test_rows
