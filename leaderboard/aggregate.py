"""From the long-form frame of runs (:mod:`.frame`) to leaderboard tables.

A *table* is one (dataset, setting). A *row* is one method under one protocol and one training
budget: records are merged only when they agree on the method (name, version, profile,
options), the protocol (dataset fingerprints, mask scheme, validation fraction, and per
proportion and seed the mask) and the budget (:mod:`.identity`). Otherwise they are separate
rows, each labelled with its protocol and budget.

Within a row, a cell is one known proportion: mean, std and 95 % interval over seeds
(:func:`.stats.estimate`). **Ave.** (the only rule, also used by the end-of-run summary of
``mlrpl-bench run``): per seed, the mean over the row's proportions; then the same statistics
over the seeds that ran every proportion. A seed that misses a proportion does not count
toward Ave.; a row that misses a proportion of its table gets no Ave. (an unfinished sweep is
not comparable), and neither does a row none of whose seeds ran every proportion.

Each row is compared with the baseline row (default ``partial-bce``) of the same protocol and
budget, at every proportion and on Ave. (:func:`.stats.paired`), and the marks come from one
Benjamini–Hochberg adjustment per table (:func:`.stats.adjust`). Frequency bins (head / medium /
tail, :func:`.stats.bin_means`) are aggregated like mAP. A row's tuning warnings (grid edge,
first epoch; :mod:`mlrpl_bench.tuning_checks`) are gathered per proportion with the seeds that
raised them. No torch, plugin or engine import.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from mlrpl_bench.errors import BenchError
from mlrpl_bench.metrics import SUMMARY_METRICS  # the metric specification's (re-exported)
from mlrpl_bench.tuning_checks import SEPARATOR

from . import stats
from .bootstrap import image_weights, replicate_map
from .discover import Discovery, discover
from .frame import BUDGET_COLUMNS, FAMILY_ORDER, records_frame
from .identity import budget_badge, budget_details, method_signature, short_hash  # noqa: F401 (re-exported for submit)
from .reference import AVERAGE, ReferenceIndex, ReferenceRow, known_key
from .stats import Paired, Stat
DEFAULT_BASELINE = "partial-bce"
#: The papers' sweep: their "Ave." is the mean over exactly these proportions.
PAPER_SWEEP = tuple(round(0.1 * i, 1) for i in range(1, 10))
#: How a row with tuning warnings is flagged in the Markdown and on the page.
TUNING_FLAG = "tuning ⚠"


@dataclass
class Row:
    """One method under one protocol and one budget in one table."""

    method: str
    method_version: str
    profile: str
    options: dict
    options_id: str
    family: str
    protocol_id: str        # short fingerprint of the protocol signature (+ mask when deviant)
    budget: dict
    budget_id: str
    runs: pd.DataFrame      # this row's lines of the long-form frame
    cells: dict[float, dict[str, Stat]] = field(default_factory=dict)   # known -> metric -> Stat
    average: dict[str, Stat] = field(default_factory=dict)              # metric -> Stat over complete seeds
    bins: dict[float | str, list[Stat]] = field(default_factory=dict)  # known or "ave" -> [head, medium, tail]
    versus: dict[float | str, Paired] = field(default_factory=dict)    # known or "ave" -> vs the baseline (mAP)
    seeds: list[int] = field(default_factory=list)
    deviant_mask: bool = False
    dirty: bool = False
    verified_runs: int = 0      # runs whose record the leaderboard's runner re-executed (mlrpl_bench.verification)
    compared_kinds: str = ""    # "verified vs self-reported" ...: the kinds of this row and of its baseline row
    is_baseline: bool = False   # the row the others of its protocol and budget are compared with
    has_baseline: bool = False  # a baseline row of the same protocol and budget exists (compared where seeds pair)
    reference: dict[str, dict[str, ReferenceRow]] = field(default_factory=dict)  # known key -> metric -> ref
    variant: str = ""       # the published ablation this row was compared with ("" = the method)
    notes: list[str] = field(default_factory=list)
    tuning_warnings: dict[float, list[str]] = field(default_factory=dict)  # known -> "warning (seeds ...)"

    @property
    def key(self) -> str:
        return f"{self.method}|{self.options_id}|{self.protocol_id}|{self.budget_id}"

    @property
    def kind(self) -> str:
        """``verified`` (every run re-executed by the leaderboard), ``self-reported`` (none) or
        ``partly verified`` (some)."""
        n = len(self.runs)
        return "verified" if n and self.verified_runs == n else "self-reported" if not self.verified_runs else "partly verified"

    def private_draw(self) -> tuple[int, float, float] | None:
        """``(runs, mean public test mAP, mean private test mAP)`` over this row's runs that the
        runner also scored on its private test draw (None when none was)."""
        runs = self.runs[self.runs["private_test_mAP"].notna()]
        if runs.empty:
            return None
        return len(runs), float(runs["test_mAP"].mean()), float(runs["private_test_mAP"].mean())

    @property
    def budget_label(self) -> str:
        return budget_badge(self.budget)

    @property
    def budget_text(self) -> str:
        return budget_details(self.budget)

    @property
    def detail(self) -> str:
        """Short text that tells rows of the same method apart."""
        parts = [f"v{self.method_version}", self.profile]
        if self.options:
            parts.append(f"options {self.options_id}")
        parts.append(f"protocol {self.protocol_id}")
        return " · ".join(parts)

    def published(self, known: float | str, metric: str = "mAP") -> ReferenceRow | None:
        key = AVERAGE if known == AVERAGE else known_key(known)  # type: ignore[arg-type]
        return self.reference.get(key, {}).get(metric)

    def stat(self, known: float | str, metric: str = "mAP") -> Stat | None:
        """The reproduced statistic at ``known`` (or the sweep average), None when not run."""
        return self.average.get(metric) if known == AVERAGE else self.cells.get(known, {}).get(metric)  # type: ignore[arg-type]

    def gap(self, known: float | str, metric: str = "mAP") -> float | None:
        """Reproduced minus published (percentage points), or None when either is missing."""
        ref = self.published(known, metric)
        stat = self.stat(known, metric)
        if ref is None or stat is None or stat.mean is None or ref.metric(metric) is None:
            return None
        return stat.mean - ref.metric(metric)


@dataclass
class Table:
    dataset: str
    setting: str
    rows: list[Row]
    knowns: list[float]
    protocols: dict[str, dict]  # protocol id -> signature (and mask, for deviant rows)
    baseline: str = DEFAULT_BASELINE
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.dataset}__{self.setting}"

    @property
    def budgets(self) -> dict[str, dict]:
        return {row.budget_id: row.budget for row in self.rows}

    @property
    def has_bins(self) -> bool:
        return any(row.bins for row in self.rows)

    @property
    def interval_methods(self) -> set[str]:
        """The interval methods used in this table (``t``, ``t+images``)."""
        return {s.method for row in self.rows for s in [*(c["mAP"] for c in row.cells.values()), row.average["mAP"]]
                if s.method}

    def families(self) -> list[str]:
        present = {row.family for row in self.rows}
        return [f for f in FAMILY_ORDER if f in present] + sorted(present - set(FAMILY_ORDER))

    def comparisons(self) -> Iterable[Comparison]:
        """Every (row, known or Ave., metric) that has a published number, in display order."""
        for row in self.rows:
            for known in [*self.knowns, AVERAGE]:
                for metric in SUMMARY_METRICS:
                    ref = row.published(known, metric)
                    if ref is not None:
                        yield Comparison(row, known, metric, row.stat(known, metric), ref, row.gap(known, metric))


@dataclass(frozen=True)
class Comparison:
    """A reproduced statistic beside the paper's number for the same cell."""

    row: Row
    known: float | str
    metric: str
    reproduced: object
    published: ReferenceRow
    gap: float | None


