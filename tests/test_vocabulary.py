"""The protocol's vocabulary (benchmark/vocabulary.py): one definition per word, checked once."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mlrpl_bench.errors import BenchError
from mlrpl_bench.vocabulary import (DEFAULT_PROPORTIONS, SCHEMES, SETTINGS, VocabularyError, check_proportion, check_seed,
                                    check_setting_scheme, check_sha256, is_registry_name, known_percent, known_text,
                                    make_run_id, parse_proportions, path_component, safe_name)


def test_hcp_with_full_means_full_in_the_protocol_and_in_a_run():
    """The hcp scheme is defined for PAL masks; ``full`` draws no mask, so full+hcp is plain full
    -- accepted alike by the protocol and by a run's configuration; ppl/spl+hcp refused alike."""
    from mlrpl_bench.protocol import make_partial_labels
    from mlrpl_bench.run_config import make_run_config, prepare_run

    full = np.where(np.random.default_rng(1).random((8, 4)) < 0.5, 1, -1).astype(np.int8)
    assert np.array_equal(make_partial_labels(full, "full", 1.0, 0, scheme="hcp"), full)
    assert prepare_run(make_run_config({"plugin": "partial-bce", "setting": "full", "scheme": "hcp"})).config.scheme == "hcp"
    for setting in ("ppl", "spl"):
        with pytest.raises(BenchError, match="official PAL masks only") as protocol_error:
            make_partial_labels(full, setting, 0.5, 0, scheme="hcp")
        with pytest.raises(BenchError, match="official PAL masks only") as run_error:
            prepare_run(make_run_config({"plugin": "partial-bce", "setting": setting, "scheme": "hcp"}))
        assert str(protocol_error.value) == str(run_error.value)


def test_one_canonical_text_for_a_proportion():
    assert known_text(0.3) == known_text(0.30000000000000004) == "0.3"
    assert known_text(1) == "1" and known_text(0.125) == "0.125" and known_percent(0.3) == "30%"
    assert make_run_id("hst", "voc2007", "pal", 0.1 + 0.2, 0) == "hst__voc2007__pal__0.3__seed0"
    assert parse_proportions("all") == DEFAULT_PROPORTIONS == tuple(round(0.1 * i, 1) for i in range(1, 10))
    assert parse_proportions(" 0.1, 0.5 ") == (0.1, 0.5)


@pytest.mark.parametrize("check, value, fragment", [
    (check_proportion, 0.0, "must be in (0, 1]"),
    (check_proportion, float("nan"), "must be in (0, 1]"),
    (check_proportion, True, "known is True"),
    (check_seed, -1, "seed is -1"),
    (check_seed, 2**32, "[0, 2**32)"),
    (check_seed, 1.0, "seed is 1.0"),
    (check_sha256, "abc", "sha256"),
])
def test_checks_refuse_with_one_line(check, value, fragment):
    with pytest.raises(VocabularyError) as info:
        check(value)
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, BenchError) and isinstance(info.value, ValueError)  # usable as a field validator


def test_settings_schemes_and_names():
    assert SETTINGS == ("full", "pal", "ppl", "spl") and SCHEMES == ("generator", "hcp")
    assert check_setting_scheme("pal", "hcp") == ("pal", "hcp")
    with pytest.raises(VocabularyError, match="unknown setting 'x'"):
        check_setting_scheme("x")
    assert safe_name("a/b c") == "a-b-c" and path_component("..") == "_.." and path_component("a/../b") == "a-..-b"
    assert is_registry_name("my-method") and not is_registry_name("My_Method") and not is_registry_name(3)


def test_the_vocabulary_imports_neither_numpy_nor_pydantic():
    code = ("import sys; import mlrpl_bench.vocabulary; "
            "print(sorted(m for m in ('numpy', 'pydantic', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
