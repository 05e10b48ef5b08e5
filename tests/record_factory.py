"""Synthetic, valid results records for tests (shared by the leaderboard and other tests).

``make_record(...)`` returns a dict that passes :func:`mlrpl_bench.results.validate_record` and
looks like what ``mlrpl-bench run`` writes. Fingerprints are deterministic functions of the
arguments, so records made with the same dataset/protocol arguments share their mask and
dataset fingerprints (the same protocol), and changing ``scheme`` or ``dataset_version`` gives
a different protocol.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

from mlrpl_bench.results import SCHEMA_VERSION, dumps_record, make_run_id


def sha(*parts: Any) -> str:
    """A stable sha256 hex digest of the parts (stands in for real fingerprints)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def make_record(method: str = "partial-bce", dataset: str = "voc2007", setting: str = "pal", known: float = 0.5,
                seed: int = 0, *, mAP: float | None = 80.0, OF1: float | None = 75.0, CF1: float | None = 70.0,
                scheme: str = "generator", dataset_version: str = "v1", num_classes: int = 4,
                method_version: str = "1.0", profile: str = "default", options: dict | None = None,
                code_version: str = "0123456789abcdef0123456789abcdef01234567", **overrides: Any) -> dict:
    """A complete valid record; ``overrides`` set top-level sections (merged one level deep)."""
    dataset_fp = {"train": sha(dataset, dataset_version, "train"), "test": sha(dataset, dataset_version, "test")}
    test_metrics = {"mAP": mAP, "mAP_noninterp": mAP, "OP": 70.0, "OR": 60.0, "OF1": OF1, "CP": 65.0, "CR": 55.0,
                    "CF1": CF1, "OP_top3": 50.0, "OR_top3": 80.0, "OF1_top3": 61.5, "CP_top3": 45.0,
                    "CR_top3": 75.0, "CF1_top3": 56.2, "classes_skipped": 0}
    record = {
        "schema_version": SCHEMA_VERSION,
        "run_id": make_run_id(method, dataset, setting, known, seed),
        "method": {"name": method, "version": method_version, "options": dict(options or {}), "profile": profile,
                   "citation": "A. Author. A method. 2024", "distribution": "mlrpl-bench", "distribution_version": "0.1.0"},
        "dataset": {"name": dataset, "options": {"difficult": "official"}, "num_classes": num_classes,
                    "class_names": [f"class{i}" for i in range(num_classes)],
                    "sizes": {"train": 80, "val": 20, "test": 50}, "fingerprint": dataset_fp},
        "protocol": {"setting": setting, "known": float(known), "seed": int(seed), "scheme": scheme,
                     "val_fraction": 0.2,
                     "mask_fingerprint": sha("mask", dataset_fp, setting, round(float(known), 6), seed, scheme),
                     "val_fingerprint": sha("val", dataset_fp, seed)},
        "train": {"epochs": 2, "batch_size": 8, "lr": 1e-3, "device": "cpu", "world_size": 1},
        "selection": {"metric": "mAP", "best_epoch": 1, "epochs_run": 2, "split": "validation"},
        "metrics": {"val": dict(test_metrics), "test": test_metrics},
        "per_class_ap": {"test": [mAP] * num_classes},
        "runtime": {"seconds": 1.5, "started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T00:00:02+00:00"},
        "environment": {"python": "3.11.2", "torch": "2.4.0", "numpy": "1.26.4", "mlrpl_bench": "0.1.0",
                        "code_version": code_version, "platform": "Linux"},
        "data_issues": {"bad_images_skipped": 0},
        "epoch_log": "epochs.jsonl",
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(record.get(key), dict):
            record[key] = {**record[key], **copy.deepcopy(value)}
        else:
            record[key] = copy.deepcopy(value)
    return record


def write_record_file(directory: str | Path, record: dict, name: str | None = None) -> Path:
    """Write ``record`` as JSON under ``directory`` (no validation: tests write broken ones too)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (name or f"{record.get('run_id', 'record')}.json")
    try:
        path.write_text(dumps_record(record))
    except (TypeError, ValueError):
        path.write_text(json.dumps(record))
    return path


def sweep(method: str, base_map: float, *, knowns=(0.1, 0.3, 0.5, 0.7, 0.9), seeds=(0, 1), slope: float = 10.0,
          seed_jitter: float = 0.5, **kwargs: Any) -> list[dict]:
    """Records of a whole sweep: mAP rises with the known proportion, seeds differ a little."""
    records = []
    for seed in seeds:
        for known in knowns:
            value = round(base_map + slope * known + seed_jitter * seed, 3)
            records.append(make_record(method, known=known, seed=seed, mAP=value, OF1=round(value - 5, 3),
                                       CF1=round(value - 10, 3), **kwargs))
    return records


#: The fixed test set of :func:`scored_record` (one per ``(n_test, num_classes)``), 1 / -1 labels.
def scored_targets(n_test: int = 120, num_classes: int = 6, seed: int = 7):
    import numpy as np

    rng = np.random.default_rng(seed)
    targets = np.where(rng.random((n_test, num_classes)) < 0.25, 1, -1).astype(np.int8)
    targets[0] = 1  # every class has a positive
    return targets


def scored_record(run_dir: str | Path, method: str, known: float, seed: int, *, signal: float, noise_seed: int | None = None,
                  n_test: int = 120, num_classes: int = 6, known_positives: list | None = None, **kwargs: Any) -> Path:
    """A run directory with ``record.json`` and its ``test_scores.npz``: scores = ``signal`` x label + noise.

    The record's test metrics and per-class AP are computed from the saved (float16) scores, so
    the record and its scores file agree as a real run's do. Returns the record path.
    """
    import numpy as np

    from mlrpl_bench.metrics import compute_metrics
    from mlrpl_bench.scores import write_scores

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    targets = scored_targets(n_test, num_classes)
    rng = np.random.default_rng(noise_seed if noise_seed is not None else int(sha(method, known, seed)[:8], 16))
    scores = 1 / (1 + np.exp(-(signal * targets + rng.normal(size=targets.shape))))
    block = write_scores(run_dir, scores, targets)
    metrics = compute_metrics(np.load(run_dir / "test_scores.npz")["scores"].astype(np.float32), targets)
    per_class = metrics.pop("per_class_ap")
    metrics.pop("per_class_ap_noninterp")
    record = make_record(method, known=known, seed=seed, num_classes=num_classes, mAP=metrics["mAP"],
                         OF1=metrics["OF1"], CF1=metrics["CF1"], **kwargs)
    record["metrics"]["test"] = metrics
    record["per_class_ap"] = {"test": per_class}
    record["dataset"]["sizes"]["test"] = n_test
    record["scores_file"] = block
    if known_positives is not None:
        record["protocol"]["per_class_known_positives"] = list(known_positives)
    path = run_dir / "record.json"
    path.write_text(dumps_record(record))
    return path
