"""The long-form table of runs: one pandas row per result record, flattened.

Every table, mean, interval and pivot of the leaderboard (and the end-of-run summary of
``mlrpl-bench run``) is derived from this one frame, and ``leaderboard export`` writes it as the
per-run table. Columns (:data:`RUN_COLUMNS`):

* identity — ``dataset``, ``setting``, ``method``, ``method_version``, ``profile``, ``options``
  (canonical JSON), ``options_id`` and ``method_id`` (hashes of the options and of the whole
  method signature), ``family`` (the record's ``method.family``, else :data:`FAMILIES`);
* protocol — ``known``, ``seed``, ``scheme``, ``val_fraction``, ``dataset_fp_train`` / ``_test``,
  ``mask_fingerprint``, ``val_fingerprint``, ``protocol_key`` (hash of the protocol signature) and
  ``protocol_id`` (``protocol_key``, plus ``/mask <8 hex>`` for a run whose mask differs from the
  mask most runs of its (protocol, proportion, seed) used — ``deviant_mask``);
* budget — every field of :func:`.identity.budget_signature` and ``budget_id`` (its hash);
* metrics — ``test_<m>`` and ``val_<m>`` for every :data:`mlrpl_bench.results.METRIC_NAMES`,
  ``classes_skipped``, ``per_class_ap`` (a list), ``per_class_known_positives`` (a list, from the
  record or the protocol cache; None when neither has it), ``num_classes``, ``n_test``;
* tuning — ``tuning_warnings``: the run's grid-edge and first-epoch warnings
  (:func:`mlrpl_bench.tuning_checks.record_warnings`), joined by its ``SEPARATOR``, empty when none.
* provenance — ``run_id``, ``code_version``, ``dirty``, ``verified`` (a verification block that matches the record, :func:`mlrpl_bench.verification.is_verified`),
  ``private_test_mAP`` (its test mAP on the runner's private draw, NaN without), ``finished``, ``results_dir`` (the folder
  as given), ``record_file`` (relative to it), ``scores_file`` and ``scores_sha256``.

Records that agree on method, protocol, budget, mask, proportion and seed are duplicates: the
one finished last is kept and the others are listed in ``frame.attrs["notes"]``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from mlrpl_bench.results import METRIC_NAMES
from mlrpl_bench.tuning_checks import SEPARATOR, record_warnings
from mlrpl_bench.verification import is_verified

from .discover import Discovery, Found
from .identity import BUDGET_FIELDS, budget_signature, method_signature, protocol_signature, short_hash
from .reference import known_key

#: Method families of the built-in plugins, used when a record's method block names none
#: (``method.family``). Drawn as one plot panel each; a method not listed is in ``other``.
LINEAR = "linear-head baselines"
SARL = "SARL-head methods"
PSEUDO = "pseudo-labeling"
OTHER = "other"
FAMILY_ORDER = (LINEAR, SARL, PSEUDO, OTHER)
FAMILIES = {
    **{m: LINEAR for m in ("bce", "partial-bce", "an", "an-ls", "wan", "bce-ls", "asl", "focal", "epr", "role", "ll-r")},
    # the mixups use the SSGRL head by default (option model=ssgrl)
    **{m: SARL for m in ("ssgrl", "ssgrl-pl", "sst", "hst", "dsrb", "ip-mixup", "fm-mixup")},
    **{m: PSEUDO for m in ("curriculum", "ipl")},
}

BUDGET_COLUMNS = tuple(key for key, _ in BUDGET_FIELDS)
METRIC_COLUMNS = tuple(f"test_{m}" for m in METRIC_NAMES) + tuple(f"val_{m}" for m in METRIC_NAMES)
RUN_COLUMNS = (
    "dataset", "setting", "method", "method_version", "profile", "options", "options_id", "method_id", "family",
    "known", "seed", "scheme", "val_fraction", "dataset_fp_train", "dataset_fp_test", "mask_fingerprint",
    "val_fingerprint", "protocol_key", "protocol_id", "deviant_mask", *BUDGET_COLUMNS, "budget_id",
    *METRIC_COLUMNS, "classes_skipped", "per_class_ap", "per_class_known_positives", "num_classes", "n_test",
    "run_id", "code_version", "dirty", "verified", "private_test_mAP", "finished", "results_dir", "record_file",
    "scores_file", "scores_sha256", "tuning_warnings",
)


def family_of(record: dict) -> str:
    """The record's ``method.family`` when given, else the built-in table, else ``other``."""
    family = record["method"].get("family")
    return family if isinstance(family, str) and family else FAMILIES.get(record["method"]["name"], OTHER)


