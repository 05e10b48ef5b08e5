"""``mlrpl-bench leaderboard submit|build|export``: file result records, build the leaderboard, export it."""

from __future__ import annotations

from pathlib import Path

import click

from . import PathArg

_RESULTS_HELP = ("Folder of records: a results tree or a runs/ folder (repeatable; JSON files that are not "
                 "records, e.g. runs/_protocol/*.json, are skipped and counted) [default: $MLRPL_BENCH_RESULTS, else "
                 "~/.local/share/mlrpl-bench/results; the project's filed tree is leaderboard/results].")
_BASELINE_HELP = "Method every row is compared with (paired over seeds, same protocol and budget) [default: partial-bce]."


@click.group("leaderboard")
def leaderboard() -> None:
    """Validate result records and build the leaderboard (never retrains anything)."""


@leaderboard.command("submit")
@click.argument("records", nargs=-1, required=True, type=PathArg(path_type=Path))
@click.option("--results", "results_dir", type=PathArg(file_okay=False, path_type=Path), default=None,
              help="Results directory to file into [default: $MLRPL_BENCH_RESULTS, else ~/.local/share/mlrpl-bench/results; "
                   "the project's filed tree: --results leaderboard/results].")
@click.option("--replace", is_flag=True, help="Overwrite a different record already filed for the same run, protocol and method options.")
def submit(records: tuple[Path, ...], results_dir: Path | None, replace: bool) -> None:
    """Validate RECORD.json files and file them under the results directory.

    The batch is all-or-nothing: if any record is invalid, each problem is printed (file and
    field) and nothing is filed (exit status 2).
    """
    from mlrpl_bench.leaderboard.submit import SubmissionRefused, default_results_dir, submit_records

    try:
        filed = submit_records(list(records), results_dir or default_results_dir(), replace=replace)
    except SubmissionRefused as exc:
        if len(exc.errors) > 1:  # one line per problem; a single problem is the error line itself
            for line in exc.errors:
                click.echo(f"refused: {line}", err=True)
        raise
    for item in filed:
        for warning in item.warnings:
            click.echo(f"warning: {warning}", err=True)
        scores = f" (test scores: {item.scores.name})" if item.scores is not None else ""
        click.echo(f"{item.status}: {item.source} -> {item.target}{scores}")


@leaderboard.command("verify")
@click.argument("paths", nargs=-1, required=True, type=PathArg(path_type=Path))
@click.option("--sample", "sample", type=click.IntRange(min=1), default=None, metavar="K",
              help="Verify K records drawn at random from those found (with --sample-seed) [default: all].")
@click.option("--sample-seed", type=int, default=0, show_default=True, help="Seed of the --sample draw.")
@click.option("--tolerance", type=click.FloatRange(min=0), default=None,
              help="Largest metric difference accepted (points) [default: 0 = bit for bit for CPU fp32 records, "
                   "0.5 otherwise].")
@click.option("--data-root", type=PathArg(file_okay=False), default=None,
              help="Where the dataset of records that need one lives (the built-in dataset needs none).")
@click.option("--private-seed-file", type=PathArg(dir_okay=False, path_type=Path), default=None,
              help="File holding the runner's secret test seed: reproduced built-in records are also scored on the "
                   "private test draw [default: $MLRPL_BENCH_PRIVATE_SEED, else no private draw].")
@click.option("--stamp", is_flag=True, help="Write a verification block (date, code version, runner) into each "
                                            "reproduced record: the leaderboard marks its row verified.")
@click.option("--runner", default=None, help="Runner name in the verification block [default: $MLRPL_BENCH_RUNNER, "
                                             "else the host name].")
@click.option("--workdir", type=PathArg(file_okay=False, path_type=Path), default=None,
              help="Where the temporary re-executions run [default: the system's temporary folder].")
