"""CONTRIBUTING.md documents every hook of hookspecs.py and every Method lifecycle method: an
anchor, the exact signature, each parameter, the return value and an example that runs."""

from __future__ import annotations

import inspect
import re
import sys
import types
from pathlib import Path

import pluggy
import pytest
import torch

from mlrpl_bench import hookspecs
from mlrpl_bench.data.base import Dataset, DatasetSplit
from mlrpl_bench.method import Method
from mlrpl_bench.models.backbones import BackboneSpec

DOC = Path(__file__).resolve().parents[1] / "CONTRIBUTING.md"
HOOKS = {name: fn for name, fn in vars(hookspecs).items() if hasattr(fn, f"{hookspecs.PROJECT_NAME}_spec")}
LIFECYCLE = ["build_model", "configure_optimizers", "extra_parameters", "on_train_start", "on_epoch_start",
             "training_step", "after_optimizer_step", "on_epoch_end", "predict", "state_dict", "load_state_dict"]


def signature_text(name: str, fn) -> str:
    """``name(a: T, b: U) -> R`` from the (string) annotations, as written in the source."""
    sig = inspect.signature(fn)
    params = []
    for p in sig.parameters.values():
        text = p.name if p.annotation is inspect.Parameter.empty else f"{p.name}: {p.annotation}"
        if p.default is not inspect.Parameter.empty:
            text += f" = {p.default!r}"
        params.append(text)
    out = f"{name}({', '.join(params)})"
    if sig.return_annotation is not inspect.Signature.empty:
        out += f" -> {sig.return_annotation}"
    return out


def section(text: str, anchor: str) -> str:
    """The text from ``<a id="anchor">`` to the next anchor or level-2/3 heading."""
    start = text.index(f'<a id="{anchor}"></a>')
    rest = text[start + 1:]
    ends = [m.start() for m in re.finditer(r'\n<a id="|\n## |\n### ', rest)]
    return rest[: ends[0]] if ends else rest


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def run_example(code: str, name: str) -> types.ModuleType:
    module = types.ModuleType(f"contributing_example_{name}")
    sys.modules[module.__name__] = module  # dataclasses resolve string annotations through it
    exec(compile(code, f"CONTRIBUTING.md example of {name}", "exec"), module.__dict__)  # noqa: S102 - our own docs
    return module


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text()


def test_hookspecs_are_found():
    # Guards the test itself: hookspecs.py has the registration hooks and the run-level events.
    assert {"mlrpl_methods", "mlrpl_datasets", "mlrpl_backbones", "mlrpl_run_start"} <= set(HOOKS)


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_is_documented(doc, name):
    fn = HOOKS[name]
    assert f'<a id="hook-{name}"></a>' in doc, f"CONTRIBUTING.md has no anchor for hook {name}; add a section"
    text = section(doc, f"hook-{name}")
    heading = text.splitlines()[1]
    assert heading == f"#### `{signature_text(name, fn)}`", f"signature of {name} in CONTRIBUTING.md differs from hookspecs.py"
    params = inspect.signature(fn).parameters
    assert "**Parameters:**" in text
    if not params:
        assert "**Parameters:** none." in text
    for param in params:
        assert f"- `{param}`:" in text, f"parameter {param!r} of {name} is not documented"
    for param in re.findall(r":param (\w+):", fn.__doc__ or ""):
        assert param in params, f"hookspecs docstring of {name} names {param!r}, which is not a parameter"
    assert "**Returns:**" in text
    assert len(python_blocks(text)) == 1, f"the section of {name} needs exactly one python example"


def test_no_stale_hook_sections(doc):
    documented = set(re.findall(r'<a id="hook-(\w+)"></a>', doc))
    assert documented == set(HOOKS)


