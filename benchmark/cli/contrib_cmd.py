"""``mlrpl-bench new-plugin`` and ``mlrpl-bench check-plugin``: the contributor kit's commands."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import click

from ..errors import BenchError
from . import PathArg, parse_pairs


@click.command("new-plugin")
@click.argument("name")
@click.option("--dir", "directory", type=PathArg(file_okay=False), default=None,
              help="Where to write the package (default: ./mlrpl-NAME). Must not exist or be empty.")
def new_plugin(name: str, directory: str | None) -> None:
    """Write a ready-to-install method plugin package NAME.

    The package registers NAME under the `mlrpl_bench` entry-point group, holds a minimal method
    (pooled linear classifier + partial BCE) and a test that runs the conformance checks.
    """
    from ..scaffold import check_plugin_name, names_for, write_plugin_package

    check_plugin_name(name)
    target = Path(directory) if directory else Path(names_for(name)["dist"])
    written = write_plugin_package(name, target)
    click.echo(f"wrote {len(written)} files to {target}/:")
    for path in written:
        click.echo(f"  {path.relative_to(target)}")
    click.echo("next:")
    click.echo(f"  pip install -e {target}")
    click.echo(f"  mlrpl-bench check-plugin {name}")
    click.echo(f"  mlrpl-bench run --plugin {name} --known 0.5 --epochs 1")


def _load_method(target: str):
    """A registered name, or ``module:Class`` for a class that is not installed yet."""
    if ":" not in target:
        from ..plugin_manager import get_method

        return get_method(target)
    module_name, _, attr = target.partition(":")
    sys.path.insert(0, str(Path.cwd()))  # like `python -m`: modules in the current directory import
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BenchError(f"check-plugin {target}: cannot import module {module_name!r} ({exc}); give NAME or module:Class") from None
    except SyntaxError as exc:
        raise BenchError(f"check-plugin {target}: {exc.filename}, line {exc.lineno}: {exc.msg}; fix the module's "
                         "syntax") from None
    except Exception as exc:  # the contributor's module raised while importing: say where, in one line
        where = _last_frame_in(exc, module_name)
        raise BenchError(f"check-plugin {target}: importing {module_name!r} raised {type(exc).__name__}: {exc}{where}; "
                         f"run `python -c 'import {module_name}'` for the traceback") from None
    finally:
        sys.path.pop(0)
    if not hasattr(module, attr):
        raise BenchError(f"check-plugin {target}: module {module_name!r} has no attribute {attr!r}")
    obj = getattr(module, attr)
    from ..method import Method

    if not (isinstance(obj, type) and issubclass(obj, Method)):
        raise BenchError(f"check-plugin {target}: {module_name}.{attr} is not a Method subclass; give NAME or "
                         "module:Class of a subclass of mlrpl_bench.method.Method")
    return obj


def _last_frame_in(exc: BaseException, module_name: str) -> str:
    """`` (at file:line)`` of the deepest traceback frame in ``module_name``'s own files, or ``""``."""
    import traceback

    top = module_name.split(".")[0]
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if f"/{top}/" in f.filename.replace("\\", "/") or Path(f.filename).stem == top]
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


@click.command("check-plugin")
@click.argument("name")
@click.option("--check", "checks", multiple=True, metavar="CHECK", help="Run only this check (repeatable).")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Method option override for the checks (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def check_plugin(name: str, checks: tuple[str, ...], options: tuple[str, ...], as_json: bool) -> None:
    """Run the conformance checks on method NAME (a registered name, or module:Class).

    Every check trains the method for a few steps on tiny seeded synthetic data. Exit status 0
    when no check fails, 1 when some do, 2 for a bad NAME or option.
    """
    from ..conformance import CHECKS_BY_NAME, check_method

    method_cls = _load_method(name)
    for check in checks:
        if check not in CHECKS_BY_NAME:
            raise BenchError(f"--check {check!r} is not a check; choose from {', '.join(CHECKS_BY_NAME)}")
    overrides = parse_pairs(options, "--option")
    if overrides and hasattr(method_cls, "make_options"):
        # A bad -o is the user's input error (exit 2), not a failure of some check.
        method_cls.make_options({**(getattr(method_cls, "conformance_options", None) or {}), **overrides})
    results = check_method(method_cls, checks=list(checks) or None, options=overrides)
    failed = [r for r in results if r.status == "failed"]
    if as_json:
        click.echo(json.dumps({"method": getattr(method_cls, "name", ""), "class": f"{method_cls.__module__}.{method_cls.__qualname__}",
                               "results": [r.__dict__ for r in results]}, indent=2))
    else:
        click.echo(f"{getattr(method_cls, 'name', '') or method_cls.__name__} ({method_cls.__module__}.{method_cls.__qualname__})")
        for r in results:
            label = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}[r.status]
            click.echo(f"  {label}  {r.check}" + (f": {r.message}" if r.message else ""))
        counts = {s: sum(r.status == s for r in results) for s in ("passed", "failed", "skipped")}
        click.echo(f"{len(results)} checks: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
    if failed:
        sys.exit(1)
