"""The run configuration: one typed object, resolved in one place.

A benchmark run is configured from up to four sources, applied in this order (later wins):
``TrainConfig`` defaults -> the dataset's defaults -> the method's profile -> the config file
(``--config``, JSON or TOML) -> the command line. Each source is validated on its own by the
schema layer (:mod:`mlrpl_bench.schema`), so an error names where the value came from:
command-line text is parsed into the declared types, config-file and profile values are read
strictly as JSON types (``true`` is not an integer, ``1.7`` is not an integer).

* :class:`TrainConfig` -- the harness's own settings, the same for every method;
* :class:`RunConfig` -- everything ``mlrpl-bench run`` was asked (CLI and config file alike);
* :func:`prepare_run` -- the one resolution step (registry looked up once, profile applied,
  every option typed and checked) giving a :class:`PreparedRun`, which the CLI and the
  conformance kit both use.

Torch-free: reading a configuration and resolving it never imports torch (the registries do,
when a plugin module imports it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from .errors import BenchError
from .loggers import LoggerName
from .metrics import metric_names
from .resources import MAX_THREADS, MAX_TUNE_CANDIDATES
from .schema import build_options, read_config
from .train_config import TrainConfig  # noqa: F401 - part of the run configuration
from .vocabulary import (DEFAULT_PROPORTIONS, SCHEMES, SETTINGS, check_distinct,
                         check_path_text, check_proportion, check_seed, check_setting_scheme, make_run_id, parse_proportions,
                         parse_seeds, plan_cells, proportion_key, safe_name)

DEFAULT_DATASET = "digit-scenes"
#: What ``--tune-metric`` may name: the validation metrics every run computes (checked before anything trains).
TUNE_METRICS = metric_names()


# --------------------------------------------------------------------------- the run configuration


class CliText(str):
    """A value typed on the command line (parsed into its declared type, unlike config-file values)."""


def _unsplit(value: Any) -> Any:
    """The text of a one-item list the schema's comma splitter made of it, lists as tuples."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    return tuple(value) if isinstance(value, list) else value


def _proportions(value: Any) -> Any:
    """``"all"`` / ``"0.1,0.5"`` text as proportions."""
    value = _unsplit(value)
    return parse_proportions(value) if isinstance(value, str) else value


def _seeds(value: Any) -> Any:
    """``"0,1,2"`` text (or the schema's comma-split list of it) as seeds."""
    value = _unsplit(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        value = ",".join(value)
    return parse_seeds(value) if isinstance(value, str) else value


def _shard(value: Any) -> Any:
    """``"i/n"`` text (command line or config file) as ``(i, n)``."""
    value = _unsplit(value)
    if isinstance(value, str):
        i, sep, n = value.partition("/")
        if not sep or not i.strip().isdigit() or not n.strip().isdigit():
            raise ValueError(f"expected i/n with 0 <= i < n, e.g. 0/4, got {value!r}")
        return (int(i), int(n))
    return value


def _check_shard(value: tuple[int, int]) -> tuple[int, int]:
    i, n = value
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"expected i/n with 0 <= i < n, e.g. 0/{max(n, 1)}; got {i}/{n}")
    return value


Known = Annotated[float, AfterValidator(check_proportion)]
Seed = Annotated[int, AfterValidator(check_seed)]


#: A file or folder path given as text: never empty.
PathText = Annotated[str, AfterValidator(check_path_text)]


def _distinct_known(values: tuple[float, ...]) -> tuple[float, ...]:
    return check_distinct(values, name="known", key=proportion_key)


def _distinct_seeds(values: tuple[int, ...]) -> tuple[int, ...]:
    return check_distinct(values, name="seeds")


#: Known-label proportions (``"all"``, ``"0.1,0.5"`` or a list): checked, distinct, at least one (``run`` and ``sweep``).
KnownList = Annotated[tuple[Known, ...], BeforeValidator(_proportions), Field(min_length=1), AfterValidator(_distinct_known)]
#: Seeds (``"0,1"`` or a list): checked, distinct, at least one (``run`` and ``sweep``).
SeedList = Annotated[tuple[Seed, ...], BeforeValidator(_seeds), Field(min_length=1), AfterValidator(_distinct_seeds)]


