"""The leaderboard's statistics, in one place: cell intervals, paired tests, the multiplicity
rule, the frequency bins. The arithmetic is scipy's (``scipy.stats``); these functions only
say which test answers which question.

**Cell (a method at one proportion, or its Ave.)** over the ``n`` seeds that ran it: mean,
sample std and a 95 % interval ``mean ± t(0.975, ν) · SE``:

* without saved scores, ``SE² = s²/n`` and ``ν = n - 1``: the t-interval over seeds
  (``scipy.stats.t.interval``), method ``"t"``;
* where every seed saved its test scores, ``SE² = s²/n + v``, ``v`` the variance of the
  seed-mean mAP over the shared image resamples of :mod:`.bootstrap` — the seeds are scored on
  one finite test set, so their spread does not contain its sampling noise, which is added —
  and ``ν`` the Welch–Satterthwaite degrees of freedom ``SE⁴ / ((s²/n)² / (n - 1))``, counting
  ``v`` (from hundreds of resamples) as known; method ``"t+images"``. With ``v`` ≫ ``s²/n`` this
  is a normal interval on the bootstrap SE, with ``v`` ≪ ``s²/n`` the t-interval over seeds. It
  is always centred on the same mean, but it can be narrower than the seeds-only interval when
  ``v`` is small: more variance, estimated with more degrees of freedom. (Keeping ``ν = n - 1``
  was tried: at 3 seeds it floors every p-value near 0.002, and after BH over a table nothing
  is marked, however large the gap.)

A cell with fewer than 2 seeds gets a mean and no interval.

**Paired comparison with the baseline** (same table, protocol and budget; pairs matched on
proportion, seed and mask fingerprint — the same partial labels): the per-seed differences
``d``; the same two forms with ``d`` in place of the values — ``scipy.stats.ttest_rel`` (two-sided)
and its interval, or, where both runs of every pair saved scores, ``v`` the variance of the mean
difference over the *same* image resamples (paired) and a two-sided t-test on
``mean(d) / sqrt(s_d²/n + v)`` with the ``ν`` above.
Differences that are all equal have ``SE = 0``: p = 1 when they are 0, else 0.

**Resolution: the minimum detectable effect (MDE)** of each paired comparison, at two-sided
``alpha = 0.05`` and power 0.8: ``MDE = (t(0.975, ν) + t(0.80, ν)) · SE`` with the same ``SE`` and
``ν`` as the comparison's interval (without saved scores ``SE = s_d / sqrt(n)``, ``ν = n - 1``,
i.e. ``(t(0.975, n-1) + t(0.80, n-1)) · s_d / sqrt(n)``). A true difference smaller than the MDE
is more likely than not (risk above 20 %) to be marked a tie, so a tie below it says "the table
cannot tell", not "equal". **Seeds for a 1-point MDE:** the smallest ``n' >= 2`` whose MDE, with
``s_d`` as measured, is at most 1 point. With saved scores the test-image part of ``SE²`` is
split into what averages out over seeds and what the seeds share (one test set):
``v(n') = c + (v1 - c) / n'``, ``v1`` the mean of the seeds' own bootstrap variances of their
difference, ``c = max(0, (n·v - v1) / (n - 1))`` their mean covariance (``v`` the variance of
the mean at the measured ``n``); without ``v1`` all of ``v`` is taken as shared (``c = v``). When
``(t(0.975, ∞) + t(0.80, ∞)) · sqrt(c) > 1`` no number of seeds reaches 1 point on this test
set: reported as unreachable, with that floor. Fewer than 2 paired seeds: no comparison, no MDE.
Like the interval, this counts the test-image variance on top of the seeds' spread (which
already holds the part of it that differs between seeds), so it errs towards more seeds.

**Multiplicity:** all comparisons of one table (every method x proportion, and every method's
Ave.) are one family, adjusted with Benjamini–Hochberg (``scipy.stats.false_discovery_control``)
to q-values; a cell is marked *better* / *worse* when ``q <= 0.05`` (by the sign of the mean
difference), else *tie*. BH rather than Holm: a leaderboard has many cells with a real
difference, and BH's threshold grows with the number of discoveries, whereas Holm's family-wise
control at 3 seeds (ν = 2, so no p below ~0.001 without a huge effect) would call almost every
cell a tie. BH controls the expected share of wrong marks at 5 % under independence or positive
dependence (cells of one method across proportions are positively correlated).

**Frequency bins:** in each run's mask, classes are ranked by their number of known training
positives (most first, ties by class index); rank ``r`` of ``C`` is *head* when ``r < C/3``,
*medium* when ``r < 2C/3``, else *tail*. A bin's mAP is the mean of its classes' test AP. The
imbalance-aware paper (IPL) argues by imbalance but gives no split, and the absolute
thresholds of long-tailed benchmarks (e.g. > 100 / 20–100 / < 20 training images) leave bins
empty at 1,080 training images and 10 % known labels; thirds by rank always fill all three.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

#: Coverage of every interval.
LEVEL = 0.95
#: q-value at or below which a paired comparison is marked better / worse.
ALPHA = 0.05
#: Power at which the minimum detectable effect is stated (two-sided test at ``1 - LEVEL``).
POWER = 0.8
#: The effect (mAP points) whose required number of seeds is reported.
TARGET_MDE = 1.0
#: Largest number of seeds searched for :data:`TARGET_MDE` (beyond: reported as unreachable).
MAX_SEEDS = 100_000
T_SEEDS = "t"
T_IMAGES = "t+images"
INTERVAL_TEXT = {T_SEEDS: "t-interval over seeds",
                 T_IMAGES: "t over seeds + test-image bootstrap variance"}
BETTER, WORSE, TIE = "better", "worse", "tie"
#: How a mark is printed in the Markdown, the README and the page.
MARK_SYMBOL = {BETTER: "▲", WORSE: "▼", TIE: "≈"}
BINS = ("head", "medium", "tail")


def _scipy_stats():
    """``scipy.stats``, imported where an interval or test is computed (1-3 s of start-up that a
    one-seed run's summary, which needs none, does not pay)."""
    from scipy import stats

    return stats


@dataclass(frozen=True)
class Stat:
    """A cell: mean, sample std and 95 % interval over ``n`` seeds (std/interval None when n < 2)."""

    mean: float | None
    std: float | None
    n: int
    lo: float | None = None
    hi: float | None = None
    method: str = ""
    half: float | None = None   # the interval's half-width before clipping to the bounds

    @property
    def half_width(self) -> float | None:
        if self.half is not None:
            return self.half
        return None if self.lo is None or self.hi is None else (self.hi - self.lo) / 2

    def text(self, digits: int = 1) -> str:
        """``81.2 ± 3.2`` (± the half-width of the 95 % interval), ``81.2`` for one seed, ``–`` for none."""
        if self.mean is None:
            return "–"
        if self.half_width is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f}"

    def detail(self) -> str:
        """Hover text: seeds, std and the interval with its method."""
        if self.mean is None:
            return "not run"
        if self.lo is None:
            return f"{self.n} seed: no interval"
        return (f"{self.n} seeds, std {self.std:.2f}, 95% interval [{self.lo:.1f}, {self.hi:.1f}] "
                f"({INTERVAL_TEXT.get(self.method, self.method)})")