def verify(paths: tuple[Path, ...], sample: int | None, sample_seed: int, tolerance: float | None, data_root: str | None,
           private_seed_file: Path | None, stamp: bool, runner: str | None, workdir: Path | None) -> None:
    """Re-execute filed records (RECORD.json files or folders of them) and compare their metrics.

    Each record runs again with its exact configuration and thread count in a temporary folder.
    Exit status 0 only when every record reproduces; one line per record that differs, naming
    the metric and both values.
    """
    import sys

    from mlrpl_bench.errors import BenchError
    from mlrpl_bench.verification import Outcome, read_private_seed, record_files, sample_paths, verify_record
    from mlrpl_bench.verification import stamp as stamp_record

    private_seed = read_private_seed(private_seed_file)
    found = record_files(list(paths))
    chosen = sample_paths(found, sample, sample_seed)
    click.echo(f"verifying {len(chosen)} of {len(found)} record(s)", err=True)
    failed = 0
    for path in chosen:
        try:
            outcome = verify_record(path, data_root=data_root, tolerance=tolerance, private_seed=private_seed,
                                    workdir=workdir)
        except BenchError as exc:  # one record that cannot run (bad record, failed run): the others go on
            outcome = Outcome(path, "unavailable", [f"could not be re-executed: {exc}"])
        how = "bit for bit" if outcome.exact else f"within {outcome.tolerance:g}"
        if outcome.ok:
            private = (f"; private draw {outcome.private['draw']}: test mAP {outcome.private['test']['mAP']:.2f}"
                       if outcome.private else "")
            if stamp:
                stamp_record(path, outcome, runner=runner)
            notes = "".join(f"; note: {note}" for note in outcome.notes)
            click.echo(f"reproduced ({how}){' and stamped' if stamp else ''}: {path}{private}{notes}")
            continue
        failed += 1
        for line in outcome.lines:
            click.echo(f"{'differs' if outcome.status == 'differs' else 'not verified'}: {path}: {line}")
    click.echo(f"{len(chosen) - failed} of {len(chosen)} record(s) reproduced", err=True)
    if failed:
        sys.exit(1)


@leaderboard.command("build")
@click.option("--results", "results_dirs", multiple=True, type=PathArg(file_okay=False, path_type=Path),
              help=_RESULTS_HELP)
@click.option("--out", "out_dir", type=PathArg(file_okay=False, path_type=Path), default=None,
              help="Output directory [default: leaderboard/site].")
@click.option("--baseline", default=None, help=_BASELINE_HELP)
def build(results_dirs: tuple[Path, ...], out_dir: Path | None, baseline: str | None) -> None:
    """Build Markdown, CSV and a static HTML page from the records alone."""
    from mlrpl_bench.leaderboard.aggregate import DEFAULT_BASELINE
    from mlrpl_bench.leaderboard.build import DEFAULT_OUT_DIR, build_leaderboard
    from mlrpl_bench.leaderboard.submit import default_results_dir

    results, out = list(results_dirs) or [default_results_dir()], out_dir or DEFAULT_OUT_DIR
    _refuse_output_inside_inputs(results, out)
    result = build_leaderboard(results, out,
                               baseline=baseline or DEFAULT_BASELINE, explicit_baseline=baseline is not None)
    rows = sum(len(t.rows) for t in result.tables)
    click.echo(f"built {len(result.tables)} table(s), {rows} row(s) from {result.n_records} record(s) -> {result.out_dir}")
    if result.skipped:
        click.echo(f"  {result.skipped}")
    click.echo(f"  {result.out_dir / 'index.html'}")


@leaderboard.command("export")
@click.option("--results", "results_dirs", multiple=True, type=PathArg(file_okay=False, path_type=Path),
              help=_RESULTS_HELP)
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv", "hf"]), required=True,
              help="parquet or csv files, or hf: datasets.Dataset folders (save_to_disk) ready to push to a hub.")
@click.option("--out", "out_dir", type=PathArg(file_okay=False, path_type=Path), required=True,
              help="Output directory (gets runs.* and aggregated.*, or runs/ and aggregated/ for hf).")
@click.option("--baseline", default=None, help=_BASELINE_HELP)
def export(results_dirs: tuple[Path, ...], fmt: str, out_dir: Path, baseline: str | None) -> None:
    """Write the per-run table (one row per record) and the aggregated table."""
    from mlrpl_bench.leaderboard.aggregate import DEFAULT_BASELINE
    from mlrpl_bench.leaderboard.export import export_tables, write_export
    from mlrpl_bench.leaderboard.submit import default_results_dir

    _refuse_output_inside_inputs(list(results_dirs) or [default_results_dir()], out_dir)
    tables = export_tables(list(results_dirs) or [default_results_dir()], baseline=baseline or DEFAULT_BASELINE,
                           explicit_baseline=baseline is not None)
    for path in write_export(tables, out_dir, fmt):
        click.echo(f"wrote {path}")
    click.echo(f"{len(tables['runs'])} run(s), {len(tables['aggregated'])} aggregated line(s)")


def _refuse_output_inside_inputs(results: list[Path], out: Path) -> None:
    """An --out that is (inside) a --results folder would be read as records next time: refuse it."""
    from mlrpl_bench.atomic import same_file
    from mlrpl_bench.errors import BenchError

    for folder in results:
        if same_file(folder, out) or Path(folder).resolve() in Path(out).resolve().parents:
            raise BenchError(f"--out {out} is (inside) the --results folder {folder}; the written files would be read "
                             "as records next time -- choose another --out")
