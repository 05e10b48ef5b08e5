"""The page's SVG plots, drawn here in Python (no plotting library, no script).

* :func:`family_panels` — small multiples: mAP against the known proportion, one panel per
  method family (:data:`.frame.FAMILY_ORDER`), all panels on one y scale. The baseline is drawn
  in every panel (grey), every row with an interval gets a band (its 95 % interval at each
  proportion), and where the papers report the method on this dataset and setting, the
  published curve is dashed in the row's colour. Hovering a series dims the others (CSS only).
* :func:`gap_plot` — reproduced minus published mAP per proportion, one bar per row.

Every string from a record is escaped; colours and sizes are SVG presentation attributes (the
page's Content-Security-Policy forbids inline ``style`` attributes).
"""

from __future__ import annotations

import html
import math

from .aggregate import Row, Table

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
           "#bcbd22", "#393b79", "#637939", "#843c39")
BASELINE_COLOR = "#555555"


def esc(value) -> str:
    """HTML-escape any value for text or a quoted attribute."""
    return html.escape(str(value), quote=True)


def known_label(known: float) -> str:
    return f"{known * 100:g}%"


def nice_step(raw: float) -> float:
    """1, 2 or 5 times a power of ten, at least ``raw`` (axis ticks)."""
    raw = max(raw, 1e-6)
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw - 1e-12)


