"""The method contract enforced by construction (issue 16): hidden labels unreachable from what a
method receives, scores checked in real runs, state that trains on after a restore."""

from __future__ import annotations

import gc
from collections import deque

import numpy as np
import pytest
import torch

from mlrpl_bench.conformance import (ConformanceError, check_cannot_reach_hidden_labels, check_method,
                                     check_state_trains_on, engine_record)
from mlrpl_bench.conformance_harness import find_hidden_truth
from mlrpl_bench.engine import ContractViolation, check_scores
from mlrpl_bench.hookspecs import hookimpl  # noqa: F401 - a plugin module would use it
from mlrpl_bench.losses import partial_bce
from mlrpl_bench.method import Method
from mlrpl_bench.models.heads import PooledLinearClassifier


class Honest(Method):
    name = "honest-contract"
    summary = "partial BCE on a pooled linear classifier"
    citation = "original"

    def build_model(self, backbone):
        return PooledLinearClassifier(backbone, self.ctx.num_classes)

    def training_step(self, model, batch, epoch):
        return {"loss": partial_bce(model(batch.inputs), self._labels(batch))}

    def _labels(self, batch):
        return batch.labels


def _label_like(obj, train_labels) -> bool:
    return (isinstance(obj, np.ndarray) and obj.ndim == 2 and obj.shape[1] == train_labels.shape[1]
            and obj.shape[0] >= train_labels.shape[0] and obj is not train_labels and (obj != 0).all())


class ClosureAttack(Honest):
    """Follows ctx.feature_batches' closure and attributes to a full label matrix (the attack of
    issue 16.1) and, if it finds one, trains on the true labels of its batches."""

    name = "closure-attack"

    def on_train_start(self, model):
        self.leak = None
        queue = deque([self.ctx.feature_batches])
        seen = set()
        while queue and self.leak is None and len(seen) < 5000:
            obj = queue.popleft()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if _label_like(obj, self.ctx.train_labels):
                self.leak = obj
            for cell in getattr(obj, "__closure__", None) or ():
                queue.append(cell.cell_contents)
            if hasattr(obj, "__dict__") and not isinstance(obj, type):
                queue.extend(vars(obj).values())
            if isinstance(obj, dict):
                queue.extend(obj.values())

    def _labels(self, batch):
        if self.leak is None or self.leak.shape[0] <= int(batch.indices.max()):
            return batch.labels
        return torch.as_tensor(self.leak[batch.indices.cpu().numpy()], dtype=batch.labels.dtype)


class GcWalkAttack(ClosureAttack):
    """Walks gc.get_referents from everything in ctx for the full label matrix."""

    name = "gc-walk-attack"

    def on_train_start(self, model):
        self.leak = None
        queue, seen = deque([vars(self.ctx)]), set()
        while queue and self.leak is None and len(seen) < 20000:
            obj = queue.popleft()
            if id(obj) in seen or isinstance(obj, type):
                continue
            seen.add(id(obj))
            if _label_like(obj, self.ctx.train_labels):
                self.leak = obj
            queue.extend(gc.get_referents(obj))


def _test_metrics(method_cls):
    return engine_record(method_cls)["metrics"]["test"]


@pytest.mark.filterwarnings("ignore::FutureWarning")  # the heap walk touches deprecated torch aliases
def test_the_closure_and_gc_walk_attacks_cannot_change_a_real_run():
    # A real run is a fresh process: forget the kit's cached tiny runs (whose data, a module-level
    # cache of the test process, a heap walk through module globals would otherwise find).
    from mlrpl_bench.conformance_harness import clear_cache

    clear_cache()
    gc.collect()
    honest = _test_metrics(Honest)
    assert _test_metrics(ClosureAttack) == honest
    assert _test_metrics(GcWalkAttack) == honest


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_the_gc_walk_attack_fails_the_kit_and_the_honest_method_passes():
    check_cannot_reach_hidden_labels(Honest)
    with pytest.raises(ConformanceError, match="gc.get_referents"):
        check_cannot_reach_hidden_labels(GcWalkAttack)


def test_the_reachability_search_names_the_closure_path_of_a_leaky_context():
    """The harness design the attack exploited (a lambda over the engine, which holds the split)
    is found by the kit's search, with the path."""
    full = np.array([[1, -1], [-1, 1], [1, 1]], dtype=np.int8)

    class Split:
        def __init__(self):
            self.labels = full

    class EngineLike:
        def __init__(self):
            self.feature_rows = type("Rows", (), {})()
            self.feature_rows.split = Split()

    engine_ref = {"engine": EngineLike()}
    leaky = {"feature_batches": lambda: engine_ref["engine"]}
    hit = find_hidden_truth({"ctx": leaky}, {"full training labels": full})
    assert hit == ("ctx['feature_batches'].__closure__[0].cell_contents['engine'].feature_rows.split.labels "
                   "is the full training labels")
    # A copy with equal content is found too, and partial labels are not mistaken for the truth.
    assert find_hidden_truth({"x": [full.copy()]}, {"truth": full}) == "x[0] is the truth"
    partial = full.copy()
    partial[0, 0] = 0
    assert find_hidden_truth({"x": partial}, {"truth": full}) is None


class Logits(Honest):
    name = "logits-contract"

    def predict(self, model, inputs):
        return model(inputs) * 10.0  # logits, well outside [0, 1]


def test_a_method_returning_logits_stops_a_real_run_with_one_line():
    with pytest.raises(ConformanceError, match=r"predict returned scores in \[-?[0-9.e+-]+, [0-9.e+-]+\]"):
        engine_record(Logits)
    with pytest.raises(ContractViolation, match="'m': predict returned shape"):
        check_scores(torch.zeros(2, 3), (2, 4), "m")
    with pytest.raises(ContractViolation, match=r"\[nan, nan\]"):
        check_scores(torch.full((2, 3), float("nan")), (2, 3), "m")
    check_scores(torch.rand(2, 3), (2, 3), "m")


class ForgetsMemory(Honest):
    """Keeps a per-image memory that shapes its loss, but leaves it out of state_dict."""

    name = "forgets-memory"

    def on_train_start(self, model):
        if not hasattr(self, "memory"):
            self.memory = torch.zeros(self.ctx.train_labels.shape)

    def training_step(self, model, batch, epoch):
        logits = model(batch.inputs)
        self.memory[batch.indices] = 0.5 * self.memory[batch.indices] + 0.5 * torch.sigmoid(logits.detach())
        return {"loss": partial_bce(logits, batch.labels) + (logits.sigmoid() - self.memory[batch.indices]).pow(2).mean()}


def test_forgetting_state_fails_the_kit_naming_the_attribute():
    with pytest.raises(ConformanceError, match=r"self\.memory differs after load_state_dict"):
        check_state_trains_on(ForgetsMemory)
    check_state_trains_on(Honest)


@pytest.mark.parametrize("name", ["partial-bce", "curriculum", "role"])
def test_built_in_methods_pass_the_new_checks(name):
    results = {r.check: r for r in check_method(name, checks=["check_cannot_reach_hidden_labels",
                                                                "check_state_trains_on"])}
    assert all(r.status == "passed" for r in results.values()), results


def test_plugins_name_shows_a_plugin_with_run_hooks_only(cli, register_hooks):
    @hookimpl
    def mlrpl_run_start(run):
        pass

    register_hooks("logger-only", mlrpl_run_start)
    res = cli("plugins", "logger-only")
    assert res.exit_code == 0, res.stderr
    assert "plugin logger-only" in res.output and "hooks: mlrpl_run_start" in res.output
