"""The papers' published numbers (``leaderboard/reference/*.csv``) as typed rows.

One CSV per paper, one row per number group of a comparison table: a method's mAP at one known
proportion, or the table's "Ave." column (``known = ave``: Ave. mAP, Avg. OF1, Avg. CF1 — the
mean over the known proportions 10%..90%). Empty cells mean the paper gives no number ("-" or
the metric is not in that table). ``reference/README.md`` describes every column.

Pure Python + csv: the leaderboard joins these rows to reproduced results by plugin name,
dataset, setting and known proportion (:class:`ReferenceIndex`); nothing here imports torch,
a plugin or the engine.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from mlrpl_bench.errors import BenchError
from mlrpl_bench.vocabulary import SETTINGS, known_text

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"

#: Columns of every reference CSV, in order.
FIELDS = ("paper", "table", "dataset", "setting", "backbone", "method", "plugin", "variant",
          "known", "mAP", "OF1", "CF1", "note")

REFERENCE_METRICS = ("mAP", "OF1", "CF1")
#: The literal in the ``known`` column that marks a table's "Ave." column.
AVERAGE = "ave"

#: The paper that introduced a plugin's method: its own numbers are preferred when several
#: papers report the same cell.
HOME_PAPER = {"sst": "SST", "hst": "HST", "dsrb": "DSRB", "ipl": "IPL"}

#: The main comparison tables; ablation tables repeat some of their rows and are only used
#: when no main table has the cell.
MAIN_TABLES = frozenset({
    ("SST", "Table 1"), ("HST", "Table 1"), ("HST", "Table 2"), ("DSRB", "Table 1"),
    ("IPL", "TABLE III"), ("IPL", "TABLE IV"), ("IPL", "TABLE V"), ("IPL", "TABLE VI"),
})

#: Tie-break between papers for baselines that several report (newest of the SST/HST/DSRB
#: group first; IPL uses another backbone and protocol, so it comes last for shared cells).
PAPER_RANK = {"DSRB": 0, "HST": 1, "SST": 2, "IPL": 3}


@dataclass(frozen=True)
class ReferenceRow:
    """One published number group: a method's metrics at one known proportion (or the Ave.)."""

    paper: str
    table: str
    dataset: str
    setting: str
    backbone: str
    method: str           # as printed in the paper
    plugin: str           # registry name of the method in this suite ("" when none)
    variant: str          # ablation as plugin option constraints "key=value;..." ("" = the method as published)
    known: float | None   # known proportion; None on "Ave." rows and for SPL
    is_average: bool      # True for the table's "Ave." column
    mAP: float | None
    OF1: float | None
    CF1: float | None
    note: str
    file: str = ""
    line: int = 0

    @property
    def source(self) -> str:
        """Human-readable provenance, e.g. ``HST Table 1``."""
        return f"{self.paper} {self.table}"

    def metric(self, name: str) -> float | None:
        return getattr(self, name)


def known_key(known: float | None) -> str:
    """The canonical text of a known proportion used to join rows ("0.3", "1", "ave" ...)."""
    return "" if known is None else known_text(known)


def parse_variant(text: str) -> list[dict[str, str]]:
    """Option constraints of an ablation: alternatives separated by ``|``, each a set of
    ``option=value`` pairs separated by ``;``.

    ``"ablation=ist-only | modules=ist"`` -> ``[{"ablation": "ist-only"}, {"modules": "ist"}]``
    (a run matches when its options satisfy any alternative).
    """
    alternatives = []
    for alternative in filter(None, (a.strip() for a in text.split("|"))):
        out = {}
        for part in filter(None, (p.strip() for p in alternative.split(";"))):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise BenchError(f"variant {text!r}: expected 'option=value' pairs separated by ';' (alternatives by '|')")
            out[key.strip()] = value.strip()
        alternatives.append(out)
    return alternatives