def truncate(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def series_label(row: Row, table: Table) -> str:
    """The row's method, with its budget / protocol when the table has several."""
    label = row.method
    if len({r.budget_id for r in table.rows}) > 1:
        label += f" · {row.budget_label}"
    if len({r.protocol_id for r in table.rows}) > 1:
        label += f" · {row.protocol_id}"
    return label


def _points(row: Row) -> list[tuple[float, float, float | None, float | None, str]]:
    out = []
    for k, cell in sorted(row.cells.items()):
        s = cell["mAP"]
        if s.mean is not None:
            out.append((k, s.mean, s.lo, s.hi, f"{row.method} {known_label(k)}: {s.text()} ({s.detail()})"))
    return out


def _published_points(row: Row) -> list[tuple[float, float, str]]:
    out = []
    for k in sorted(row.cells):
        ref = row.published(k)
        if ref is not None and ref.mAP is not None:
            out.append((k, ref.mAP, f"{row.method} published ({ref.source}) {known_label(k)}: {ref.mAP:.1f}"))
    return out


def _y_range(table: Table) -> tuple[float, float, float]:
    values = []
    for row in table.rows:
        for _, y, lo, hi, _ in _points(row):
            values += [y, lo if lo is not None else y, hi if hi is not None else y]
        values += [y for _, y, _ in _published_points(row)]
    lo, hi = min(values), max(values)
    step = nice_step((hi - lo + 2) / 6)
    # mAP is a percentage: the axis never runs past 0 or 100
    return max(0.0, math.floor((lo - 1) / step) * step), min(100.0, math.ceil((hi + 1) / step) * step), step


def family_panels(table: Table, width: int = 420, height: int = 270) -> str:
    """One ``<figure>`` per family with rows in this table (empty string when nothing has two proportions)."""
    plotted = [row for row in table.rows if len(_points(row)) >= 1]
    if not plotted or not table.knowns:
        return ""
    y0, y1, step = _y_range(table)
    x0, x1 = min(table.knowns), max(table.knowns)
    if x1 - x0 < 1e-9:
        x0, x1 = x0 - 0.05, x1 + 0.05
    baselines = [row for row in plotted if row.is_baseline]
    figures = []
    for family in table.families():
        members = [row for row in plotted if row.family == family and not row.is_baseline]
        if not members and not any(row.family == family for row in baselines):
            continue
        figures.append(_panel(table, family, members, baselines, (x0, x1, y0, y1, step), width, height))
    return "".join(figures)


def _panel(table: Table, family: str, members: list[Row], baselines: list[Row], scale, width: int, height: int) -> str:
    x0, x1, y0, y1, step = scale
    left, right, top, bottom = 44, 150, 22, 34
    entries = len(baselines) + len(members) + len({r.method for r in members if _published_points(r)})
    height = max(height, top + 14 * entries + 20)
    pw, ph = width - left - right, height - top - bottom

    def sx(x):
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y):
        return top + (1 - (y - y0) / (y1 - y0)) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="panel" data-family="{esc(family)}" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img" font-family="sans-serif" font-size="11" '
           f'aria-label="{esc(family)}: mAP against known proportion, {esc(table.dataset)} {esc(table.setting)}">',
           f'<text x="{left}" y="14" font-weight="600" fill="#222">{esc(family)}</text>',
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fff" stroke="#ccc"/>']
    for i in range(int(round((y1 - y0) / step)) + 1):
        yv = y0 + i * step
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{sy(yv):.1f}" y2="{sy(yv):.1f}" stroke="#eee"/>'
                   f'<text x="{left - 5}" y="{sy(yv) + 4:.1f}" text-anchor="end" fill="#444">{yv:g}</text>')
    for k in table.knowns:
        out.append(f'<text x="{sx(k):.1f}" y="{top + ph + 14}" text-anchor="middle" fill="#444">{esc(known_label(k))}</text>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 4}" text-anchor="middle" fill="#222">known label proportion</text>'
               f'<text transform="translate(11 {top + ph / 2:.1f}) rotate(-90)" text-anchor="middle" fill="#222">test mAP (%)</text>')
    legend_y = top + 6
    published_done: set[str] = set()  # a method's published curve is drawn once, in its first row's colour
    series = [(row, BASELINE_COLOR, True) for row in baselines] + \
        [(row, PALETTE[i % len(PALETTE)], False) for i, row in enumerate(members)]
    for row, color, is_base in series:
        pts = _points(row)
        label = series_label(row, table) + (" (baseline)" if is_base else "")
        group = [f'<g class="series{" baseline" if is_base else ""}" data-label="{esc(label)}">']
        banded = [(x, lo, hi) for x, _, lo, hi, _ in pts if lo is not None]
        if len(banded) >= 2:
            outline = [f"{sx(x):.1f},{sy(hi):.1f}" for x, _, hi in banded] + \
                [f"{sx(x):.1f},{sy(lo):.1f}" for x, lo, _ in reversed(banded)]
            group.append(f'<polygon class="band" points="{" ".join(outline)}" fill="{color}" fill-opacity="0.15" stroke="none"/>')
        else:
            for x, lo, hi in banded:
                group.append(f'<line class="band" x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{sy(lo):.1f}" y2="{sy(hi):.1f}" stroke="{color}"/>')
        if len(pts) > 1:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y, _, _, _ in pts)
            group.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="{2.5 if is_base else 2}"/>')
        for x, y, _, _, title in pts:
            group.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}"><title>{esc(title)}</title></circle>')
        group.append(_legend_entry(width - right + 8, legend_y, color, label, dashed=False))
        legend_y += 14
        group.append("</g>")
        out.append("".join(group))
        published = _published_points(row) if not is_base and row.method not in published_done else []
        if published:
            published_done.add(row.method)
            pub = [f'<g class="series published" data-label="{esc(row.method)} published">']
            if len(published) > 1:
                path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y, _ in published)
                pub.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.5" stroke-dasharray="5 4"/>')
            for x, y, title in published:
                pub.append(f'<rect x="{sx(x) - 3:.1f}" y="{sy(y) - 3:.1f}" width="6" height="6" fill="#fff" stroke="{color}">'
                           f'<title>{esc(title)}</title></rect>')
            pub.append(_legend_entry(width - right + 8, legend_y, color, f"{row.method} published", dashed=True))
            legend_y += 14
            out.append("".join(pub) + "</g>")
    out.append("</svg>")
    # The family's own rows: its members and the baseline when it belongs to the family (drawn in every panel).
    own = len(members) + sum(1 for row in baselines if row.family == family)
    caption = (f"{esc(family)}: {own} row(s)" + ("; grey: the baseline" if baselines else "") +
               "; bands: 95 % intervals" +
               ("; dashed: published numbers for the same dataset and setting." if published_done else "."))
    return f'<figure class="panel-figure">{"".join(out)}<figcaption>{caption}</figcaption></figure>'