def read_results(paths) -> Discovery:
    """Every record under the results folder(s) ``paths`` (see :func:`.discover.discover`)."""
    return discover(paths)


def build_tables(source, reference: ReferenceIndex | None = None, *, baseline: str = DEFAULT_BASELINE,
                 bootstrap: bool = True) -> list[Table]:
    """Group records into tables and rows, aggregate seeds, compare with the baseline, join the papers.

    ``source``: the frame of :func:`.frame.records_frame`, a :class:`.discover.Discovery`, or
    record dicts / ``(path, record)`` pairs. ``bootstrap=False`` ignores saved test scores.
    """
    frame = source if isinstance(source, pd.DataFrame) else records_frame(source)
    tables = [_build_table(dataset, setting, group, reference, baseline, bootstrap)
              for (dataset, setting), group in frame.groupby(["dataset", "setting"], sort=True)]
    notes = frame.attrs.get("notes", [])
    if tables and notes:
        tables[0].notes.extend(notes)
    return tables


# --------------------------------------------------------------------------- replicates

def _replicates(df: pd.DataFrame, notes: list[str]) -> pd.Series:
    """Per run, the bootstrap replicates of its test mAP (None without a readable scores file)."""
    from mlrpl_bench.scores import verify_scores

    out: dict = {}
    with_scores = df[df["scores_file"].notna()]
    missing = 0
    for (_, n_test), group in with_scores.groupby(["dataset_fp_test", "n_test"]):
        weights = image_weights(int(n_test))
        for idx, run in group.iterrows():
            record_path = Path(run["results_dir"]) / run["record_file"]
            stub = {"scores_file": {"path": run["scores_file"], "sha256": run["scores_sha256"]},
                    "dataset": {"sizes": {"test": run["n_test"]}, "num_classes": run["num_classes"]},
                    "metrics": {"test": {"mAP": run["test_mAP"]}}}
            if not (record_path.parent / run["scores_file"]).is_file():
                missing += 1
                continue
            scores, targets = verify_scores(record_path, stub)
            out[idx] = replicate_map(scores, targets, weights)
    if missing:
        notes.append(f"{missing} record(s) name a test-scores file that is not beside them: their intervals use the seeds only")
    return pd.Series([out.get(i) for i in df.index], index=df.index, dtype=object)


