"""``hf``: any Hugging Face ``datasets`` dataset on disk (or in the local cache), offline.

Accepted sources, in this order:

* ``--data-root DIR`` saved with ``DatasetDict.save_to_disk(DIR)`` (read by ``load_from_disk``);
* ``--data-root DIR`` holding data files ``datasets.load_dataset(DIR)`` understands (parquet,
  csv, json, imagefolder);
* ``--dataset-option hub_name=ORG/NAME``: a hub dataset already in the local cache (``--data-root`` is then
  the cache dir, optional); loaded with ``HF_DATASETS_OFFLINE=1`` so nothing is downloaded.

It must have a train and a test split (``--dataset-option train_split`` / ``--dataset-option test_split`` rename them), an
image column (``--dataset-option image_column``, an ``Image`` feature or a path string) and a label column
(``--dataset-option label_column``). Labels are either lists of class indices (``indices``) or multi-hot
vectors (``multihot``: 1/0, or the suite's 1/-1/0 when any -1 occurs); ``--dataset-option label_format=auto``
picks ``indices`` for ``ClassLabel`` features and ragged lists, ``multihot`` for float or
fixed-length lists and for rows whose length equals the number of class names. Class names come
from the ``ClassLabel`` feature, else ``--dataset-option class_names=a,b,c`` (or a text file, one a line),
else ``class_0`` ... ``class_<C-1>``.

Images stored inside the dataset (bytes) are written once, as stored (no re-encoding), under
``<data root>/mlrpl_bench_cache/hf/`` for a saved dataset, else under the user cache
(``$MLRPL_BENCH_CACHE``, default ``~/.cache/mlrpl-bench``), or ``--dataset-option cache_dir``; a split's export is complete when
its ``done.txt`` marker exists, so an interrupted export is redone, never half-used.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Any

import numpy as np

from ..errors import BenchError
from ..hookspecs import hookimpl
from ._common import atomic_write_text, check_split, derived_dir, file_key, read_lines, user_cache_dir
from .base import Dataset, DatasetSplit

_FIX = "save it with DatasetDict({'train': ..., 'test': ...}).save_to_disk(DIR)"


@contextlib.contextmanager
def _offline(datasets):
    """Hugging Face libraries in offline mode for the duration of a load (then as they were)."""
    names = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
    env = {n: os.environ.get(n) for n in names}
    conf = {n: getattr(datasets.config, n) for n in names if hasattr(datasets.config, n)}
    os.environ.update({n: "1" for n in names})
    for n in conf:
        setattr(datasets.config, n, True)
    try:
        yield
    finally:
        for n, v in env.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v
        for n, v in conf.items():
            setattr(datasets.config, n, v)


def _sniff_suffix(data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return ".jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return ".png"
    if data[:4] in (b"GIF8",):
        return ".gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return ".img"


class HFDataset(Dataset):
    name = "hf"
    summary = "A Hugging Face datasets dataset on disk or in the local cache (image + multi-label columns)"
    citation = "Lhoest et al. Datasets: A Community Library for Natural Language Processing. EMNLP 2021 (demos)"
    needs_data_root = False  # a cached hub dataset needs only --dataset-option hub_name
    default_image_size = 224
    default_backbone = "resnet50"

    @dataclass
    class Options:
        image_column: str = field(default="image", metadata={"help": "column holding the images (Image feature or path)"})
        label_column: str = field(default="labels", metadata={"help": "column holding the labels"})
        label_format: Literal["auto", "indices", "multihot"] = field(default="auto", metadata={"help": "auto, indices (lists of class indices) or multihot"})
        class_names: str = field(default="", metadata={"help": "comma-separated class names, or a text file with one a line"})
        train_split: str = field(default="train", metadata={"help": "name of the split used for training"})
        test_split: str = field(default="test", metadata={"help": "name of the split used for testing"})
        hub_name: str = field(default="", metadata={"help": "hub dataset id to load from the local cache (offline)"})
        hub_config: str = field(default="", metadata={"help": "configuration name of the hub dataset"})
        cache_dir: str = field(default="", metadata={"help": "where exported images are written"})

    def __init__(self, root, options=None):
        super().__init__(root, options)
        if self.root is None and not self.options.hub_name:
            raise BenchError("dataset 'hf' needs --data-root (a dataset saved with save_to_disk) or --dataset-option hub_name=ORG/NAME")
        self._dict = None
        self._saved = True  # the data root is a save_to_disk folder (exports may live beside it)
        self._classes: tuple[list[str], str, bool] | None = None

    # -- loading ---------------------------------------------------------------------------

    def dataset_dict(self):
        """The ``DatasetDict`` (loaded once, offline)."""
        if self._dict is not None:
            return self._dict
        import datasets

        o = self.options
        where = o.hub_name or str(self.root)
        with _offline(datasets):
            try:
                ds = self._load(datasets)
            except BenchError:
                raise
            except Exception as exc:  # noqa: BLE001 - datasets raises many types; report one line
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                fix = ("it is not in the local cache: load it once with datasets.load_dataset on a machine online "
                       "(pass its cache folder as --data-root), or save it with save_to_disk") if o.hub_name else _FIX
                raise BenchError(f"{where}: cannot load the Hugging Face dataset offline ({type(exc).__name__}: "
                                 f"{first}); {fix}") from None
        if not isinstance(ds, (datasets.DatasetDict, dict)):
            raise BenchError(f"{where}: a single split was found; {_FIX}")
        for split in (o.train_split, o.test_split):
            if split not in ds:
                raise BenchError(f"{where}: no split {split!r} (has {', '.join(ds)}); "
                                 "choose with --dataset-option train_split=NAME / --dataset-option test_split=NAME")
            for col in (o.image_column, o.label_column):
                if col not in ds[split].column_names:
                    raise BenchError(f"{where}: split {split!r} has no column {col!r} (columns: "
                                     f"{', '.join(ds[split].column_names)}); set --dataset-option image_column / --dataset-option label_column")
        self._dict = ds
        return ds

    def _load(self, datasets):
        o = self.options
        if o.hub_name:
            self._saved = False
            return datasets.load_dataset(o.hub_name, o.hub_config or None, cache_dir=str(self.root) if self.root else None)
        if not self.root.exists():
            raise BenchError(f"{self.root}: no such directory; pass --data-root pointing at a dataset saved with save_to_disk")
        if (self.root / "dataset_dict.json").is_file() or (self.root / "state.json").is_file():
            return datasets.load_from_disk(str(self.root))
        # Data files in a folder: keep datasets' arrow cache and our exports out of the folder
        # (a later load would otherwise see them as data files).
        self._saved = False
        return datasets.load_dataset(str(self.root), cache_dir=str(user_cache_dir() / "hf-datasets"))

    def _where(self) -> str:
        return self.options.hub_name or str(self.root)

    def _label_rows(self, split_name: str) -> list:
        ds = self.dataset_dict()[split_name]
        return list(ds.select_columns([self.options.label_column])[self.options.label_column])

    def classes(self) -> tuple[list[str], str, bool]:
        """``(class names, label format, contract encoding)`` shared by both splits."""
        if self._classes is not None:
            return self._classes
        o = self.options
        ds = self.dataset_dict()
        feature = ds[o.train_split].features[o.label_column]
        inner = getattr(feature, "feature", None)
        names = None
        class_label = type(feature).__name__ == "ClassLabel" or type(inner).__name__ == "ClassLabel"
        if class_label:
            names = list((inner if inner is not None else feature).names)
        if o.class_names:
            path = Path(o.class_names).expanduser()
            given = ([line for _, line in read_lines(path)] if path.is_file()
                     else [n.strip() for n in o.class_names.split(",") if n.strip()])
            if names is not None and len(given) != len(names):
                raise BenchError(f"--dataset-option class_names lists {len(given)} names but the ClassLabel feature of "
                                 f"{o.label_column!r} has {len(names)}")
            names = given
        rows = {s: self._label_rows(s) for s in (o.train_split, o.test_split)}
        fmt = o.label_format
        if fmt == "auto":
            fmt = self._guess_format(feature, inner, class_label, names, rows)
        contract = False
        if fmt == "multihot":
            lengths = {len(r) for rs in rows.values() for r in rs if isinstance(r, (list, tuple))}
            if len(lengths) != 1:
                raise BenchError(f"{self._where()}: column {o.label_column!r} has multi-hot rows of lengths "
                                 f"{sorted(lengths)[:5]}; every row needs one value per class (or use --dataset-option label_format=indices)")
            n_cls = lengths.pop()
            contract = any(-1 in r for rs in rows.values() for r in rs)
        else:
            top = -1
            for rs in rows.values():
                for r in rs:
                    vals = r if isinstance(r, (list, tuple)) else [r]
                    if vals:
                        top = max(top, max(int(v) for v in vals))
            n_cls = len(names) if names is not None else top + 1
        if n_cls < 1:
            raise BenchError(f"{self._where()}: column {o.label_column!r} holds no labels")
        if names is None:
            names = [f"class_{i}" for i in range(n_cls)]
        if len(names) != n_cls:
            raise BenchError(f"{self._where()}: {len(names)} class names for {n_cls} label columns; fix --dataset-option class_names")
        self._classes = (names, fmt, contract)
        return self._classes

    @staticmethod
    def _guess_format(feature, inner, class_label, names, rows) -> str:
        if class_label:
            return "indices"
        if type(feature).__name__.startswith("Array") or getattr(feature, "length", -1) not in (-1, None):
            return "multihot"
        dtype = str(getattr(inner, "dtype", ""))
        if dtype.startswith("float"):
            return "multihot"
        lengths = {len(r) for rs in rows.values() for r in rs if isinstance(r, (list, tuple))}
        if names is not None and lengths == {len(names)}:
            return "multihot"
        return "indices"

    # -- one split -------------------------------------------------------------------------

    def load_split(self, split: str) -> DatasetSplit:
        """Read one split: the label matrix, and image files (exported once when stored as bytes)."""
        check_split(self.name, split)
        o = self.options
        split_name = o.train_split if split == "train" else o.test_split
        names, fmt, contract = self.classes()
        rows = self._label_rows(split_name)
        labels = np.full((len(rows), len(names)), -1, dtype=np.int8)
        for i, r in enumerate(rows):
            vals = r if isinstance(r, (list, tuple)) else [r]
            where = f"{self._where()}: split {split_name!r} row {i} column {o.label_column!r}"
            if fmt == "indices":
                for v in vals:
                    if v is None or float(v) != int(v) or not 0 <= int(v) < len(names):
                        raise BenchError(f"{where}: class index {v!r} outside 0..{len(names) - 1}; "
                                         "fix the labels or --dataset-option class_names")
                    labels[i, int(v)] = 1
            else:
                arr = np.asarray(vals, dtype=np.float64)
                allowed = (-1.0, 0.0, 1.0) if contract else (0.0, 1.0)
                if not np.isin(arr, allowed).all():
                    bad = arr[~np.isin(arr, allowed)][0]
                    raise BenchError(f"{where}: multi-hot value {bad!r}; expected {' or '.join(map(str, map(int, allowed)))}")
                labels[i] = arr.astype(np.int8) if contract else np.where(arr > 0, 1, -1)
        paths = self._image_paths(split_name)
        options = self.options_dict()
        options.pop("cache_dir")
        options["label_format"] = fmt
        return DatasetSplit(dataset=self.name, split=split, class_names=names, labels=labels,
                            image_ids=[f"{split_name}/{i}" for i in range(len(rows))], image_paths=paths,
                            options=options)

    def _image_paths(self, split_name: str) -> list[Path]:
        import datasets

        o = self.options
        ds = self.dataset_dict()[split_name].select_columns([o.image_column])
        feature = ds.features[o.image_column]
        if isinstance(feature, datasets.Image):
            ds = ds.cast_column(o.image_column, datasets.Image(decode=False))
        elif not (isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")):
            raise BenchError(f"{self._where()}: column {o.image_column!r} is {feature}; expected an Image feature "
                             "or file paths; fix --dataset-option image_column")
        key = file_key(self._where(), getattr(ds, "_fingerprint", None), split_name, o.image_column)
        where = o.cache_dir or ("" if self._saved else str(user_cache_dir() / "datasets"))
        out = derived_dir(self.root or user_cache_dir(), self.name, key, where)
        done = out / "done.txt"
        if done.is_file():
            listed = [Path(line) for _, line in read_lines(done)]
            if len(listed) == len(ds):
                return listed
        paths: list[Path] = []
        for i, value in enumerate(ds[o.image_column]):
            paths.append(self._materialise(value, out, i, split_name))
        atomic_write_text(done, "".join(f"{p}\n" for p in paths))
        return paths

    def _materialise(self, value: Any, out: Path, i: int, split_name: str) -> Path:
        if isinstance(value, str):
            path = Path(value).expanduser()
            return path if path.is_absolute() or self.root is None else self.root / path
        data = value.get("bytes") if isinstance(value, dict) else None
        if data:
            target = out / f"{i:08d}{_sniff_suffix(data)}"
            target.write_bytes(data)
            return target
        src = value.get("path") if isinstance(value, dict) else None
        if src:
            return Path(src)
        raise BenchError(f"{self._where()}: split {split_name!r} row {i} has no image (neither bytes nor path)")


@hookimpl
def mlrpl_datasets():
    return [HFDataset]