def _legend_entry(x: float, y: float, color: str, label: str, *, dashed: bool) -> str:
    dash = ' stroke-dasharray="5 4"' if dashed else ""
    return (f'<line x1="{x}" x2="{x + 18}" y1="{y}" y2="{y}" stroke="{color}" stroke-width="2"{dash}/>'
            f'<text x="{x + 22}" y="{y + 4}" fill="#222">{esc(truncate(label, 20))}<title>{esc(label)}</title></text>')


def gap_plot(table: Table, width: int = 760, height: int = 240) -> str:
    """Reproduced minus published mAP per known proportion: one bar per row that has a reference."""
    colors = {id(row): PALETTE[i % len(PALETTE)] for i, row in enumerate(table.rows)}
    rows = [row for row in table.rows if any(row.gap(k) is not None for k in table.knowns)]
    knowns = [k for k in table.knowns if any(row.gap(k) is not None for row in rows)]
    if not rows or not knowns:
        return ""
    gaps = [row.gap(k) for row in rows for k in knowns if row.gap(k) is not None]
    step = nice_step((max(gaps + [0]) - min(gaps + [0]) + 1) / 6)
    y0 = math.floor((min(gaps + [0]) - 0.5) / step) * step
    y1 = math.ceil((max(gaps + [0]) + 0.5) / step) * step
    left, right, top, bottom = 52, 210, 12, 36
    height = max(height, top + 16 * len(rows) + 16)
    pw, ph = width - left - right, height - top - bottom
    group_w = pw / len(knowns)
    bar_w = max(2.0, min(18.0, (group_w - 8) / len(rows)))

    def sy(y):
        return top + (1 - (y - y0) / (y1 - y0)) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           f'role="img" aria-label="gap to the published mAP, {esc(table.dataset)} {esc(table.setting)}" '
           f'font-family="sans-serif" font-size="11" class="gap-plot">',
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fff" stroke="#ccc"/>']
    for i in range(int(round((y1 - y0) / step)) + 1):
        yv = y0 + i * step
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{sy(yv):.1f}" y2="{sy(yv):.1f}" stroke="{"#888" if abs(yv) < 1e-9 else "#eee"}"/>'
                   f'<text x="{left - 6}" y="{sy(yv) + 4:.1f}" text-anchor="end" fill="#444">{"0" if abs(yv) < 1e-9 else f"{yv:+g}"}</text>')
    for gi, k in enumerate(knowns):
        gx = left + gi * group_w + (group_w - bar_w * len(rows)) / 2
        out.append(f'<text x="{left + (gi + 0.5) * group_w:.1f}" y="{top + ph + 16}" text-anchor="middle" fill="#444">{esc(known_label(k))}</text>')
        for ri, row in enumerate(rows):
            gap = row.gap(k)
            if gap is None:
                continue
            ytop, ybot = sorted((sy(gap), sy(0)))
            title = f"{row.method} ({row.protocol_id}) {known_label(k)}: {gap:+.1f} vs {row.published(k).source}"
            out.append(f'<rect x="{gx + ri * bar_w:.1f}" y="{ytop:.1f}" width="{bar_w - 1:.1f}" height="{max(ybot - ytop, 0.5):.1f}" '
                       f'fill="{colors[id(row)]}"><title>{esc(title)}</title></rect>')
    for n, row in enumerate(rows):
        ly = top + 8 + n * 16
        out.append(f'<rect x="{width - right + 12}" y="{ly - 5}" width="10" height="10" fill="{colors[id(row)]}"/>'
                   f'<text x="{width - right + 28}" y="{ly + 4}" fill="#222">{esc(truncate(series_label(row, table), 28))}</text>')
    out.append(f'<text transform="translate(14 {top + ph / 2:.1f}) rotate(-90)" text-anchor="middle" fill="#222">gap (points)</text></svg>')
    return "".join(out)