def _image_var(reps: list) -> float | None:
    """Variance over resamples of the mean of the given runs' replicates (None unless all have them)."""
    if not reps or any(r is None for r in reps):
        return None
    return float(np.var(np.mean(np.stack(reps), axis=0), ddof=1))


def _image_var_single(reps: list) -> float | None:
    """Mean over the given runs of each one's own variance over resamples (None unless all have replicates)."""
    if not reps or any(r is None for r in reps):
        return None
    return float(np.mean(np.var(np.stack(reps), axis=1, ddof=1)))


# --------------------------------------------------------------------------- one table

def _build_table(dataset: str, setting: str, df: pd.DataFrame, reference: ReferenceIndex | None, baseline: str,
                 bootstrap: bool) -> Table:
    df = df.copy()
    notes: list[str] = []
    df["rep"] = _replicates(df, notes) if bootstrap else None
    knowns = sorted(df["known"].unique().tolist())
    protocols: dict[str, dict] = {}
    rows = []
    for (_, protocol_id, budget_id), runs in df.groupby(["method_id", "protocol_id", "budget_id"], sort=False):
        first = runs.iloc[0]
        protocols[protocol_id] = {"dataset_fingerprint": {"train": first["dataset_fp_train"], "test": first["dataset_fp_test"]},
                                  "scheme": first["scheme"], "val_fraction": first["val_fraction"],
                                  **({"mask_fingerprint": first["mask_fingerprint"]} if first["deviant_mask"] else {})}
        row = Row(method=first["method"], method_version=first["method_version"], profile=first["profile"],
                  options=json.loads(first["options"]), options_id=first["options_id"], family=first["family"],
                  protocol_id=protocol_id, budget={k: first[k] for k in BUDGET_COLUMNS}, budget_id=budget_id,
                  runs=runs, seeds=sorted(runs["seed"].unique().tolist()), deviant_mask=bool(first["deviant_mask"]),
                  dirty=bool(runs["dirty"].any()), verified_runs=int(runs["verified"].sum()))
        _aggregate(row, knowns)
        rows.append(row)
    _compare(rows, knowns, baseline, notes)
    for row in rows:
        if reference is not None:
            _join(row, dataset, setting, reference)
        notes += [f"{row.method} ({row.detail}, budget {row.budget_id}): {n}" for n in row.notes]
    rows.sort(key=lambda r: (-(r.average["mAP"].mean if r.average["mAP"].mean is not None else -1), r.method,
                             r.protocol_id, r.budget_id))
    return Table(dataset, setting, rows, knowns, protocols, baseline, notes)


