"""From result records to leaderboard tables: grouping, protocol separation, mean ± std, the join.

A *table* is one (dataset, setting). A *row* is one method run under one protocol: records
are only averaged together when they agree on the method (name, version, profile, options)
and on the protocol — the dataset fingerprints, the protocol scheme, the validation fraction
and, for every (known, seed), the mask fingerprint. Records that disagree become separate rows
labelled by a short fingerprint; they are never mixed in one cell.

Within a row, a cell is one known proportion: mean ± sample std over seeds. "Ave." is the
papers' summary — per seed, the mean over the row's known proportions; then mean ± std over
the seeds that ran every proportion (or the mean of the per-proportion means, without std,
when no seed ran them all). Pure Python: no torch, plugin or engine import.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from mlrpl_bench.errors import BenchError
from mlrpl_bench.results import read_record

from .reference import AVERAGE, ReferenceIndex, ReferenceRow, known_key

SUMMARY_METRICS = ("mAP", "OF1", "CF1")


def short_hash(obj, n: int = 8) -> str:
    """The first ``n`` hex digits of the sha256 of ``obj`` as canonical JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def protocol_signature(record: dict) -> dict:
    """What must be equal for two records' numbers to be comparable (besides the masks)."""
    return {"dataset_fingerprint": record["dataset"]["fingerprint"], "scheme": record["protocol"]["scheme"],
            "val_fraction": record["protocol"].get("val_fraction")}


def method_signature(record: dict) -> dict:
    m = record["method"]
    return {"name": m["name"], "version": m["version"], "profile": m["profile"], "options": m.get("options", {})}


@dataclass
class Stat:
    """Mean ± sample std over seeds (std is None with fewer than two values)."""

    mean: float | None
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Iterable[float | None]) -> "Stat":
        vals = [float(v) for v in values if v is not None and math.isfinite(v)]
        if not vals:
            return cls(None, None, 0)
        mean = sum(vals) / len(vals)
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else None
        return cls(mean, std, len(vals))

    def text(self, digits: int = 1) -> str:
        if self.mean is None:
            return "–"
        if self.std is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


@dataclass
class Row:
    """One method under one protocol in one table."""

    method: str
    method_version: str
    profile: str
    options: dict
    protocol_id: str        # short fingerprint of the protocol signature (+ mask when deviant)
    options_id: str
    records: list[dict] = field(default_factory=list)
    cells: dict[float, dict[str, Stat]] = field(default_factory=dict)   # known -> metric -> Stat
    average: dict[str, Stat] = field(default_factory=dict)              # metric -> Stat over seeds
    seeds: list[int] = field(default_factory=list)
    deviant_mask: bool = False
    dirty: bool = False
    reference: dict[str, dict[str, ReferenceRow]] = field(default_factory=dict)  # known key -> metric -> ref
    variant: str = ""       # the published ablation this row was compared with ("" = the method)
    notes: list[str] = field(default_factory=list)

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

    def stat(self, known: float | str, metric: str = "mAP"):
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
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.dataset}__{self.setting}"

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