def _known_positives(record: dict, caches: dict[str, Path]) -> list[int] | None:
    counts = record["protocol"].get("per_class_known_positives")
    if isinstance(counts, list) and len(counts) == record["dataset"]["num_classes"]:
        return [int(c) for c in counts]
    meta = caches.get(record["protocol"]["mask_fingerprint"])
    return None if meta is None else _counts_from_cache(meta, record["protocol"]["mask_fingerprint"])


def _counts_from_cache(meta_path: Path, mask_fingerprint: str) -> list[int] | None:
    """Known positives per class of the training rows of a cached protocol cell (None if unreadable)."""
    from mlrpl_bench.protocol import fingerprint_array

    stem = meta_path.name[: -len(".json")]
    try:
        partial = np.load(meta_path.with_name(stem + ".partial.npy"), allow_pickle=False)
        val_idx = np.load(meta_path.with_name(stem + ".val_idx.npy"), allow_pickle=False)
    except (OSError, ValueError):
        return None
    if fingerprint_array(partial) != mask_fingerprint:
        return None
    train = np.ones(partial.shape[0], dtype=bool)
    train[val_idx] = False
    return np.count_nonzero(partial[train] == 1, axis=0).tolist()


def _flatten(found: Found, caches: dict[str, Path]) -> dict:
    rec = found.record
    m, d, p = rec["method"], rec["dataset"], rec["protocol"]
    msig = method_signature(rec)
    budget = budget_signature(rec)
    row = {
        "dataset": d["name"], "setting": p["setting"], "method": m["name"], "method_version": m["version"],
        "profile": m["profile"], "options": json.dumps(m.get("options", {}), sort_keys=True, default=str),
        "options_id": short_hash(m.get("options", {}), 6), "method_id": short_hash(msig, 16), "family": family_of(rec),
        "known": float(known_key(p["known"])), "seed": int(p["seed"]), "scheme": p["scheme"],
        "val_fraction": p.get("val_fraction"), "dataset_fp_train": d["fingerprint"].get("train"),
        "dataset_fp_test": d["fingerprint"].get("test"), "mask_fingerprint": p["mask_fingerprint"],
        "val_fingerprint": p.get("val_fingerprint"), "protocol_key": short_hash(protocol_signature(rec)),
        **budget, "budget_id": short_hash(budget),
    }
    for split in ("test", "val"):
        block = rec["metrics"].get(split) or {}
        for name in METRIC_NAMES:
            value = block.get(name)
            row[f"{split}_{name}"] = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else np.nan
    scores = rec.get("scores_file") if isinstance(rec.get("scores_file"), dict) else {}
    try:
        record_file = found.path.relative_to(found.root).as_posix() if found.path != found.root else found.path.name
    except ValueError:
        record_file = found.path.as_posix()
    code = str(rec["environment"].get("code_version", ""))
    row.update({
        "classes_skipped": rec["metrics"].get("test", {}).get("classes_skipped"),
        "per_class_ap": [None if v is None else float(v) for v in (rec.get("per_class_ap", {}).get("test") or [])],
        "per_class_known_positives": _known_positives(rec, caches), "num_classes": int(d["num_classes"]),
        "n_test": (d.get("sizes") or {}).get("test"), "run_id": rec["run_id"], "code_version": code,
        "dirty": code.endswith("+dirty"), "verified": is_verified(rec), "private_test_mAP": _private_map(rec),
        "finished": str(rec.get("runtime", {}).get("finished", "")),
        "results_dir": found.root.as_posix() if found.path != found.root else found.path.parent.as_posix(),
        "record_file": record_file, "scores_file": scores.get("path"), "scores_sha256": scores.get("sha256"),
        "tuning_warnings": SEPARATOR.join(record_warnings(rec)),
    })
    return row


