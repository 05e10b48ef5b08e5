"""Tests for mlrpl_bench.protocol: PAL/PPL/SPL masks, the hcp scheme, validation split, cache."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from mlrpl_bench.errors import BenchError
from mlrpl_bench.protocol import (
    DEFAULT_PROPORTIONS,
    SCHEMES,
    SETTINGS,
    fingerprint_array,
    make_partial_labels,
    prepare_protocol,
    protocol_generator,
    protocol_summary,
    split_validation,
)


def _full(n=300, c=12, p_pos=0.25, seed=0):
    rng = np.random.default_rng(seed)
    return np.where(rng.random((n, c)) < p_pos, 1, -1).astype(np.int8)


def test_constants():
    assert SETTINGS == ("full", "pal", "ppl", "spl")
    assert SCHEMES == ("generator", "hcp")
    assert DEFAULT_PROPORTIONS == pytest.approx([0.1 * i for i in range(1, 10)])


def test_hcp_scheme_is_the_legacy_global_draw_and_leaves_global_state_alone():
    full = _full(n=57, c=20)
    saved = np.random.get_state()
    try:
        np.random.seed(0)
        legacy_u = np.random.random(full.shape)
        np.random.seed(0)
        expected_rs = np.random.RandomState(0).random_sample(full.shape)
        assert np.array_equal(legacy_u, expected_rs)
        np.random.seed(123)
        before = np.random.get_state()
        for known in (0.1, 0.5, 0.9):
            partial = make_partial_labels(full, "pal", known, 0, scheme="hcp")
            assert np.array_equal(partial, np.where(legacy_u < known, full, 0))
        after = np.random.get_state()
        assert before[0] == after[0] and np.array_equal(before[1], after[1]) and before[2:] == after[2:]
    finally:
        np.random.set_state(saved)
    # hcp ignores the key (the official files have none) and nests across proportions.
    a = make_partial_labels(full, "pal", 0.3, 0, scheme="hcp", key="x")
    b = make_partial_labels(full, "pal", 0.6, 0, scheme="hcp", key="y")
    assert np.all((a == 0) | (a == b))


def test_pal_generator_keeps_entries_independently():
    full = _full(n=2000, c=20)
    full[0, :5] = 0  # already unknown entries stay unknown
    partial = make_partial_labels(full, "pal", 0.3, 7, key="ds")
    assert partial.dtype == np.int8 and partial.shape == full.shape
    kept = partial != 0
    assert np.array_equal(partial[kept], full[kept])
    assert np.all(partial[0, :5] == 0)
    n = full.size
    assert abs(kept.mean() - 0.3) < 4 * np.sqrt(0.3 * 0.7 / n)
    # Positives and negatives are kept at the same rate.
    assert abs(kept[full == 1].mean() - kept[full == -1].mean()) < 0.03
    assert np.array_equal(partial, make_partial_labels(full, "pal", 0.3, 7, key="ds"))
    for other in (make_partial_labels(full, "pal", 0.3, 8, key="ds"), make_partial_labels(full, "pal", 0.3, 7, key="ds2"),
                  make_partial_labels(full, "pal", 0.3, 7, key="ds", scheme="hcp")):
        assert not np.array_equal(partial, other)
    assert np.array_equal(make_partial_labels(full, "pal", 1.0, 7), full)


def test_generator_seed_derivation_is_pinned():
    def words(text):
        d = hashlib.sha256(text.encode()).digest()
        return [int.from_bytes(d[i:i + 4], "little") for i in range(0, 32, 4)]

    manual = np.random.Generator(np.random.PCG64(np.random.SeedSequence([*words("voc"), *words("pal"), 300000, 4])))
    assert np.array_equal(protocol_generator("voc", "pal", 0.3, 4).random(10), manual.random(10))
    full = _full(n=40, c=6)
    u = np.random.Generator(np.random.PCG64(np.random.SeedSequence([*words("voc"), *words("pal"), 300000, 4]))).random(full.shape)
    assert np.array_equal(make_partial_labels(full, "pal", 0.3, 4, key="voc"), np.where(u < 0.3, full, 0))


def test_ppl_keeps_a_proportion_of_positives_and_no_negative():
    full = _full(n=3000, c=10)
    partial = make_partial_labels(full, "ppl", 0.6, 1)
    assert not np.any(partial == -1)
    assert np.all(full[partial == 1] == 1)
    rate = (partial == 1).sum() / (full == 1).sum()
    assert abs(rate - 0.6) < 0.02


def test_spl_one_uniform_positive_per_image():
    full = _full(n=500, c=8)
    full[3] = -1  # an image without positives becomes all unknown
    partial = make_partial_labels(full, "spl", 0.5, 2)
    has_pos = (full == 1).any(axis=1)
    assert np.all((partial == 1).sum(axis=1) == has_pos.astype(int))
    assert not np.any(partial == -1)
    assert np.all(full[partial == 1] == 1)
    assert np.all(partial[3] == 0)
    # The proportion does not apply to SPL, so it does not change the mask.
    assert np.array_equal(partial, make_partial_labels(full, "spl", 0.9, 2))
    # Uniform among the positives: 4000 identical images with positives at columns 1, 2, 5, 6.
    same = np.full((4000, 8), -1, dtype=np.int8)
    same[:, [1, 2, 5, 6]] = 1
    counts = (make_partial_labels(same, "spl", 1.0, 3) == 1).sum(axis=0)
    assert counts[[0, 3, 4, 7]].sum() == 0
    assert np.all(np.abs(counts[[1, 2, 5, 6]] - 1000) < 4 * np.sqrt(4000 * 0.25 * 0.75))


def test_full_setting_returns_a_copy():
    full = _full(n=10, c=3)
    out = make_partial_labels(full, "full", 0.2, 0)
    assert np.array_equal(out, full) and out is not full
    out[0, 0] = 0
    assert full[0, 0] != 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"setting": "pl"}, "unknown setting 'pl'; choose one of: full, pal, ppl, spl"),
        ({"known": 0.0}, r"known is 0.0; a known-label proportion must be in \(0, 1\]"),
        ({"known": 1.5}, r"must be in \(0, 1\]"),
        ({"known": "abc"}, r"known is 'abc'"),
        ({"scheme": "legacy"}, "unknown scheme 'legacy'"),
        ({"setting": "spl", "scheme": "hcp"}, "official PAL masks only"),
        ({"seed": -1}, "seed is -1"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = {"setting": "pal", "known": 0.3, "seed": 0, "scheme": "generator"} | kwargs
    with pytest.raises(BenchError, match=message):
        make_partial_labels(_full(n=5, c=3), args["setting"], args["known"], args["seed"], scheme=args["scheme"])


def test_bad_labels_are_refused():
    bad = _full(n=5, c=3)
    bad[2, 1] = 2
    with pytest.raises(BenchError, match="row 2, column 1"):
        make_partial_labels(bad, "pal", 0.5, 0)
    with pytest.raises(BenchError, match="2-D"):
        make_partial_labels(np.ones(4), "pal", 0.5, 0)


def test_split_validation():
    train, val = split_validation(1000, 0.1, 0, key="k")
    assert len(val) == 100 and len(train) == 900
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    assert np.array_equal(np.union1d(train, val), np.arange(1000))
    again = split_validation(1000, 0.1, 0, key="k")
    assert np.array_equal(again[1], val)
    assert not np.array_equal(split_validation(1000, 0.1, 1, key="k")[1], val)
    assert not np.array_equal(split_validation(1000, 0.1, 0, key="other")[1], val)
    assert len(split_validation(5, 0.01, 0)[1]) == 1      # at least one validation image
    assert len(split_validation(2, 0.9, 0)[0]) == 1       # at least one training image
    assert len(split_validation(1, 0.5, 0)[1]) == 0
    assert len(split_validation(10, 0.0, 0)[1]) == 0
    with pytest.raises(BenchError, match=r"val_fraction is 1.0; it must be in \[0, 1\)"):
        split_validation(10, 1.0, 0)


def test_fingerprint_array_covers_dtype_shape_and_bytes():
    a = np.arange(6, dtype=np.int8).reshape(2, 3)
    fp = fingerprint_array(a)
    assert len(fp) == 64 and fp == fingerprint_array(a.copy())
    assert fp != fingerprint_array(a.reshape(3, 2))
    assert fp != fingerprint_array(a.astype(np.int16))
    b = a.copy()
    b[1, 2] = 0
    assert fp != fingerprint_array(b)
    assert fingerprint_array(np.asfortranarray(a)) == fp


def test_protocol_summary_by_hand():
    partial = np.array([[0, 0, 0], [1, 0, -1], [0, -1, 0], [0, 0, 1]], dtype=np.int8)
    s = protocol_summary(partial)
    assert s["known_fraction"] == pytest.approx(4 / 12)
    assert s["images_no_known_label"] == 0.25 and s["images_no_known_label_count"] == 1
    assert s["images_no_known_positive"] == 0.5 and s["images_no_known_positive_count"] == 2
    assert s["known_positive_fraction"] == pytest.approx(2 / 12)


def test_protocol_summary_matches_the_pal_formula_on_synthetic_data():
    # Expected under PAL(p) with C classes: no known label (1-p)^C; no known positive mean((1-p)^k_i).
    rng = np.random.default_rng(5)
    n, c, p = 20000, 20, 0.1
    full = -np.ones((n, c), dtype=np.int8)
    k = rng.integers(1, 4, size=n)  # 1-3 positives per image
    for j in range(3):
        rows = k > j
        full[rows, rng.integers(0, c, size=rows.sum())] = 1
    k_actual = (full == 1).sum(axis=1)
    s = protocol_summary(make_partial_labels(full, "pal", p, 0, key="synthetic"))
    expect_none = (1 - p) ** c
    expect_nopos = float(np.mean((1 - p) ** k_actual))
    assert abs(s["images_no_known_label"] - expect_none) < 4 * np.sqrt(expect_none * (1 - expect_none) / n)
    assert abs(s["images_no_known_positive"] - expect_nopos) < 4 * np.sqrt(expect_nopos * (1 - expect_nopos) / n)


def test_prepare_protocol_carves_validation_after_the_mask(tmp_path):
    full = _full(n=200, c=6)
    split = prepare_protocol(full, setting="pal", known=0.4, seed=0, scheme="hcp", val_fraction=0.2, key="ds")
    assert np.array_equal(split.partial, make_partial_labels(full, "pal", 0.4, 0, scheme="hcp"))
    assert len(split.val_idx) == 40 and len(split.train_idx) == 160
    assert np.array_equal(np.union1d(split.train_idx, split.val_idx), np.arange(200))
    assert np.array_equal(split.train_labels(), split.partial[split.train_idx])
    assert split.mask_fingerprint == fingerprint_array(split.partial)
    assert split.val_fingerprint == fingerprint_array(split.val_idx)
    assert split.summary["images"] == 200 and not split.reused and split.cache_path is None


def test_prepare_protocol_cache_is_written_once_and_reused(tmp_path, capsys):
    full = _full(n=120, c=5)
    kw = dict(setting="ppl", known=0.5, seed=3, scheme="generator", val_fraction=0.1, key="my data/v1", cache_dir=tmp_path)
    first = prepare_protocol(full, **kw)
    assert not first.reused and first.cache_path.is_file()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 3 and not any(name.endswith(".tmp") for name in names)
    meta = json.loads(first.cache_path.read_text())
    assert meta["mask_fingerprint"] == first.mask_fingerprint and meta["setting"] == "ppl"

    second = prepare_protocol(full, **kw)
    assert second.reused
    assert np.array_equal(second.partial, first.partial) and np.array_equal(second.val_idx, first.val_idx)
    assert second.mask_fingerprint == first.mask_fingerprint

    # Another proportion is another cell.
    assert not prepare_protocol(full, **(kw | {"known": 0.7})).reused

    # Same key, different labels: refused rather than silently training on a foreign mask.
    other = full.copy()
    other[0, 0] = -other[0, 0]
    with pytest.raises(BenchError, match="labels_fingerprint"):
        prepare_protocol(other, **kw)

    # A tampered mask is detected through the fingerprint in the metadata, said in one line and made again.
    mask_file = next(tmp_path.glob("*ppl__0.5__*.partial.npy"))
    tampered = np.load(mask_file)
    tampered[0, 0] = 1 - abs(tampered[0, 0])
    np.save(mask_file, tampered)
    again = prepare_protocol(full, **kw)
    assert not again.reused and np.array_equal(again.partial, first.partial)
    assert "partial.npy: sha256 differs" in capsys.readouterr().err
    assert prepare_protocol(full, **kw).reused  # the cell made again is whole


def test_prepare_protocol_validates_val_fraction():
    with pytest.raises(BenchError, match="val_fraction"):
        prepare_protocol(_full(n=10, c=2), setting="pal", known=0.5, seed=0, val_fraction=-0.1)
