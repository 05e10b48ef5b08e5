"""``mlrpl-bench run``: parse options into a RunRequest, run the sweep, print the table."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import click

from ..errors import BenchError

_TRAIN_FLAGS = ("epochs", "batch_size", "lr", "image_size", "backbone", "backbone_weights", "freeze_backbone",
                "val_fraction", "workers")


def _parse_pairs(pairs: tuple[str, ...], flag: str) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise BenchError(f"{flag} {pair!r}: expected KEY=VALUE")
        key, value = pair.split("=", 1)
        out[key.strip().replace("-", "_")] = value
    return out


def _parse_known(text: str) -> tuple[float, ...]:
    from ..runner import DEFAULT_PROPORTIONS

    if text.strip().lower() == "all":
        return DEFAULT_PROPORTIONS
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise BenchError(f"--known {text!r}: expected comma-separated proportions like 0.1,0.5 or 'all'") from None
    if not values:
        raise BenchError("--known: give at least one proportion, e.g. --known 0.5")
    return values


def _parse_ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise BenchError(f"{flag} {text!r}: expected comma-separated integers like 0,1,2") from None
    if not values:
        raise BenchError(f"{flag}: give at least one value")
    return values


def _read_config(path: str) -> dict:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise BenchError(f"--config {p}: cannot read ({exc.strerror or exc})") from None
    try:
        data = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise BenchError(f"--config {p}: not valid {'TOML' if p.suffix == '.toml' else 'JSON'} ({exc})") from None
    if not isinstance(data, dict):
        raise BenchError(f"--config {p}: expected a mapping at the top level")
    allowed = {"plugin", "dataset", "data_root", "setting", "known", "seeds", "scheme", "profile", "device", "output",
               "word_embeddings", "method_options", "train", "dataset_options", "log"}
    unknown = set(data) - allowed
    if unknown:
        raise BenchError(f"--config {p}: unknown key {sorted(unknown)[0]!r}; allowed keys: {', '.join(sorted(allowed))}")
    return data


@click.command()
@click.option("--plugin", "plugin", help="Method to train (see `mlrpl-bench plugins`).")
@click.option("--dataset", default=None, help="Dataset name [default: digit-scenes, the built-in dataset].")
@click.option("--data-root", default=None, type=click.Path(file_okay=False), help="Where the dataset lives on disk.")
@click.option("--dataset-option", "dataset_option", multiple=True, metavar="KEY=VALUE", help="Loader option (repeatable).")
@click.option("--setting", default=None, help="Protocol: full, pal, ppl or spl [default: pal].")
@click.option("--known", default=None, help="Known-label proportions: '0.1,0.5' or 'all' [default: all = 0.1..0.9].")
@click.option("--seeds", default=None, help="Comma-separated seeds [default: 0].")
@click.option("--scheme", default=None, help="Mask scheme: generator (default) or hcp (bit-exact official PAL masks).")
@click.option("--profile", default=None, help="Hyper-parameter profile of the method, e.g. 'paper' [default: CPU-sized defaults].")
@click.option("--option", "-o", "option", multiple=True, metavar="KEY=VALUE", help="Method option (repeatable); see `mlrpl-bench plugins`.")
@click.option("--epochs", type=int, default=None)
@click.option("--batch-size", type=int, default=None)
@click.option("--lr", type=float, default=None)
@click.option("--image-size", type=int, default=None)
@click.option("--backbone", default=None, help="Backbone name [default: the dataset's].")
@click.option("--backbone-weights", default=None, help="none, builtin (shipped small-cnn weights), imagenet (torchvision cache) or PATH [default: the dataset's].")
@click.option("--freeze-backbone", default=None, help="none, official (ResNet layers 1-3 / small-cnn stages 1-2 frozen) or all.")
@click.option("--val-fraction", type=float, default=None, help="Validation split carved from training [default: 0.1].")
@click.option("--workers", type=int, default=None, help="DataLoader worker processes [default: 0].")
@click.option("--precision", default=None, help="Autocast: auto (bf16 on CUDA, fp16 on GPUs without bf16, fp32 on CPU), fp32, bf16 or fp16.")
@click.option("--channels-last", is_flag=True, default=None, help="NHWC memory format for images and convolutions (GPU speed).")
@click.option("--compile", "compile_", is_flag=True, default=None, help="torch.compile the backbone (needs a C compiler on CPU).")
@click.option("--track", default=None, help="finetune (default) or frozen: backbone frozen, its outputs cached on disk.")
@click.option("--frozen-features", default=None, help="Frozen track: cache feature maps (default) or pooled vectors.")
@click.option("--no-feature-cache", is_flag=True, default=None, help="Frozen track: recompute the frozen backbone every step.")
@click.option("--device", default=None, help="auto (CUDA when present, else CPU), cpu, cuda, cuda:N.")
@click.option("--output", default=None, type=click.Path(), help="Where records go [default: ./runs].")
@click.option("--config", "config_file", default=None, help="JSON or TOML file with the same settings (CLI wins).")
@click.option("--word-embeddings", default=None, help="Category word vectors file (GloVe text, .npy or .json).")
@click.option("--shard", default=None, help="Run only shard i of n of the sweep, as i/n.")
@click.option("--resume", is_flag=True, help="Continue interrupted runs from their checkpoints.")
@click.option("--overwrite", is_flag=True, help="Re-run runs whose record already exists.")
@click.option("--skip-bad-images", is_flag=True, help="Skip unreadable images (counted in the record) instead of stopping.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@click.option("--log", "log", default=None, metavar="NAMES",
              help="Report to experiment trackers: tensorboard, wandb, mlflow (comma-separated; wandb/mlflow need their pip extra).")
@click.option("--save-scores/--no-save-scores", default=None,
              help="Keep the test scores beside each record (test_scores.npz) [default: on for digit-scenes only].")
def run(plugin, dataset, data_root, dataset_option, setting, known, seeds, scheme, profile, option, epochs, batch_size, lr,
        image_size, backbone, backbone_weights, freeze_backbone, val_fraction, workers, precision, channels_last, compile_,
        track, frozen_features,
        no_feature_cache, device, output, config_file,
        word_embeddings, shard, resume, overwrite, skip_bad_images, no_progress, log, save_scores):
    """Train a method over the known-label sweep and write one results record per run."""
    from ..loggers import check_available, parse_log
    from ..runner import RunRequest, run_sweep
    from ..summary import sweep_table

    cfg = _read_config(config_file) if config_file else {}
    plugin = plugin or cfg.get("plugin")
    if not plugin:
        raise BenchError("--plugin is required (see `mlrpl-bench plugins` for the choices)")
    flags = dict(epochs=epochs, batch_size=batch_size, lr=lr, image_size=image_size, backbone=backbone,
                 backbone_weights=backbone_weights, freeze_backbone=freeze_backbone, val_fraction=val_fraction,
                 workers=workers, precision=precision, channels_last=channels_last, compile=compile_, track=track,
                 frozen_features=frozen_features,
                 feature_cache=False if no_feature_cache else None)
    train_overrides = dict(cfg.get("train", {}))
    train_overrides.update({k: v for k, v in flags.items() if v is not None})
    method_options = dict(cfg.get("method_options", {}))
    method_options.update(_parse_pairs(option, "--option"))
    dataset_options = dict(cfg.get("dataset_options", {}))
    dataset_options.update(_parse_pairs(dataset_option, "--dataset-option"))
    known_value = known if known is not None else cfg.get("known", "all")
    known_tuple = _parse_known(known_value) if isinstance(known_value, str) else tuple(float(k) for k in known_value)
    seeds_value = seeds if seeds is not None else cfg.get("seeds", "0")
    seeds_tuple = _parse_ints(seeds_value, "--seeds") if isinstance(seeds_value, str) else tuple(int(s) for s in seeds_value)
    shard_tuple = (0, 1)
    if shard:
        try:
            a, b = shard.split("/")
            shard_tuple = (int(a), int(b))
        except ValueError:
            raise BenchError(f"--shard {shard!r}: expected i/n, e.g. 0/4") from None
    from ..runner import DEFAULT_DATASET

    request = RunRequest(
        method=plugin, dataset=dataset or cfg.get("dataset", DEFAULT_DATASET), data_root=data_root or cfg.get("data_root"),
        dataset_options=dataset_options, setting=setting or cfg.get("setting", "pal"), known=known_tuple,
        seeds=seeds_tuple, scheme=scheme or cfg.get("scheme", "generator"), profile=profile or cfg.get("profile", "default"),
        method_options=method_options, train_overrides=train_overrides, device=device or cfg.get("device", "auto"),
        output=Path(output or cfg.get("output", "runs")), resume=resume, overwrite=overwrite,
        skip_bad_images=skip_bad_images, word_embeddings=word_embeddings or cfg.get("word_embeddings"),
        shard=shard_tuple, progress=not no_progress, save_scores=save_scores,
        loggers=check_available(parse_log(log if log is not None else cfg.get("log"))))
    records = run_sweep(request)
    if records:
        click.echo("")
        click.echo(sweep_table(records))
