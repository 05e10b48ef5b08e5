"""Issue 22.3-22.6: one strict reader for configs, records and state files; the sweep plans through
the run's own plan; sizes bounded where declared; one overwrite policy. Each test is a hostile input
that used to pass silently, crash or write half a file."""

from __future__ import annotations

import json
import os

import pytest

from conftest import TINY_SCENES
from record_factory import make_record, write_record_file

from mlrpl_bench import sweep as S
from mlrpl_bench.errors import BenchError
from mlrpl_bench.schema import SchemaError, loads_strict, read_config


def _one_line_exit_2(res, *fragments):
    assert res.exit_code == 2, (res.stdout, res.stderr)
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    for fragment in fragments:
        assert fragment in res.stderr, res.stderr


# ------------------------------------------------------------------ 22.3: the sweep plans through the run's plan


def test_a_sweep_over_spl_plans_one_run_per_seed():
    opts = S.build_sweep_options({}, {"plugins": "bce", "settings": "spl", "known": "0.1,0.5,0.9", "seeds": "0,1"})
    runs, _ = S.plan(opts)
    assert [r.key for r in runs] == ["bce__digit-scenes__spl__1__seed0", "bce__digit-scenes__spl__1__seed1"]
    assert all(r.argv[r.argv.index("--known") + 1] == "1" for r in runs)


def test_the_sweep_and_run_share_one_plan_and_one_vocabulary():
    from mlrpl_bench.run_config import RunConfig, make_run_config
    from mlrpl_bench.vocabulary import DEFAULT_PROPORTIONS

    assert not hasattr(S, "DEFAULT_PROPORTIONS") or S.DEFAULT_PROPORTIONS is DEFAULT_PROPORTIONS
    for setting in ("full", "pal", "ppl", "spl"):
        run = make_run_config({"plugin": "bce", "setting": setting, "known": "0.2,0.4", "seeds": "3,4"})
        opts = S.build_sweep_options({}, {"plugins": "bce", "settings": setting, "known": "0.2,0.4", "seeds": "3,4"})
        assert [(r.known, r.seed) for r in S.plan(opts)[0]] == RunConfig.planned_runs(run)
    # The sweep's ranges are the run's: a seed beyond 2**32 and a repeated proportion are refused alike.
    for values, message in (({"seeds": str(2**32)}, "2\\*\\*32"), ({"known": "0.5,0.50"}, "known"), ({"known": "all"}, None)):
        if message is None:
            assert S.build_sweep_options({}, {"plugins": "bce", **values}).known == DEFAULT_PROPORTIONS
        else:
            with pytest.raises(BenchError, match=message):
                S.build_sweep_options({}, {"plugins": "bce", **values})


@pytest.mark.parametrize("name, content, fragment", [
    ("s.json", '{"plugins": ["bce"], "plugins": ["hst"]}', "key 'plugins' appears twice"),
    ("s.json", '{"plugins": ["bce"], "time": NaN}', "NaN"),
    ("s.toml", 'plugins = ["bce"]\ntime = nan\n', "not a finite number"),
    ("s.toml", b"\x00\xff\xfe binary", "not UTF-8 text"),
    ("s.json", '{"plugins": ["bce"], "known": [0.1, 0.5', "not valid JSON"),
    ("s.toml", 'plugins = ["bce"]\nplugins = ["hst"]\n', "not valid TOML"),
])
def test_sweep_config_files_are_read_by_the_one_strict_reader(cli, tmp_path, name, content, fragment):
    config = tmp_path / name
    config.write_bytes(content if isinstance(content, bytes) else content.encode())
    _one_line_exit_2(cli("sweep", "--config", config, "--output", tmp_path / "out", "--dry-run"), str(config), fragment)


@pytest.mark.parametrize("name", ["s.json", "s.toml"])
def test_a_byte_order_mark_is_accepted_by_run_and_sweep_alike(cli, tmp_path, name):
    config = tmp_path / name
    text = '{"plugins": ["bce"], "known": [0.5]}' if name.endswith(".json") else 'plugins = ["bce"]\nknown = [0.5]\n'
    config.write_bytes(b"\xef\xbb\xbf" + text.encode())
    res = cli("sweep", "--config", config, "--output", tmp_path / "out", "--dry-run")
    assert res.exit_code == 0, res.stderr
    run_config = tmp_path / ("r" + name[1:])
    run_config.write_bytes(b"\xef\xbb\xbf" + text.replace("plugins", "plugin").replace('["bce"]', '"bce"').encode())
    from mlrpl_bench.run_config import read_config_file

    assert read_config_file(run_config)["plugin"] == "bce"