def _pm_with(module) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.register(module)  # pluggy validates the example's hook names and arguments
    pm.check_pending()
    return pm


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_example_runs(doc, name, tmp_path, capsys):
    module = run_example(python_blocks(section(doc, f"hook-{name}"))[0], name)
    assert hasattr(getattr(module, name, None), f"{hookspecs.PROJECT_NAME}_impl"), f"the example of {name} defines no @hookimpl {name}"
    pm = _pm_with(module)
    hook = getattr(pm.hook, name)
    run = {"run_id": "m__d__pal__0.5__seed0", "method": "m", "dataset": "d", "setting": "pal", "known": 0.5, "seed": 0,
           "config": {}, "output_dir": str(tmp_path / "run")}
    record = {"run_id": run["run_id"], "method": {"name": "m"}, "metrics": {"test": {"mAP": 71.25}},
              "selection": {"best_epoch": 2}}
    if name == "mlrpl_methods":
        (cls,) = [c for result in hook() for c in result]
        assert issubclass(cls, Method)
        from mlrpl_bench.conformance import check_method

        results = check_method(cls, checks=["check_options_are_documented_dataclass", "check_follows_lifecycle",
                                            "check_trains_a_few_steps", "check_scores_have_right_shape_and_range"])
        assert [r.status for r in results] == ["passed"] * 4, results
    elif name == "mlrpl_datasets":
        (cls,) = [c for result in hook() for c in result]
        assert issubclass(cls, Dataset)
        (tmp_path / "train.csv").write_text("image,cat,dog\na.jpg,1,-1\nb.jpg,0,1\n")
        split = cls(tmp_path).load_split("train")
        assert isinstance(split, DatasetSplit) and split.labels.tolist() == [[1, -1], [0, 1]]
        assert split.image_paths[1] == tmp_path / "images" / "b.jpg"
    elif name == "mlrpl_backbones":
        (spec,) = [s for result in hook() for s in result]
        assert isinstance(spec, BackboneSpec)
        model = spec.build("none", "none")
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, spec.out_channels, 8, 8)
    elif name == "mlrpl_run_start":
        hook(run=run)
        assert "m on d, pal 0.5, seed 0" in capsys.readouterr().out
    elif name == "mlrpl_epoch_end":
        hook(run=run, epoch=3, logs={"train/loss": 0.5, "val/mAP": 60.0, "lr": 1e-3, "time": 1.0})
        assert '"epoch": 3' in (tmp_path / "run" / "dashboard.jsonl").read_text()
    elif name == "mlrpl_run_end":
        hook(run=run, record=record, path="out/record.json")
        assert "test mAP 71.25 (best epoch 3)" in capsys.readouterr().out
    elif name == "mlrpl_sweep_end":
        hook(records=[record, {**record, "metrics": {"test": {"mAP": 68.75}}}])
        assert "m: Ave. mAP 70.00 over 2 runs" in capsys.readouterr().out
    else:  # a new hook: add a case above that calls its example
        pytest.fail(f"no runner for the example of the new hook {name}; extend this test")


@pytest.mark.parametrize("name", LIFECYCLE)
def test_lifecycle_method_is_documented_and_example_defines_it(doc, name):
    anchor = f"method-{name}"
    assert f'<a id="{anchor}"></a>' in doc, f"CONTRIBUTING.md has no section for Method.{name}"
    text = section(doc, anchor)
    fn = getattr(Method, name)
    assert text.splitlines()[1] == f"#### `{signature_text(name, fn)}`", f"signature of Method.{name} differs"
    (code,) = python_blocks(text)
    module = run_example(code, name)
    example = getattr(module, name, None)
    assert callable(example), f"the example of Method.{name} must define {name}(...)"
    assert list(inspect.signature(example).parameters) == list(inspect.signature(fn).parameters)


def test_every_overridable_method_is_in_the_reference():
    public = {n for n, v in vars(Method).items() if callable(v) and not n.startswith("_") and n != "Options"}
    assert public - {"option_fields", "make_options"} == set(LIFECYCLE)


def test_the_minimal_method_in_the_guide_is_what_new_plugin_writes(doc):
    from mlrpl_bench.scaffold import METHOD, names_for

    generated = METHOD.format(**names_for("my-method"))
    # The guide's class body (options, build_model, training_step) is the template's.
    for line in ("loss_weight: float = field(default=1.0, metadata={\"help\": \"factor on the partial BCE loss\"})",
                 "return PooledLinearClassifier(backbone, self.ctx.num_classes)", "def mlrpl_methods():"):
        assert line in generated and line in doc