@dataclass
class RunConfig:
    """What ``mlrpl-bench run`` was asked to do, from the command line and/or a config file.

    The same keys are valid in a ``--config`` file (``train``, ``method_options`` and
    ``dataset_options`` are tables there; ``tune`` maps option names to lists of values).
    """

    plugin: str = field(default="", metadata={"help": "method to train"})
    dataset: str = field(default=DEFAULT_DATASET, metadata={"help": "dataset name", "flag": "value"})
    data_root: PathText | None = field(default=None, metadata={"help": "where the dataset lives on disk"})
    dataset_options: dict[str, Any] = field(default_factory=dict, metadata={"help": "loader options"})
    setting: Literal[SETTINGS] = field(default="pal", metadata={"help": "protocol setting", "flag": "value"})  # type: ignore[valid-type]
    known: KnownList = field(
        default=DEFAULT_PROPORTIONS, metadata={"help": "known-label proportions, e.g. '0.1,0.5', or 'all'", "flag": "value",
                                               "default_text": "all = 0.1..0.9"})
    seeds: SeedList = field(default=(0,), metadata={"help": "comma-separated seeds", "flag": "value", "default_text": "0"})
    scheme: Literal[SCHEMES] = field(default="generator", metadata={  # type: ignore[valid-type]
        "help": "mask scheme; hcp: bit-exact official PAL masks", "flag": "value"})
    profile: str = field(default="default", metadata={
        "help": "hyper-parameter profile of the method, e.g. 'paper'", "flag": "value",
        "default_text": "default, CPU-sized"})
    method_options: dict[str, Any] = field(default_factory=dict, metadata={"help": "method options"})
    train: dict[str, Any] = field(default_factory=dict, metadata={"help": "TrainConfig overrides"})
    tune: dict[str, tuple[Any, ...]] = field(default_factory=dict, metadata={"help": "option -> values to try"})
    tune_metric: Literal[TUNE_METRICS] = field(  # type: ignore[valid-type]
        default="mAP", metadata={"help": "validation metric that selects a --tune candidate", "flag": "value"})
    tune_seed: Seed | None = field(default=None, metadata={
        "help": "search the --tune grid on seed S only; the other seeds of each proportion train its choice (seed S "
                "runs first); unset: every seed searches", "flag": "value", "metavar": "S"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when present, else CPU), cpu, cuda, cuda:N",
                                                  "flag": "value"})
    output: PathText = field(default="runs", metadata={"help": "where records go"})
    word_embeddings: PathText | None = field(default=None, metadata={
        "help": "category word vectors file (GloVe text, .npy or .json)", "flag": "value"})
    shard: Annotated[tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=1)]], BeforeValidator(_shard),
                     AfterValidator(_check_shard)] = field(default=(0, 1), metadata={
                         "help": "run only shard i of n of the sweep, as i/n", "flag": "value", "default_text": "0/1"})
    resume: bool = field(default=False, metadata={"help": "continue interrupted runs from their checkpoints",
                                                  "flag": "switch", "file": False})
    overwrite: bool = field(default=False, metadata={"help": "re-run runs whose record already exists",
                                                     "flag": "switch", "file": False})
    skip_bad_images: bool = field(default=False, metadata={
        "help": "skip unreadable images (counted in the record) instead of stopping", "flag": "switch", "file": False})
    progress: bool = field(default=True, metadata={"help": "progress bars", "file": False})
    log: tuple[LoggerName, ...] = field(default=(), metadata={
        "help": "report to experiment trackers: tensorboard, wandb, mlflow (comma-separated; wandb/mlflow need their "
                "pip extra; not part of the run's identity)", "flag": "value", "metavar": "NAMES"})
    jobs: Annotated[int, Field(ge=0, le=MAX_THREADS)] = field(default=0, metadata={
        "help": "worker processes for the sweep's cells on a CPU; 0 = one per core, at most one per cell (1 on a GPU "
                "or under torchrun)", "flag": "value", "metavar": "N", "file": False})
    threads: Annotated[int, Field(ge=0, le=MAX_THREADS)] = field(default=0, metadata={
        "help": "torch threads per process, recorded with each run; 0 = 1 on a CPU (the same numbers on any machine), "
                "torch's default on a GPU", "flag": "value", "metavar": "T", "file": False})
    save_scores: bool | None = field(default=None, metadata={
        "help": "keep the test scores beside each record (test_scores.npz); None: on for the built-in dataset only"})

    @property
    def method(self) -> str:
        return self.plugin

    @property
    def output_dir(self) -> Path:
        return Path(self.output).expanduser()

    def planned_runs(self) -> list[tuple[float, int]]:
        """The (known, seed) pairs of this sweep (:func:`~mlrpl_bench.vocabulary.plan_cells`: one run per
        seed for ``full`` and ``spl``), restricted to this shard (deterministic order)."""
        runs = plan_cells(self.setting, self.known, self.seeds)
        i, n = self.shard
        return [r for j, r in enumerate(runs) if j % n == i]


