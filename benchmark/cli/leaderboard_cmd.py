"""``mlrpl-bench leaderboard submit|build``: file result records, build the leaderboard."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("leaderboard")
def leaderboard() -> None:
    """Validate result records and build the leaderboard (never retrains anything)."""


@leaderboard.command("submit")
@click.argument("records", nargs=-1, required=True, type=click.Path(path_type=Path))  # files or runs/ folders
@click.option("--results", "results_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Results directory to file into [default: leaderboard/results].")
@click.option("--replace", is_flag=True, help="Overwrite a different record already filed for the same run, protocol and method options.")
def submit(records: tuple[Path, ...], results_dir: Path | None, replace: bool) -> None:
    """Validate RECORD.json files (or every <run>/record.json of a runs/ folder) and file them under the results directory.

    The batch is all-or-nothing: if any record is invalid, each problem is printed (file and
    field) and nothing is filed (exit status 2).
    """
    from mlrpl_bench.leaderboard.submit import DEFAULT_RESULTS_DIR, SubmissionRefused, submit_records

    try:
        filed = submit_records(list(records), results_dir or DEFAULT_RESULTS_DIR, replace=replace)
    except SubmissionRefused as exc:
        for line in exc.errors:
            click.echo(f"refused: {line}", err=True)
        raise
    for item in filed:
        for warning in item.warnings:
            click.echo(f"warning: {warning}", err=True)
        click.echo(f"{item.status}: {item.source} -> {item.target}")


@leaderboard.command("build")
@click.option("--results", "results_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory of filed records [default: leaderboard/results].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory [default: leaderboard/site].")
def build(results_dir: Path | None, out_dir: Path | None) -> None:
    """Build Markdown, CSV and a static HTML page from the filed records alone."""
    from mlrpl_bench.atomic import same_file
    from mlrpl_bench.errors import BenchError
    from mlrpl_bench.leaderboard.build import DEFAULT_OUT_DIR, build_leaderboard
    from mlrpl_bench.leaderboard.submit import DEFAULT_RESULTS_DIR

    results, out = results_dir or DEFAULT_RESULTS_DIR, out_dir or DEFAULT_OUT_DIR
    if same_file(results, out) or Path(results).resolve() in Path(out).resolve().parents:
        raise BenchError(f"--out {out} is (inside) the --results folder {results}; the built pages would be read as "
                         "records next time -- choose another --out")
    result = build_leaderboard(results_dir or DEFAULT_RESULTS_DIR, out_dir or DEFAULT_OUT_DIR)
    rows = sum(len(t.rows) for t in result.tables)
    click.echo(f"built {len(result.tables)} table(s), {rows} row(s) from {result.n_records} record(s) -> {result.out_dir}")
    click.echo(f"  {result.out_dir / 'index.html'}")
