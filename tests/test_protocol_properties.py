"""Property-based tests of the protocol (hypothesis): any label matrix, any proportion, any cell.

What must hold for every input (the hand-checked equations are pinned in test_protocol.py):
shape and dtype, values in {1, -1, 0}, every known entry equals the full label, the same inputs
give the same mask, PAL keeps a binomial share of the annotated entries, PPL only positives, SPL
exactly one positive per image that has one, FULL nothing dropped -- and a bad input is one
:class:`BenchError`, never another exception.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mlrpl_bench.errors import BenchError
from mlrpl_bench.protocol import make_partial_labels, prepare_protocol, split_validation
from mlrpl_bench.vocabulary import HCP_SETTINGS, SCHEMES, SEED_LIMIT, SETTINGS

FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DTYPES = [np.int8, np.int16, np.int64, np.float32, np.float64]


@st.composite
def full_matrices(draw, max_rows: int = 40, max_cols: int = 12):
    """A full label matrix under the contract: 1 / -1 (at least one -1 when a 0 is present), any dtype."""
    n = draw(st.integers(1, max_rows))
    c = draw(st.integers(1, max_cols))
    p_pos = draw(st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    labels = np.where(rng.random((n, c)) < p_pos, 1, -1)
    if draw(st.booleans()):  # some entries already unknown, as a natively partial dataset has
        labels = np.where(rng.random((n, c)) < 0.2, 0, labels)
        if (labels == 0).any() and not (labels == -1).any():
            labels.flat[np.flatnonzero(labels == 0)[0]] = -1  # 0s without any -1 is the 0/1 convention
    return labels.astype(draw(st.sampled_from(DTYPES)))


proportions = st.floats(min_value=1e-6, max_value=1.0, allow_nan=False)
seeds = st.integers(0, SEED_LIMIT - 1)


@st.composite
def cells(draw):
    setting = draw(st.sampled_from(SETTINGS))
    scheme = draw(st.sampled_from(SCHEMES if setting in HCP_SETTINGS else ("generator",)))
    return setting, scheme


@FAST
@given(full=full_matrices(), cell=cells(), known=proportions, seed=seeds, key=st.text(max_size=8))
def test_every_mask_keeps_the_contract(full, cell, known, seed, key):
    setting, scheme = cell
    partial = make_partial_labels(full, setting, known, seed, scheme=scheme, key=key)
    truth = full.astype(np.int8)
    assert partial.shape == full.shape and partial.dtype == np.int8
    assert set(np.unique(partial).tolist()) <= {-1, 0, 1}
    kept = partial != 0
    assert np.array_equal(partial[kept], truth[kept]), "a known entry differs from the full label"
    again = make_partial_labels(full.copy(), setting, known, seed, scheme=scheme, key=key)
    assert np.array_equal(partial, again), "same inputs, another mask"
    positive = truth == 1
    if setting == "full":
        assert np.array_equal(partial, truth)
    elif setting == "ppl":
        assert not (partial == -1).any() and np.all(~kept | positive)
    elif setting == "spl":
        assert not (partial == -1).any()
        assert np.array_equal((partial == 1).sum(axis=1), positive.any(axis=1).astype(int))


@FAST
@given(full=full_matrices(max_rows=60), setting=st.sampled_from(["pal", "ppl"]), known=proportions, seed=seeds,
       scheme=st.sampled_from(SCHEMES))
def test_the_known_share_is_binomial(full, setting, known, seed, scheme):
    """PAL keeps each annotated entry (PPL each positive) with probability ``known``: the kept count is
    within 6 standard deviations (plus one) of ``m * known`` -- a bound a correct mask breaks with
    probability ~1e-9, a mask keeping the complement or the wrong share breaks it at once."""
    assume(setting == "pal" or scheme == "generator")
    partial = make_partial_labels(full, setting, known, seed, scheme=scheme)
    truth = full.astype(np.int8)
    eligible = (truth != 0) if setting == "pal" else (truth == 1)
    m, kept = int(eligible.sum()), int((partial != 0).sum())
    assert kept <= m
    assert abs(kept - m * known) <= 6 * math.sqrt(m * known * (1 - known)) + 1, (kept, m, known)


@st.composite
def bad_labels(draw):
    kind = draw(st.sampled_from(["value", "fraction", "nan", "ndim", "empty", "zero-one", "bool", "text"]))
    n, c = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    good = np.where(np.random.default_rng(draw(st.integers(0, 99))).random((n, c)) < 0.5, 1, -1).astype(np.float64)
    i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, c - 1))
    if kind == "value":
        good[i, j] = draw(st.sampled_from([2, -2, 7, -128, 255]))
    elif kind == "fraction":
        good[i, j] = draw(st.sampled_from([0.5, -0.25, 1e-9]))
    elif kind == "nan":
        good[i, j] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    elif kind == "ndim":
        return good.reshape(-1) if draw(st.booleans()) else good[None]
    elif kind == "empty":
        return np.zeros((0, c)) if draw(st.booleans()) else np.zeros((n, 0))
    elif kind == "zero-one":  # the scikit-learn convention: 0 would mean "unknown" here
        zero_one = (good == 1).astype(draw(st.sampled_from([np.int8, np.int64, np.float32])))
        assume((zero_one == 0).any())
        return zero_one
    elif kind == "bool":
        boolean = good == 1
        assume(not boolean.all())
        return boolean
    else:
        return good.astype(str)
    return good


@FAST
@given(labels=bad_labels(), cell=cells(), known=proportions, seed=seeds)
def test_bad_label_matrices_are_one_bench_error(labels, cell, known, seed):
    setting, scheme = cell
    with pytest.raises(BenchError) as info:
        make_partial_labels(labels, setting, known, seed, scheme=scheme)
    assert "\n" not in str(info.value)


bad_known = st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0, exclude_min=True), st.just(float("nan")),
                      st.floats(min_value=0, max_value=4e-7, exclude_min=True), st.booleans(),
                      st.text(max_size=5), st.none(), st.lists(st.floats(0.1, 0.9), max_size=2))
bad_seed = st.one_of(st.integers(max_value=-1), st.integers(min_value=SEED_LIMIT), st.booleans(),
                     st.floats(allow_nan=True), st.text(max_size=4), st.none())


@FAST
@given(what=st.sampled_from(["known", "seed", "setting", "scheme", "hcp"]), data=st.data())
def test_bad_protocol_words_are_one_bench_error(what, data):
    full = np.array([[1, -1, 1], [-1, -1, 1]], dtype=np.int8)
    args = {"setting": "pal", "known": 0.5, "seed": 0, "scheme": "generator"}
    if what == "known":
        args["known"] = data.draw(bad_known)
    elif what == "seed":
        args["seed"] = data.draw(bad_seed)
    elif what == "setting":
        args["setting"] = data.draw(st.text(max_size=6).filter(lambda s: s not in SETTINGS) | st.none() | st.integers())
    elif what == "scheme":
        args["scheme"] = data.draw(st.text(max_size=6).filter(lambda s: s not in SCHEMES) | st.none())
    else:
        args.update(setting=data.draw(st.sampled_from(["ppl", "spl"])), scheme="hcp")
    with pytest.raises(BenchError) as info:
        make_partial_labels(full, args["setting"], args["known"], args["seed"], scheme=args["scheme"])
    assert "\n" not in str(info.value)


@settings(max_examples=25, deadline=None)
@given(full=full_matrices(max_rows=30), cell=cells(), known=proportions, seed=st.integers(0, 1000),
       val_fraction=st.sampled_from([0.0, 0.1, 0.5, 0.9]))
def test_a_cached_cell_is_the_cell_again(tmp_path_factory, full, cell, known, seed, val_fraction):
    """prepare_protocol: validation rows are disjoint from training rows and cover the rest; the
    cached cell read back equals the one drawn; the mask over the whole matrix is make_partial_labels'."""
    setting, scheme = cell
    cache = tmp_path_factory.mktemp("protocol")
    first = prepare_protocol(full, setting=setting, known=known, seed=seed, scheme=scheme, val_fraction=val_fraction,
                             key="k", cache_dir=cache)
    second = prepare_protocol(full, setting=setting, known=known, seed=seed, scheme=scheme, val_fraction=val_fraction,
                              key="k", cache_dir=cache)
    assert not first.reused and second.reused
    assert np.array_equal(first.partial, second.partial) and np.array_equal(first.val_idx, second.val_idx)
    assert first.mask_fingerprint == second.mask_fingerprint
    assert np.array_equal(first.partial, make_partial_labels(full, setting, known, seed, scheme=scheme, key="k"))
    n = full.shape[0]
    assert np.intersect1d(first.train_idx, first.val_idx).size == 0
    assert np.array_equal(np.union1d(first.train_idx, first.val_idx), np.arange(n))
    train, val = split_validation(n, val_fraction, seed, key="k")
    assert np.array_equal(val, first.val_idx) and np.array_equal(train, first.train_idx)
