"""``mlrpl-bench datasets``: list datasets; ``verify``, ``stats`` and ``labels`` subcommands.

Exit codes: 0 fine; 1 ``verify`` found missing/unreadable images or inconsistent splits;
2 a problem with the input (bad layout, unknown name, malformed file).
"""

from __future__ import annotations

import json
import sys

import click

from . import PathArg, parse_pairs

_data_root = click.option("--data-root", type=PathArg(file_okay=False), default=None,
                          help="Folder holding the dataset's files (see `mlrpl-bench datasets`).")
_option = click.option("-o", "--dataset-option", "dataset_option", multiple=True, metavar="KEY=VALUE",
                       help="Loader option (repeatable), e.g. -o difficult=ignore.")


@click.group("datasets", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@click.pass_context
def datasets(ctx, as_json: bool) -> None:
    """List the registered datasets (with their options), or verify / inspect one.

    \b
    mlrpl-bench datasets [--json]
    mlrpl-bench datasets info NAME            (on-disk layout and options)
    mlrpl-bench datasets verify NAME --data-root DIR [-o KEY=VALUE]
    mlrpl-bench datasets stats NAME --data-root DIR [--split train|test]
    mlrpl-bench datasets labels NAME --data-root DIR --split train --out FILE.npy
    """
    if ctx.invoked_subcommand is not None:
        return
    from ..data.verify import describe_datasets

    rows = describe_datasets()
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    from tabulate import tabulate

    table = [(r["name"], "yes" if r["needs_data_root"] else "no", r["summary"]) for r in rows]
    click.echo(tabulate(table, headers=["dataset", "data root", "summary"]))
    for r in rows:
        if r["options"]:
            opts = ", ".join(f"{o['name']}={o['default']}" for o in r["options"])
            click.echo(f"\n{r['name']} options: {opts}")
    click.echo("\nA dataset's on-disk layout: `mlrpl-bench datasets info NAME`; check your copy with "
               "`mlrpl-bench datasets verify NAME --data-root DIR`.")


@datasets.command("info")
@click.argument("name")
def info_cmd(name) -> None:
    """Print a dataset's expected on-disk layout, citation and options."""
    from ..data.verify import describe_datasets
    from ..errors import UnknownNameError

    rows = {r["name"]: r for r in describe_datasets()}
    if name not in rows:
        raise UnknownNameError("dataset", name, rows)
    r = rows[name]
    click.echo(f"{r['name']}: {r['summary']}")
    if r["citation"]:
        click.echo(f"citation: {r['citation']}")
    click.echo(f"source: {r['plugin']} ({r['distribution']} {r['version']}); default image size "
               f"{r['default_image_size']}, backbone {r['default_backbone']}")
    if r["layout"]:
        click.echo("\n" + r["layout"])
    if r["options"]:
        click.echo("\noptions (--dataset-option KEY=VALUE):")
        for o in r["options"]:
            click.echo(f"  {o['name']} (default {o['default']!r}): {o['help']}")


@datasets.command("verify")
@click.argument("name")
@_data_root
@_option
@click.option("--no-images", is_flag=True, help="Skip checking the image files.")
@click.option("--decode", is_flag=True, help="Fully decode every image (slow) instead of reading headers.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify_cmd(name, data_root, dataset_option, no_images, decode, as_json) -> None:
    """Check a dataset's layout: counts, positives per image, missing/unreadable files."""
    from ..data.verify import format_verify, verify

    report = verify(name, data_root, parse_pairs(dataset_option, "--dataset-option"), check_images=not no_images, decode=decode, progress=True)
    click.echo(json.dumps(report, indent=2, default=str) if as_json else format_verify(report))
    if not report["ok"]:
        sys.exit(1)


@datasets.command("stats")
@click.argument("name")
@_data_root
@_option
@click.option("--split", type=click.Choice(["train", "test", "both"]), default="both", show_default=True)
@click.option("--top", type=click.IntRange(1), default=10, show_default=True, help="Rows per table.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def stats_cmd(name, data_root, dataset_option, split, top, as_json) -> None:
    """Print the label co-occurrence summary (class frequencies, most frequent pairs)."""
    from ..data.verify import format_stats, label_stats, open_dataset

    dataset = open_dataset(name, data_root, parse_pairs(dataset_option, "--dataset-option"))
    splits = ["train", "test"] if split == "both" else [split]
    results = [label_stats(dataset.load_split(s), top) for s in splits]
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        click.echo("\n\n".join(format_stats(r) for r in results))


@datasets.command("labels")
@click.argument("name")
@_data_root
@_option
@click.option("--split", type=click.Choice(["train", "test"]), required=True)
@click.option("--out", "out", type=PathArg(dir_okay=False), required=True,
              help="Label matrix file: .npy, or comma-separated text for any other suffix.")
@click.option("--classes-out", type=PathArg(dir_okay=False), default=None,
              help="Class list file (default: <out stem>.classes.txt).")
@click.option("--replace", is_flag=True, help="Overwrite the output files when they exist (refused otherwise).")
def labels_cmd(name, data_root, dataset_option, split, out, classes_out, replace) -> None:
    """Write a split's full label matrix (loader row order), its class list and image ids."""
    from ..data.verify import export_labels

    info = export_labels(name, data_root, parse_pairs(dataset_option, "--dataset-option"), split, out, classes_out,
                         replace=replace)
    n, c = info["shape"]
    click.echo(f"wrote {info['labels']} ({n} images x {c} classes), {info['classes']}, {info['ids']}")
