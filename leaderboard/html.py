"""The leaderboard as one self-contained static HTML page.

Everything is inline (CSS, a small script for sortable tables, SVG plots drawn in Python by
:mod:`.plots`): the page works from ``file://`` without any network. Every string that comes from a
record is HTML-escaped, and a Content-Security-Policy allows only this module's own script and
style (by hash), so a method name such as ``<script>alert(1)</script>`` renders as text and
could not run even if escaping were ever missed.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timezone

from mlrpl_bench.metrics import METRIC_SPECS

from . import stats
from .aggregate import SUMMARY_METRICS, TUNING_FLAG, Row, Table
from .plots import esc, family_panels, gap_plot, known_label
from .reference import AVERAGE, ReferenceIndex, published_table

#: What the verified / self-reported marks mean (the page's header and the Markdown legend).
KIND_TEXT = ("verified: every run of the row was re-executed by the leaderboard's runner and reproduced "
             "(mlrpl-bench leaderboard verify --stamp); other rows are self-reported. Rows are ranked together "
             "whatever their kind; each paired comparison names the kinds it compares (row vs baseline).")

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans",sans-serif;margin:0;color:#1b1b1b;background:#fafafa}
header,main{max-width:1480px;margin:0 auto;padding:0 12px}
header{padding-top:16px}
h1{font-size:22px;margin:8px 0}
h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:16px 0 6px}
nav a{margin-right:12px}
table{border-collapse:collapse;background:#fff;margin:6px 0 12px;font-variant-numeric:tabular-nums}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:right;white-space:nowrap}
th:first-child,td:first-child,td.text,th.text{text-align:left}
thead th{background:#f0f0f0;position:sticky;top:0}
th button{font:inherit;font-weight:600;border:0;background:none;cursor:pointer;padding:0}
th[aria-sort=ascending] button::after{content:" \\25B2"}
th[aria-sort=descending] button::after{content:" \\25BC"}
td small{color:#666;display:block;font-size:11px}
td.missing{color:#aaa}
table.main{font-size:13px}table.main th,table.main td{padding:3px 5px}
table.main td:first-child{white-space:normal;min-width:8em;max-width:12em}
td small.mde{color:#555;white-space:normal;font-size:10px}
table.main td:first-child small{font-size:10px}
.gap-pos{color:#1a7f37}.gap-neg{color:#b42318}
.badge{font-size:11px;border-radius:3px;padding:0 4px;margin-left:4px;background:#fff3cd;color:#7a5b00}
figure{margin:8px 0;background:#fff;border:1px solid #ddd;display:inline-block}
figcaption{font-size:12px;color:#555;padding:4px 8px}
details{margin:6px 0 12px}summary{cursor:pointer;color:#333}
.note{color:#555;font-size:12px}
code{font-size:12px}
.scroll{overflow-x:auto;max-width:100%}
.mark{font-size:11px;margin-left:3px}.mark-better{color:#1a7f37}.mark-worse{color:#b42318}.mark-tie{color:#888}
.budget{font-size:11px;color:#444;cursor:help;border-bottom:1px dotted #888}
.panels{display:flex;flex-wrap:wrap;gap:8px}.panels figure{max-width:422px}
svg.panel:hover g.series{opacity:.25}svg.panel:hover g.series:hover{opacity:1}
svg.panel g.series:hover polyline{stroke-width:3.5}
ul.rules li{margin:4px 0}
"""

SCRIPT = """
(function () {
  "use strict";
  function cellValue(row, index, numeric) {
    var cell = row.cells[index];
    var raw = cell ? cell.getAttribute("data-value") : null;
    if (numeric) {
      var v = raw === null || raw === "" ? NaN : parseFloat(raw);
      return isNaN(v) ? null : v;
    }
    return raw === null ? (cell ? cell.textContent : "") : raw;
  }
  function sortTable(table, index, th) {
    var numeric = th.getAttribute("data-type") === "num";
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, index, numeric), y = cellValue(b, index, numeric);
      if (x === null && y === null) return 0;
      if (x === null) return 1;   /* missing values always last */
      if (y === null) return -1;
      var c = numeric ? x - y : String(x).localeCompare(String(y));
      return ascending ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      var button = th.querySelector("button");
      if (button) button.addEventListener("click", function () { sortTable(table, index, th); });
    });
  });
  document.documentElement.setAttribute("data-lb-ready", String(tables.length));
})();
"""


