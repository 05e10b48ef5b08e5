"""``mlrpl-bench new-plugin``, ``check-plugin`` and ``plugins`` (in-process, through the CLI's main)."""

from __future__ import annotations

import json
import sys
import tomllib

import pytest

from mlrpl_bench import __version__
from mlrpl_bench.cli import main
from mlrpl_bench.conformance import CHECKS


def cli(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


# ---------------------------------------------------------------------------------------------
# new-plugin
# ---------------------------------------------------------------------------------------------


def test_new_plugin_writes_an_installable_conforming_package(tmp_path, capsys, monkeypatch):
    target = tmp_path / "pkg"
    code, out, _ = cli(capsys, "new-plugin", "tiny-net2", "--dir", str(target))
    assert code == 0
    assert f"pip install -e {target}" in out
    files = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert files == ["README.md", "mlrpl_tiny_net2/__init__.py", "mlrpl_tiny_net2/method.py", "pyproject.toml",
                     "tests/test_conformance.py"]
    meta = tomllib.loads((target / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["mlrpl_bench"] == {"tiny-net2": "mlrpl_tiny_net2.method"}
    assert meta["project"]["name"] == "mlrpl-tiny-net2"
    assert "parametrize_with_checks([TinyNet2])" in (target / "tests/test_conformance.py").read_text()
    assert "mlrpl-bench check-plugin tiny-net2" in (target / "README.md").read_text()
    # The generated method, imported as module:Class, passes every check.
    monkeypatch.chdir(target)
    code, out, _ = cli(capsys, "check-plugin", "mlrpl_tiny_net2.method:TinyNet2")
    assert code == 0, out
    assert f"{len(CHECKS)} checks: {len(CHECKS)} passed, 0 failed, 0 skipped" in out
    sys.modules.pop("mlrpl_tiny_net2.method", None)
    sys.modules.pop("mlrpl_tiny_net2", None)


def test_new_plugin_default_dir_and_empty_dir(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli(capsys, "new-plugin", "abc")[0] == 0
    assert (tmp_path / "mlrpl-abc" / "pyproject.toml").is_file()
    (tmp_path / "empty").mkdir()
    assert cli(capsys, "new-plugin", "method", "--dir", "empty")[0] == 0
    # A plugin named "method" must not shadow the imported base class Method.
    assert "class MethodPlugin(Method):" in (tmp_path / "empty/mlrpl_method/method.py").read_text()


@pytest.mark.parametrize("args, fragment", [
    (["new-plugin", "My_Method"], "plugin name 'My_Method' is not valid; use lower-case letters"),
    (["new-plugin", "a--b"], "is not valid"),
    (["new-plugin", "9lives"], "is not valid"),
    (["new-plugin", "partial-bce"], "already registered by mlrpl-bench"),
])
def test_new_plugin_refuses_bad_names(tmp_path, capsys, monkeypatch, args, fragment):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, *args)
    assert code == 2
    assert err.startswith("error: ") and fragment in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_new_plugin_refuses_to_overwrite(tmp_path, capsys):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    code, _, err = cli(capsys, "new-plugin", "fresh", "--dir", str(target))
    assert code == 2 and err.count("\n") == 1
    assert f"{target}: already exists and is not empty" in err
    assert [p.name for p in target.iterdir()] == ["keep.txt"]


# ---------------------------------------------------------------------------------------------
# check-plugin
# ---------------------------------------------------------------------------------------------

BROKEN_MODULE = '''
import torch
from mlrpl_bench.hookspecs import hookimpl
from mlrpl_bench.losses import partial_bce
from mlrpl_bench.method import Method
from mlrpl_bench.models.heads import PooledLinearClassifier


class Overconfident(Method):
    name = "overconfident"
    summary = "returns scores above one"
    citation = "test fixture"

    def build_model(self, backbone):
        return PooledLinearClassifier(backbone, self.ctx.num_classes)

    def training_step(self, model, batch, epoch):
        return {"loss": partial_bce(model(batch.inputs), batch.labels)}

    def predict(self, model, inputs):
        return 3 * torch.sigmoid(model(inputs))


@hookimpl
def mlrpl_methods():
    return [Overconfident]
'''


def test_check_plugin_passes_a_builtin(capsys):
    code, out, _ = cli(capsys, "check-plugin", "partial-bce")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "partial-bce (mlrpl_bench.plugins.partial_bce.PartialBCE)"
    assert [line.split()[1] for line in lines[1:-1]] == [c.__name__ for c in CHECKS]
    assert all(line.split()[0] == "PASS" for line in lines[1:-1])


def test_check_plugin_reports_failures_with_exit_1(tmp_path, capsys, monkeypatch):
    (tmp_path / "overconfident_plugin.py").write_text(BROKEN_MODULE)
    monkeypatch.chdir(tmp_path)
    try:
        code, out, _ = cli(capsys, "check-plugin", "overconfident_plugin:Overconfident")
        assert code == 1
        fail = [line for line in out.splitlines() if line.strip().startswith("FAIL")]
        assert len(fail) == 1
        assert "check_scores_have_right_shape_and_range: predict returned scores in [" in fail[0]
        assert "apply torch.sigmoid to logits" in fail[0]
        assert "SKIP  check_record_validates: blocked by check_scores_have_right_shape_and_range" in out
        code, out, _ = cli(capsys, "check-plugin", "overconfident_plugin:Overconfident", "--json",
                           "--check", "check_scores_have_right_shape_and_range", "--check", "check_same_seed_same_result")
        assert code == 1
        data = json.loads(out)
        assert data["method"] == "overconfident"
        assert [(r["check"], r["status"]) for r in data["results"]] == [
            ("check_scores_have_right_shape_and_range", "failed"), ("check_same_seed_same_result", "passed")]
    finally:
        sys.modules.pop("overconfident_plugin", None)


def test_check_plugin_options_reach_the_method(capsys):
    code, out, _ = cli(capsys, "check-plugin", "partial-bce", "-o", "normalization=durand", "--check",
                       "check_trains_a_few_steps", "--json")
    assert code == 0 and json.loads(out)["results"][0]["status"] == "passed"
    code, _, err = cli(capsys, "check-plugin", "partial-bce", "-o", "normalization=nonsense", "--check",
                       "check_follows_lifecycle")
    # A bad option is the user's input: one line naming it and what is allowed, exit 2 (issue 12).
    assert code == 2 and "normalization='nonsense'" in err and "known" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli(capsys, "check-plugin", "partial-bce", "-o", "nosuch=1")
    assert code == 2 and "unknown option 'nosuch'" in err


@pytest.mark.parametrize("args, fragment", [
    (["check-plugin", "no-such-method"], "unknown plugin 'no-such-method'; choose one of:"),
    (["check-plugin", "partial-bce", "--check", "check_everything"], "--check 'check_everything' is not a check"),
    (["check-plugin", "no_such_module_xyz:Thing"], "cannot import module 'no_such_module_xyz'"),
    (["check-plugin", "partial-bce", "-o", "novalue"], "--option 'novalue': expected KEY=VALUE"),
])
def test_check_plugin_bad_input_is_one_line_exit_2(capsys, args, fragment):
    code, _, err = cli(capsys, *args)
    assert code == 2 and fragment in err and err.count("\n") == 1


# ---------------------------------------------------------------------------------------------
# plugins
# ---------------------------------------------------------------------------------------------


def test_plugins_lists_everything_with_its_source(capsys):
    code, out, _ = cli(capsys, "plugins")
    assert code == 0
    for title in ("Methods (", "Datasets (", "Backbones (", "Plugins ("):
        assert title in out
    row = next(line for line in out.splitlines() if line.startswith("partial-bce "))
    assert row.split()[:4] == ["partial-bce", "1.0", "mlrpl-bench", __version__]
    assert any(line.startswith("digit-scenes ") for line in out.splitlines())
    assert any(line.startswith("mlrpl_bench.plugins.partial_bce ") and line.rstrip().endswith("mlrpl_methods")
               for line in out.splitlines())


def test_plugins_json_has_options_profiles_and_citations(capsys):
    from mlrpl_bench.plugin_manager import backbone_registry, dataset_registry, method_registry

    code, out, _ = cli(capsys, "plugins", "--json")
    assert code == 0
    data = json.loads(out)
    assert [m["name"] for m in data["methods"]] == list(method_registry())
    assert [d["name"] for d in data["datasets"]] == list(dataset_registry())
    assert [b["name"] for b in data["backbones"]] == list(backbone_registry())
    pbce = next(m for m in data["methods"] if m["name"] == "partial-bce")
    assert pbce["distribution"] == "mlrpl-bench" and pbce["plugin"] == "mlrpl_bench.plugins.partial_bce"
    assert pbce["options"][0] == {"name": "normalization", "type": "known|durand", "default": "known",
                                  "help": pbce["options"][0]["help"]}
    assert "SST eq. 9" in pbce["options"][0]["help"] and "Durand" in pbce["citation"]
    with_profiles = [m for m in data["methods"] if m["profiles"]]
    assert with_profiles, "some built-in method has a profile"
    for method in data["methods"]:
        for opt in method["options"]:
            assert opt["help"], f"{method['name']} option {opt['name']} has no help"


def test_plugins_name_shows_details(capsys):
    code, out, _ = cli(capsys, "plugins", "partial-bce")
    assert code == 0
    assert out.startswith(f"method partial-bce  (mlrpl-bench {__version__}, mlrpl_bench.plugins.partial_bce.PartialBCE)")
    assert "    normalization (known|durand, default 'known'): known: divide by the known count" in out
    code, out, _ = cli(capsys, "plugins", "small-cnn", "--json")
    assert json.loads(out)["out_channels"] == 128
    code, _, err = cli(capsys, "plugins", "nope")
    assert code == 2 and "unknown plugin, dataset or backbone 'nope'" in err


def test_the_scaffolded_readme_installs_pytest_before_running_it(tmp_path, capsys):
    """Issue 20.8: `pip install -e .` alone does not install pytest; the README installs the [test] extra."""
    assert cli(capsys, "new-plugin", "tiny-net3", "--dir", str(tmp_path / "p"))[0] == 0
    readme = (tmp_path / "p" / "README.md").read_text()
    assert 'test = ["pytest"]' in (tmp_path / "p" / "pyproject.toml").read_text()
    assert readme.index('pip install -e ".[test]"') < readme.index("python -m pytest")
