"""``mlrpl-bench sweep``: submit a methods × datasets × settings × known × seeds sweep as submitit
jobs (``mlrpl-bench sweep status``: where each run stands). See :mod:`mlrpl_bench.sweep`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..errors import BenchError

#: Keys of a sweep config file: the SweepOptions fields (TOML or JSON).
_SLURM_TABLE = ("partition", "time", "gpus_per_job", "tasks_per_job", "cpus_per_task", "mem_gb", "account", "qos",
                "constraint", "setup", "array", "array_parallelism")


def read_sweep_config(path: str) -> dict:
    """A sweep config file as SweepOptions values; a ``[slurm]`` table may hold the launcher's keys."""
    from ..sweep import SweepOptions

    from ..schema import read_config

    p = Path(path)
    data = read_config(p, source=f"--config {p}")
    if not isinstance(data, dict):
        raise BenchError(f"--config {p}: expected a mapping at the top level")
    slurm = data.pop("slurm", {})
    if not isinstance(slurm, dict) or set(slurm) - set(_SLURM_TABLE):
        bad = sorted(set(slurm) - set(_SLURM_TABLE)) if isinstance(slurm, dict) else ["(not a table)"]
        raise BenchError(f"--config {p}: [slurm] key {bad[0]!r} is not one of {', '.join(_SLURM_TABLE)}")
    data.update(slurm)
    allowed = {f.name for f in __import__("dataclasses").fields(SweepOptions)}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise BenchError(f"--config {p}: unknown key {unknown[0]!r}; allowed keys: {', '.join(sorted(allowed))}")
    return data


class _DefaultToSubmit(click.Group):
    """``mlrpl-bench sweep [OPTIONS]`` submits; ``mlrpl-bench sweep status`` reports."""

    def parse_args(self, ctx, args):
        if not args or args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["submit", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultToSubmit)
def sweep():
    """Run a whole comparison as jobs (local processes or Slurm) and follow it.

    \b
    mlrpl-bench sweep --plugins partial-bce,hst --known 0.1,0.5 --seeds 0,1,2 -- --epochs 12
    mlrpl-bench sweep --launcher slurm --partition gpu --gpus-per-job 1 --config sweep.toml
    mlrpl-bench sweep status
    """


@sweep.command("submit")
@click.option("--plugins", default=None, help="Methods, comma-separated.")
@click.option("--datasets", default=None, help="Datasets, comma-separated; NAME=DATA_ROOT for a dataset's folder [default: digit-scenes].")
@click.option("--settings", default=None, help="Protocol settings, comma-separated [default: pal].")
@click.option("--known", default=None, help="Known-label proportions, comma-separated or 'all' [default: all].")
@click.option("--seeds", default=None, help="Seeds, comma-separated [default: 0].")
@click.option("--output", default=None, help="The runs tree [default: ./runs]; the sweep's state goes to OUTPUT/_sweep/NAME.")
@click.option("--name", default=None, help="The sweep's name [default: 'default', or a hash of the run options].")
@click.option("--config", "config_file", default=None, help="TOML or JSON file with the same keys (and a [slurm] table); options win.")
@click.option("--launcher", default=None, help="local (processes on this machine, the default) or slurm.")
@click.option("--partition", default=None, help="Slurm partition.")
@click.option("--time", default=None, help="Time limit per job in minutes [default: 1440]; a job past it is requeued and resumes.")
@click.option("--gpus-per-job", default=None, help="GPUs per job, one DDP process (task) each [default: 0].")
@click.option("--tasks-per-job", default=None, help="Processes per job [default: one per GPU, or 1].")
@click.option("--cpus-per-task", default=None, help="Slurm CPUs per task.")
@click.option("--mem-gb", default=None, help="Slurm memory per job, GB.")
@click.option("--account", default=None, help="Slurm account.")
@click.option("--qos", default=None, help="Slurm quality of service.")
@click.option("--constraint", default=None, help="Slurm node constraint.")
@click.option("--array/--no-array", default=None, help="Slurm: one job array (default) or one job per run.")
@click.option("--array-parallelism", default=None, help="Jobs running at once [default: 16].")
@click.option("--resubmit-queued", is_flag=True, default=None, help="Also resubmit runs queued but never started.")
@click.option("--dry-run", is_flag=True, help="Print what would be submitted; submit nothing.")
@click.argument("run_args", nargs=-1, type=click.UNPROCESSED)
def submit(config_file, dry_run, run_args, **values):
    """Submit every run of the sweep that is not done, running or queued (after `--`: options of `mlrpl-bench run`)."""
    from ..sweep import build_sweep_options, submit as submit_sweep

    config = read_sweep_config(config_file) if config_file else {}
    values["run_args"] = list(run_args) if run_args else None
    if values["run_args"] is None and "run_args" in config and not isinstance(config["run_args"], list):
        raise BenchError(f"--config {config_file}: run_args must be a list of strings, e.g. [\"--epochs\", \"2\"]")
    opts = build_sweep_options(config, values)
    statuses = submit_sweep(opts, dry_run=dry_run, echo=click.echo)
    if not dry_run and opts.launcher == "local":
        from ..sweep import status_table

        click.echo("")
        click.echo(status_table(statuses))
        if any(s.state == "failed" for s in statuses):
            sys.exit(1)


@sweep.command("status")
@click.option("--output", default="runs", show_default=True, help="The runs tree the sweep writes to.")
@click.option("--name", default="", help="Only this sweep [default: every sweep under OUTPUT/_sweep].")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run.")
def status(output, name, as_json):
    """Done / running / failed / pending of every run, read from the files alone."""
    from dataclasses import asdict

    from ..sweep import find_sweeps, status as sweep_status, status_table

    for folder in find_sweeps(output, name):
        statuses = sweep_status(folder)
        if as_json:
            for s in statuses:
                click.echo(json.dumps({"sweep": folder.name, **asdict(s)}))
        else:
            click.echo(f"sweep {folder.name} ({folder})")
            click.echo(status_table(statuses))
            click.echo("")
