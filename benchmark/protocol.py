"""The partial-label protocol (pure numpy): full labels -> partial training labels + validation split.

Settings (following section III.B of the imbalance-aware pseudo-labeling paper and the
SST/HST/DSRB protocol):

* ``full`` - every label known (the upper bound); the matrix is returned unchanged.
* ``pal`` - partially annotated labels: each entry is kept independently with probability
  ``known`` (positives and negatives alike, eq. 2); an image can end up with no known label
  or no known positive.
* ``ppl`` - partially annotated positive labels (eq. 3): every negative is dropped and each
  positive is kept independently with probability ``known`` (the paper: "we retain a certain
  proportion of positive labels and discard the remaining negative labels"). Keeping entries
  independently, as PAL does, is our reading; the paper does not say whether the proportion is
  exact per image. An image can end up with no known positive, which eq. 3 allows.
* ``spl`` - single annotated positive label (eq. 4): exactly one positive per image, chosen
  uniformly among its positives; everything else unknown. Images without any positive become
  all-unknown. ``known`` does not apply.

Randomness (the two ``scheme`` values):

* ``generator`` (default): a ``numpy.random.Generator`` (PCG64) seeded with
  ``SeedSequence([*H(key), *H(setting), round(known * 1e6), seed])`` where ``H(text)`` is the
  SHA-256 of ``text`` as eight little-endian uint32 words. The proportion term is 0 for ``full``
  and ``spl``, which do not use it, so their masks do not change along a sweep. ``key`` should
  name the data (the dataset fingerprint), so different datasets never share a stream.
* ``hcp``: bit-for-bit the official SST/HST/DSRB release for PAL: ``numpy.random.seed(seed)``
  then one ``numpy.random.random((N, C))`` draw over the whole training matrix in file order,
  an entry kept where ``u < known``. The legacy stream is reproduced with a private
  ``RandomState`` so the caller's global RNG state is left alone. Only PAL (and ``full``) has an
  official mask; other settings refuse this scheme.

The validation split is carved out *after* the mask is drawn over the whole training matrix, so
``hcp`` masks equal the official files row for row; validation rows are scored against their
full labels. Masks are made once per (data, setting, proportion, seed, scheme) and cached, so
every method trains on the same unknowns (:func:`prepare_protocol`).
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import BenchError
from .atomic import CorruptArtefact, atomic_write_bytes
from .labels import check_label_matrix, refuse_zero_one
from .schema import SchemaError, read_json_file
from .vocabulary import (DEFAULT_PROPORTIONS, PROPORTION_FREE_SETTINGS, SCHEMES, SETTINGS,  # noqa: F401 - re-exported
                         check_proportion, check_seed, check_setting_scheme, known_text, proportion_key, safe_name)

#: Version of the cache layout written by :func:`prepare_protocol`.
CACHE_FORMAT = 1


# --------------------------------------------------------------------------- validation / seeding


def check_val_fraction(fraction: float) -> float:
    """Return the validation fraction as a float after checking it is in [0, 1).

    The protocol itself allows 0 (no validation split); a benchmark run needs one, which its
    configuration requires (:class:`mlrpl_bench.run_config.TrainConfig`).
    """
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        raise BenchError(f"val_fraction is {fraction!r}; use a number in [0, 1), e.g. 0.1") from None
    if not 0.0 <= value < 1.0:
        raise BenchError(f"val_fraction is {fraction!r}; it must be in [0, 1), e.g. 0.1 to hold out 10% of training images")
    return value


def _hash_words(text: str) -> list[int]:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 32, 4)]


def protocol_generator(key: str, setting: str, known: float, seed: int) -> np.random.Generator:
    """The ``generator``-scheme random stream of one (key, setting, proportion, seed)."""
    known_term = 0 if setting in PROPORTION_FREE_SETTINGS else proportion_key(known)
    entropy = [*_hash_words(key), *_hash_words(setting), known_term, int(seed)]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))


def _uniforms(shape: tuple[int, int], setting: str, known: float, seed: int, scheme: str, key: str) -> np.ndarray:
    if scheme == "hcp":
        # Same stream as the official `np.random.seed(seed); np.random.random((N, C))`, without
        # touching the global RNG the caller may rely on.
        return np.random.RandomState(seed).random_sample(shape)
    return protocol_generator(key, setting, known, seed).random(shape)


# --------------------------------------------------------------------------- masks


def make_partial_labels(full: np.ndarray, setting: str, known: float, seed: int, *,
                        scheme: str = "generator", key: str = "", source: str = "full labels") -> np.ndarray:
    """Make the partial training label matrix of one protocol cell.

    :param full: ``(N, C)`` labels in {1, -1}; 0 is allowed for entries already unknown and
        stays 0, but a matrix with 0s and no -1 at all (the 0/1 convention) is refused.
    :param setting: ``full``, ``pal``, ``ppl`` or ``spl`` (see the module docstring).
    :param known: known-label proportion in (0, 1] (ignored by ``full`` and ``spl``).
    :param seed: non-negative integer seed.
    :param scheme: ``generator`` (default) or ``hcp`` (bit-exact official PAL masks).
    :param key: names the data (e.g. the dataset fingerprint); part of the ``generator`` seed.
    :param source: where ``full`` came from (a file name), for messages.
    :returns: a new ``int8`` ``(N, C)`` matrix.
    :raises BenchError: on bad labels, an unknown setting/scheme, a proportion outside (0, 1].
    """
    check_setting_scheme(setting, scheme)
    full = check_label_matrix(full, source=source)
    # A 0/1 matrix would come out with every negative dropped, whatever the setting.
    refuse_zero_one(full, source=source, fix="labels * 2 - 1")
    return _mask(full, setting, check_proportion(known), check_seed(seed), scheme, key)


def _mask(full: np.ndarray, setting: str, known: float, seed: int, scheme: str, key: str) -> np.ndarray:
    """:func:`make_partial_labels` on inputs already checked (once, by the caller)."""
    if setting == "full":
        return full.copy()
    u = _uniforms(full.shape, setting, known, seed, scheme, key)
    if setting == "pal":
        return np.where(u < known, full, 0).astype(np.int8)
    positive = full == 1
    if setting == "ppl":
        return np.where(positive & (u < known), 1, 0).astype(np.int8)
    # spl: the positive with the smallest uniform draw is a uniform choice among the positives.
    out = np.zeros_like(full)
    has_positive = positive.any(axis=1)
    choice = np.argmin(np.where(positive, u, np.inf), axis=1)
    rows = np.flatnonzero(has_positive)
    out[rows, choice[rows]] = 1
    return out


def split_validation(n: int, fraction: float, seed: int, *, key: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Carve a seeded validation split out of ``n`` training images.

    :param fraction: share of images held out, in [0, 1). When it is positive and ``n >= 2`` at
        least one image is held out and at least one kept.
    :returns: ``(train_idx, val_idx)``, both sorted ``int64``.
    """
    fraction = check_val_fraction(fraction)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise BenchError(f"number of training images is {n!r}; expected a non-negative integer")
    seed = check_seed(seed)
    n_val = int(round(n * fraction))
    if fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    else:
        n_val = 0 if n < 2 else n_val
    # Its own stream ("validation"), so the split does not depend on the setting or proportion:
    # every cell of a sweep validates on the same images.
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([*_hash_words(key), *_hash_words("validation"), seed])))
    perm = rng.permutation(n)
    return np.sort(perm[n_val:]).astype(np.int64), np.sort(perm[:n_val]).astype(np.int64)


