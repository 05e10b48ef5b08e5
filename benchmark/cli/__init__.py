"""The ``mlrpl-bench`` command line: a thin face over the core.

Each subcommand lives in its own module and is imported only when invoked, so ``--help`` is
instant (no torch import). Errors the user can fix (:class:`~mlrpl_bench.errors.BenchError`)
print one line and exit with status 2.
"""

from __future__ import annotations

import importlib
import sys

import click

from .. import __version__

#: name -> (module, attribute, one-line help). Modules are imported lazily.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("mlrpl_bench.cli.run_cmd", "run", "Train a method over the known-label sweep and write results records."),
    "protocol": ("mlrpl_bench.cli.protocol_cmd", "protocol", "Make a partial label matrix from a full one."),
    "evaluate": ("mlrpl_bench.cli.evaluate_cmd", "evaluate", "Score predictions against targets (mAP, OF1, CF1, ...)."),
    "plugins": ("mlrpl_bench.cli.plugins_cmd", "plugins", "List registered methods, datasets and backbones."),
    "datasets": ("mlrpl_bench.cli.datasets_cmd", "datasets", "List, verify and inspect datasets."),
    "leaderboard": ("mlrpl_bench.cli.leaderboard_cmd", "leaderboard", "Validate result records and build the leaderboard."),
    "new-plugin": ("mlrpl_bench.cli.contrib_cmd", "new_plugin", "Write a ready-to-install method plugin package."),
    "check-plugin": ("mlrpl_bench.cli.contrib_cmd", "check_plugin", "Run the conformance checks on a registered method."),
    "sweep": ("mlrpl_bench.cli.sweep_cmd", "sweep", "Run methods x datasets x settings x known x seeds as jobs (local or Slurm)."),
}


def parse_pairs(pairs: tuple[str, ...], flag: str, *, once: bool = False) -> dict[str, str]:
    """Repeated ``KEY=VALUE`` options as a mapping; values stay text (the schema parses them by type).

    A later ``KEY=`` wins (a script may override one option of a shared list), except with ``once``:
    there a key given twice is refused (``--tune lr=1e-3 --tune lr=1e-2`` would search one grid where
    two were meant; every value goes in one ``KEY=V1,V2``).
    """
    from ..errors import BenchError

    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise BenchError(f"{flag} {pair!r}: expected KEY=VALUE")
        key, value = pair.split("=", 1)
        key = key.strip().replace("-", "_")
        if once and key in out:
            raise BenchError(f"{flag} {key}: given twice ({out[key]!r} and {value!r}); give it once (a list of values "
                             "goes in one option, comma-separated)")
        out[key] = value
    return out


class PathArg(click.Path):
    """``click.Path`` that refuses an empty path (``--out "$OUT"`` with OUT unset would mean the
    current directory): the vocabulary's rule, reported like any other bad option value."""

    def convert(self, value, param, ctx):
        from ..vocabulary import VocabularyError, check_path_text

        try:
            check_path_text(value)
        except VocabularyError as exc:
            self.fail(str(exc), param, ctx)
        return super().convert(value, param, ctx)


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module_name, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module_name), attr)

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlrpl-bench")
def cli() -> None:
    """Benchmark suite for multi-label image recognition with partial labels."""


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI, turning user errors into one line and exit code 2."""
    import os

    from ..errors import BenchError

    # Spinning OpenMP workers starve each other when several runs share few cores (13x slower
    # steps measured on 2 cores); passive waiting costs nothing on an idle machine. Read by
    # torch when it loads, which the subcommands do lazily, after this line.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        cli.main(args=argv, prog_name="mlrpl-bench", standalone_mode=False)
    except BenchError as exc:
        click.echo(f"error: {one_line(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except OSError as exc:  # a full disk met outside the atomic writers (which say it themselves)
        from ..atomic import FULL_DISK, disk_full

        if exc.errno not in FULL_DISK:
            raise
        click.echo(f"error: {one_line(str(disk_full(exc.filename or '.', exc, None)))}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        # Ctrl-C: every file is written atomically, so what exists is whole; a run's checkpoints are per epoch.
        click.echo("error: interrupted; files already written are complete, nothing is half-written (an "
                   "interrupted `run` continues from its last finished epoch with --resume)", err=True)
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as exc:  # `mlrpl-bench` or a group alone: its help, as --help gives it
        click.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
        sys.exit(0)
    except click.UsageError as exc:
        # One line, like every other input error (click's own form is a usage block of four lines).
        command = exc.ctx.command_path if exc.ctx is not None else "mlrpl-bench"
        click.echo(f"error: {one_line(exc.format_message())} (see '{command} --help')", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"error: {one_line(exc.format_message())}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


def one_line(message: str) -> str:
    """``message`` on one line (a user error is reported as exactly one line on stderr)."""
    return "; ".join(part.strip() for part in message.splitlines() if part.strip())