def welch_df(seed_var_of_mean: float, image_var: float, n: int) -> float:
    """Welch–Satterthwaite degrees of freedom of ``SE² = s²/n + v``, ``v`` counted as known (inf when s = 0)."""
    if seed_var_of_mean <= 0:
        return math.inf
    return (seed_var_of_mean + image_var) ** 2 / (seed_var_of_mean ** 2 / (n - 1))


def _finite(values) -> np.ndarray:
    arr = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    return arr[np.isfinite(arr)]


def estimate(values, image_var: float | None = None, bounds: tuple[float, float] = (0.0, 100.0)) -> Stat:
    """Mean, std and 95 % interval of per-seed ``values`` (None/NaN ignored); see the module docstring.

    ``image_var``: the bootstrap variance of the seed mean over test images, when every seed
    saved its scores (None otherwise). The interval is clipped to ``bounds`` (a percentage
    cannot pass 100).
    """
    vals = _finite(values)
    n = int(vals.size)
    if n == 0:
        return Stat(None, None, 0)
    mean = float(vals.mean())
    if n == 1:
        return Stat(mean, None, 1)
    std = float(vals.std(ddof=1))
    if image_var is None:
        if std == 0:
            return Stat(mean, std, n, mean, mean, T_SEEDS, 0.0)
        lo, hi = _scipy_stats().t.interval(LEVEL, n - 1, loc=mean, scale=std / math.sqrt(n))
        return Stat(mean, std, n, max(float(lo), bounds[0]), min(float(hi), bounds[1]), T_SEEDS, float(hi - mean))
    se = math.sqrt(std ** 2 / n + image_var)
    half = float(_scipy_stats().t.ppf(0.5 + LEVEL / 2, welch_df(std ** 2 / n, image_var, n))) * se
    return Stat(mean, std, n, max(mean - half, bounds[0]), min(mean + half, bounds[1]), T_IMAGES, half)