def _private_map(record: dict) -> float:
    """The test mAP a verified record got on the runner's private test draw (NaN when it has none)."""
    if not is_verified(record):
        return np.nan
    value = ((record["verification"].get("private") or {}).get("test") or {}).get("mAP")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else np.nan


def records_frame(source: Discovery | list) -> pd.DataFrame:
    """The long-form frame of a :class:`.discover.Discovery` (or of plain record dicts / ``(path, record)`` pairs).

    Duplicates are dropped (the later ``runtime.finished`` wins) and deviant masks flagged; the
    notes about both are in ``frame.attrs["notes"]``.
    """
    if isinstance(source, Discovery):
        found, caches = list(source.records), source.protocol_caches
    else:
        found, caches = [], {}
        for item in source:
            if isinstance(item, Found):
                found.append(item)
            elif isinstance(item, tuple):
                found.append(Found(Path(item[0]), Path(item[0]).parent, item[1]))
            else:
                found.append(Found(Path("-"), Path("."), item))
    frame = pd.DataFrame([_flatten(f, caches) for f in found], columns=[c for c in RUN_COLUMNS
                                                                         if c not in ("protocol_id", "deviant_mask")])
    notes: list[str] = []
    if not frame.empty:
        frame, notes = _dedupe(frame)
        frame = _flag_deviant_masks(frame)
    else:
        frame["protocol_id"], frame["deviant_mask"] = pd.Series(dtype=str), pd.Series(dtype=bool)
    frame = frame[list(RUN_COLUMNS)].reset_index(drop=True)
    frame.attrs["notes"] = notes
    return frame


_RUN_KEY = ["method_id", "protocol_key", "budget_id", "mask_fingerprint", "dataset", "setting", "known", "seed"]


def _dedupe(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Keep one record per run key: the one finished last (stable for equal times)."""
    ordered = frame.sort_values("finished", kind="stable")
    duplicated = ordered.duplicated(_RUN_KEY, keep="last")
    notes = [f"{r.results_dir}/{r.record_file}: duplicate of another run (same method, protocol, budget and seed); "
             "kept the later one" for r in ordered[duplicated].itertuples()]
    return ordered[~duplicated].sort_index(), notes


def _flag_deviant_masks(frame: pd.DataFrame) -> pd.DataFrame:
    """The canonical mask of each (protocol, proportion, seed) is the one most runs used (ties: the
    smallest fingerprint); a run with another mask did not see the same partial labels."""
    cell = ["dataset", "setting", "protocol_key", "known", "seed"]
    counts = frame.groupby(cell + ["mask_fingerprint"]).size().rename("n").reset_index()
    counts = counts.sort_values(["n", "mask_fingerprint"], ascending=[False, True], kind="stable")
    canonical = counts.drop_duplicates(cell).rename(columns={"mask_fingerprint": "canonical_mask"})[cell + ["canonical_mask"]]
    frame = frame.merge(canonical, on=cell, how="left").set_axis(frame.index)
    frame["deviant_mask"] = frame["mask_fingerprint"] != frame["canonical_mask"]
    frame["protocol_id"] = np.where(frame["deviant_mask"], frame["protocol_key"] + "/mask " + frame["mask_fingerprint"].str[:8],
                                    frame["protocol_key"])
    return frame.drop(columns="canonical_mask")