def fingerprint_array(arr: np.ndarray) -> str:
    """SHA-256 hex digest of an array's dtype, shape and C-order bytes."""
    arr = np.ascontiguousarray(arr)
    h = hashlib.sha256()
    h.update(f"{arr.dtype.str}|{list(arr.shape)}|".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def protocol_summary(partial: np.ndarray) -> dict:
    """Statistics of a partial label matrix (fractions in [0, 1] and counts).

    ``images_no_known_label``: share of images whose labels are all unknown;
    ``images_no_known_positive``: share of images without a known positive. Under PAL with
    proportion ``p`` on a fully labeled matrix their expectations are ``(1 - p)**C`` and the mean
    of ``(1 - p)**k_i`` over images with ``k_i`` positives.
    """
    partial = check_label_matrix(partial, source="partial labels")
    n, c = partial.shape
    known = partial != 0
    no_label = int((~known.any(axis=1)).sum())
    no_positive = int((~(partial == 1).any(axis=1)).sum())
    return {
        "images": n,
        "classes": c,
        "known_fraction": float(known.mean()),
        "known_positive_fraction": float((partial == 1).mean()),
        "known_negative_fraction": float((partial == -1).mean()),
        "images_no_known_label": no_label / n,
        "images_no_known_label_count": no_label,
        "images_no_known_positive": no_positive / n,
        "images_no_known_positive_count": no_positive,
    }


# --------------------------------------------------------------------------- cached protocol cells


@dataclass
class ProtocolSplit:
    """One protocol cell: the partial matrix over the whole training set and the validation split.

    Train on ``partial[train_idx]``; validate on the *full* labels of ``val_idx``.
    """

    partial: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    setting: str
    known: float
    seed: int
    scheme: str
    val_fraction: float
    mask_fingerprint: str
    val_fingerprint: str
    key: str = ""
    cache_path: Path | None = None   # the .json metadata file, when cached
    reused: bool = False             # True when loaded from the cache
    summary: dict = field(default_factory=dict)

    def train_labels(self) -> np.ndarray:
        """The partial labels of the training rows (validation rows removed)."""
        return self.partial[self.train_idx]


def cache_stem(key: str, setting: str, known: float, seed: int, scheme: str, val_fraction: float) -> str:
    """File-name stem of a cached protocol cell (without extension)."""
    slug = safe_name(key)[:64] or "nokey"
    if slug != key:  # sanitised or truncated: keep distinct keys distinct
        slug = f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    return f"{slug}__{setting}__{known_text(known)}__seed{seed}__{scheme}__val{val_fraction!r}"


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _load_cached(meta_path: Path, full_train: np.ndarray, labels_fp: str) -> tuple[np.ndarray, np.ndarray]:
    """The cached ``(partial, val_idx)`` of a cell after checking them against their metadata.

    :raises CorruptArtefact: a damaged cell (unreadable files, a sha256 or shape that differs): the
        caller makes the mask again, it is a deterministic function of its key.
    :raises BenchError: a cell of the same key made from other labels (not damage: a key clash).
    """
    try:
        meta = read_json_file(meta_path, what="protocol cache")
    except SchemaError as exc:
        raise CorruptArtefact(str(exc)) from None
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        raise CorruptArtefact(f"{meta_path}: field 'format' is {meta.get('format') if isinstance(meta, dict) else None!r}, "
                              f"expected {CACHE_FORMAT}")
    if meta.get("labels_fingerprint") != labels_fp:
        raise BenchError(
            f"{meta_path}: field 'labels_fingerprint' does not match these training labels (same key, different data); "
            f"pass a key that names the data (e.g. the dataset fingerprint) or delete {meta_path} to make the mask again"
        )
    arrays = []
    for suffix, fp_field in ((".partial.npy", "mask_fingerprint"), (".val_idx.npy", "val_fingerprint")):
        path = meta_path.with_name(meta_path.name[: -len(".json")] + suffix)
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CorruptArtefact(f"{path}: cannot read the cached protocol array ({exc})") from None
        if fingerprint_array(arr) != meta.get(fp_field):
            raise CorruptArtefact(f"{path}: sha256 differs from field {fp_field!r} in {meta_path.name} (file changed or corrupt)")
        arrays.append(arr)
    partial, val_idx = arrays
    if partial.shape != full_train.shape:
        raise CorruptArtefact(f"{meta_path}: cached mask has shape {partial.shape}, labels have {full_train.shape}")
    return partial, val_idx


def prepare_protocol(full_train: np.ndarray, *, setting: str, known: float, seed: int, scheme: str = "generator",
                     val_fraction: float = 0.0, key: str = "", cache_dir: Path | None = None) -> ProtocolSplit:
    """Make (or reuse) the partial labels and validation split of one protocol cell.

    The mask is drawn over the whole training matrix, then the validation rows are carved out
    (:func:`split_validation`). With ``cache_dir`` the result is saved once as
    ``<stem>.partial.npy``, ``<stem>.val_idx.npy`` and ``<stem>.json`` (metadata with the
    fingerprints, written last) and later calls load it after checking the fingerprints, so
    every method of a sweep sees the same mask.

    A damaged cell (a file whose sha256 differs from its metadata, unreadable, truncated) is
    said in one line on stderr and made again: the mask is a deterministic function of its key.

    :raises BenchError: on bad inputs, or a cache made from other labels under the same key (the
        message says which file to delete).
    """
    check_setting_scheme(setting, scheme)
    known = check_proportion(known)
    seed = check_seed(seed)
    val_fraction = check_val_fraction(val_fraction)
    full_train = check_label_matrix(full_train, source="training labels")
    labels_fp = fingerprint_array(full_train)
    meta_path = None
    partial = val_idx = None
    reused = False
    if cache_dir is not None:
        meta_path = Path(cache_dir) / (cache_stem(key, setting, known, seed, scheme, val_fraction) + ".json")
        if meta_path.is_file():
            try:
                partial, val_idx = _load_cached(meta_path, full_train, labels_fp)
                reused = True
            except CorruptArtefact as exc:  # a cache: made again (the same mask), said in one line
                print(f"warning: {exc}; making the mask again", file=sys.stderr)
    if partial is None:
        partial = _mask(full_train, setting, known, seed, scheme, key)
        _, val_idx = split_validation(full_train.shape[0], val_fraction, seed, key=key)
    train_idx = np.setdiff1d(np.arange(full_train.shape[0], dtype=np.int64), val_idx)
    split = ProtocolSplit(
        partial=partial, train_idx=train_idx, val_idx=val_idx.astype(np.int64, copy=False), setting=setting,
        known=known, seed=seed, scheme=scheme, val_fraction=val_fraction,
        mask_fingerprint=fingerprint_array(partial), val_fingerprint=fingerprint_array(val_idx),
        key=key, cache_path=meta_path, reused=reused, summary=protocol_summary(partial),
    )
    if meta_path is not None and not reused:
        stem = meta_path.name[: -len(".json")]
        atomic_write_bytes(meta_path.with_name(stem + ".partial.npy"), _npy_bytes(partial))
        atomic_write_bytes(meta_path.with_name(stem + ".val_idx.npy"), _npy_bytes(split.val_idx))
        meta = {
            "format": CACHE_FORMAT, "key": key, "setting": setting, "known": known, "seed": seed, "scheme": scheme,
            "val_fraction": val_fraction, "shape": list(full_train.shape), "labels_fingerprint": labels_fp,
            "mask_fingerprint": split.mask_fingerprint, "val_fingerprint": split.val_fingerprint,
            "summary": split.summary,
        }
        # The metadata goes last: it is what marks the cell as complete.
        atomic_write_bytes(meta_path, (json.dumps(meta, indent=2) + "\n").encode())
    return split
