"""From a :class:`DatasetSplit` to PyTorch data loaders.

Rows are selected by index (training rows, validation rows, test rows), images are opened
lazily through ``DatasetSplit.open_image`` and transformed. A missing or unreadable image stops
the run with its path, unless the caller asked to skip bad images: then the sample is dropped
from its batch and counted.

Rows that are already tensors (the frozen track's cached features, :class:`ArrayRows`) skip the
per-row ``Dataset`` + ``DataLoader`` collate: :func:`make_loader` serves each batch with one
fancy index into the array (:class:`IndexBatchLoader`), the same values in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..method import Batch
from .base import BadImageError, DatasetSplit


class SplitRows(Dataset):
    """Selected rows of a split: item ``i`` is ``(image_tensor, labels[i], i)`` or a bad-image marker.

    Only the split's image opener is kept (:meth:`DatasetSplit.image_opener`), never the split:
    rows that serve partial labels cannot reach the full ones.

    :param split: the loaded split (or an ``index -> image`` callable).
    :param rows: which rows of ``split`` (positions into ``split.image_paths``).
    :param labels: ``(len(rows), C)`` labels to serve with them (partial for training,
        full for validation and test).
    :param transform: PIL image -> tensor.
    :param skip_bad_images: return a marker instead of raising for unreadable images.
    """

    def __init__(self, split: DatasetSplit, rows: Sequence[int], labels: np.ndarray, transform: Callable,
                 skip_bad_images: bool = False):
        self.open_image = split.image_opener() if isinstance(split, DatasetSplit) else split
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.float32))
        if len(self.rows) != len(self.labels):
            raise ValueError("rows and labels differ in length")
        self.transform = transform
        self.skip_bad_images = skip_bad_images

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        try:
            image = self.transform(self.open_image(int(self.rows[i])))
        except BadImageError as exc:
            if not self.skip_bad_images:
                raise
            return None, exc.path, i
        return image, self.labels[i], i


def collate_batch(samples) -> tuple[Batch | None, list[str]]:
    """Stack samples into a :class:`Batch`; also return the paths of skipped bad images.

    The paths travel with the batch (rather than into a shared counter) so that they survive
    DataLoader worker processes.
    """
    good = [s for s in samples if s[0] is not None]
    bad = [s[1] for s in samples if s[0] is None]
    if not good:
        return None, bad
    images = torch.stack([s[0] for s in good])
    labels = torch.stack([s[1] for s in good])
    indices = torch.as_tensor([s[2] for s in good], dtype=torch.int64)
    return LoadedBatch(images, labels, indices), bad


class LoadedBatch(Batch):
    """A :class:`Batch` fresh from a loader, which the loader's pin-memory thread can pin (it calls
    ``pin_memory()`` on what it does not know), so that ``.to(cuda, non_blocking=True)`` is a true
    asynchronous copy."""

    def pin_memory(self) -> LoadedBatch:
        return LoadedBatch(self.inputs.pin_memory(), self.labels.pin_memory(), self.indices.pin_memory())


class _EpochSeeded(Dataset):
    """Rows served to persistent workers: each worker reseeds its RNGs when an epoch starts.

    A loader without persistent workers seeds every worker at every epoch with ``base + worker
    id``, ``base`` drawn from the main process's torch RNG (which the engine reseeds per epoch):
    that is what makes a resumed run augment exactly like an uninterrupted one. Persistent workers
    are seeded once; this wrapper gets the same per-epoch ``base`` with every index (see
    :class:`_SeedTagged`) and reseeds torch and ``random`` the way a fresh worker would.
    """

    def __init__(self, rows: Dataset):
        self.rows, self.seen = rows, None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item):
        index, base = item
        if base != self.seen:
            import random

            from torch.utils.data import get_worker_info

            info = get_worker_info()
            seed = base + (info.id if info is not None else 0)
            torch.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed % 2**32)
            self.seen = base
        return self.rows[index]


class _SeedTagged(Sampler):
    """Pairs every index of ``sampler`` with one seed drawn per epoch from the main torch RNG
    (one draw, as a fresh loader iterator makes)."""

    def __init__(self, sampler):
        self.sampler = sampler

    def __iter__(self):
        base = int(torch.empty((), dtype=torch.int64).random_().item())
        return ((i, base) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class EpochShuffleSampler(Sampler[int]):
    """This process's share of a permutation of ``range(n)`` seeded by ``(seed, epoch)``.

    Every process draws the same permutation and takes positions ``rank, rank + world, ...``, so
    with a per-process batch of ``B / world`` the union of the processes' step-``t`` batches is
    exactly the single-process step-``t`` batch of size ``B``. Under several processes the
    permutation is padded by wrapping around so that all take the same number of steps (the
    gradient all-reduce needs it). Seeding per epoch, instead of carrying a generator along,
    makes a resumed run see exactly the batches an uninterrupted run would have seen.
    """

    def __init__(self, n: int, seed: int, *, rank: int = 0, world_size: int = 1, shuffle: bool = True):
        self.n, self.seed, self.rank, self.world_size, self.shuffle = n, seed, rank, world_size, shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def __iter__(self):
        order = self._order()
        if self.world_size > 1 and self.n % self.world_size:
            order += order[: self.world_size - self.n % self.world_size]
        return iter(order[self.rank::self.world_size])

    def __len__(self) -> int:
        return -(-self.n // self.world_size)


class FeatureBatches:
    """``ctx.feature_batches``: call it for one un-augmented pass over this process's share of the
    training rows, as :class:`Batch` objects on ``device`` (for prototypes and pseudo labels).

    A narrow view by construction: it holds the rows (images or cached features, and the
    *partial* labels), the loader settings and a list that collects the paths of skipped images
    -- no dataset split, no engine, nothing that holds the hidden labels.
    """

    def __init__(self, rows: Dataset, *, batch_size: int, device: torch.device, rank: int = 0, world_size: int = 1,
                 workers: int = 0, bad_images: list[str] | None = None, progress: bool = False):
        self.rows, self.batch_size, self.device, self.progress = rows, batch_size, device, progress
        self.rank, self.world_size, self.workers = rank, world_size, workers
        self.bad_images = bad_images if bad_images is not None else []

    def __call__(self):
        n = len(self.rows)
        indices = range(self.rank, n, self.world_size)
        pin = self.device.type == "cuda"
        from tqdm.auto import tqdm

        loader = make_loader(self.rows, indices, self.batch_size, workers=self.workers, pin_memory=pin)
        # The bar (shown with progress on rank 0) is tqdm.auto's, like the engine's own loops: it
        # starts the loader's iterator once more, which draws from the global RNG as theirs do.
        for batch, bad in tqdm(loader, desc="features", leave=False, dynamic_ncols=True,
                               disable=not (self.progress and self.rank == 0)):
            self.bad_images.extend(bad)
            if batch is not None:
                yield batch.to(self.device, non_blocking=pin)


class ArrayRows(Dataset):
    """Rows of an in-memory or memory-mapped array ``(N, ...)``: item ``i`` is
    ``(array[rows[i]], labels[i], i)``, and :meth:`take` serves a whole batch with one fancy index.

    Nothing is copied up front (a frozen-track cache of a large dataset may not fit in memory);
    a batch is one read of its rows, float32 like the per-row path.

    :param array: ``(M, ...)`` features (e.g. a ``numpy.load(..., mmap_mode="r")`` array).
    :param labels: ``(N, C)`` labels served with the rows.
    :param rows: which rows of ``array`` (positions); None = all, in order.
    :param unreadable: rows of ``array`` whose image could not be read (row -> path): they are left
        out of every batch and reported like skipped images (``--skip-bad-images``).
    """

    def __init__(self, array, labels, rows: Sequence[int] | None = None, unreadable: dict[int, str] | None = None):
        self.array = array
        self.unreadable = dict(unreadable or {})
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.float32))
        if len(self.labels) != (len(array) if self.rows is None else len(self.rows)):
            raise ValueError("rows and labels differ in length")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        row = int(i if self.rows is None else self.rows[i])
        if row in self.unreadable:
            return None, self.unreadable[row], i
        return torch.from_numpy(np.array(self.array[row], dtype=np.float32)), self.labels[i], i

    def take_readable(self, positions: Sequence[int]) -> tuple[Batch | None, list[str]]:
        """The batch of the readable rows among ``positions`` (None if there is none) and the paths
        of the unreadable ones -- what a loader over images yields with ``--skip-bad-images``."""
        if not self.unreadable:
            return self.take(positions), []
        pos = np.asarray(positions, dtype=np.int64)
        rows = pos if self.rows is None else self.rows[pos]
        bad = np.isin(rows, list(self.unreadable))
        paths = [self.unreadable[int(r)] for r in rows[bad]]
        return (self.take(pos[~bad]) if (~bad).any() else None), paths

    def take(self, positions: Sequence[int]) -> Batch:
        """The batch of rows ``positions`` (positions into this view), in that order."""
        pos = np.asarray(positions, dtype=np.int64)
        rows = pos if self.rows is None else self.rows[pos]
        inputs = torch.from_numpy(np.ascontiguousarray(np.take(self.array, rows, axis=0), dtype=np.float32))
        index = torch.from_numpy(pos)
        return Batch(inputs, self.labels[index], index)


class IndexBatchLoader:
    """What :func:`make_loader` returns for :class:`ArrayRows`: the batches a ``DataLoader`` with
    the same sampler, batch size and ``drop_last`` would give (same rows, order and values), as
    ``(Batch or None, bad image paths)`` pairs, without the per-row ``__getitem__`` and collate.

    Starting an iteration draws one number from torch's global RNG, as a ``DataLoader`` iterator
    does for its workers' base seed: whatever draws from that RNG later in the epoch sees the
    stream it saw with the ``DataLoader``, so records stay identical.
    """

    def __init__(self, rows: ArrayRows, sampler, batch_size: int, *, pin_memory: bool = False,
                 drop_last: bool = False):
        self.rows, self.sampler, self.batch_size = rows, sampler, batch_size
        self.pin_memory, self.drop_last = pin_memory, drop_last

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        torch.empty((), dtype=torch.int64).random_()  # the DataLoader iterator's base-seed draw, at iter()
        return self._batches(list(iter(self.sampler)))

    def _batches(self, order: list[int]):
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            if self.drop_last and len(chunk) < self.batch_size:
                return
            batch, bad = self.rows.take_readable(chunk)
            if self.pin_memory and batch is not None:
                batch = Batch(batch.inputs.pin_memory(), batch.labels.pin_memory(), batch.indices.pin_memory())
            yield batch, bad


def make_loader(rows: Dataset, sampler: Sampler, batch_size: int, *, workers: int = 0,
                pin_memory: bool = False, drop_last: bool = False,
                persistent_workers: bool = False) -> DataLoader | IndexBatchLoader:
    """A loader yielding ``(Batch or None, bad_image_paths)`` pairs (for :class:`ArrayRows`, an
    :class:`IndexBatchLoader`: batches by index, no worker processes needed).

    ``persistent_workers`` (with ``workers > 0``) keeps the worker processes from one epoch to the
    next; iterate the same loader every epoch. Its workers are reseeded per epoch exactly as fresh
    ones would be, so results do not depend on it.
    """
    if isinstance(rows, ArrayRows):
        return IndexBatchLoader(rows, sampler, batch_size, pin_memory=pin_memory, drop_last=drop_last)
    if persistent_workers and workers > 0:
        # The loader's own base seed comes from a private generator: the main RNG sees one draw per
        # epoch (in _SeedTagged), as with fresh workers.
        return DataLoader(_EpochSeeded(rows), batch_size=batch_size, sampler=_SeedTagged(sampler), num_workers=workers,
                          collate_fn=collate_batch, pin_memory=pin_memory, drop_last=drop_last, persistent_workers=True,
                          generator=torch.Generator().manual_seed(0))
    return DataLoader(rows, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate_batch,
                      pin_memory=pin_memory, drop_last=drop_last, persistent_workers=False)
