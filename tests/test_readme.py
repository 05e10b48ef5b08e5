"""The README's two commands exist, and .ci/run runs the test command verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


def test_readme_has_the_main_job_and_the_test_command():
    main, tests = _commands()
    assert main.startswith("python3 -m venv .venv") and main.endswith("mlrpl-bench run --plugin hst")
    assert "pip install" in tests and tests.endswith("python -m pytest -q")


def test_ci_runs_the_readme_test_command_verbatim():
    _, tests = _commands()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert tests in ci_lines


def test_pyproject_keeps_torch_as_a_range():
    pyproject = (ROOT / "pyproject.toml").read_text()
    torch_dep = re.search(r'"torch([^"]*)"', pyproject).group(1)
    assert "==" not in torch_dep and ">=" in torch_dep


def _default_options(method: str) -> dict:
    import dataclasses
    import json

    from mlrpl_bench.plugin_manager import get_method

    # Through JSON, as a record stores them.
    return json.loads(json.dumps(dataclasses.asdict(get_method(method).Options())))


def test_readme_results_table_matches_the_filed_records():
    """The built-in results table in the README (with its closing legend line) is what `leaderboard
    build` makes of the records filed in leaderboard/results (so re-filed records cannot leave a
    stale table behind)."""
    from mlrpl_bench.leaderboard.aggregate import build_tables, read_results
    from mlrpl_bench.leaderboard.build import readme_table

    text = (ROOT / "README.md").read_text()
    section = text.split("## The built-in dataset", 1)[1].split("\n## ", 1)[0]
    tables = [t for t in build_tables(read_results(ROOT / "leaderboard" / "results"))
              if (t.dataset, t.setting) == ("digit-scenes", "pal")]
    if not tables:  # nothing filed: the README must say the track is withdrawn and show no table
        assert "| method |" not in section
        assert "leaderboard is withdrawn" in section
        return
    start = section.index("| method |")
    end = section.index("\n\n", section.index("\n\n", start) + 2) + 1  # the table, a blank line, the legend
    assert len(tables) == 1
    (table,) = tables
    assert table.knowns == [round(0.1 * i, 1) for i in range(1, 10)]

    def is_default(row) -> bool:  # ablations and profiles filed beside a method are not in the README
        return row.profile == "default" and row.options == _default_options(row.method)

    methods = [row.method for row in table.rows if is_default(row)]
    assert len(methods) == len(set(methods)), "several filed default runs of one method; re-file one of them"
    assert section[start:end] == readme_table(table, is_default)
