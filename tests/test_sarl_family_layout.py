"""The SARL-based plugins and their helpers: registered modules never import each other."""

import ast
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
REGISTERED = sorted(p.stem for p in PLUGINS.glob("*.py") if not p.stem.startswith("_"))
FAMILY = ("ssgrl", "ssgrl_pl", "sst", "hst", "dsrb", "ipl")


def imported_plugin_modules(path: Path) -> set[str]:
    """Names of the registered plugin modules that ``path`` imports (relative or absolute)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 1:  # from .x import y / from . import x
                heads = [module.split(".")[0]] if module else [a.name for a in node.names]
            elif module.startswith("mlrpl_bench.plugins"):
                rest = module.removeprefix("mlrpl_bench.plugins").lstrip(".")
                heads = [rest.split(".")[0]] if rest else [a.name for a in node.names]
            else:
                heads = []
            found.update(h for h in heads if h in REGISTERED)
    return found


@pytest.mark.parametrize("name", FAMILY)
def test_registered_module_imports_no_other_plugin(name):
    assert imported_plugin_modules(PLUGINS / f"{name}.py") == set(), (
        f"plugins/{name}.py imports another registered plugin; move the shared piece to a helper package")


def test_helper_packages_import_no_registered_plugin():
    for helper in ("_sarl", "_semantic_transfer", "_blending"):
        for path in (PLUGINS / helper).glob("*.py"):
            assert imported_plugin_modules(path) == set(), f"{path} imports a registered plugin module"


def test_the_checker_sees_an_import_of_a_plugin(tmp_path):
    bad = tmp_path / "x.py"
    bad.write_text("from .ip_mixup import something\nfrom mlrpl_bench.plugins import an\n")
    assert imported_plugin_modules(bad) == {"ip_mixup", "an"}
