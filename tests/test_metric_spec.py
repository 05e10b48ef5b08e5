"""One metric specification: compute_metrics' keys, the records' metric names and required test
metrics, the sweep table and the leaderboard's average columns all read mlrpl_bench.metrics.METRICS."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from mlrpl_bench.metrics import METRIC_SPECS, METRICS, SUMMARY_METRICS, compute_metrics, metric_names
from mlrpl_bench.results import METRIC_NAMES
from mlrpl_bench.results import TestMetrics as RecordTestMetrics


def test_the_specification_names_exactly_what_compute_metrics_returns():
    scores = np.array([[0.9, 0.2], [0.1, 0.8], [0.6, 0.7]])
    targets = np.array([[1, -1], [-1, 1], [1, 1]])
    out = compute_metrics(scores, targets)
    summary = {k for k in out if k not in ("per_class_ap", "per_class_ap_noninterp", "classes_skipped")}
    assert summary == {m.name for m in METRICS} == set(METRIC_NAMES)
    assert set(compute_metrics(scores, targets, top_k=1)) - {"per_class_ap", "per_class_ap_noninterp",
                                                              "classes_skipped"} == set(metric_names(1))


def test_summary_metrics_are_required_in_a_records_test_block():
    assert SUMMARY_METRICS == ("mAP", "OF1", "CF1")
    RecordTestMetrics.model_validate({"mAP": 50.0, "OF1": None, "CF1": 12.5})
    for missing in SUMMARY_METRICS:
        with pytest.raises(ValidationError):
            RecordTestMetrics.model_validate({m: 1.0 for m in SUMMARY_METRICS if m != missing})
    with pytest.raises(ValidationError):
        RecordTestMetrics.model_validate({"mAP": 100.5, "OF1": 1.0, "CF1": 1.0})


def test_format_and_headers():
    assert METRIC_SPECS["mAP"].format(73.319) == "73.32" and METRIC_SPECS["CF1"].format(None) == "n/a"
    assert [METRIC_SPECS[m].average_header for m in SUMMARY_METRICS] == ["Ave. mAP", "Avg. OF1", "Avg. CF1"]
    assert all(m.higher_is_better for m in METRICS)
