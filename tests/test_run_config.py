"""The run configuration (benchmark/run_config.py): one typed object from the command line, a
config file and a profile, resolved once by prepare_run."""

from __future__ import annotations

import pytest

from mlrpl_bench.errors import BenchError
from mlrpl_bench.run_config import CliText, RunConfig, make_run_config, prepare_run


def test_command_line_text_wins_over_the_config_file_key_by_key():
    config = make_run_config({"known": "0.1,0.5", "train": {"epochs": "3"}},
                             {"plugin": "partial-bce", "known": [0.9], "seeds": [1, 2], "train": {"epochs": 5, "lr": 0.01}})
    assert config.known == (0.1, 0.5) and config.seeds == (1, 2)
    prepared = prepare_run(config)
    assert prepared.train.epochs == 3 and prepared.train.lr == 0.01


def test_profile_then_file_then_command_line():
    prepared = prepare_run(make_run_config({"plugin": "asl", "profile": "paper", "train": {"epochs": "2"}}))
    assert prepared.train.epochs == 2 and prepared.train.lr == 1e-5 and prepared.train.image_size == 448


def test_text_is_parsed_but_file_values_are_strict():
    assert prepare_run(make_run_config({"plugin": "partial-bce", "train": {"compile": "false"}})).train.compile is False
    config = make_run_config(file={"plugin": "partial-bce", "train": {"compile": "false"}}, file_name="run.json")
    with pytest.raises(BenchError, match=r"--config train: option compile='false' is not valid"):
        prepare_run(config)


def test_shard_and_planned_runs():
    config = make_run_config({"plugin": "partial-bce", "shard": "1/2", "known": "0.1,0.5", "seeds": "0,1"})
    assert config.shard == (1, 2)
    assert config.planned_runs() == [(0.1, 1), (0.5, 1)]
    with pytest.raises(BenchError, match="--shard 2/2"):
        make_run_config({"plugin": "partial-bce", "shard": "2/2"})


def test_cli_text_marks_command_line_values_only():
    config = make_run_config({"plugin": "partial-bce", "method_options": {"gamma": "2"}})
    assert isinstance(config.method_options["gamma"], CliText)
    assert RunConfig().plugin == "" and RunConfig().known == tuple(round(0.1 * i, 1) for i in range(1, 10))


def test_the_method_registry_is_looked_up_once_per_configuration(monkeypatch):
    from mlrpl_bench import plugin_manager as P

    calls = []
    real = P.get_method_entry
    monkeypatch.setattr(P, "get_method_entry", lambda name: calls.append(name) or real(name))
    prepared = prepare_run(make_run_config({"plugin": "partial-bce"}))
    assert calls == ["partial-bce"] and prepared.method_entry.distribution == "mlrpl-bench"
