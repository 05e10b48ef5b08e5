"""Build the leaderboard from result records alone: Markdown, CSV and a static HTML page.

Outputs under ``--out`` (default ``leaderboard/site``)::

    leaderboard.md                 every table (one section per dataset and setting)
    leaderboard.csv                the aggregated frame: one line per row and known proportion (+ "ave")
    tables/<dataset>__<setting>.md one Markdown section per dataset and setting
    tables/<dataset>__<setting>.csv
    index.html                     self-contained page: sortable tables, SVG plots, vs-published

Nothing is retrained; records are found by :func:`.discover.discover` in one or several
folders and every number comes from the long-form frame (:mod:`.frame`, :mod:`.aggregate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pandas as pd

from mlrpl_bench.atomic import replace_folder
from mlrpl_bench.errors import BenchError
from mlrpl_bench.metrics import METRIC_SPECS

from . import stats
from .aggregate import (DEFAULT_BASELINE, SUMMARY_METRICS, TUNING_FLAG, Row, Table, aggregated_frame, build_tables,
                        check_baseline)
from .discover import discover
from .export import defuse_formulas
from .frame import records_frame
from .html import KIND_TEXT, render_page
from .identity import budget_details
from .reference import AVERAGE, ReferenceIndex, load_reference
from .submit import default_results_dir, path_component
from .truth import check_against_truth, implausibility, shared_masks

DEFAULT_OUT_DIR = Path("leaderboard") / "site"


@dataclass
class BuildResult:
    out_dir: Path
    tables: list[Table]
    n_records: int
    files: list[Path]
    skipped: str = ""


def md_escape(text) -> str:
    """Text safe inside a Markdown table cell (renderers pass inline HTML through)."""
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
            .replace("\n", " ").replace("`", "\\`"))


def _known_label(known: float) -> str:
    return f"{known * 100:g}%"


def cell_text(stat, versus=None) -> str:
    """``45.4 ± 2.3 ▲``: mean ± half-width of the 95 % interval, then the mark against the baseline."""
    text = stat.text() if stat is not None else "–"
    return text + (f" {stats.MARK_SYMBOL[versus.mark]}" if versus is not None and versus.mark else "")


def mde_text(versus) -> str:
    """``8.3 (53)``: the comparison's MDE and the seeds a 1-point MDE would need (``8.3 (∞, floor 1.4)``
    when none would); ``–`` without a comparison."""
    if versus is None or versus.mde is None:
        return "–"
    seeds = str(versus.seeds_needed) if versus.seeds_needed is not None else f"∞, floor {versus.mde_floor:.1f}"
    return f"{versus.mde:.1f} ({seeds})"


def _line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown_table(table: Table) -> str:
    """One dataset/setting: the main table, paired differences, frequency bins, the papers, protocols and budgets."""
    head = ["Method", "Run", "Budget", *(_known_label(k) for k in table.knowns),
            *(METRIC_SPECS[m].average_header for m in SUMMARY_METRICS), "Seeds"]
    lines = [f"## {md_escape(table.dataset)} · {md_escape(table.setting)}", "", _line(head),
             "|" + "|".join(["---"] * 3 + ["---:"] * (len(head) - 3)) + "|"]
    for row in table.rows:
        flags = (" (baseline)" if row.is_baseline else "") + (" (other mask)" if row.deviant_mask else "") + \
            (" (dirty)" if row.dirty else "") + (f" ({TUNING_FLAG})" if row.tuning_warnings else "") + \
            (" ✔ verified" if row.kind == "verified" else
             f" ({row.verified_runs}/{len(row.runs)} runs verified)" if row.kind == "partly verified" else "")
        cells = [md_escape(row.method) + flags, md_escape(row.detail), f"`{row.budget_id}` {md_escape(row.budget_label)}"]
        cells += [cell_text(row.cells[k]["mAP"], row.versus.get(k)) if k in row.cells else "–" for k in table.knowns]
        cells += [cell_text(row.average[m], row.versus.get(AVERAGE) if m == "mAP" else None) for m in SUMMARY_METRICS]
        cells.append(str(len(row.seeds)))
        lines.append(_line(cells))
    lines += ["", *(f"- {md_escape(text)}" for text in stats.explanation(table.baseline))]
    lines += [f"- ✔ {md_escape(KIND_TEXT)}"]
    versus_rows = [row for row in table.rows if row.versus]
    if versus_rows:
        lines += ["", f"Paired differences against {md_escape(table.baseline)} (mAP points, 95 % interval, mark):", "",
                  _line(["Method", "Run", "Compares", *(_known_label(k) for k in table.knowns), "Ave."]),
                  "|" + "|".join(["---"] * 3 + ["---:"] * (len(table.knowns) + 1)) + "|"]
        for row in versus_rows:
            cells = [md_escape(row.method), md_escape(row.detail), md_escape(row.compared_kinds)]
            for k in [*table.knowns, AVERAGE]:
                v = row.versus.get(k)
                cells.append("–" if v is None else f"{v.text()} {stats.MARK_SYMBOL.get(v.mark, '')}".rstrip())
            lines.append(_line(cells))
    resolution_rows = [row for row in table.rows if row.has_baseline]
    if resolution_rows:
        lines += ["", f"Resolution against {md_escape(table.baseline)}: minimum detectable effect (mAP points; "
                  f"α {1 - stats.LEVEL:.2g}, power {stats.POWER:g}) and, in brackets, the seeds an MDE of "
                  f"{stats.TARGET_MDE:g} would need (∞: not reachable by seeds on this test set; the floor is the MDE "
                  "infinitely many seeds would leave; –: fewer than 2 paired seeds, no MDE):", "",
                  _line(["Method", "Run", "Seeds", *(_known_label(k) for k in table.knowns), "Ave."]),
                  "|" + "|".join(["---"] * 2 + ["---:"] * (len(table.knowns) + 2)) + "|"]
        for row in resolution_rows:
            cells = [md_escape(row.method), md_escape(row.detail), str(len(row.seeds))]
            cells += [mde_text(row.versus.get(k)) for k in [*table.knowns, AVERAGE]]
            lines.append(_line(cells))
    warned = [row for row in table.rows if row.tuning_warnings]
    if warned:
        lines += ["", f"Tuning warnings ({TUNING_FLAG}; the chosen value at an edge of the grid, or the first epoch "
                  "selected):", ""]
        lines += [f"- {md_escape(row.method)} ({md_escape(row.detail)}) at {_known_label(k)}: {md_escape(w)}"
                  for row in warned for k in sorted(row.tuning_warnings) for w in row.tuning_warnings[k]]
    private = [(row, row.private_draw()) for row in table.rows if row.private_draw() is not None]
    if private:
        lines += ["", "The private test draw (verified runs; a test split only the leaderboard's runner can draw):", "",
                  _line(["Method", "Run", "Runs", "Public test mAP", "Private test mAP", "Private − public"]),
                  "|---|---|---:|---:|---:|---:|"]
        lines += [_line([md_escape(row.method), md_escape(row.detail), str(n), f"{pub:.1f}", f"{priv:.1f}",
                         f"{priv - pub:+.1f}"]) for row, (n, pub, priv) in private]
    bin_rows = [row for row in table.rows if AVERAGE in row.bins]
    if bin_rows:
        lines += ["", "mAP by class frequency (Ave. over proportions; classes ranked by known training positives):", "",
                  _line(["Method", "Run", *stats.BINS]), "|---|---|" + "---:|" * len(stats.BINS)]
        lines += [_line([md_escape(row.method), md_escape(row.detail), *(s.text() for s in row.bins[AVERAGE])])
                  for row in bin_rows]
    comparison = [_line([
        md_escape(c.row.method), md_escape(c.row.protocol_id), "Ave." if c.known == AVERAGE else _known_label(c.known),
        c.metric, c.reproduced.text() if c.reproduced else "–", f"{c.published.metric(c.metric):.1f}",
        "–" if c.gap is None else f"{c.gap:+.1f}", md_escape(c.published.source)]) for c in table.comparisons()]
    if comparison:
        lines += ["", "Reproduced vs published:", "",
                  "| Method | Protocol | Known | Metric | Reproduced | Published | Gap | Source |",
                  "|---|---|---:|---|---:|---:|---:|---|", *comparison]
    lines += ["", "Protocols: " + "; ".join(
        f"`{md_escape(pid)}` = scheme {md_escape(sig.get('scheme'))}, val fraction {md_escape(sig.get('val_fraction'))}, "
        f"dataset {md_escape(str(sig.get('dataset_fingerprint', {}).get('train', ''))[:12])}"
        for pid, sig in sorted(table.protocols.items()))]
    lines += ["", "Budgets: " + "; ".join(f"`{bid}` = {md_escape(budget_details(b))}" for bid, b in sorted(table.budgets.items()))]
    lines += [f"- {md_escape(n)}" for n in table.notes]
    return "\n".join(lines) + "\n"


def readme_table(table: Table, keep: Callable[[Row], bool] = lambda row: True) -> str:
    """The README's results table: one line per kept row, mAP per proportion, Ave. mAP (bold), its MDE
    against the baseline (:func:`mde_text`), Avg. OF1/CF1.

    Cells are :func:`cell_text`; the budget is a column when the rows differ in it, else the
    closing line. That line also says what ± and the marks mean.
    """
    rows = [row for row in table.rows if keep(row)]
    several = len({row.budget_id for row in rows}) > 1
    head = ["method", *(["budget"] if several else []), *(_known_label(k) for k in table.knowns), "Ave. mAP",
            "Ave. MDE (seeds for 1)", "Avg. OF1", "Avg. CF1"]
    lines = [_line(head), "|" + "|".join(["---"] * (2 if several else 1) + ["---:"] * (len(head) - (2 if several else 1))) + "|"]
    for row in rows:
        cells = [f"`{md_escape(row.method)}`", *([md_escape(row.budget_label)] if several else [])]
        cells += [cell_text(row.cells.get(k, {}).get("mAP"), row.versus.get(k)) for k in table.knowns]
        ave = cell_text(row.average["mAP"], row.versus.get(AVERAGE))
        cells += [f"**{ave}**" if row.average["mAP"].mean is not None else ave, mde_text(row.versus.get(AVERAGE))]
        cells += [cell_text(row.average[m]) for m in ("OF1", "CF1")]
        lines.append(_line(cells))
    seeds = sorted({len(row.seeds) for row in rows})
    legend = (f"Test mAP (%), mean over {'/'.join(map(str, seeds))} seed(s)"
              f"{' ± the half-width of its 95 % interval' if max(seeds, default=1) > 1 else ''}; "
              f"{stats.MARK_SYMBOL[stats.BETTER]} / {stats.MARK_SYMBOL[stats.WORSE]} / {stats.MARK_SYMBOL[stats.TIE]}: better / "
              f"worse / tie against `{table.baseline}` (paired over seeds, Benjamini-Hochberg q ≤ {stats.ALPHA}); "
              f"Ave. MDE: the smallest true difference in Ave. mAP from `{table.baseline}` that the table detects with "
              f"probability {stats.POWER:g}, and the seeds an MDE of {stats.TARGET_MDE:g} would need (a tie smaller than "
              "the MDE is undecided, not equal).")
    if not several and rows:
        legend += f" Budget of every row: {md_escape(rows[0].budget_text)}."
    return "\n".join(lines) + "\n\n" + legend + "\n"


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    """The aggregated frame as CSV, with text cells that look like formulas defused."""
    if frame.empty:
        return b""
    return defuse_formulas(frame).to_csv(index=False, lineterminator="\n", float_format="%.4f").encode()


def _refuse_foreign_files(out_dir: Path) -> None:
    """Refuse an ``--out`` folder holding anything a build does not write: the build replaces the folder whole."""
    if not out_dir.is_dir():
        return
    for path in sorted(out_dir.rglob("*")):
        relative = path.relative_to(out_dir)
        ours = (str(relative) in ("leaderboard.md", "leaderboard.csv", "index.html", "tables")
                or (relative.parts[0] == "tables" and len(relative.parts) == 2 and path.suffix in (".md", ".csv")))
        if not ours or path.is_symlink():
            raise BenchError(f"--out {out_dir}: holds {relative}, which a build does not write; the build replaces the "
                             "folder as a whole, so choose an empty folder or a previous build's own")


def _flag_implausible(found, tables: list[Table]) -> None:
    """Notes on the tables of records an honest run would hardly make (:mod:`.truth`)."""
    by_table = {(t.dataset, t.setting): t for t in tables}
    for item in found.records:
        rec = item.record
        for why in implausibility(rec):
            table = by_table.get((rec["dataset"]["name"], rec["protocol"]["setting"]))
            if table is not None:
                table.notes.append(f"implausible: {rec['run_id']} ({item.path.name}): {why}")
    records = [item.record for item in found.records]
    for fingerprint, knowns in shared_masks(records).items():
        rec = next(r for r in records if r["protocol"]["mask_fingerprint"] == fingerprint)
        table = by_table.get((rec["dataset"]["name"], rec["protocol"]["setting"]))
        if table is not None:
            table.notes.append(f"implausible: mask {fingerprint[:12]} is filed at several proportions "
                               f"({', '.join(f'{k:g}' for k in knowns)}); a protocol mask depends on the proportion")


def build_leaderboard(results_dir=None, out_dir: str | Path = DEFAULT_OUT_DIR, *,
                      reference: ReferenceIndex | None = None, generated: datetime | None = None,
                      baseline: str = DEFAULT_BASELINE, explicit_baseline: bool = False) -> BuildResult:
    """Read every record under ``results_dir`` (one folder or a list; default :func:`.submit.default_results_dir`)
    and write the Markdown, CSV and HTML outputs.

    :raises BenchError: for a record the leaderboard's own truth refutes (:func:`.truth.check_against_truth`:
        a scores file missing, changed or not giving the record's metrics on the dataset's labels, a mask
        that is not the protocol's).
    """
    out_dir = Path(out_dir)
    results_dir = default_results_dir() if results_dir is None else results_dir
    found = discover(results_dir if isinstance(results_dir, (list, tuple)) else [results_dir])
    for item in found.records:  # the leaderboard's own labels and masks, never the submitted ones
        check_against_truth(item.path, item.record)
    frame = records_frame(found)
    if reference is None:
        reference = ReferenceIndex(load_reference())
    tables = build_tables(frame, reference, baseline=baseline)
    _flag_implausible(found, tables)
    if explicit_baseline:
        check_baseline(tables, baseline)
    generated = generated or datetime.now(timezone.utc)
    n_records = len(found.records)
    skipped = found.skipped_text()
    files: dict[Path, bytes] = {}
    sections = [markdown_table(t) for t in tables]
    header = (f"# mlrpl-bench leaderboard\n\nBuilt from {n_records} result record(s) on "
              f"{generated.isoformat(timespec='seconds')}{'; ' + skipped if skipped else ''}. Test metrics in %.\n\n")
    files[out_dir / "leaderboard.md"] = (header + ("\n".join(sections) if sections else "No result records yet.\n")).encode()
    aggregated = aggregated_frame(tables)
    for table, section in zip(tables, sections):
        name = f"{path_component(table.dataset)}__{path_component(table.setting)}"
        files[out_dir / "tables" / f"{name}.md"] = section.encode()
        mine = aggregated[(aggregated["dataset"] == table.dataset) & (aggregated["setting"] == table.setting)]
        files[out_dir / "tables" / f"{name}.csv"] = _csv_bytes(mine)
    files[out_dir / "leaderboard.csv"] = _csv_bytes(aggregated)
    files[out_dir / "index.html"] = render_page(tables, n_records=n_records, generated=generated, reference=reference,
                                                baseline=baseline, skipped=skipped).encode()
    _refuse_foreign_files(out_dir)
    # The whole site is swapped in at once: never new tables beside an old index.html.
    replace_folder(out_dir, {str(path.relative_to(out_dir)): data for path, data in files.items()})
    return BuildResult(out_dir, tables, n_records, list(files), skipped)