def option_text(value) -> str:
    """An option value as the reference CSVs write it (booleans lower-case, numbers with %g)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"{value:g}"
    return str(value)


def _parse_number(text: str, where: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise BenchError(f"{where}: {text!r} is not a number; write the value as printed, or leave the cell empty") from None
    if not math.isfinite(value) or not 0 <= value <= 100:
        raise BenchError(f"{where}: {value} is not a percentage in [0, 100]")
    return value


def _parse_row(raw: dict, file: str, line: int) -> ReferenceRow:
    where = f"{file}:{line}"
    for name in ("paper", "table", "dataset", "setting", "method"):
        if not (raw.get(name) or "").strip():
            raise BenchError(f"{where}: column {name!r} is empty; every row names its paper, table, dataset, setting and method")
    setting = raw["setting"].strip()
    if setting not in SETTINGS:
        raise BenchError(f"{where}: column 'setting' is {setting!r}; expected one of {', '.join(SETTINGS)}")
    known_text = raw["known"].strip()
    is_average = known_text == AVERAGE
    known: float | None = None
    if known_text and not is_average:
        try:
            known = float(known_text)
        except ValueError:
            raise BenchError(f"{where}: column 'known' is {known_text!r}; expected a proportion in (0, 1], {AVERAGE!r} or empty (SPL)") from None
        if not 0 < known <= 1:
            raise BenchError(f"{where}: column 'known' is {known}; expected a proportion in (0, 1]")
    elif not known_text and setting != "spl":
        raise BenchError(f"{where}: column 'known' is empty; only SPL rows have no known proportion")
    values = {m: _parse_number(raw[m] or "", f"{where} column {m!r}") for m in REFERENCE_METRICS}
    try:
        parse_variant(raw["variant"] or "")
    except BenchError as exc:
        raise BenchError(f"{where}: column 'variant': {exc}") from None
    return ReferenceRow(
        paper=raw["paper"].strip(), table=raw["table"].strip(), dataset=raw["dataset"].strip(),
        setting=setting, backbone=(raw["backbone"] or "").strip(), method=raw["method"].strip(),
        plugin=(raw["plugin"] or "").strip(), variant=(raw["variant"] or "").strip(), known=known,
        is_average=is_average, note=(raw["note"] or "").strip(), file=file, line=line, **values,
    )


def read_reference_csv(path: str | Path) -> list[ReferenceRow]:
    """Read one reference CSV, checking its header and every cell."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != FIELDS:
            raise BenchError(f"{path}: header is {reader.fieldnames}; expected the columns {', '.join(FIELDS)}")
        # DictReader's line_num counts physical lines; a quoted note never spans lines here.
        return [_parse_row(raw, path.name, reader.line_num) for raw in reader]


def load_reference(directory: str | Path | None = None) -> list[ReferenceRow]:
    """All rows of every ``*.csv`` in ``directory`` (default: the packaged reference data)."""
    directory = Path(directory) if directory is not None else REFERENCE_DIR
    files = sorted(directory.glob("*.csv"))
    if not files:
        raise BenchError(f"{directory}: no reference CSV files found")
    rows: list[ReferenceRow] = []
    for path in files:
        rows.extend(read_reference_csv(path))
    return rows


def _priority(row: ReferenceRow) -> tuple:
    return (row.paper != HOME_PAPER.get(row.plugin), (row.paper, row.table) not in MAIN_TABLES,
            PAPER_RANK.get(row.paper, 99), row.file, row.line)