@dataclass(frozen=True)
class Paired:
    """A method minus the baseline over ``n`` paired seeds: mean difference, 95 % interval, p, q, mark."""

    diff: float
    lo: float
    hi: float
    p: float
    n: int
    method: str
    q: float | None = None
    mark: str = ""
    mde: float | None = None            # minimum detectable effect (alpha 0.05, power 0.8), mAP points
    seeds_needed: int | None = None     # seeds for an MDE of TARGET_MDE (None: unreachable by seeds)
    mde_floor: float = 0.0              # the MDE no number of seeds gets below (shared test-image noise)

    def text(self, digits: int = 1) -> str:
        return f"{self.diff:+.{digits}f} [{self.lo:+.{digits}f}, {self.hi:+.{digits}f}]"

    def seeds_text(self) -> str:
        """``53`` seeds for a 1-point MDE, ``∞ (floor 1.4)`` when more seeds cannot get there."""
        return f"∞ (floor {self.mde_floor:.1f})" if self.seeds_needed is None else str(self.seeds_needed)

    def mde_text(self, digits: int = 1) -> str:
        """``MDE 8.3 (53 seeds for 1)``, or ``MDE 8.3 (no number of seeds reaches 1: floor 1.4)``."""
        if self.seeds_needed is None:
            return (f"MDE {self.mde:.{digits}f} (no number of seeds reaches {TARGET_MDE:g}: floor "
                    f"{self.mde_floor:.{digits}f})")
        return f"MDE {self.mde:.{digits}f} ({self.seeds_needed} seeds for {TARGET_MDE:g})"

    def detail(self) -> str:
        q = "" if self.q is None else f", q = {self.q:.3g} (BH)"
        mde = "" if self.mde is None else f"; {self.mde_text(2)}"
        return (f"{self.mark or 'untested'}: {self.text(2)} over {self.n} paired seeds, p = {self.p:.3g}{q} "
                f"({INTERVAL_TEXT.get(self.method, self.method)}){mde}")


def _mde_factor(df):
    """``t(0.975, ν) + t(0.80, ν)`` (elementwise), the MDE in units of SE."""
    t = _scipy_stats().t
    return t.ppf(0.5 + LEVEL / 2, df) + t.ppf(POWER, df)


def mde(std: float, n: int, image_var: float | None = None) -> float | None:
    """Minimum detectable effect of a paired comparison of ``n`` seeds whose differences have sample std ``std``.

    ``(t(0.975, ν) + t(0.80, ν)) · SE`` with the interval's ``SE`` and ``ν`` (see the module
    docstring); None below 2 seeds.
    """
    if n < 2:
        return None
    seed_var = std ** 2 / n
    if image_var is None:
        return float(_mde_factor(n - 1)) * math.sqrt(seed_var)
    return float(_mde_factor(welch_df(seed_var, image_var, n))) * math.sqrt(seed_var + image_var)


