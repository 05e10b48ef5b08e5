"""What makes two records comparable: the method, the protocol and the training budget.

A leaderboard row merges records only when all three signatures agree (issue 16.4: "the
leaderboard never compares unequal budgets"). Each signature is a plain dict built from the
record alone; its short hash names the row.

* **method**: name, version, profile and resolved options (an ablation is its own row);
* **protocol**: dataset fingerprints, mask scheme, validation fraction (and, per proportion and
  seed, the mask fingerprint, checked in :mod:`.frame`);
* **budget** (:data:`BUDGET_FIELDS`): epochs, image size, batch size, learning rate, backbone,
  the backbone's weights (their sha256 when the record gives ``train.backbone_weights_sha256``;
  ``none`` for a backbone trained from scratch; otherwise ``unknown:<name>``, so records without
  the hash merge only with records naming the same weights), how much of the backbone trains
  (``freeze_backbone``), the track (``finetune`` / ``frozen``, with the frozen feature kind) and
  the tuning grid (``tuning.grid``; ``none`` when absent; with ``chosen_on_seed``, the seed it was
  searched on). A budget field that the grid tunes (``lr``) reads ``tuned``: its value differs
  between the cells of one row by design.

Pure Python: no torch, plugin or engine import.
"""

from __future__ import annotations

import hashlib
import json

#: The budget fields, in display order: (key in the signature, label on the page).
BUDGET_FIELDS = (("epochs", "epochs"), ("image_size", "image size"), ("batch_size", "batch size"), ("lr", "lr"),
                 ("backbone", "backbone"), ("weights", "backbone weights"), ("freeze_backbone", "frozen layers"),
                 ("track", "track"), ("tuning_grid", "tuning grid"))


def short_hash(obj, n: int = 8) -> str:
    """The first ``n`` hex digits of the sha256 of ``obj`` as canonical JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def protocol_signature(record: dict) -> dict:
    """What must be equal for two records' numbers to be comparable (besides the masks)."""
    return {"dataset_fingerprint": record["dataset"]["fingerprint"], "scheme": record["protocol"]["scheme"],
            "val_fraction": record["protocol"].get("val_fraction")}


def method_signature(record: dict) -> dict:
    """The method as configured: name, version, profile and options."""
    m = record["method"]
    return {"name": m["name"], "version": m["version"], "profile": m["profile"], "options": m.get("options", {})}


def weights_identity(train: dict) -> str:
    """The backbone weights as part of the budget: sha256, ``none`` (from scratch) or ``unknown:<name>``."""
    sha = train.get("backbone_weights_sha256")
    if isinstance(sha, str) and sha:
        return sha
    name = str(train.get("backbone_weights", "none") or "none")
    return "none" if name == "none" else f"unknown:{name}"


def budget_signature(record: dict) -> dict:
    """The training budget of a record (see the module docstring); missing fields are None."""
    train = record.get("train", {}) or {}
    track = train.get("track", "finetune")
    if track == "frozen" and train.get("frozen_features"):
        track = f"frozen/{train['frozen_features']}"
    tuning = record.get("tuning") or {}
    grid = tuning.get("grid")
    budget = {"epochs": train.get("epochs"), "image_size": train.get("image_size"), "batch_size": train.get("batch_size"),
              "lr": train.get("lr"), "backbone": train.get("backbone"), "weights": weights_identity(train),
              "freeze_backbone": train.get("freeze_backbone"), "track": track,
              "tuning_grid": "none" if grid in (None, {}, []) else json.dumps(grid, sort_keys=True, default=str)}
    if isinstance(grid, dict) and grid:
        # A tuned setting differs between the cells of one row by design: the grid stands for it.
        for key in grid:
            if key in budget:
                budget[key] = "tuned"
        if tuning.get("chosen_on_seed") is not None:
            budget["tuning_grid"] += f" searched on seed {tuning['chosen_on_seed']}"
    return budget


def _weights_text(weights: str) -> str:
    if weights == "none":
        return "from scratch"
    if weights.startswith("unknown:"):
        return f"{weights[len('unknown:'):]} (sha256 unknown)"
    return f"sha256 {weights[:12]}"


def budget_badge(budget: dict) -> str:
    """A compact label of a budget, e.g. ``8 ep · 32 px · small-cnn scratch`` (details: :func:`budget_details`)."""
    parts = [f"{budget['epochs']} ep"] if budget.get("epochs") is not None else []
    if budget.get("image_size") is not None:
        parts.append(f"{budget['image_size']} px")
    weights = "scratch" if budget.get("weights") == "none" else "pretrained"
    parts.append(f"{budget['backbone']} {weights}" if budget.get("backbone") else weights)
    if str(budget.get("track", "")).startswith("frozen"):
        parts.append("frozen")
    if budget.get("tuning_grid") not in (None, "none"):
        parts.append("tuned")
    return " · ".join(parts)


def budget_details(budget: dict) -> str:
    """Every budget field as ``label: value`` pairs joined by ``; `` (the badge's hover text)."""
    out = []
    for key, label in BUDGET_FIELDS:
        value = budget.get(key)
        text = _weights_text(value) if key == "weights" and isinstance(value, str) else ("–" if value is None else f"{value:g}" if isinstance(value, float) else str(value))
        out.append(f"{label}: {text}")
    return "; ".join(out)


def budget_differences(a: dict, b: dict) -> list[str]:
    """The labels of the budget fields on which ``a`` and ``b`` differ (``epochs: 2 vs 8``)."""
    return [f"{label}: {a.get(key)} vs {b.get(key)}" for key, label in BUDGET_FIELDS if a.get(key) != b.get(key)]
