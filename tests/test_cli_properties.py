"""Property-based tests of the command-line parser (hypothesis): no input gives a traceback.

Any text for ``--known``, ``--seeds``, ``--shard``, ``-o key=value``, the train flags, ``--tune``
and any JSON value types in a ``--config`` file either resolve into a run configuration or stop
with exit status 2 and exactly one line on stderr. The real ``mlrpl-bench`` entry point is driven
in-process through click's ``CliRunner`` (and a few real subprocesses); a run is always stopped
before anything trains by ``--device no-such-device``, which is checked right after the whole
configuration is resolved, so a valid parse also ends in one line. Valid parses are resolved
directly with ``make_run_config``/``prepare_run`` as well.

Text never holds NUL: a command line cannot carry it.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mlrpl_bench.cli import main
from mlrpl_bench.cli.run_cmd import TRAIN_FLAGS
from mlrpl_bench.errors import BenchError
from mlrpl_bench.run_config import FILE_KEYS, make_run_config, prepare_run, read_config_file

FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Text a hurried user types: numbers in every spelling, words, separators, and anything else.
NUMBERISH = ["0", "1", "-1", "0.5", ".5", "1e-3", "1e400", "-0", "nan", "inf", "-inf", "0x10", "1_0", "0-4", "00-1",
             "2**32", "4294967296", "99999999999999999999999", "1/2", "0/0", "1/0", "3/2", "-1/2", "all", "ALL", "true",
             "yes", "none", "", " ", ",", "0.1,0.1", "0.1, 0.5", "0.1;0.5", "10,20", "0,1,2", "[1]", "{}", "½", "٣"]
texts = st.one_of(st.sampled_from(NUMBERISH), st.text(st.characters(blacklist_characters="\x00"), max_size=12),
                  st.lists(st.sampled_from(NUMBERISH), min_size=1, max_size=3).map(",".join))
OPTION_KEYS = ["gamma", "normalization", "lr", "epochs", "nosuch", "", "Gamma", "gamma ", "train_size", "seed"]
#: Values each option accepts, drawn as often as any text, so that valid parses are common too.
VALID = {"--known": ["0.5", "0.1,0.9", "all", "1", "0.000001"], "--seeds": ["0", "0,1", "4294967295"],
         "--shard": ["0/1", "1/3"], "--setting": ["pal", "ppl", "spl", "full"], "--scheme": ["generator", "hcp"],
         "--profile": ["default", "paper"], "--tune-metric": ["mAP", "CF1_top3"], "--epochs": ["1", "100000", "2**63"],
         "--batch-size": ["1", "100000000", "9223372036854775808"], "--lr": ["1e-3", "10", "1e308"],
         "--image-size": ["0", "32", "4096", "4097"],
         "--freeze-backbone": ["none", "all"], "--val-fraction": ["0.1", "0.99"],
         "--workers": ["0", "64", "18446744073709551616"],
         "--track": ["frozen"], "--frozen-features": ["pooled"], "--backbone": ["small-cnn", "resnet50"],
         "--backbone-weights": ["none", "builtin"], "gamma": ["2", "0"], "normalization": ["durand"],
         "lr": ["1e-3,1e-2", "0.1"], "epochs": ["1,2"], "train_size": ["60"], "seed": ["3"], "image_size": ["16"],
         "weight_decay": ["0,5e-4"], "val_fraction": ["0.2"]}


def value_for(name: str):
    return st.one_of(st.sampled_from(VALID.get(name, ["1"])), texts)


@st.composite
def run_arguments(draw) -> list[str]:
    """``mlrpl-bench run`` arguments: a method, then any of the text-valued options with any text."""
    args = ["--plugin", draw(st.sampled_from(["partial-bce", "hst", "asl"]))]
    single = ["--known", "--seeds", "--shard", "--setting", "--scheme", "--profile", "--tune-metric"]
    for flag in draw(st.lists(st.sampled_from(single + [f"--{f.replace('_', '-')}" for f in TRAIN_FLAGS]),
                              max_size=4, unique=True)):
        args += [flag, draw(value_for(flag))]
    for flag in draw(st.lists(st.sampled_from(["-o", "--dataset-option", "--tune"]), max_size=3)):
        key = draw(st.sampled_from(OPTION_KEYS + ["image_size", "weight_decay", "val_fraction"]))
        args += [flag, f"{key}={draw(value_for(key))}" if draw(st.integers(0, 5)) else draw(texts)]
    args += draw(st.lists(st.sampled_from(["--resume", "--overwrite", "--no-progress", "--save-scores"]), max_size=2))
    return args


def invoke(args: list[str]) -> tuple[int, str, str]:
    """The real entry point, in-process: (exit status, stdout, stderr)."""
    runner = CliRunner()
    with runner.isolation() as streams:
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = streams[0].getvalue().decode(), streams[1].getvalue().decode()
    return code, out, err


def assert_one_line_error(code: int, err: str) -> None:
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err


@FAST
@given(args=run_arguments())
def test_run_never_gives_a_traceback(tmp_path_factory, args):
    out = tmp_path_factory.mktemp("run") / "out"
    code, _, err = invoke(["run", *args, "--device", "no-such-device", "--output", out])
    assert_one_line_error(code, err)
    assert not out.exists(), "nothing may be written before the configuration is accepted"


def _cli_values(args: list[str]) -> dict:
    """The mapping run_cmd builds from these arguments (for the direct make_run_config check)."""
    from mlrpl_bench.cli import parse_pairs

    cli: dict = {"train": {}, "method_options": {}, "dataset_options": {}, "tune": {}}
    pairs = {"-o": "method_options", "--dataset-option": "dataset_options", "--tune": "tune"}
    i = 0
    while i < len(args):
        flag = args[i]
        if flag in ("--resume", "--overwrite", "--no-progress", "--save-scores"):
            i += 1
            continue
        value = args[i + 1]
        name = flag.lstrip("-").replace("-", "_")
        if flag in pairs:
            cli[pairs[flag]].update(parse_pairs((value,), flag))
        elif name in TRAIN_FLAGS:
            cli["train"][name] = value
        else:
            cli[name] = value
        i += 2
    return cli


@FAST
@given(args=run_arguments())
def test_a_parse_resolves_or_is_one_bench_error(args):
    try:
        prepared = prepare_run(make_run_config(_cli_values(args)))
    except BenchError as exc:
        assert "\n" not in str(exc)
        event("refused")
        return
    event("resolved")
    check_usable(prepared)


def check_usable(prepared) -> None:
    """What a resolved configuration promises the engine: a sweep to run and values in range."""
    config = prepared.config
    assert config.planned_runs() and all(0 < k <= 1 for k in config.known)
    assert len(set(config.seeds)) == len(config.seeds) and len(set(config.known)) == len(config.known)
    assert prepared.train.epochs >= 1 and prepared.train.batch_size >= 1 and prepared.train.lr > 0
    assert all(-2**63 <= v < 2**63 for v in prepared.config_dict()["train"].values()
               if isinstance(v, int) and not isinstance(v, bool))
    json.dumps(prepared.config_dict(), allow_nan=False, default=str)  # the hash input: finite JSON


INT_SETTINGS = ["epochs", "batch_size", "workers", "image_size", "lr_step"]


@FAST
@given(name=st.sampled_from(INT_SETTINGS), value=st.one_of(st.integers(-2**80, 2**80).map(str), texts,
                                                           st.integers(0, 99).map(lambda i: f"0{i}-{i}")))
def test_integer_text_is_the_integer_python_reads_or_one_line(name, value):
    """An integer setting typed as text is that integer (as ``int()`` reads it) and fits in 64 bits,
    or the text is refused: pydantic alone would read ``0-4`` as -4 and 10**30 overflows a DataLoader."""
    try:
        prepared = prepare_run(make_run_config({"plugin": "partial-bce", "train": {name: value}}))
    except BenchError as exc:
        assert "\n" not in str(exc)
        return
    got = getattr(prepared.train, name)
    assert type(got) is int and -2**63 <= got < 2**63
    typed = int(value.strip().replace("_", "").split(".")[0])
    assert got == typed or (name == "image_size" and typed == 0)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6)
config_keys = st.sampled_from([*FILE_KEYS, "resume", "bogus", ""])
train_tables = st.dictionaries(st.sampled_from(["epochs", "lr", "batch_size", "image_size", "workers", "track", "nosuch"]),
                               json_values, max_size=3)


@FAST
@given(values=st.dictionaries(config_keys, json_values, max_size=4), train=st.none() | train_tables,
       as_text=st.booleans())
def test_any_config_file_resolves_or_is_one_line(tmp_path_factory, values, train, as_text):
    data = {"plugin": "partial-bce", **values}
    if train is not None:
        data["train"] = train
    path = tmp_path_factory.mktemp("config") / "run.json"
    path.write_text(json.dumps(data))  # NaN and Infinity come out as the non-JSON words
    if as_text:
        code, _, err = invoke(["run", "--config", path, "--device", "no-such-device",
                               "--output", path.parent / "out"])
        assert_one_line_error(code, err)
        assert not (path.parent / "out").exists()
        return
    try:
        prepared = prepare_run(make_run_config({}, read_config_file(path), file_name=str(path)))
    except BenchError as exc:
        assert "\n" not in str(exc)
        return
    check_usable(prepared)


@pytest.fixture(scope="module")
def label_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("labels") / "full.npy"
    np.save(path, np.where(np.random.default_rng(0).random((12, 4)) < 0.4, 1, -1).astype(np.int8))
    return path


@FAST
@given(known=st.none() | texts, seed=texts, setting=st.sampled_from(["pal", "ppl", "spl", "full"]) | texts,
       scheme=st.sampled_from(["generator", "hcp"]) | texts, key=texts)
def test_protocol_works_or_is_one_line(label_file, known, seed, setting, scheme, key):
    out = label_file.with_name("partial.npy")
    out.unlink(missing_ok=True)
    args = ["protocol", "--labels", label_file, "--out", out, "--seed", seed, "--setting", setting, "--scheme", scheme,
            "--key", key] + ([] if known is None else ["--known", known])
    code, stdout, err = invoke(args)
    if code == 0:
        assert out.is_file() and "mask sha256" in stdout and not err
    else:
        assert_one_line_error(code, err)
        assert not out.exists()


@FAST
@given(threshold=texts, top_k=texts, score_type=st.sampled_from(["probabilities", "logits"]))
def test_evaluate_works_or_is_one_line(label_file, threshold, top_k, score_type):
    scores = label_file.with_name("scores.npy")
    if not scores.exists():
        np.save(scores, np.random.default_rng(1).random((12, 4)))
    code, stdout, err = invoke(["evaluate", "--scores", scores, "--targets", label_file, "--threshold", threshold,
                                "--top-k", top_k, "--score-type", score_type, "--json"])
    if code == 0:
        result = json.loads(stdout)
        assert all(v is None or (isinstance(v, float) and math.isfinite(v)) for k, v in result.items()
                   if not isinstance(v, (list, int)) or isinstance(v, bool))
        assert not err
    else:
        assert_one_line_error(code, err)


def _console() -> list[str]:
    script = Path(sys.executable).with_name("mlrpl-bench")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mlrpl_bench"]


@pytest.mark.parametrize("args", [
    ["protocol", "--labels", "{labels}", "--out", "{tmp}/x.npy", "--known", "0.1,0.1"],
    ["protocol", "--labels", "{tmp}", "--out", "{tmp}/x.npy", "--known", "0.5"],
    ["evaluate", "--scores", "{labels}", "--targets", "{labels}", "--top-k", "1e999"],
    ["run", "--plugin", "partial-bce", "--seeds", "0-4", "--output", "{tmp}/runs"],
    ["run", "--plugin", "partial-bce", "--epoch", "3"],
], ids=["protocol-two-proportions", "protocol-folder-as-labels", "evaluate-top-k", "run-seed-range", "run-typo"])
def test_real_processes_end_in_one_line(label_file, tmp_path, args):
    args = [a.format(labels=label_file, tmp=tmp_path) for a in args]
    proc = subprocess.run([*_console(), *args], capture_output=True, text=True, timeout=120)
    assert_one_line_error(proc.returncode, proc.stderr)
    assert not (tmp_path / "x.npy").exists() and not (tmp_path / "runs").exists()