def _image_parts(n: int, image_var: float | None, image_var_single: float | None) -> tuple[float, float]:
    """``(c, v1)``: the test-image variance the seeds share and one seed's own (module docstring)."""
    if image_var is None:
        return 0.0, 0.0
    if image_var_single is None:
        return image_var, image_var
    shared = max(0.0, (n * image_var - image_var_single) / (n - 1))
    return shared, max(image_var_single, shared)


def mde_floor(n: int, image_var: float | None = None, image_var_single: float | None = None) -> float:
    """The MDE infinitely many seeds would leave: ``(t(0.975, ∞) + t(0.80, ∞)) · sqrt(c)`` (0 without images)."""
    return float(_mde_factor(math.inf)) * math.sqrt(_image_parts(n, image_var, image_var_single)[0])


def seeds_needed(std: float, n: int, image_var: float | None = None, image_var_single: float | None = None,
                 target: float = TARGET_MDE) -> int | None:
    """The smallest number of seeds (>= 2) whose MDE is at most ``target``; None when no number up to
    :data:`MAX_SEEDS` gets there (the test-image variance the seeds share sets a floor).

    ``std``, ``n``, ``image_var``: as measured (see :func:`mde`); ``image_var_single``: the mean
    of the seeds' own bootstrap variances of their difference, which splits ``image_var`` into a
    shared and an averaging part (module docstring); None counts all of it as shared.
    """
    if n < 2:
        return None
    shared, single = _image_parts(n, image_var, image_var_single)
    if mde_floor(n, image_var, image_var_single) > target:
        return None

    def reaches(count: int) -> bool:
        seed_var = std ** 2 / count
        image = shared + (single - shared) / count
        df = count - 1 if image_var is None else welch_df(seed_var, image, count)
        return float(_mde_factor(df)) * math.sqrt(seed_var + image) <= target

    # The MDE falls as seeds are added (smaller SE, more degrees of freedom): double, then bisect.
    lo, hi = 1, 2
    while not reaches(hi):
        if hi >= MAX_SEEDS:
            return None
        lo, hi = hi, min(2 * hi, MAX_SEEDS)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if reaches(mid) else (mid, hi)
    return hi


def paired(values, baseline, image_var: float | None = None, image_var_single: float | None = None) -> Paired | None:
    """The paired comparison of per-seed ``values`` with ``baseline`` (same order), with its MDE; None below 2 pairs.

    ``image_var``: the bootstrap variance of the mean difference; ``image_var_single``: the mean
    of the seeds' own bootstrap variances (only for the seeds needed; see :func:`seeds_needed`).
    """
    result = _paired(values, baseline, image_var)
    if result is None:
        return None
    a, b = np.asarray(values, dtype=float), np.asarray(baseline, dtype=float)
    d = (a - b)[np.isfinite(a) & np.isfinite(b)]
    std = float(d.std(ddof=1))
    return replace(result, mde=mde(std, result.n, image_var),
                   seeds_needed=seeds_needed(std, result.n, image_var, image_var_single),
                   mde_floor=mde_floor(result.n, image_var, image_var_single))