def _seed_pivot(runs: pd.DataFrame, column: str, knowns: list[float]) -> pd.DataFrame:
    """seed x known values of ``column``, restricted to the seeds that ran every one of ``knowns``."""
    pivot = runs.pivot(index="seed", columns="known", values=column).reindex(columns=knowns)
    return pivot[pivot.notna().all(axis=1)]


def _aggregate(row: Row, knowns: list[float]) -> None:
    runs = row.runs
    for known, group in runs.groupby("known"):
        row.cells[known] = {m: stats.estimate(group[f"test_{m}"], _image_var(list(group["rep"])) if m == "mAP" else None)
                            for m in SUMMARY_METRICS}
    complete_row = sorted(row.cells) == knowns
    if not complete_row:
        # A mean over fewer proportions is not comparable with the other rows' (nor ranked
        # with them): an unfinished sweep would otherwise sit above finished ones.
        row.notes.append(f"runs {len(row.cells)} of the table's {len(knowns)} proportions: no Ave.")
    for m in SUMMARY_METRICS:
        pivot = _seed_pivot(runs, f"test_{m}", knowns) if complete_row else pd.DataFrame()
        image_var = None
        if m == "mAP" and not pivot.empty:
            reps = runs.set_index(["seed", "known"])["rep"]
            per_seed = [_mean_rep([reps.get((s, k)) for k in knowns]) for s in pivot.index]
            image_var = _image_var(per_seed)
        row.average[m] = stats.estimate(pivot.mean(axis=1) if not pivot.empty else [], image_var)
    if complete_row and row.average["mAP"].n < len(row.seeds):
        row.notes.append(f"Ave. over the {row.average['mAP'].n} of {len(row.seeds)} seeds that ran every proportion")
    _aggregate_bins(row, knowns, complete_row)
    _aggregate_warnings(row)


def _aggregate_warnings(row: Row) -> None:
    if "tuning_warnings" not in row.runs:
        return
    for known, group in row.runs.groupby("known"):
        seeds: dict[str, list[int]] = {}
        for seed, text in zip(group["seed"], group["tuning_warnings"]):
            for message in filter(None, str(text or "").split(SEPARATOR)):
                seeds.setdefault(message, []).append(int(seed))
        if seeds:
            row.tuning_warnings[known] = [f"{m} (seed{'s' if len(v) > 1 else ''} {', '.join(map(str, sorted(v)))})"
                                          for m, v in seeds.items()]


def _mean_rep(reps: list):
    return None if any(r is None for r in reps) else np.mean(np.stack(reps), axis=0)


def _aggregate_bins(row: Row, knowns: list[float], complete_row: bool) -> None:
    runs = row.runs[row.runs["per_class_known_positives"].notna()]
    if runs.empty:
        return
    values = pd.DataFrame([stats.bin_means(ap, counts) for ap, counts in
                           zip(runs["per_class_ap"], runs["per_class_known_positives"])],
                          index=runs.index, columns=list(stats.BINS), dtype=float)
    binned = pd.concat([runs[["seed", "known"]], values], axis=1)
    for known, group in binned.groupby("known"):
        row.bins[known] = [stats.estimate(group[b]) for b in stats.BINS]
    if complete_row:
        row.bins[AVERAGE] = [stats.estimate(_seed_pivot(binned, b, knowns).mean(axis=1)) for b in stats.BINS]


# --------------------------------------------------------------------------- paired comparisons

