"""``mlrpl-bench run``: command-line text and a config file into one RunConfig, run the sweep, print the table."""

from __future__ import annotations

import click

from . import PathArg, parse_pairs

#: TrainConfig fields that have their own flag (--epochs ...); any field can be set in a config file.
TRAIN_FLAGS = ("epochs", "batch_size", "lr", "image_size", "backbone", "backbone_weights", "freeze_backbone",
               "val_fraction", "workers", "precision", "track", "frozen_features")


def _train_options(command):
    """One flag per TrainConfig field of :data:`TRAIN_FLAGS`, its help text and allowed values from the
    field's declaration (values stay text: the schema layer parses them)."""
    import dataclasses

    from ..run_config import TrainConfig
    from ..schema import describe_field, field_default

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for name in reversed(TRAIN_FLAGS):
        f = fields[name]
        allowed = describe_field(TrainConfig, name)
        help_text = f"{f.metadata['help']}" + (f" ({allowed})" if allowed else "") + f" [default: {field_default(f)!r}]"
        command = click.option(f"--{name.replace('_', '-')}", name, default=None, help=help_text,
                               metavar=_metavar(TrainConfig, name))(command)
    return command


def _config_options(command):
    """One flag per RunConfig field of :data:`~mlrpl_bench.run_config.RUN_FLAGS`, its help text,
    allowed values, default and metavar from the field's declaration (values stay text: the
    schema layer parses them; a switch sets ``"true"``)."""
    import dataclasses

    from ..run_config import RUN_FLAGS, RunConfig
    from ..schema import describe_field, field_default

    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    for name, kind in reversed(RUN_FLAGS.items()):
        f = fields[name]
        flag = f"--{name.replace('_', '-')}"
        help_text = f.metadata["help"]
        if kind == "switch":
            command = click.option(flag, name, is_flag=True, default=None, help=help_text)(command)
            continue
        allowed = describe_field(RunConfig, name)
        shown = f.metadata.get("default_text", field_default(f))
        help_text += (f" ({allowed})" if allowed else "") + (f" [default: {shown}]" if shown not in (None, ()) else "")
        command = click.option(flag, name, default=None, help=help_text,
                               metavar=f.metadata.get("metavar") or _metavar(RunConfig, name))(command)
    return command


#: What ``run --help`` shows for a value of each declared type (the value itself stays text).
_METAVARS = {int: "INTEGER", float: "FLOAT", bool: "BOOLEAN", str: "TEXT"}


def _metavar(cls: type, name: str) -> str:
    """``INTEGER`` / ``FLOAT`` / ``BOOLEAN`` / ``TEXT`` / ``[a|b]`` for a field of ``cls``: the type its
    declaration gives (the schema layer parses the text into it), so help does not say TEXT for a number."""
    import typing

    hint = typing.get_type_hints(cls)[name]
    while typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    if typing.get_origin(hint) is typing.Literal:
        return "[" + "|".join(map(str, typing.get_args(hint))) + "]"
    return _METAVARS.get(hint, "TEXT")


@click.command()
@click.option("--plugin", "plugin", help="Method to train (see `mlrpl-bench plugins`).")
@click.option("--data-root", default=None, type=PathArg(file_okay=False), help="Where the dataset lives on disk.")
@click.option("--dataset-option", "dataset_option", multiple=True, metavar="KEY=VALUE", help="Loader option (repeatable).")
@click.option("--option", "-o", "option", multiple=True, metavar="KEY=VALUE", help="Method option (repeatable); see `mlrpl-bench plugins`.")
@_config_options
@_train_options
@click.option("--no-feature-cache", is_flag=True, default=None, help="Frozen track: recompute the frozen backbone every step.")
@click.option("--channels-last", is_flag=True, default=None, help="NHWC memory format for images and convolutions (GPU speed).")
@click.option("--compile", "compile_", is_flag=True, default=None, help="torch.compile the backbone (needs a C compiler on CPU).")
@click.option("--output", default=None, type=PathArg(), help="Where records go [default: ./runs].")
@click.option("--config", "config_file", default=None, help="JSON or TOML file with the same settings (CLI wins).")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@click.option("--tune", "tune", multiple=True, metavar="KEY=V1,V2",
              help="Try every value of a train setting or method option; select on the validation split (repeatable).")
@click.option("--save-scores/--no-save-scores", default=None,
              help="Keep the test scores beside each record (test_scores.npz) [default: on for the built-in digit-scenes and voc2007-scenes only].")
def run(config_file, **params):
    """Train a method over the known-label sweep and write one results record per run."""
    from ..run_config import make_run_config, read_config_file
    from ..runner import run_sweep
    from ..summary import sweep_table

    cli = command_line_values(params)
    file_values = read_config_file(config_file) if config_file is not None else {}
    config = make_run_config(cli, file_values, file_name=str(config_file))
    if not config.planned_runs():  # more shards than runs: say so instead of ending silently
        import dataclasses

        from ..run_config import prepare_run

        from ..runner import pick_device

        prepare_run(config)  # the configuration is still checked, the device too
        pick_device(config.device)
        total = len(dataclasses.replace(config, shard=(0, 1)).planned_runs())
        i, n = config.shard
        click.echo(f"nothing to run: shard {i}/{n} of a sweep of {total} run(s) gets none (use at most {total} shards)")
        return
    from ..parallel import SweepFailed

    try:
        records = run_sweep(config)
    except SweepFailed as failed:  # the finished runs' table first, then the one-line error
        if failed.records:
            click.echo("")
            click.echo(sweep_table(failed.records))
        raise
    if records:
        click.echo("")
        click.echo(sweep_table(records))


def command_line_values(params: dict) -> dict:
    """The ``run`` command's parsed click parameters as the command-line layer of a
    :class:`~mlrpl_bench.run_config.RunConfig` (text values; the schema layer types them)."""
    from ..run_config import RUN_FLAGS

    p = dict(params)
    train = {name: p.get(name) for name in TRAIN_FLAGS}
    train.update(feature_cache="false" if p.get("no_feature_cache") else None,
                 channels_last="true" if p.get("channels_last") else None, compile="true" if p.get("compile_") else None)
    save_scores = p.get("save_scores")
    cli = {name: ("true" if p.get(name) else None) if kind == "switch" else p.get(name) for name, kind in RUN_FLAGS.items()}
    cli.update(plugin=p.get("plugin"), data_root=p.get("data_root"), output=p.get("output"),
               progress="false" if p.get("no_progress") else None,
               save_scores=None if save_scores is None else str(save_scores).lower())
    cli = {k: v for k, v in cli.items() if v is not None}
    cli["train"] = {k: v for k, v in train.items() if v is not None}
    cli["method_options"] = parse_pairs(p.get("option") or (), "--option")
    cli["dataset_options"] = parse_pairs(p.get("dataset_option") or (), "--dataset-option")
    cli["tune"] = parse_pairs(p.get("tune") or (), "--tune", once=True)
    return cli
