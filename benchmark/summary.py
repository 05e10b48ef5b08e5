"""The table printed at the end of ``mlrpl-bench run``.

It is derived from the leaderboard's long-form frame and aggregation
(:func:`mlrpl_bench.leaderboard.aggregate.build_tables`), so a sweep's numbers, its "Ave." (per
seed, the mean over the proportions; then over the seeds that ran every proportion) and its
intervals are exactly what the leaderboard will show for the same records.
"""

from __future__ import annotations

from typing import Any

from .metrics import SUMMARY_METRICS


def sweep_rows(records: list[dict[str, Any]], metrics=SUMMARY_METRICS) -> list[list[str]]:
    """One line per (row, known proportion): mean (± the 95 % interval's half-width with 2+ seeds)
    and the number of seeds, then an ``Ave.`` line per row that has one."""
    from mlrpl_bench.leaderboard.aggregate import build_tables

    out = []
    for table in build_tables(records, bootstrap=False):
        several = len({(row.method, row.options_id) for row in table.rows}) < len(table.rows)
        for row in sorted(table.rows, key=lambda r: (r.method, r.options_id, r.budget_id)):
            name = row.method + (f" ({row.budget_label})" if several else "")
            for known, cell in sorted(row.cells.items()):
                out.append([name, f"{known:g}", *(cell[m].text(2) for m in metrics), str(cell[metrics[0]].n)])
            if len(row.cells) > 1 and row.average[metrics[0]].mean is not None:
                out.append([name, "Ave.", *(row.average[m].text(2) for m in metrics), str(row.average[metrics[0]].n)])
    return out


def sweep_table(records: list[dict[str, Any]], metrics=SUMMARY_METRICS) -> str:
    """:func:`sweep_rows` as a GitHub-style table, with a line saying what ± means."""
    from tabulate import tabulate

    table = tabulate(sweep_rows(records, metrics), headers=["method", "known", *metrics, "seeds"], tablefmt="github")
    return table + "\n(test metrics in %; with 2+ seeds, ± is the half-width of the 95 % t-interval over seeds)"