#: RunConfig keys a config file may set: every field not declared ``"file": False`` (run-time
#: switches such as --resume and the process layout --jobs/--threads are command-line only).
FILE_KEYS = tuple(f.name for f in fields(RunConfig) if f.metadata.get("file", True))

#: RunConfig fields with a ``run`` flag of their own name generated from their declaration
#: (``"flag": "value"``: ``--name TEXT``; ``"flag": "switch"``: ``--name`` sets true), beside
#: :data:`~mlrpl_bench.cli.run_cmd.TRAIN_FLAGS` for TrainConfig fields.
RUN_FLAGS = {f.name: f.metadata["flag"] for f in fields(RunConfig) if "flag" in f.metadata}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping of a ``--config`` file (JSON, or TOML by suffix); unknown keys are refused."""
    try:  # an unset shell variable: running without the file would run the defaults
        check_path_text(str(path))
    except BenchError as exc:
        raise BenchError(f"--config {exc}; pass a .json or .toml file") from None
    p = Path(path)
    if p.suffix in (".yaml", ".yml", ".ini", ".cfg", ".py"):
        raise BenchError(f"--config {p}: config files are JSON or TOML (by suffix: .json, .toml); convert it")
    data = read_config(p, source=f"--config {p}")
    if not isinstance(data, dict):
        raise BenchError(f"--config {p}: expected a mapping at the top level")
    unknown = sorted(set(data) - set(FILE_KEYS))
    if unknown:
        raise BenchError(f"--config {p}: unknown key {unknown[0]!r}; allowed keys: {', '.join(sorted(FILE_KEYS))}")
    return data


def _typed(options_cls: type, values: Mapping[str, Any], *, owner: str, strings: bool,
           flags: bool = False) -> dict[str, Any]:
    """The given ``values`` validated against ``options_cls`` (typed, only the keys given)."""
    if not values:
        return {}
    built = build_options(options_cls, values, owner=owner, strings=strings, flags=flags)
    return {k: getattr(built, k) for k in values}


def make_run_config(cli: Mapping[str, Any] | None = None, file: Mapping[str, Any] | None = None, *,
                    file_name: str = "config") -> RunConfig:
    """One :class:`RunConfig` from config-file values (read strictly) and command-line text (parsed).

    Nested tables (``train``, ``method_options``, ``dataset_options``, ``tune``) merge key by
    key, the command line winning; their contents are checked by :func:`prepare_run`, which
    knows the method and the dataset.
    """
    cli, file = dict(cli or {}), dict(file or {})
    from_file = _typed(RunConfig, file, owner=f"--config {file_name}", strings=False)
    nested = ("dataset_options", "method_options", "train", "tune")
    from_cli = _typed(RunConfig, {k: v for k, v in cli.items() if k not in nested}, owner="command line", strings=True,
                      flags=True)
    merged = {**from_file, **from_cli}
    for key in nested:
        table = dict(from_file.get(key, {}))
        table.update({k: CliText(v) if isinstance(v, str) else v for k, v in (cli.get(key) or {}).items()})
        merged[key] = table
    return RunConfig(**merged)


# --------------------------------------------------------------------------- resolution


@dataclass(frozen=True)
class PreparedRun:
    """A configuration resolved against the registries: what every run of a sweep shares."""

    config: RunConfig
    method_entry: Any          # the plugin_manager.RegistryEntry of the method (looked up once)
    method_options: Any        # the method's Options instance
    train: TrainConfig
    dataset_cls: Any
    dataset_options: Any
    backbone_spec: Any = None  # the registry's BackboneSpec of train.backbone (looked up once)
    weights_sha256: str | None = None
    tune_grid: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    @property
    def method_cls(self):
        return self.method_entry.obj

    @property
    def dataset_name(self) -> str:
        return self.dataset_cls.name

    def dataset_options_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.dataset_options) if dataclasses.is_dataclass(self.dataset_options) else {}

    def config_dict(self) -> dict[str, Any]:
        """What defines the runs of this configuration (hashed into ``config_hash``)."""
        out = {"method": self.method_cls.name, "method_options": dataclasses.asdict(self.method_options),
               "profile": self.config.profile, "train": dataclasses.asdict(self.train),
               "dataset": self.dataset_name, "dataset_options": self.dataset_options_dict(),
               "setting": self.config.setting, "scheme": self.config.scheme,
               "word_embeddings": self.config.word_embeddings}
        # Keys added only when used, so that configurations without them keep their hash.
        if self.weights_sha256 is not None:
            out["backbone_weights_sha256"] = self.weights_sha256
        if self.tune_grid:
            out["tune"] = self.tune_grid_lists()
            out["tune_metric"] = self.config.tune_metric
            if self.config.tune_seed is not None:
                out["tune_seed"] = self.config.tune_seed
        return out

    def tune_grid_lists(self) -> dict[str, list[Any]]:
        """The ``--tune`` grid as JSON-ready lists, keys sorted (how configurations and records store it)."""
        return {k: list(v) for k, v in sorted(self.tune_grid.items())}

    @property
    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.config_dict(), sort_keys=True, default=str).encode()).hexdigest()

    def run_id(self, known: float, seed: int) -> str:
        return make_run_id(self.method_cls.name, self.dataset_name, self.config.setting, known, seed)

    def run_dir_name(self, run_id: str) -> str:
        """``<run_id>`` for the method's defaults, ``<run_id>__<variant>`` for an ablation or a profile,
        so that both can live in one output directory."""
        options = dataclasses.asdict(self.method_options)
        defaults = dataclasses.asdict(self.method_cls.Options())
        suffix = variant_suffix(self.config.profile, options, defaults)
        return f"{run_id}__{suffix}" if suffix else run_id


def variant_suffix(profile: str, options: dict, defaults: dict, max_len: int = 48) -> str:
    """What tells a run's directory from the default configuration's.

    ``""`` for the default profile with the method's default options; otherwise the profile name
    and the changed options as ``key-value`` joined by ``_`` (``ablation-ist-only``,
    ``feature_blending-True``), file-system safe; past ``max_len`` characters ``opts-`` and 8
    hex digits of their hash. (Train settings such as ``--epochs`` are not part of it: a run
    with other train settings in the same output directory is refused with a message.)
    """
    changed = {k: v for k, v in sorted(options.items()) if k not in defaults or defaults[k] != v}
    parts = ([] if profile in ("default", "", None) else [str(profile)]) + [f"{k}-{v}" for k, v in changed.items()]
    if not parts:
        return ""
    text = safe_name("_".join(parts))
    if len(text) > max_len:
        text = "opts-" + hashlib.sha256(json.dumps([profile, changed], sort_keys=True, default=str).encode()).hexdigest()[:8]
    return text


def _split_sources(values: Mapping[str, Any]) -> tuple[dict, dict]:
    """(typed values, command-line text values) of a merged table."""
    text = {k: str(v) for k, v in values.items() if isinstance(v, CliText)}
    return {k: v for k, v in values.items() if k not in text}, text


def prepare_run(config: RunConfig, *, method_entry: Any = None, dataset_cls: Any = None) -> PreparedRun:
    """Resolve ``config``: look up the method and dataset once, apply the profile, type every option.

    :param method_entry: a registry entry to use instead of looking ``config.plugin`` up (the
        conformance kit passes one for a class that is not installed).
    :param dataset_cls: a dataset class to use instead of looking ``config.dataset`` up.
    :raises BenchError: one line naming the source, the field, the value and what is allowed.
    """
    from . import plugin_manager as P

    if not config.plugin and method_entry is None:
        raise BenchError("--plugin is required (see `mlrpl-bench plugins` for the choices)")
    entry = method_entry if method_entry is not None else P.get_method_entry(config.plugin)
    method_cls = entry.obj
    dataset_cls = dataset_cls if dataset_cls is not None else P.get_dataset(config.dataset)
    check_setting_scheme(config.setting, config.scheme)
    if config.setting not in method_cls.settings:
        raise BenchError(f"method {method_cls.name!r} does not support setting {config.setting!r}; it supports "
                         f"{', '.join(method_cls.settings)}")
    train_values = _typed(TrainConfig, {"backbone": dataset_cls.default_backbone, "image_size": dataset_cls.default_image_size},
                          owner=f"dataset {dataset_cls.name!r} defaults", strings=False)
    method_values: dict[str, Any] = {}
    option_fields = {f.name for f in dataclasses.fields(method_cls.Options)}
    owner = f"method {method_cls.name!r}"
    if config.profile not in ("default", "", None):
        if config.profile not in method_cls.profiles:
            raise BenchError(f"method {method_cls.name!r} has no profile {config.profile!r}; profiles: default"
                             + "".join(f", {p}" for p in sorted(method_cls.profiles)))
        profile = method_cls.profiles[config.profile]
        unknown = sorted(set(profile) - TrainConfig.field_names() - option_fields)
        if unknown:
            raise BenchError(f"{owner} profile {config.profile!r}: {unknown[0]!r} is neither a train setting nor an option")
        where = f"{owner} profile {config.profile!r}"
        train_values.update(_typed(TrainConfig, {k: v for k, v in profile.items() if k in TrainConfig.field_names()},
                                   owner=where, strings=False))
        method_values.update(_typed(method_cls.Options, {k: v for k, v in profile.items() if k in option_fields},
                                    owner=where, strings=False))
    typed, text = _split_sources(config.train)
    train_values.update(_typed(TrainConfig, typed, owner="--config train", strings=False))
    train_values.update(_typed(TrainConfig, text, owner="train settings", strings=True, flags=True))
    typed, text = _split_sources(config.method_options)
    method_values.update(_typed(method_cls.Options, typed, owner=f"--config method_options ({owner})", strings=False))
    method_values.update(_typed(method_cls.Options, text, owner=owner, strings=True))
    train = dataclasses.replace(TrainConfig(), **train_values)
    if train.image_size == 0:  # 0 means "the dataset's default"
        train = dataclasses.replace(train, image_size=dataset_cls.default_image_size)
    if not train.backbone_weights:  # "": the dataset's default weights for its default backbone
        from .models.backbones import default_weights

        train = dataclasses.replace(train, backbone_weights=default_weights(dataset_cls, train.backbone))
    backbone_spec = P.get_backbone(train.backbone)
    options = dataclasses.replace(method_cls.Options(), **method_values) if method_values else method_cls.Options()
    typed, text = _split_sources(config.dataset_options)
    dataset_values = _typed(dataset_cls.Options, typed, owner=f"--config dataset_options (dataset {dataset_cls.name!r})",
                            strings=False)
    dataset_values.update(_typed(dataset_cls.Options, text, owner=f"dataset {dataset_cls.name!r}", strings=True))
    dataset_options = dataclasses.replace(dataset_cls.Options(), **dataset_values)
    grid = _tune_grid(config, method_cls)
    if config.tune_seed is not None and not grid:
        raise BenchError(f"--tune-seed {config.tune_seed}: there is no --tune grid to search; add --tune KEY=V1,V2 or "
                         "drop --tune-seed")
    return PreparedRun(config=config, method_entry=entry, method_options=options, train=train, dataset_cls=dataset_cls,
                       dataset_options=dataset_options, backbone_spec=backbone_spec, weights_sha256=_weights_sha256(train.backbone, train.backbone_weights),
                       tune_grid=grid)


def _weights_sha256(backbone: str, weights: str) -> str | None:
    """The sha256 of the weights the backbone starts from (part of the run identity and the record)."""
    from .models.backbones import weights_sha256

    return weights_sha256(backbone, weights)


def _tune_grid(config: RunConfig, method_cls: type) -> dict[str, tuple[Any, ...]]:
    """The ``--tune`` grid, every value typed as the train setting or method option it names."""
    grid: dict[str, tuple[Any, ...]] = {}
    option_fields = {f.name for f in dataclasses.fields(method_cls.Options)}
    for key, values in config.tune.items():
        if key in ("val_fraction", "backbone", "backbone_weights", "track"):
            raise BenchError(f"--tune {key}: not tunable; it changes the validation split or what is trained, so "
                             "candidates would not be compared on the same footing")
        if key in TrainConfig.field_names():
            cls, owner = TrainConfig, "--tune (train setting)"
        elif key in option_fields:
            cls, owner = method_cls.Options, f"--tune (method {method_cls.name!r} option)"
        else:
            raise BenchError(f"--tune {key}: not a train setting or an option of method {method_cls.name!r}; "
                             f"train settings: {', '.join(sorted(TrainConfig.field_names()))}; options: "
                             f"{', '.join(sorted(option_fields)) or '(none)'}")
        text = isinstance(values, CliText)
        if isinstance(values, str):
            values = [v.strip() for v in values.split(",") if v.strip()]
        if not values:
            raise BenchError(f"--tune {key}: give at least one value, e.g. --tune {key}=1e-3,1e-2")
        typed = tuple(_typed(cls, {key: v}, owner=owner, strings=text)[key] for v in values)
        if len(set(map(repr, typed))) != len(typed):
            raise BenchError(f"--tune {key}: the values {list(values)} repeat one; list each value once")
        grid[key] = typed
    candidates = math.prod(len(values) for values in grid.values())
    if candidates > MAX_TUNE_CANDIDATES:
        raise BenchError(f"--tune: the grid has {candidates} candidates (each trains a whole run), more than "
                         f"{MAX_TUNE_CANDIDATES}; search fewer values")
    return grid


__all__ = ["DEFAULT_DATASET", "FILE_KEYS", "RUN_FLAGS", "PreparedRun", "RunConfig", "TrainConfig",
           "make_run_config", "prepare_run", "read_config_file", "variant_suffix"]