class ReferenceIndex:
    """Published numbers keyed by (plugin, variant, dataset, setting, known) for the leaderboard join.

    A reproduced row is matched to a published ablation when its method options satisfy that
    ablation's constraints (``variant``: e.g. ``modules=ist;ist_loss=false``); the most specific
    matching ablation wins, a tie between different ablations matches none, and a row that
    matches no ablation is compared with the method as published. When several papers report
    a cell, the method's own paper wins, then main comparison tables over ablation tables, then
    :data:`PAPER_RANK`.
    """

    def __init__(self, rows: Iterable[ReferenceRow]):
        self.rows: list[ReferenceRow] = list(rows)
        self._cells: dict[tuple[str, str, str, str, str], list[ReferenceRow]] = {}
        self._variants: dict[str, dict[str, list[dict[str, str]]]] = {}
        for row in self.rows:
            if not row.plugin:
                continue
            if row.variant:
                self._variants.setdefault(row.plugin, {})[row.variant] = parse_variant(row.variant)
            key = (row.plugin, row.variant, row.dataset, row.setting,
                   AVERAGE if row.is_average else known_key(row.known))
            self._cells.setdefault(key, []).append(row)
        for candidates in self._cells.values():
            candidates.sort(key=_priority)

    def resolve_variant(self, plugin: str, options: dict) -> str | None:
        """The published ablation a run with these options reproduces: "" for the method as
        published, a variant string, or None when it has no published counterpart (its options
        match several ablations equally, or name an ``ablation`` preset no paper reports)."""
        given = {k: option_text(v) for k, v in (options or {}).items()}
        matches = []
        for variant, alternatives in self._variants.get(plugin, {}).items():
            sizes = [len(c) for c in alternatives if all(given.get(k) == val for k, val in c.items())]
            if sizes:
                matches.append((max(sizes), variant))
        if not matches:
            # Plugins with an explicit ``ablation`` preset option: a preset that matched no
            # published row is not the method as published either.
            return "" if not given.get("ablation") else None
        best = max(n for n, _ in matches)
        top = [v for n, v in matches if n == best]
        return top[0] if len(top) == 1 else None

    def lookup(self, plugin: str, dataset: str, setting: str, known: float | str | None,
               metric: str = "mAP", variant: str = "") -> ReferenceRow | None:
        """The preferred published row that gives ``metric`` for this cell, or None.

        ``known`` is a proportion, ``"ave"`` for the mean over proportions, or None (SPL).
        """
        key_known = known if known == AVERAGE else known_key(known)  # type: ignore[arg-type]
        if setting == "spl":
            key_known = ""  # SPL has one positive per image, not a proportion
        for row in self._cells.get((plugin, variant, dataset, setting, key_known), ()):
            if row.metric(metric) is not None:
                return row
        return None

    def value(self, plugin: str, dataset: str, setting: str, known, metric: str = "mAP",
              variant: str = "") -> float | None:
        row = self.lookup(plugin, dataset, setting, known, metric, variant)
        return None if row is None else row.metric(metric)

    def plugins(self) -> set[str]:
        return {key[0] for key in self._cells}


def published_table(rows: Iterable[ReferenceRow], dataset: str, setting: str) -> list[dict]:
    """Every competitor of the main comparison tables for one dataset and setting.

    One entry per method (baselines shared by several papers appear once; each cell comes from
    the preferred source, as in :class:`ReferenceIndex`): ``{"method", "plugin", "backbone",
    "sources", "known": {proportion: mAP}, "ave": {metric: value}}``.
    """
    out: dict[tuple[str, str], dict] = {}
    chosen = [r for r in rows if r.dataset == dataset and r.setting == setting and not r.variant
              and (r.paper, r.table) in MAIN_TABLES]
    for row in sorted(chosen, key=_priority):
        entry = out.setdefault((row.plugin or row.method, row.backbone), {
            "method": row.plugin or row.method, "plugin": row.plugin, "backbone": row.backbone,
            "sources": [], "known": {}, "ave": {}})
        used = False
        if row.is_average:
            for m in REFERENCE_METRICS:
                if row.metric(m) is not None and m not in entry["ave"]:
                    entry["ave"][m] = row.metric(m)
                    used = True
        elif row.mAP is not None:
            known = row.known if row.known is not None else 1.0
            if known not in entry["known"]:
                entry["known"][known] = row.mAP
                used = True
        if used and row.source not in entry["sources"]:
            entry["sources"].append(row.source)
    return sorted((e for e in out.values() if e["known"] or e["ave"]),
                  key=lambda e: (-(e["ave"].get("mAP") or 0), e["method"]))


def default_index() -> ReferenceIndex:
    """The index over the packaged reference data."""
    return ReferenceIndex(load_reference())