def _csp_hash(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()



def _stat_cell(stat, versus=None, extra_class: str = "", resolution: bool = False, compact: bool = False,
               compared: bool = False, kinds: str = "") -> str:
    """A statistic's cell; with ``resolution``, a second line: the difference to the baseline and its
    MDE (``compared``: the row has a baseline); ``compact``: the mean alone (the interval on hover);
    ``kinds``: what the comparison compares (e.g. "verified vs self-reported"), said on hover."""
    if stat is None or stat.mean is None:
        return f'<td class="missing {extra_class}" data-value="">–</td>'
    title = stat.detail() + (f"; vs baseline{f' ({kinds})' if kinds else ''} {versus.detail()}"
                             if versus is not None else "")
    text = f"{stat.mean:.1f}" if compact else stat.text()
    return (f'<td class="{extra_class}" data-value="{stat.mean:.6f}" title="{esc(title)}">{esc(text)}'
            f'{_mark(versus)}{_resolution_line(versus, compared) if resolution else ""}</td>')


def _resolution_line(versus, compared: bool = False) -> str:
    """``Δ +7.2 · MDE 6.2`` under a cell compared with the baseline; ``MDE n/a`` where the row has a
    baseline but fewer than 2 paired seeds here; nothing for a row without a baseline."""
    if versus is None or versus.mde is None:
        return ('<small class="mde" data-mde="" title="fewer than 2 seeds paired with the baseline: the minimum '
                'detectable effect is undefined">MDE n/a</small>' if compared else "")
    # no-break spaces: a narrow column wraps the line at the "·" only
    return f'<small class="mde" data-mde="{versus.mde:.6f}">Δ\u00a0{versus.diff:+.1f} · MDE\u00a0{versus.mde:.1f}</small>'


def _mark(versus) -> str:
    if versus is None or not versus.mark:
        return ""
    return (f'<span class="mark mark-{esc(versus.mark)}" data-mark="{esc(versus.mark)}">'
            f'{esc(stats.MARK_SYMBOL[versus.mark])}</span>')


def _method_cell(row: Row, budget_differs: bool = False) -> str:
    """Name, badges (baseline, other mask, dirty, tuning warnings), the run's detail and, when
    ``budget_differs`` from the table's common budget, the row's budget badge."""
    badges = ""
    if row.is_baseline:
        badges += '<span class="badge" title="the rows are compared with this one">baseline</span>'
    if row.deviant_mask:
        badges += '<span class="badge" title="this run used a different mask than the other runs of its protocol">other mask</span>'
    if row.dirty:
        badges += '<span class="badge" title="produced from modified code (code_version ends in +dirty)">dirty</span>'
    if row.tuning_warnings:
        warnings = "; ".join(f"{known_label(k)}: {w}" for k in sorted(row.tuning_warnings) for w in row.tuning_warnings[k])
        badges += f'<span class="badge tuning-warning" title="{esc(warnings)}">{esc(TUNING_FLAG)}</span>'
    if row.kind == "verified":
        badges += ('<span class="badge verified" data-kind="verified" title="every run re-executed and reproduced by '
                   'the leaderboard\'s runner">verified</span>')
    elif row.kind == "partly verified":
        badges += (f'<span class="badge" data-kind="partly verified" title="{row.verified_runs} of {len(row.runs)} runs '
                   f're-executed and reproduced by the leaderboard\'s runner">{row.verified_runs}/{len(row.runs)} '
                   'verified</span>')
    options = esc(", ".join(f"{k}={v}" for k, v in sorted(row.options.items()))) or "defaults"
    budget = f" {_budget_badge(row)}" if budget_differs else ""
    return (f'<td class="text" data-value="{esc(row.method)}" title="options: {options}">{esc(row.method)}{badges}'
            f'<small>{esc(row.detail)}{budget}</small></td>')


def _budget_badge(row: Row) -> str:
    return (f'<span class="budget" data-budget="{esc(row.budget_id)}" title="{esc(row.budget_text)}">'
            f'{esc(row.budget_label)}</span>')


def _budget_cell(row: Row) -> str:
    return f'<td class="text" data-value="{esc(row.budget_label)}">{_budget_badge(row)}</td>'


def common_budget(table: Table) -> str:
    """The budget id most rows share (ties: the smallest id); '' for a table without rows."""
    counts: dict[str, int] = {}
    for row in table.rows:
        counts[row.budget_id] = counts.get(row.budget_id, 0) + 1
    return min(counts, key=lambda b: (-counts[b], b)) if counts else ""


def _head(*columns: tuple[str, str]) -> str:
    return "".join(f'<th class="{"text" if kind == "text" else ""}" data-type="{kind}"><button type="button">{esc(name)}'
                   f'</button></th>' for name, kind in columns)


def _row_attrs(row: Row) -> str:
    return (f'data-method="{esc(row.method)}" data-protocol="{esc(row.protocol_id)}" data-budget="{esc(row.budget_id)}" '
            f'data-family="{esc(row.family)}"')


def _main_table(table: Table) -> str:
    """Rows by Ave. mAP; each compared cell says its difference to the baseline and its MDE. The
    budget most rows share is the caption's (:func:`_budget_caption`); only a row with another
    budget shows its own, under its name. Avg. OF1 / CF1 show the mean (the interval on hover), so
    that the table fits 1,400 px without scrolling sideways."""
    common = common_budget(table)
    head = _head(("Method", "text"), *((known_label(k), "num") for k in table.knowns),
                 *((METRIC_SPECS[m].average_header, "num") for m in SUMMARY_METRICS), ("Seeds", "num"))
    body = []
    for row in table.rows:
        cells = [_method_cell(row, budget_differs=row.budget_id != common)]
        cells += [_stat_cell(row.cells.get(k, {}).get("mAP"), row.versus.get(k), resolution=True,
                             compared=row.has_baseline, kinds=row.compared_kinds) for k in table.knowns]
        cells += [_stat_cell(row.average.get(m), row.versus.get(AVERAGE) if m == "mAP" else None, resolution=m == "mAP",
                             compact=m != "mAP", compared=row.has_baseline, kinds=row.compared_kinds)
                  for m in SUMMARY_METRICS]
        cells.append(f'<td data-value="{len(row.seeds)}" title="seeds: {esc(", ".join(map(str, row.seeds)))}">{len(row.seeds)}</td>')
        body.append(f'<tr {_row_attrs(row)}>{"".join(cells)}</tr>')
    return (f'<table class="sortable main" data-table="{esc(table.key)}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _budget_caption(table: Table) -> str:
    """One line under the main table: the budget most rows share (and how many rows differ)."""
    common = common_budget(table)
    if not common:
        return ""
    row = next(r for r in table.rows if r.budget_id == common)
    others = sum(r.budget_id != common for r in table.rows)
    scope = "every row" if not others else f"every row without its own budget under its name ({others} have one)"
    return (f'<p class="note budget-caption" data-budget="{esc(common)}">Budget of {scope}: '
            f'<code>{esc(common)}</code> {esc(row.budget_text)}.</p>')


def _versus_table(table: Table) -> str:
    rows = [row for row in table.rows if row.versus]
    if not rows:
        return (f'<p class="note">No paired comparison: no row shares its protocol and budget with a '
                f'{esc(table.baseline)} row on at least 2 seeds.</p>')
    columns = [*table.knowns, AVERAGE]
    common = common_budget(table)
    head = _head(("Method", "text"), ("Compares", "text"),
                 *((known_label(k) if k != AVERAGE else "Ave.", "num") for k in columns))
    body = []
    for row in rows:
        cells = [_method_cell(row, budget_differs=row.budget_id != common),
                 f'<td class="text" data-value="{esc(row.compared_kinds)}">{esc(row.compared_kinds)}</td>']
        for k in columns:
            v = row.versus.get(k)
            seeds = f"{v.seeds_needed}\u00a0seeds" if v is not None and v.seeds_needed is not None else "∞"
            cells.append('<td class="missing" data-value="">–</td>' if v is None else
                         f'<td data-value="{v.diff:.6f}" data-mark="{esc(v.mark)}" title="{esc(v.detail())}">'
                         f'{v.diff:+.1f}{_mark(v)}<small class="mde" data-mde="{v.mde:.6f}" '
                         f'data-seeds-needed="{v.seeds_needed or ""}">MDE\u00a0{v.mde:.1f} · {seeds}</small></td>')
        body.append(f'<tr {_row_attrs(row)}>{"".join(cells)}</tr>')
    return (f'<table class="sortable versus" data-table="{esc(table.key)}-versus"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _tuning_warnings(table: Table) -> str:
    rows = [row for row in table.rows if row.tuning_warnings]
    if not rows:
        return ""
    items = "".join(f'<li data-method="{esc(row.method)}"><b>{esc(row.method)}</b> at {esc(known_label(k))}: {esc(w)}</li>'
                    for row in rows for k in sorted(row.tuning_warnings) for w in row.tuning_warnings[k])
    return (f'<details class="tuning-warnings"><summary>{esc(TUNING_FLAG)}: {len(rows)} row(s) chose a value at an edge '
            f'of the tuning grid or selected the first epoch</summary><ul class="note">{items}</ul></details>')


def _private_table(table: Table) -> str:
    """Public against private test mAP of the rows whose runs the runner scored on its private draw ("" when none)."""
    rows = [(row, row.private_draw()) for row in table.rows if row.private_draw() is not None]
    if not rows:
        return ""
    head = _head(("Method", "text"), ("Budget", "text"), ("Runs", "num"), ("Public test mAP", "num"),
                 ("Private test mAP", "num"), ("Private − public", "num"))
    body = "".join(
        f'<tr {_row_attrs(row)}>{_method_cell(row)}{_budget_cell(row)}<td data-value="{n}">{n}</td>'
        f'<td data-value="{pub:.6f}">{pub:.1f}</td><td data-value="{priv:.6f}">{priv:.1f}</td>'
        f'<td data-value="{priv - pub:.6f}">{priv - pub:+.1f}</td></tr>' for row, (n, pub, priv) in rows)
    return ('<h3>The private test draw (verified runs)</h3><p class="note">Test mAP on a test split drawn from a seed '
            'only the leaderboard\'s runner holds, beside the public split\'s: a method that knows the public test '
            f'images does not carry that over.</p><div class="scroll"><table class="sortable private" '
            f'data-table="{esc(table.key)}-private"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>')


def _bins_table(table: Table) -> str:
    rows = [row for row in table.rows if row.bins]
    if not rows:
        return ('<p class="note">No frequency bins: the records carry no per-class known positives '
                '(<code>protocol.per_class_known_positives</code>) and no protocol cache was found beside them.</p>')
    head = _head(("Method", "text"), ("Budget", "text"), *((f"{b} (Ave.)", "num") for b in stats.BINS),
                 *((f"{b} {known_label(k)}", "num") for k in table.knowns for b in stats.BINS))
    body = []
    for row in rows:
        cells = [_method_cell(row), _budget_cell(row)]
        cells += [_stat_cell(s) for s in row.bins.get(AVERAGE, [None] * len(stats.BINS))]
        cells += [_stat_cell(s) for k in table.knowns for s in row.bins.get(k, [None] * len(stats.BINS))]
        body.append(f'<tr {_row_attrs(row)}>{"".join(cells)}</tr>')
    return (f'<div class="scroll"><table class="sortable bins" data-table="{esc(table.key)}-bins"><thead><tr>{head}</tr>'
            f'</thead><tbody>{"".join(body)}</tbody></table></div>')


def _comparison_table(table: Table) -> str:
    lines = []
    for c in table.comparisons():
        row, known, metric, stat, ref, gap = c.row, c.known, c.metric, c.reproduced, c.published, c.gap
        label = "Ave." if known == AVERAGE else known_label(known)
        sort_known = 2.0 if known == AVERAGE else known
        gap_cls = "gap-pos" if gap is not None and gap >= 0 else "gap-neg"
        gap_cell = ('<td class="missing" data-value="">–</td>' if gap is None else
                    f'<td class="{gap_cls}" data-value="{gap:.6f}">{gap:+.1f}</td>')
        note = f' title="{esc(ref.note)}"' if ref.note else ""
        lines.append(
            f'<tr data-method="{esc(row.method)}">{_method_cell(row)}'
            f'<td data-value="{sort_known}">{esc(label)}</td><td class="text" data-value="{esc(metric)}">{esc(metric)}</td>'
            f'{_stat_cell(stat)}<td data-value="{ref.metric(metric):.6f}">{ref.metric(metric):.1f}</td>{gap_cell}'
            f'<td class="text" data-value="{esc(ref.source)}"{note}>{esc(ref.source)} <small>{esc(ref.method)}, {esc(ref.backbone)}</small></td></tr>')
    if not lines:
        return '<p class="note">No published numbers for these methods on this dataset and setting.</p>'
    head = _head(("Method", "text"), ("Known", "num"), ("Metric", "text"), ("Reproduced", "num"), ("Published", "num"),
                 ("Gap", "num"), ("Source", "text"))
    return (f'<table class="sortable comparison" data-table="{esc(table.key)}-vs-published"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(lines)}</tbody></table>')


def _published_table(table: Table, reference: ReferenceIndex | None) -> str:
    entries = published_table(reference.rows, table.dataset, table.setting) if reference is not None else []
    if not entries:
        return ""
    knowns = sorted({k for e in entries for k in e["known"]})
    head = _head(("Method (published)", "text"), ("Backbone", "text"), *((known_label(k), "num") for k in knowns),
                 *((METRIC_SPECS[m].average_header, "num") for m in SUMMARY_METRICS), ("Source", "text"))
    body = []
    for e in entries:
        cells = [f'<td class="text" data-value="{esc(e["method"])}">{esc(e["method"])}</td>',
                 f'<td class="text" data-value="{esc(e["backbone"])}">{esc(e["backbone"])}</td>']
        for value in [e["known"].get(k) for k in knowns] + [e["ave"].get(m) for m in SUMMARY_METRICS]:
            cells.append('<td class="missing" data-value="">–</td>' if value is None else
                         f'<td data-value="{value:.6f}">{value:.1f}</td>')
        cells.append(f'<td class="text" data-value="{esc(", ".join(e["sources"]))}">{esc(", ".join(e["sources"]))}</td>')
        body.append(f'<tr data-method="{esc(e["method"])}">{"".join(cells)}</tr>')
    return (f'<details><summary>Every method the papers report on {esc(table.dataset)} · {esc(table.setting)} '
            f'({len(entries)})</summary><div class="scroll"><table class="sortable published" data-table="{esc(table.key)}-published">'
            f'<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div></details>')


def _protocols(table: Table) -> str:
    items = []
    for pid, sig in sorted(table.protocols.items()):
        fp = sig.get("dataset_fingerprint", {})
        mask = f', mask <code>{esc(sig["mask_fingerprint"][:16])}…</code>' if "mask_fingerprint" in sig else ""
        items.append(f'<li><code>{esc(pid)}</code>: scheme <code>{esc(sig.get("scheme"))}</code>, validation fraction '
                     f'{esc(sig.get("val_fraction"))}, dataset train <code>{esc(str(fp.get("train", ""))[:12])}</code> / '
                     f'test <code>{esc(str(fp.get("test", ""))[:12])}</code>{mask}</li>')
    budgets = "".join(f'<li><code>{esc(bid)}</code>: {esc(next(r.budget_text for r in table.rows if r.budget_id == bid))}</li>'
                      for bid in sorted(table.budgets))
    return (f'<h3>Protocols</h3><ul class="protocols note">{"".join(items)}</ul>'
            f'<h3>Budgets</h3><ul class="budgets note">{budgets}</ul>')


def _section(t: Table, reference: ReferenceIndex | None) -> str:
    gap_svg = gap_plot(t)
    gap_figure = (f"<figure>{gap_svg}<figcaption>Reproduced minus published mAP (points).</figcaption></figure>"
                  if gap_svg else "")
    notes = "".join(f"<li>{esc(n)}</li>" for n in t.notes)
    methods = ", ".join(sorted(stats.INTERVAL_TEXT[m] for m in t.interval_methods)) or "none (one seed per cell)"
    return "".join([
        f'<section id="t-{esc(t.key)}" class="lb-section" data-dataset="{esc(t.dataset)}" data-setting="{esc(t.setting)}">',
        f'<h2>{esc(t.dataset)} · {esc(t.setting)}</h2>',
        f'<p class="note">Test mAP in %: mean over seeds ± the half-width of the 95 % interval (hover a cell for the '
        f'std, the interval and the comparison); intervals here: {esc(methods)}. '
        f'{esc(stats.MARK_SYMBOL[stats.BETTER])} / {esc(stats.MARK_SYMBOL[stats.WORSE])} / '
        f'{esc(stats.MARK_SYMBOL[stats.TIE])}: better / worse / tie against {esc(t.baseline)} at the same protocol and '
        'budget (<a href="#statistics">how</a>). Under a compared cell: Δ, its difference to the baseline, and the '
        f'MDE, the smallest true difference the table detects with probability {stats.POWER:g}: a tie with a gap below '
        'the MDE means the table cannot tell. Rows never merge different protocols or budgets.</p>',
        f'<div class="scroll">{_main_table(t)}</div>', _budget_caption(t), _tuning_warnings(t),
        f'<h3>mAP against the known proportion, by method family</h3><div class="panels">{family_panels(t)}</div>',
        f'<h3>Paired differences against {esc(t.baseline)} (mAP points)</h3>',
        f'<p class="note">Under each difference: its MDE and the seeds an MDE of {stats.TARGET_MDE:g} point would need '
        '(∞: no number of seeds on this test set, the shared test-image noise sets a floor; hover a cell for it). '
        'Budgets as in the main table.</p>',
        f'<div class="scroll">{_versus_table(t)}</div>',
        _private_table(t), '<h3>mAP by class frequency (head / medium / tail)</h3>', _bins_table(t),
        '<h3>Reproduced vs published</h3>', gap_figure,
        f'<div class="scroll">{_comparison_table(t)}</div>', _published_table(t, reference),
        _protocols(t), f'<ul class="note">{notes}</ul>' if notes else "", "</section>"])


def render_page(tables: list[Table], *, n_records: int, title: str = "mlrpl-bench leaderboard",
                generated: datetime | None = None, reference: ReferenceIndex | None = None,
                baseline: str | None = None, skipped: str = "") -> str:
    """The whole page as a string."""
    generated = generated or datetime.now(timezone.utc)
    baseline = baseline or (tables[0].baseline if tables else "partial-bce")
    csp = (f"default-src 'none'; script-src '{_csp_hash(SCRIPT)}'; style-src '{_csp_hash(CSS)}'; "
           "img-src data:; base-uri 'none'; form-action 'none'")
    nav = " ".join(f'<a href="#t-{esc(t.key)}">{esc(t.dataset)} · {esc(t.setting)}</a>' for t in tables)
    sections = [_section(t, reference) for t in tables]
    if not tables:
        sections.append('<p class="empty">No result records yet. File some with <code>mlrpl-bench leaderboard submit</code>.</p>')
    rules = "".join(f"<li>{esc(text)}</li>" for text in stats.explanation(baseline))
    # Only a page with a table that the papers report on promises published numbers.
    published = ("; published numbers from the SST, HST, DSRB and IPL papers"
                 if any(t.comparisons() for t in tables) else "")
    sections.append(f'<section id="statistics"><h2>How the statistics are made</h2><ul class="rules note">{rules}</ul></section>')
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f'<header><h1>{esc(title)}</h1><p class="note">Built from {n_records} result record(s) on '
        f'{esc(generated.isoformat(timespec="seconds"))}{"; " + esc(skipped) if skipped else ""}{published}. '
        f'Click a column header to sort. {esc(KIND_TEXT)}</p><nav>{nav}</nav></header>'
        f'<main>{"".join(sections)}</main><script>{SCRIPT}</script></body></html>\n')
