"""``run``'s options are declared once, on RunConfig's fields: the flags, their help and the
config-file keys come from that declaration."""

from __future__ import annotations

import dataclasses

from click.testing import CliRunner

from mlrpl_bench.cli.run_cmd import command_line_values, run
from mlrpl_bench.run_config import FILE_KEYS, RUN_FLAGS, RunConfig, make_run_config


def test_every_declared_flag_is_a_run_option_with_the_fields_help():
    help_text = " ".join(CliRunner().invoke(run, ["--help"]).output.split())
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    for name in RUN_FLAGS:
        assert f"--{name.replace('_', '-')}" in help_text, name
        assert " ".join(fields[name].metadata["help"].split()) in help_text, name
    assert "--jobs N" in help_text and "--threads T" in help_text and "--tune-seed S" in help_text
    assert "--setting [full|pal|ppl|spl]" in help_text


def test_config_file_keys_are_the_fields_not_marked_command_line_only():
    assert set(FILE_KEYS) == {f.name for f in dataclasses.fields(RunConfig)} - {
        "resume", "overwrite", "skip_bad_images", "progress", "jobs", "threads"}


def test_a_generated_flag_reaches_the_run_config():
    context = run.make_context("run", ["--plugin", "hst", "--known", "0.1,0.5", "--seeds", "2", "--shard", "1/2",
                                       "--resume", "--jobs", "3", "--tune-seed", "2", "--epochs", "4"])
    config = make_run_config(command_line_values(context.params))
    assert (config.plugin, config.known, config.seeds, config.shard) == ("hst", (0.1, 0.5), (2,), (1, 2))
    assert (config.resume, config.overwrite, config.jobs, config.tune_seed) == (True, False, 3, 2)
    assert config.train == {"epochs": "4"}
