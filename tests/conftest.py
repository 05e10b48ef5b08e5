"""Shared test set-up: an isolated cache directory, and helpers to call the CLI."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# OpenMP threads that spin while waiting starve each other when several test processes share the
# two cores (13x slower steps measured); passive waiting costs nothing when the machine is idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402 - after the OpenMP setting, which is read when torch loads

# Every test session gets its own cache (datasets, feature caches): tests never read or write the
# user's ~/.cache, and generated fixtures are shared by the tests of one session.
_SESSION_CACHE = Path(tempfile.mkdtemp(prefix="mlrpl-bench-test-cache-"))
os.environ["MLRPL_BENCH_CACHE"] = str(_SESSION_CACHE)
os.environ.setdefault("MLRPL_BENCH_CODE_VERSION", "test")
torch.set_num_threads(min(2, torch.get_num_threads()))

#: The smallest built-in dataset a full run can use (generated once per session).
TINY_SCENES = ["--dataset-option", "train_size=60", "--dataset-option", "test_size=30", "--dataset-option", "image_size=32",
               "--image-size", "32", "--batch-size", "16", "--no-progress"]


class CliResult:
    def __init__(self, exit_code: int, output: str, stderr: str):
        self.exit_code, self.output, self.stderr = exit_code, output, stderr


@pytest.fixture
def cli(capsys):
    """Run ``mlrpl-bench ARGS`` in-process; return exit code, stdout and stderr."""
    from mlrpl_bench.cli import main

    def invoke(*args: str) -> CliResult:
        code = 0
        try:
            main([str(a) for a in args])
        except SystemExit as exc:  # main() exits non-zero on errors
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke


@pytest.fixture(autouse=True)
def _sweeps_in_process(monkeypatch):
    """Sweeps run their cells in this process unless a test asks for ``--jobs``: the default (one
    worker per core) would start worker processes for every multi-cell test, and workers do not
    see hooks a test registers in-process (tests/test_parallel_sweep.py covers the workers)."""
    from mlrpl_bench import parallel

    monkeypatch.setattr(parallel, "available_cores", lambda: 1)


@pytest.fixture
def one_torch_thread():
    """torch on one intra-op thread for the test (tiny tensors: a second thread only adds contention
    on the shared 2-core machine). Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def session_cache() -> Path:
    return _SESSION_CACHE


@pytest.fixture
def register_hooks(monkeypatch):
    """Register a plugin module made of the given hook functions for one test (``register_hooks(name, f, g)``)."""
    import sys
    import types

    from mlrpl_bench import plugin_manager as P

    registered = []

    def register(name: str, *functions):
        module = types.ModuleType(name.replace("-", "_"))
        for function in functions:
            setattr(module, function.__name__, function)
        monkeypatch.setitem(sys.modules, module.__name__, module)
        P.reset_registries()
        P.get_plugin_manager().register(module, name=name)
        registered.append(module)
        return module

    yield register
    for module in registered:
        P.get_plugin_manager().unregister(module)
    P.reset_registries()