def _pick_baseline(row: Row, candidates: list[Row]) -> Row | None:
    """The baseline row with the same protocol and budget (default profile first, then the most runs)."""
    same = [c for c in candidates if c.protocol_id == row.protocol_id and c.budget_id == row.budget_id]
    same.sort(key=lambda c: (c.profile != "default", -len(c.runs), c.options_id))
    return same[0] if same else None


def _compare(rows: list[Row], knowns: list[float], baseline: str, notes: list[str]) -> None:
    candidates = [r for r in rows if r.method == baseline]
    tests: list[tuple[Row, float | str, Paired]] = []
    for key in sorted({(c.protocol_id, c.budget_id) for c in candidates}):
        same = [c for c in candidates if (c.protocol_id, c.budget_id) == key]
        chosen = _pick_baseline(same[0], same)
        chosen.is_baseline = True
        if len(same) > 1:
            notes.append(f"{len(same)} {baseline} rows share protocol {key[0]} and budget {key[1]} (options "
                         f"{', '.join(sorted(c.options_id for c in same))}): the others are compared with options "
                         f"{chosen.options_id} ({chosen.profile} profile, most runs)")
    for row in rows:
        base = _pick_baseline(row, candidates)
        if base is row:
            continue
        if base is None:
            if candidates:
                row.notes.append(f"no {baseline} row with the same protocol and budget: not compared")
            continue
        row.has_baseline = True
        row.compared_kinds = f"{row.kind} vs {base.kind}"
        cols = ["known", "seed", "mask_fingerprint", "test_mAP", "rep"]
        pairs = row.runs[cols].merge(base.runs[cols], on=["known", "seed", "mask_fingerprint"], suffixes=("", "_base"))
        pairs["rep_diff"] = [None if a is None or b is None else a - b for a, b in zip(pairs["rep"], pairs["rep_base"])]
        for known, group in pairs.groupby("known"):
            reps = list(group["rep_diff"])
            result = stats.paired(group["test_mAP"], group["test_mAP_base"], _image_var(reps), _image_var_single(reps))
            if result is not None:
                tests.append((row, known, result))
        if sorted(row.cells) == knowns and sorted(base.cells) == knowns:
            a, b = _seed_pivot(pairs, "test_mAP", knowns), _seed_pivot(pairs, "test_mAP_base", knowns)
            seeds = a.index.intersection(b.index)
            diffs = pairs.set_index(["seed", "known"])["rep_diff"]
            reps = [_mean_rep([diffs.get((s, k)) for k in knowns]) for s in seeds]
            result = stats.paired(a.loc[seeds].mean(axis=1), b.loc[seeds].mean(axis=1), _image_var(reps),
                                  _image_var_single(reps))
            if result is not None:
                tests.append((row, AVERAGE, result))
    for (row, known, _), result in zip(tests, stats.adjust([t[2] for t in tests])):
        row.versus[known] = result


# --------------------------------------------------------------------------- the published numbers

def _join(row: Row, dataset: str, setting: str, reference: ReferenceIndex) -> None:
    variant = reference.resolve_variant(row.method, row.options)
    if variant is None:
        row.notes.append("these options (an ablation) have no published counterpart; not compared")
        return
    row.variant = variant
    # A row's Ave. is only comparable to a paper's when it covers the same nine proportions.
    knowns: list = list(row.cells)
    if tuple(sorted(row.cells)) == PAPER_SWEEP:
        knowns.append(AVERAGE)
    for known in knowns:
        key = AVERAGE if known == AVERAGE else known_key(known)
        for metric in SUMMARY_METRICS:
            ref = reference.lookup(row.method, dataset, setting, known, metric, variant)
            if ref is not None:
                row.reference.setdefault(key, {})[metric] = ref


# --------------------------------------------------------------------------- the aggregated frame

def _stat_columns(prefix: str, stat: Stat | None) -> dict:
    stat = stat or Stat(None, None, 0)
    return {f"{prefix}_mean": stat.mean, f"{prefix}_std": stat.std, f"{prefix}_lo": stat.lo, f"{prefix}_hi": stat.hi}