def read_results(results_dir: str | Path) -> list[tuple[Path, dict]]:
    """Every record (``**/*.json``) under ``results_dir``, validated; a bad file stops the build."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise BenchError(f"{results_dir}: results directory not found; submit records with "
                         "`mlrpl-bench leaderboard submit` or pass --results DIR")
    return [(path, read_record(path)) for path in sorted(results_dir.rglob("*.json"))]


def _dedupe(records: list[tuple[Path, dict]]) -> tuple[list[dict], list[str]]:
    """Keep one record per (method signature, protocol, mask, known, seed): the latest finished."""
    best: dict[str, tuple[Path, dict]] = {}
    notes = []
    for path, rec in records:
        key = short_hash([method_signature(rec), protocol_signature(rec), rec["protocol"]["mask_fingerprint"],
                          rec["dataset"]["name"], rec["protocol"]["setting"], known_key(rec["protocol"]["known"]),
                          rec["protocol"]["seed"]], 16)
        if key in best:
            old_path, old = best[key]
            keep_new = str(rec.get("runtime", {}).get("finished", "")) > str(old.get("runtime", {}).get("finished", ""))
            dropped = old_path if keep_new else path
            notes.append(f"{dropped}: duplicate of another run (same method, protocol and seed); kept the later one")
            if keep_new:
                best[key] = (path, rec)
        else:
            best[key] = (path, rec)
    return [rec for _, rec in best.values()], notes


def build_tables(records: list[tuple[Path, dict]] | list[dict], reference: ReferenceIndex | None = None) -> list[Table]:
    """Group records into tables and rows, aggregate seeds and join the published numbers."""
    pairs = [(Path("-"), r) if isinstance(r, dict) else r for r in records]
    recs, dup_notes = _dedupe(pairs)
    by_table: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for rec in recs:
        by_table[(rec["dataset"]["name"], rec["protocol"]["setting"])].append(rec)
    tables = []
    for (dataset, setting), group in sorted(by_table.items()):
        tables.append(_build_table(dataset, setting, group, reference))
    if tables and dup_notes:
        tables[0].notes.extend(dup_notes)
    return tables


def _build_table(dataset: str, setting: str, records: list[dict], reference: ReferenceIndex | None) -> Table:
    # The canonical mask of each (protocol, known, seed) is the one most records used: a run
    # whose mask differs did not see the same partial labels, so it gets a row of its own.
    masks: dict[tuple[str, str, int], Counter] = defaultdict(Counter)
    for rec in records:
        pid = short_hash(protocol_signature(rec))
        masks[(pid, known_key(rec["protocol"]["known"]), rec["protocol"]["seed"])][rec["protocol"]["mask_fingerprint"]] += 1
    canonical = {k: sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[0][0] for k, c in masks.items()}

    rows: dict[tuple, Row] = {}
    protocols: dict[str, dict] = {}
    for rec in records:
        sig = protocol_signature(rec)
        pid = short_hash(sig)
        mask = rec["protocol"]["mask_fingerprint"]
        deviant = canonical[(pid, known_key(rec["protocol"]["known"]), rec["protocol"]["seed"])] != mask
        row_pid = f"{pid}/mask {mask[:8]}" if deviant else pid
        protocols[row_pid] = {**sig, **({"mask_fingerprint": mask} if deviant else {})}
        msig = method_signature(rec)
        key = (short_hash(msig, 16), row_pid)
        if key not in rows:
            rows[key] = Row(method=msig["name"], method_version=msig["version"], profile=msig["profile"],
                            options=msig["options"], protocol_id=row_pid, options_id=short_hash(msig["options"], 6),
                            deviant_mask=deviant)
        rows[key].records.append(rec)

    for row in rows.values():
        _aggregate(row)
    knowns = sorted({k for row in rows.values() for k in row.cells})
    notes = []
    for row in rows.values():
        if len(row.cells) != len(knowns):
            # A mean over fewer proportions is not comparable with the other rows' (nor ranked
            # with them): an unfinished sweep would otherwise sit above finished ones.
            row.average = {m: Stat(None, None, 0) for m in SUMMARY_METRICS}
            row.notes.append(f"runs {len(row.cells)} of the table's {len(knowns)} proportions: no Ave.")
        if reference is not None:
            _join(row, dataset, setting, reference)
        notes += [f"{row.method} ({row.detail}): {n}" for n in row.notes]
    ordered = sorted(rows.values(), key=lambda r: (-(r.average["mAP"].mean if r.average.get("mAP") and r.average["mAP"].mean is not None else -1),
                                                   r.method, r.protocol_id))
    return Table(dataset, setting, ordered, knowns, protocols, notes)


def _aggregate(row: Row) -> None:
    per_known: dict[float, list[dict]] = defaultdict(list)
    per_seed: dict[int, dict[float, dict]] = defaultdict(dict)
    for rec in row.records:
        known = round(float(rec["protocol"]["known"]), 4)
        per_known[known].append(rec)
        per_seed[int(rec["protocol"]["seed"])][known] = rec
        if str(rec["environment"].get("code_version", "")).endswith("+dirty"):
            row.dirty = True
    row.seeds = sorted(per_seed)
    for known, recs in sorted(per_known.items()):
        row.cells[known] = {m: Stat.of(r["metrics"]["test"].get(m) for r in recs) for m in SUMMARY_METRICS}
    knowns = sorted(per_known)
    complete = [s for s, by_known in per_seed.items() if sorted(by_known) == knowns]
    for metric in SUMMARY_METRICS:
        seed_means = []
        for s in complete:
            vals = [per_seed[s][k]["metrics"]["test"].get(metric) for k in knowns]
            if all(v is not None for v in vals):
                seed_means.append(sum(vals) / len(vals))
        if seed_means:
            row.average[metric] = Stat.of(seed_means)
        else:
            means = [row.cells[k][metric].mean for k in knowns]
            row.average[metric] = Stat(sum(means) / len(means), None, 0) if means and None not in means else Stat(None, None, 0)


#: The papers' sweep: their "Ave." is the mean over exactly these proportions.
PAPER_SWEEP = tuple(round(0.1 * i, 1) for i in range(1, 10))


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
