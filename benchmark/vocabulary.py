"""The protocol's vocabulary: settings, schemes, proportions, names -- and their checks, once.

Pure Python (no numpy, no pydantic, no torch), so every room can import it: the protocol, the
run configuration, the results record, the CLI and the leaderboard. A rule of the protocol's
words lives here and nowhere else:

* :data:`SETTINGS` and :data:`SCHEMES`, and which combinations have a defined mask
  (:func:`check_setting_scheme`);
* :data:`DEFAULT_PROPORTIONS`, the papers' sweep 0.1 ... 0.9, and the runs a setting makes of
  proportions and seeds (:func:`plan_cells`);
* the canonical text of a known-label proportion (:func:`known_text`, :func:`known_percent`),
  used by run ids, directory names, tables and messages alike;
* safe names for files and directories (:func:`safe_name`, :func:`path_component`) and
  registry names (:data:`NAME_PATTERN`, :func:`is_registry_name`).

The checks raise :class:`VocabularyError`, a :class:`~mlrpl_bench.errors.BenchError` that is
also a ``ValueError``, so that the schema layer (:mod:`mlrpl_bench.schema`) can use them as field
validators and report them in its one-line format.

On ``scheme=hcp`` with ``setting=full``: the hcp scheme reproduces the official PAL masks, the
only masks the official code draws. ``full`` draws no mask (every label is kept), so with
``full`` both schemes give the same, unmasked matrix; the combination is allowed and means
exactly ``full``. ``ppl`` and ``spl`` have no official mask and refuse ``hcp``.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import BenchError

SETTINGS: tuple[str, ...] = ("full", "pal", "ppl", "spl")
SCHEMES: tuple[str, ...] = ("generator", "hcp")
#: Settings whose mask the ``hcp`` scheme defines (``full`` draws no mask at all).
HCP_SETTINGS: tuple[str, ...] = ("pal", "full")
#: Settings whose mask does not depend on the known proportion (one run per seed).
PROPORTION_FREE_SETTINGS: tuple[str, ...] = ("full", "spl")
DEFAULT_PROPORTIONS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: A proportion is meaningful to this many decimals (the protocol's seed uses the same grid).
PROPORTION_DECIMALS = 6
#: The largest seed (exclusive): numpy's legacy seeding takes 32-bit integers.
SEED_LIMIT = 2**32

#: Registry names of methods, profiles and plugins: lower-case words joined by single dashes.
NAME_PATTERN = r"[a-z][a-z0-9]*(-[a-z0-9]+)*"
#: The longest registry name: it becomes file and package names (``mlrpl_<name>``), and a file
#: name has at most 255 bytes on common file systems.
NAME_MAX_LENGTH = 64
_NAME_RE = re.compile(NAME_PATTERN)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class VocabularyError(BenchError, ValueError):
    """A word of the protocol that is not one (a setting, scheme, proportion or seed)."""


def check_setting(setting: Any) -> str:
    """``setting`` if it is one of :data:`SETTINGS`."""
    if setting not in SETTINGS:
        raise VocabularyError(f"unknown setting {setting!r}; choose one of: {', '.join(SETTINGS)}")
    return setting


def check_scheme(scheme: Any) -> str:
    """``scheme`` if it is one of :data:`SCHEMES`."""
    if scheme not in SCHEMES:
        raise VocabularyError(f"unknown scheme {scheme!r}; choose one of: {', '.join(SCHEMES)}")
    return scheme


def check_setting_scheme(setting: Any, scheme: Any = "generator") -> tuple[str, str]:
    """Both words, and the combination has a defined mask (``hcp`` only with pal or full)."""
    check_setting(setting)
    check_scheme(scheme)
    if scheme == "hcp" and setting not in HCP_SETTINGS:
        raise VocabularyError(f"scheme 'hcp' reproduces the official PAL masks only; use scheme 'generator' for "
                              f"setting {setting!r}")
    return setting, scheme


def check_proportion(known: Any, *, name: str = "known") -> float:
    """``known`` as a float after checking it is a known-label proportion in (0, 1]."""
    if isinstance(known, bool):
        raise VocabularyError(f"{name} is {known!r}; use a known-label proportion in (0, 1], e.g. 0.3")
    try:
        value = float(known)
    except (TypeError, ValueError):
        raise VocabularyError(f"{name} is {known!r}; use a known-label proportion in (0, 1], e.g. 0.3") from None
    if not 0.0 < value <= 1.0:  # also refuses NaN
        raise VocabularyError(f"{name} is {known!r}; a known-label proportion must be in (0, 1], e.g. 0.3 for 30% known")
    if proportion_key(value) == 0:  # its run id, file names and mask seed would all say 0
        raise VocabularyError(f"{name} is {known!r}; the smallest known-label proportion is {10.0**-PROPORTION_DECIMALS:g} "
                              f"(proportions count to {PROPORTION_DECIMALS} decimals)")
    return value


def check_seed(seed: Any, *, name: str = "seed") -> int:
    """``seed`` as an int after checking it is an integer in [0, 2**32)."""
    if isinstance(seed, bool) or not hasattr(seed, "__index__"):
        raise VocabularyError(f"{name} is {seed!r}; use an integer in [0, 2**32)")
    value = int(seed.__index__())
    if not 0 <= value < SEED_LIMIT:
        raise VocabularyError(f"{name} is {seed!r}; use an integer in [0, 2**32)")
    return value


_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_sha256(value: Any) -> bool:
    """Whether ``value`` is a sha256 hex digest (what every fingerprint of the suite is)."""
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def check_sha256(value: Any) -> str:
    """``value`` if it is a sha256 hex digest."""
    if not is_sha256(value):
        raise VocabularyError("must be a sha256 hex digest (64 lower-case hex digits)")
    return value


def proportion_key(known: float) -> int:
    """A proportion on the grid of :data:`PROPORTION_DECIMALS` decimals, as an integer (0.3 -> 300000)."""
    return int(round(float(known) * 10**PROPORTION_DECIMALS))


def known_text(known: float) -> str:
    """The canonical text of a proportion: ``0.3``, ``1``, ``0.125`` (run ids, file names, tables)."""
    return format(proportion_key(known) / 10**PROPORTION_DECIMALS, "g")


def known_percent(known: float) -> str:
    """The canonical percentage text of a proportion: ``30%`` (table headers)."""
    return format(proportion_key(known) / 10**(PROPORTION_DECIMALS - 2), "g") + "%"


def parse_proportions(text: str) -> tuple[float, ...]:
    """``"0.1,0.5"`` or ``"all"`` (the default sweep) as checked proportions."""
    if text.strip().lower() == "all":
        return DEFAULT_PROPORTIONS
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise VocabularyError("give at least one proportion, e.g. 0.5 (or 'all')")
    out = []
    for part in parts:
        try:
            value = float(part)
        except ValueError:
            raise VocabularyError(f"expected comma-separated proportions in (0, 1] like 0.1,0.5 or 'all', got {text!r}") from None
        out.append(check_proportion(value))
    return tuple(out)


_SEED_TEXT = re.compile(r"[+-]?\d+")


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` as checked seeds (no ranges: ``0-4`` is refused, not read as -4)."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise VocabularyError("give at least one seed, e.g. 0 or 0,1,2")
    out = []
    for part in parts:
        if not _SEED_TEXT.fullmatch(part):
            raise VocabularyError(f"expected comma-separated integer seeds like 0,1,2 (no ranges), got {text!r}")
        out.append(check_seed(int(part)))
    return tuple(out)


def check_distinct(values: Any, *, name: str, key: Any = None) -> Any:
    """``values`` if no two of them are the same (``key`` maps a value to what must differ).

    A sweep that lists a proportion or a seed twice would plan one run twice (the second finds
    the first's record); two proportions equal to six decimals share a run id.
    """
    seen: dict[Any, Any] = {}
    for value in values:
        k = key(value) if key is not None else value
        if k in seen:
            same = "" if seen[k] == value else f" (= {seen[k]!r} to {PROPORTION_DECIMALS} decimals)"
            raise VocabularyError(f"{name} lists {value!r} twice{same}; list each value once")
        seen[k] = value
    return values


def check_path_text(value: Any) -> Any:
    """``value`` unless it is an empty path: ``""`` (an unset shell variable, ``--out "$OUT"``) would
    silently mean the current directory."""
    if isinstance(value, str) and not value.strip():
        raise VocabularyError(f"{value!r} is an empty path; give a path, or leave the option out for its default")
    return value


def safe_name(text: Any) -> str:
    """``text`` with every run of characters other than letters, digits and ``._-`` replaced by ``-``."""
    return _UNSAFE.sub("-", str(text))


def path_component(name: Any, max_len: int = 120) -> str:
    """One safe path component for a name read from a record: no separators, never ``.`` or ``..``."""
    safe = safe_name(name).strip("-")
    if not safe or safe.startswith("."):
        safe = "_" + safe
    return safe[:max_len]


def is_registry_name(name: Any) -> bool:
    """Whether ``name`` is a well-formed registry name (``my-method``, ``paper-literal``) of at most
    :data:`NAME_MAX_LENGTH` characters."""
    return isinstance(name, str) and len(name) <= NAME_MAX_LENGTH and _NAME_RE.fullmatch(name) is not None


def plan_cells(setting: str, known: "tuple[float, ...] | list[float]", seeds: "tuple[int, ...] | list[int]") -> list[tuple[float, int]]:
    """The (known, seed) runs of one setting, in a stable order: the one plan ``run``, ``sweep`` and
    ``tools/leaderboard_sweep.sh`` (through ``run``) all follow.

    A proportion-free setting (:data:`PROPORTION_FREE_SETTINGS`: ``full``, ``spl``) draws the same
    mask at every proportion: one run per seed, filed at known 1.0 (where the leaderboard's
    published SPL and full-label numbers sit), whatever ``known`` lists.
    """
    knowns = (1.0,) if setting in PROPORTION_FREE_SETTINGS else tuple(known)
    return [(float(k), int(s)) for k in knowns for s in seeds]


def make_run_id(method: str, dataset: str, setting: str, known: float, seed: int) -> str:
    """The identifier of one run, file-system safe: ``hst__voc2007__pal__0.3__seed0``."""
    parts = [method, dataset, setting, known_text(known), f"seed{seed}"]
    return "__".join(safe_name(p) for p in parts)


__all__ = [
    "DEFAULT_PROPORTIONS", "HCP_SETTINGS", "NAME_MAX_LENGTH", "NAME_PATTERN", "PROPORTION_DECIMALS", "PROPORTION_FREE_SETTINGS",
    "SCHEMES", "SEED_LIMIT", "SETTINGS", "VocabularyError", "check_distinct", "check_path_text", "check_proportion",
    "check_scheme",
    "check_seed",
    "check_setting", "check_setting_scheme", "check_sha256", "is_registry_name", "is_sha256", "known_percent", "known_text", "make_run_id",
    "parse_proportions", "parse_seeds", "path_component", "plan_cells", "proportion_key", "safe_name",
]