def aggregated_frame(tables: list[Table]) -> pd.DataFrame:
    """One line per (table, row, known proportion or ``ave``): every statistic of the page.

    The CSV of ``leaderboard build`` and the aggregated table of ``leaderboard export``.
    """
    lines = []
    for table in tables:
        for row in table.rows:
            for known in [*sorted(row.cells), AVERAGE]:
                stats_at = row.average if known == AVERAGE else row.cells[known]
                refs = {m: row.published(known, m) for m in SUMMARY_METRICS}
                versus = row.versus.get(known)
                bins = row.bins.get(known, [None] * len(stats.BINS))
                line = {"dataset": table.dataset, "setting": table.setting, "method": row.method,
                        "method_version": row.method_version, "profile": row.profile, "options_id": row.options_id,
                        "family": row.family, "protocol": row.protocol_id, "budget_id": row.budget_id,
                        "budget": row.budget_label, **{f"budget_{k}": v for k, v in row.budget.items()},
                        "known": AVERAGE if known == AVERAGE else f"{known:g}", "seeds": stats_at["mAP"].n,
                        "interval": stats_at["mAP"].method}
                for m in SUMMARY_METRICS:
                    line.update(_stat_columns(m, stats_at[m]))
                line.update({"baseline": "" if row.is_baseline or versus is None else table.baseline,
                             "diff_mAP": versus.diff if versus else None, "diff_lo": versus.lo if versus else None,
                             "diff_hi": versus.hi if versus else None, "p": versus.p if versus else None,
                             "q": versus.q if versus else None, "mark": versus.mark if versus else "",
                             "mde": versus.mde if versus else None,
                             "seeds_for_mde_1": versus.seeds_needed if versus else None,
                             "mde_floor": versus.mde_floor if versus else None,
                             "mde_note": _mde_note(row, versus),
                             "tuning_warnings": SEPARATOR.join(row.tuning_warnings.get(known, [])),
                             "kind": row.kind, "verified_runs": row.verified_runs,
                             "compares": row.compared_kinds if versus else ""})
                for name, stat in zip(stats.BINS, bins):
                    line.update(_stat_columns(f"{name}_mAP", stat))
                for m in SUMMARY_METRICS:
                    line[f"published_{m}"] = refs[m].metric(m) if refs[m] else None
                line["published_source"] = next((r.source for r in refs.values() if r is not None), "")
                line["gap_mAP"] = row.gap(known, "mAP")
                lines.append(line)
    frame = pd.DataFrame(lines)
    if not frame.empty:
        frame["seeds_for_mde_1"] = frame["seeds_for_mde_1"].astype("Int64")
    return frame


def _mde_note(row: Row, versus: Paired | None) -> str:
    """Why a line has no MDE or no seed count (empty when it has both, and for the baseline itself)."""
    if row.is_baseline:
        return ""
    if versus is None:
        return ("fewer than 2 paired seeds with the baseline: no MDE" if row.has_baseline else
                "no baseline row of the same protocol and budget: no MDE")
    if versus.seeds_needed is None:
        return (f"the test-image noise the seeds share keeps the MDE above {versus.mde_floor:.2f} however many "
                f"seeds: {stats.TARGET_MDE:g} point needs more test images")
    return ""


def check_baseline(tables: list[Table], baseline: str) -> None:
    """Refuse a ``--baseline`` that names no row of any table (a typo would silently mark nothing)."""
    if tables and not any(row.method == baseline for t in tables for row in t.rows):
        methods = sorted({row.method for t in tables for row in t.rows})
        raise BenchError(f"--baseline {baseline!r} is not a method of these records; choose one of {', '.join(methods)}")


__all__ = ["Row", "Table", "Comparison", "Stat", "Paired", "SUMMARY_METRICS", "DEFAULT_BASELINE", "PAPER_SWEEP", "TUNING_FLAG",
           "build_tables", "read_results", "aggregated_frame", "check_baseline", "method_signature", "short_hash"]