def _paired(values, baseline, image_var: float | None = None) -> Paired | None:
    a, b = np.asarray(values, dtype=float), np.asarray(baseline, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    n = int(a.size)
    if n < 2:
        return None
    d = a - b
    mean, std = float(d.mean()), float(d.std(ddof=1))
    if image_var is None:
        if std == 0:
            return Paired(mean, mean, mean, 1.0 if mean == 0 else 0.0, n, T_SEEDS)
        res = _scipy_stats().ttest_rel(a, b)
        ci = res.confidence_interval(LEVEL)
        return Paired(mean, float(ci.low), float(ci.high), float(res.pvalue), n, T_SEEDS)
    se = math.sqrt(std ** 2 / n + image_var)
    if se == 0:
        return Paired(mean, mean, mean, 1.0 if mean == 0 else 0.0, n, T_IMAGES)
    df = welch_df(std ** 2 / n, image_var, n)
    half = float(_scipy_stats().t.ppf(0.5 + LEVEL / 2, df)) * se
    p = float(2 * _scipy_stats().t.sf(abs(mean) / se, df))
    return Paired(mean, mean - half, mean + half, p, n, T_IMAGES)


def adjust(comparisons: list[Paired]) -> list[Paired]:
    """The same comparisons with Benjamini–Hochberg q-values and better / worse / tie marks."""
    if not comparisons:
        return []
    q = _scipy_stats().false_discovery_control([c.p for c in comparisons], method="bh")
    return [replace(c, q=float(qi), mark=(TIE if qi > ALPHA or c.diff == 0 else BETTER if c.diff > 0 else WORSE))
            for c, qi in zip(comparisons, q)]


def frequency_bins(counts) -> np.ndarray:
    """Bin index per class (0 head, 1 medium, 2 tail) from known-positive ``counts``; see the module docstring."""
    counts = np.asarray(counts)
    n = counts.size
    order = np.lexsort((np.arange(n), -counts))  # most positives first, ties by class index
    rank = np.empty(n, dtype=int)
    rank[order] = np.arange(n)
    return (3 * rank) // n


def bin_means(per_class_ap, counts) -> list[float | None]:
    """Mean test AP of the head, medium and tail classes of one run (None for an empty bin)."""
    ap = np.asarray([np.nan if v is None else v for v in per_class_ap], dtype=float)
    bins = frequency_bins(counts)
    out = []
    for b in range(len(BINS)):
        vals = ap[(bins == b) & np.isfinite(ap)]
        out.append(float(vals.mean()) if vals.size else None)
    return out


def explanation(baseline: str) -> list[str]:
    """The rules above in a reader's words, one sentence group per rule (shown on the page and in the Markdown)."""
    from .bootstrap import RESAMPLES

    return [
        "Cells: the mean over seeds ± the half-width of its 95 % interval (not the std; the std is in the "
        "CSV and on hover). The interval is a t-interval over seeds (scipy.stats.t); where every seed saved "
        f"its test scores, the variance of a bootstrap over test images ({RESAMPLES} resamples shared by "
        "all runs on the test set) is added to the seed variance (\"t+images\"). A cell of one seed shows "
        "the mean alone. With the bootstrap term, the degrees of freedom are Welch-Satterthwaite's.",
        "Ave.: per seed, the mean over the row's proportions; then the same statistics over the seeds that "
        "ran every proportion.",
        f"{MARK_SYMBOL[BETTER]} better, {MARK_SYMBOL[WORSE]} worse, {MARK_SYMBOL[TIE]} tie against {baseline}: "
        f"each row is paired with the {baseline} row of the same protocol and budget, seed by seed on the "
        "same mask (the same partial labels); two-sided paired t-test over seeds (scipy.stats.ttest_rel; with "
        "saved scores, the paired bootstrap variance of the difference is added); p-values of every comparison "
        f"in the table (method x proportion, and Ave.) adjusted by Benjamini-Hochberg; marked when q ≤ {ALPHA}. "
        "At least 2 paired seeds are needed.",
        f"Resolution: every comparison with {baseline} states its minimum detectable effect (MDE), the true "
        f"difference the test would find with probability {POWER:g} at two-sided alpha {1 - LEVEL:.2g}: "
        f"MDE = (t(0.975, df) + t({POWER:g}, df)) x SE, with the SE and degrees of freedom of the comparison's "
        "interval (over seeds alone: SE = s_d / sqrt(n), df = n - 1, s_d the std of the per-seed differences). "
        "A tie (≈) in a cell whose MDE exceeds the gap you care about means the table cannot tell, not that the "
        f"methods are equal. Beside it: the seeds a {TARGET_MDE:g}-point MDE would need with the measured s_d "
        "(∞ when the test-image noise the seeds share is already too large: more test images, not seeds).",
        "Frequency bins: in each run's mask, classes ranked by their known training positives (ties by class "
        "index); the first third is head, the next third medium, the rest tail; a bin's mAP is the mean test "
        "AP of its classes, aggregated over seeds like mAP.",
        "Rows merge records only when method, protocol and training budget all agree.",
    ]
