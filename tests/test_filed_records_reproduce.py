"""CI re-executes a sample of the filed built-in leaderboard (issue 20.1): a change that moves the
numbers cannot land with stale records. The sample is drawn by ``tools/ci_verify_sample.sh`` with
a seed taken from the commit, so successive commits cover different records."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILED = ROOT / "leaderboard" / "results"
BUILTIN = FILED / "digit-scenes"


@pytest.mark.slow
def test_a_sample_of_the_filed_builtin_records_reproduces():
    records = sorted(BUILTIN.rglob("*.json")) if BUILTIN.is_dir() else []
    if not records:
        # Nothing filed: only a withdrawn track may be empty, and it must say so.
        assert "## Withdrawn" in (FILED / "README.md").read_text()
        return
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("the sample's seed comes from the commit: needs a git checkout")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", str(ROOT / "tools" / "ci_verify_sample.sh")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
