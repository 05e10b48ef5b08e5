"""The dataset contract: what a dataset plugin returns and how images are opened.

A dataset plugin is a subclass of :class:`Dataset` registered through the ``mlrpl_datasets``
hook. It reads an on-disk layout (never downloads) and returns one :class:`DatasetSplit` per
split (``train`` and ``test``): the full label matrix in loader order, the class names and the
image paths. The harness then applies the protocol (partial labels, validation split).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import BenchError
from ..labels import check_label_matrix

SPLITS = ("train", "test")


class BadImageError(BenchError):
    """An image file that is missing or cannot be decoded."""

    def __init__(self, path: Path | str, reason: str = ""):
        # A one-argument form keeps the exception re-raisable from DataLoader worker processes.
        message = f"{path}: cannot read image ({reason}); restore the file or pass --skip-bad-images" if reason else str(path)
        super().__init__(message)
        self.path = str(path).split(": cannot read image")[0]


@dataclass
class DatasetSplit:
    """One split of a dataset, as loaded from disk.

    :ivar dataset: the dataset's registry name.
    :ivar split: ``train`` or ``test``.
    :ivar class_names: the C category names, in column order.
    :ivar labels: full labels ``(N, C)`` int8 in {1, -1, 0}; 0 only where the dataset itself
        does not annotate an entry (natively partial datasets, VOC ``difficult=ignore``).
    :ivar image_ids: N identifiers, unique within the split (file stem or dataset id).
    :ivar image_paths: N image files.
    :ivar options: the loader options that shaped the labels (recorded in results).
    """

    dataset: str
    split: str
    class_names: list[str]
    labels: np.ndarray
    image_ids: list[str]
    image_paths: list[Path]
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = check_label_matrix(self.labels, source=f"dataset {self.dataset} ({self.split})")
        n, c = self.labels.shape
        if len(self.class_names) != c:
            raise BenchError(f"dataset {self.dataset}: {len(self.class_names)} class names for {c} label columns")
        if len(self.image_ids) != n or len(self.image_paths) != n:
            raise BenchError(f"dataset {self.dataset} ({self.split}): {n} label rows but {len(self.image_ids)} ids / {len(self.image_paths)} paths")

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def fingerprint(self) -> str:
        """sha256 of what defines the split: class names, image ids, labels and options (not pixels)."""
        h = hashlib.sha256()
        h.update(json.dumps({"dataset": self.dataset, "split": self.split, "classes": self.class_names,
                             "options": self.options}, sort_keys=True, default=str).encode())
        h.update("\n".join(self.image_ids).encode())
        h.update(np.ascontiguousarray(self.labels, dtype=np.int8).tobytes())
        return h.hexdigest()

    def open_image(self, index: int):
        """Open image ``index`` as an RGB ``PIL.Image``; :class:`BadImageError` names the file."""
        return open_image_file(self.image_paths[index])

    def image_opener(self):
        """A callable ``index -> image`` that holds the image paths only, never the labels.

        The harness gives methods views built on it (``ctx.feature_batches``), so that nothing a
        method receives can reach the split's full labels. A split that overrides
        :meth:`open_image` should override this too; the default then falls back to the bound
        method (which does reach the split).
        """
        if type(self).open_image is DatasetSplit.open_image:
            return ImageFiles(tuple(self.image_paths))
        return self.open_image


def open_image_file(path: Path | str):
    """Open an image file as an RGB ``PIL.Image``; :class:`BadImageError` names the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except FileNotFoundError:
        raise BadImageError(path, "file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BadImageError(path, f"corrupt or unsupported: {exc}") from None


class ImageFiles:
    """``index -> RGB image`` over a tuple of image paths (and nothing else)."""

    __slots__ = ("paths",)

    def __init__(self, paths: tuple[Path, ...]):
        self.paths = paths

    def __call__(self, index: int):
        return open_image_file(self.paths[index])


class Dataset:
    """Base class of dataset plugins.

    Class attributes a subclass sets: ``name`` (registry name), ``summary`` (one line),
    ``citation``, ``needs_data_root`` (False only for data that the suite can build itself),
    ``default_image_size`` (pixels, the papers use 448), ``default_backbone`` (registry name),
    ``default_backbone_weights`` (``--backbone-weights`` for the default backbone),
    ``Options`` (a dataclass of loader options, each field with ``metadata["help"]``).
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    needs_data_root: ClassVar[bool] = True
    default_image_size: ClassVar[int] = 448
    default_backbone: ClassVar[str] = "resnet101"
    default_backbone_weights: ClassVar[str] = "none"

    @dataclass
    class Options:
        pass

    def __init__(self, root: str | Path | None, options: Any = None):
        if self.needs_data_root and root is None:
            raise BenchError(f"dataset {self.name!r} needs --data-root pointing at its files on disk")
        self.root = Path(root).expanduser() if root is not None else None
        if options is None:
            options = self.Options()
        elif dataclasses.is_dataclass(options):  # built in Python: check it like command-line options
            from ..schema import build_options

            options = build_options(type(options), dataclasses.asdict(options), owner=f"dataset {self.name}", strings=False)
        self.options = options

    @classmethod
    def record_info(cls) -> dict[str, Any]:
        """Extra keys for the ``dataset`` block of every run record (e.g. the labels' provenance).
        Default: none."""
        return {}

    def load_split(self, split: str) -> DatasetSplit:
        """Read ``split`` (``train`` or ``test``) from disk and return it. Must not download."""
        raise NotImplementedError(f"dataset {self.name!r} must implement load_split(split)")

    def options_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.options) if dataclasses.is_dataclass(self.options) else {}

    def transforms(self, image_size: int, train: bool):
        """The image transform for ``train`` or evaluation. Default: the papers' (see transforms)."""
        from .transforms import paper_transform

        return paper_transform(image_size, train)