@pytest.mark.parametrize("damage, fragment", [
    (lambda p: p.write_text(p.read_text()[: len(p.read_text()) // 2]), "not valid JSON"),
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00"), "not UTF-8 text"),
    (lambda p: p.write_text('{"runs": {"a": ["run"]}, "runs": {}}'), "appears twice"),
    (lambda p: p.write_text('{"runs": 5}'), "field 'runs'"),
])
def test_a_damaged_sweep_state_file_is_one_line(cli, tmp_path, damage, fragment):
    folder = tmp_path / "_sweep" / "default"
    folder.mkdir(parents=True)
    (folder / "sweep.json").write_text(json.dumps({"options": {}, "runs": {"k": ["run"]}}))
    damage(folder / "sweep.json")
    _one_line_exit_2(cli("sweep", "status", "--output", tmp_path), "sweep.json", fragment)


def test_a_damaged_job_state_file_is_one_line(cli, tmp_path):
    folder = tmp_path / "_sweep" / "default"
    (folder / "jobs").mkdir(parents=True)
    (folder / "sweep.json").write_text(json.dumps({"options": {}, "runs": {"k": ["run"]}}))
    (folder / "jobs" / "k.json").write_text('{"state": "running", "state": "done"}')
    _one_line_exit_2(cli("sweep", "status", "--output", tmp_path), "k.json", "appears twice", "resubmit")


# ------------------------------------------------------------------ 22.4: duplicate keys, everywhere


def test_duplicate_keys_are_refused_by_the_one_reader():
    with pytest.raises(SchemaError, match=r"cfg: key 'plugin' appears twice in one object; keep one of them"):
        loads_strict('{"plugin": "partial-bce", "plugin": "hst"}', source="cfg")
    with pytest.raises(SchemaError, match="key 'lr' appears twice"):
        loads_strict('{"train": {"lr": 0.01, "lr": 5.0}}', source="cfg")
    assert loads_strict('[{"a": 1}, {"a": 2}]', source="cfg") == [{"a": 1}, {"a": 2}]  # one key per object is fine


def test_a_run_config_naming_its_plugin_twice_is_refused(cli, tmp_path):
    config = tmp_path / "c.json"
    config.write_text('{"plugin": "partial-bce", "plugin": "hst"}')
    _one_line_exit_2(cli("run", "--config", config, "--output", tmp_path / "out"), "key 'plugin' appears twice")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("record.json"))


def test_a_record_with_a_repeated_field_is_not_filed(cli, tmp_path):
    path = write_record_file(tmp_path / "in", make_record())
    text = path.read_text()
    path.write_text(text.replace('"lr": ', '"lr": 5.0, "lr": ', 1))
    assert '"lr": 5.0, "lr"' in path.read_text()
    res = cli("leaderboard", "submit", path, "--results", tmp_path / "results")
    assert res.exit_code == 2 and "key 'lr' appears twice" in res.stderr
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").rglob("*.json"))


def test_no_module_parses_json_without_the_strict_reader():
    """``json.load``/``json.loads`` appear only in the one reader (and where the suite reads its own fresh output)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    allowed = {"benchmark/schema.py", "benchmark/data/_common.py",  # the reader; the syntax position of a failure
               "benchmark/conformance.py",  # a round trip of a record it just built
               "leaderboard/submit.py", "leaderboard/export.py", "leaderboard/aggregate.py"}  # their own dumps, re-read
    found = [str(p.relative_to(root)) for folder in ("benchmark", "leaderboard", "plugins") for p in (root / folder).rglob("*.py")
             if re.search(r"\bjson\.loads?\(", p.read_text()) and str(p.relative_to(root)) not in allowed]
    assert found == []


# ------------------------------------------------------------------ 22.5: sizes bounded where declared


@pytest.mark.parametrize("args, fragments", [
    (["--threads", "100000"], ["--threads 100000", "less than or equal to"]),
    (["--jobs", "100000"], ["--jobs 100000", "less than or equal to"]),
    (["--plugin", "hst", "-o", "fixed_threshold=-5"], ["fixed_threshold", "greater than or equal to -1"]),
    (["--plugin", "hst", "-o", "threshold_min=1.5"], ["threshold_min", "less than or equal to 1"]),
    (["--tune", "lr=1e-3", "--tune", "lr=1e-2"], ["--tune lr: given twice"]),
    (["--tune", "lr=" + ",".join(f"{i}e-5" for i in range(1, 300))], ["299 candidates", "more than 256"]),
])
def test_sizes_and_ranges_are_refused_before_anything_runs(cli, tmp_path, args, fragments):
    plugin = [] if "--plugin" in args else ["--plugin", "partial-bce"]
    res = cli("run", *plugin, "--known", "0.5", *args, "--output", tmp_path, "--no-progress")
    _one_line_exit_2(res, *fragments)
    assert not list(tmp_path.rglob("record.json"))


def test_a_bank_beyond_the_memory_is_refused_with_its_estimate(cli, tmp_path):
    res = cli("run", "--plugin", "hst", "--known", "0.5", "--epochs", "1", "-o", "bank_size=100000000000",
              "-o", "cst_similarity=instance", "-o", "cst_reference=bank", "--output", tmp_path, *TINY_SCENES)
    _one_line_exit_2(res, "-o bank_size=100000000000", "GB, more than the", "choose a smaller bank_size")


def test_check_allocation_compares_with_what_is_available():
    from mlrpl_bench.resources import check_allocation

    check_allocation(10, what="x", fix="y", available=10)
    with pytest.raises(BenchError, match=r"^x needs 2e-08 GB, more than the 1e-08 GB of memory available; y$"):
        check_allocation(20, what="x", fix="y", available=10)


@pytest.mark.parametrize("command", [
    lambda zero, tmp: ["leaderboard", "submit", zero, "--results", tmp / "r"],
    lambda zero, tmp: ["evaluate", "--scores", zero, "--targets", zero],
    lambda zero, tmp: ["run", "--config", zero],
])
def test_an_endless_file_is_refused_not_read_until_memory_runs_out(cli, tmp_path, command):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero here")
    res = cli(*command("/dev/zero", tmp_path))
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1 and "/dev/zero" in res.stderr, res.stderr


def test_a_scores_file_that_unpacks_beyond_the_cap_is_refused(tmp_path, monkeypatch):
    import numpy as np

    from mlrpl_bench import scores as SC

    block = SC.write_scores(tmp_path, np.full((40, 3), 0.5, dtype=np.float32), np.ones((40, 3), dtype=np.int8))
    record = {"scores_file": block, "dataset": {"sizes": {"test": 40}, "num_classes": 3}}
    monkeypatch.setattr(SC, "MAX_SCORES_BYTES", 100)  # the archive is small; its arrays unpack beyond 100 bytes
    with pytest.raises(BenchError, match=r"test_scores.npz: (array scores.npy unpacks to \d+ bytes|\d+ bytes is more than)"):
        SC.read_scores(tmp_path / "record.json", record)


def test_data_root_equal_to_the_working_folder_is_one_line(cli, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    res = cli("run", "--plugin", "partial-bce", "--known", "0.5", "--epochs", "1", "--data-root", ".",
              "--output", tmp_path / "out", *TINY_SCENES)
    _one_line_exit_2(res, "--data-root .: is the working folder")
    assert os.getcwd() == str(work) and work.is_dir() and list(work.iterdir()) == []


# ------------------------------------------------------------------ 22.6: one overwrite policy, names before files


def test_datasets_labels_refuses_an_existing_output_unless_replace(cli, tmp_path):
    out = tmp_path / "labels.txt"
    out.write_text("mine")
    args = ["datasets", "labels", "digit-scenes", "--split", "test", "--out", out,
            "-o", "train_size=60", "-o", "test_size=30", "-o", "image_size=32"]
    _one_line_exit_2(cli(*args), "--out", "already exists; pass --replace")
    assert out.read_text() == "mine" and not (tmp_path / "labels.classes.txt").exists()
    assert cli(*args, "--replace").exit_code == 0 and out.read_text() != "mine"


def test_a_300_character_plugin_name_writes_nothing(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _one_line_exit_2(cli("new-plugin", "a" * 300, "--dir", tmp_path / "pkg"), "is not valid", "at most 64 characters")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ further hostile files


def _write_case(tmp_path, case):
    if case == "fifo":
        path = tmp_path / "c.json"
        os.mkfifo(path)
    elif case == "loop":
        path = tmp_path / "c.json"
        (tmp_path / "other.json").symlink_to(path)
        path.symlink_to(tmp_path / "other.json")
    else:
        path = tmp_path / ("c.toml" if case == "deep-toml" else "c.json")
        path.write_text({"1e400": '{"plugin": "bce", "train": {"lr": 1e400}}',
                         "digits": '{"plugin": "bce", "seeds": [' + "9" * 5000 + "]}",
                         "deep": "[" * 100_000 + "]" * 100_000,
                         "deep-toml": "a = " + "[" * 5000 + "]" * 5000}[case])
    return path


@pytest.mark.parametrize("case, fragment", [
    ("fifo", "is a pipe or socket"),  # opening it would wait for a writer forever
    ("loop", "Too many levels of symbolic links"),
    ("1e400", "field 'train.lr' is 1e400"),  # json would read infinity
    ("digits", "not a JSON file of this suite"),  # ValueError from int(), not a JSONDecodeError
    ("deep", "nested too deeply"),  # RecursionError
    ("deep-toml", "not a config file of this suite"),
])
def test_hostile_config_files_are_one_line(cli, tmp_path, case, fragment):
    path = _write_case(tmp_path, case)
    _one_line_exit_2(cli("run", "--config", path, "--output", tmp_path / "out"), "--config", fragment)


@pytest.mark.parametrize("device", ["/dev/full", "/dev/null"])
def test_a_device_is_never_replaced_by_an_output_file(cli, tmp_path, device):
    import numpy as np

    if not os.path.exists(device):
        pytest.skip(f"no {device} here")
    labels = tmp_path / "l.npy"
    np.save(labels, np.ones((4, 2), dtype=np.int8))
    before = os.stat(device)
    res = cli("protocol", "--labels", labels, "--out", device, "--setting", "full", "--replace")
    _one_line_exit_2(res, f"--out {device}: is not a regular file")
    after = os.stat(device)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
