"""The leaderboard's own truth: test labels and protocol masks it makes itself, never reads from a submission.

A scores file carries a ``targets`` array beside the scores (for a reader without the dataset),
and a record carries its metrics and its mask fingerprint; all three are written by the
submitter and so can be rewritten by one. For the built-in datasets the leaderboard does not
trust any of them (issue 20.5):

* the test labels come from the dataset itself, regenerated deterministically from the record's
  options (`digit-scenes` and `voc2007-scenes`, regenerated into the dataset cache) and
  checked against the record's ``dataset.fingerprint``;
* the test metrics are recomputed from the submitted scores against those labels
  (:func:`mlrpl_bench.metrics.compute_metrics`) and must equal the record's
  (:data:`~mlrpl_bench.scores.MAP_TOLERANCE` for the mAP and every class's AP,
  :data:`THRESHOLD_TOLERANCE` for OF1 and CF1, which float16 storage may move by a few
  predictions at the threshold);
* the record's mask fingerprint must be the protocol's own mask for its (setting, proportion,
  seed, scheme, validation fraction), drawn again here (:func:`mlrpl_bench.protocol.prepare_protocol`).

Scores are required for the built-in datasets. Records of other datasets keep the self-consistency
check of :func:`mlrpl_bench.scores.verify_scores` (their labels are not available to the leaderboard
without the data): ``leaderboard verify`` is what vouches for those.

Also here: :func:`implausibility`, the flags the page shows on records that are possible but
unlikely from an honest run.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import numpy as np

from mlrpl_bench.errors import BenchError
from mlrpl_bench.schema import loads_strict
from mlrpl_bench.scores import MAP_TOLERANCE, RECORD_FIELD, read_scores, verify_scores

#: Largest |recomputed - recorded| OF1 / CF1 (points) accepted: float16 scores can flip a few
#: predictions that sit at the 0.5 threshold.
THRESHOLD_TOLERANCE = 1.0
#: A validation mAP at or above this at the first epoch is flagged as implausible.
IMPLAUSIBLE_VAL_MAP = 99.0


def _generated_datasets() -> dict:
    """The built-in datasets the leaderboard generates itself, by name (their labels are its truth)."""
    from mlrpl_bench.data.builtin import DigitScenes
    from mlrpl_bench.data.voc_scenes import VocScenes

    return {cls.name: cls for cls in (DigitScenes, VocScenes)}


def is_builtin(record: dict) -> bool:
    """Whether a record was made on a built-in (generated) dataset, in any test draw."""
    return record["dataset"]["name"] in _generated_datasets()


def builtin_dataset(record: dict):
    """The built-in dataset class a record was made on, or None (another dataset, or a private draw)."""
    from mlrpl_bench.data.builtin import PUBLIC_DRAW

    cls = _generated_datasets().get(record["dataset"]["name"])
    if cls is None:
        return None
    return cls if record["dataset"].get("test_draw", PUBLIC_DRAW) == PUBLIC_DRAW else None


@functools.lru_cache(maxsize=8)
def _splits(name: str, options_json: str):
    cls = _generated_datasets()[name]
    values = loads_strict(options_json, source="dataset.options")
    names = {f.name for f in dataclasses.fields(cls.Options)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise BenchError(f"dataset option {unknown[0]!r} is not an option of {name}")
    # cache_dir names a folder of the machine that ran; here the dataset cache of this machine is used.
    dataset = cls(None, cls.Options(**{**values, "cache_dir": ""}))
    return dataset.load_split("train"), dataset.load_split("test")


def builtin_splits(record: dict, source: str):
    """``(train split, test split)`` of a built-in record, regenerated and checked against its fingerprints.

    :raises BenchError: when the regenerated splits are not the ones the record names.
    """
    options = {k: v for k, v in record["dataset"].get("options", {}).items()}
    try:
        train, test = _splits(record["dataset"]["name"], json.dumps(options, sort_keys=True))
    except BenchError as exc:
        raise BenchError(f"{source}: field 'dataset.options': {exc}") from None
    for name, split in (("train", train), ("test", test)):
        if record["dataset"]["fingerprint"].get(name) != split.fingerprint():
            raise BenchError(f"{source}: field 'dataset.fingerprint.{name}' does not match the {name} split that "
                             f"{record['dataset']['name']} generates for options {options}; the record was not made "
                             "on this dataset")
    return train, test


def expected_masks(record: dict, train_split) -> tuple[str, str]:
    """``(mask fingerprint, validation fingerprint)`` the protocol draws for the record's cell."""
    from mlrpl_bench.protocol import prepare_protocol

    p = record["protocol"]
    val_fraction = p.get("val_fraction") or record.get("train", {}).get("val_fraction")
    split = prepare_protocol(train_split.labels, setting=p["setting"], known=p["known"], seed=p["seed"],
                             scheme=p["scheme"], val_fraction=val_fraction, key=train_split.fingerprint())
    return split.mask_fingerprint, split.val_fingerprint


def check_against_truth(record_path: str | Path, record: dict, source: str | None = None) -> None:
    """Check a record of a built-in dataset against the leaderboard's own labels and masks (see the
    module docstring); a record of another dataset against its own scores file when it names one.

    :raises BenchError: one line naming the record, the field and what to do.
    """
    from mlrpl_bench.metrics import compute_metrics

    source = source or str(record_path)
    if builtin_dataset(record) is None:
        if is_builtin(record):
            raise BenchError(f"{source}: field 'dataset.test_draw' is {record['dataset'].get('test_draw')!r}; a private "
                             "draw is scored by `leaderboard verify` only, its numbers go into the verification block")
        if record.get(RECORD_FIELD) is not None:
            verify_scores(record_path, record)
        return
    if record.get(RECORD_FIELD) is None:
        raise BenchError(f"{source}: field '{RECORD_FIELD}' is missing; records of the built-in dataset are filed "
                         "with their test scores (run without --no-save-scores and submit the run folder)")
    train, test = builtin_splits(record, source)
    mask, val = expected_masks(record, train)
    p = record["protocol"]
    cell = f"({p['setting']}, known {p['known']:g}, seed {p['seed']}, scheme {p['scheme']})"
    if p["mask_fingerprint"] != mask:
        raise BenchError(f"{source}: field 'protocol.mask_fingerprint' ({p['mask_fingerprint'][:12]}) is not the "
                         f"protocol's mask for {cell}, which is {mask[:12]}; runs must train on the protocol's own "
                         "partial labels (delete a changed runs/_protocol cache and run again)")
    if p.get("val_fingerprint") is not None and p["val_fingerprint"] != val:
        raise BenchError(f"{source}: field 'protocol.val_fingerprint' is not the protocol's validation split for {cell}")
    scores, targets = read_scores(record_path, record)
    labels = test.labels
    if scores.shape != labels.shape:
        raise BenchError(f"{source}: the scores file has shape {scores.shape} but the test split has {labels.shape}")
    if not np.array_equal(targets, labels.astype(np.int8)):
        # Never used for scoring; refused so that no reader of the file (bootstrap intervals) trusts them.
        raise BenchError(f"{source}: the 'targets' array of its scores file is not the dataset's test labels "
                         f"({int((targets != labels).sum())} entries differ); use the scores file the run wrote")
    scored = ~np.isnan(scores).any(axis=1)
    metrics = compute_metrics(scores[scored], labels[scored], scores_source=f"{source} scores")
    _compare(source, "test mAP", metrics["mAP"], record["metrics"]["test"].get("mAP"), MAP_TOLERANCE)
    for name in ("OF1", "CF1"):
        _compare(source, f"test {name}", metrics[name], record["metrics"]["test"].get(name), THRESHOLD_TOLERANCE)
    recorded = (record.get("per_class_ap") or {}).get("test")
    if isinstance(recorded, list) and len(recorded) == len(metrics["per_class_ap"]):
        for i, (mine, theirs) in enumerate(zip(metrics["per_class_ap"], recorded)):
            _compare(source, f"test AP of class {i}", mine, theirs, MAP_TOLERANCE)


def _compare(source: str, what: str, truth, recorded, tolerance: float) -> None:
    if truth is None and recorded is None:
        return
    if truth is None or recorded is None or abs(truth - recorded) > tolerance:
        t = "none" if truth is None else f"{truth:.2f}"
        r = "none" if recorded is None else f"{recorded:.2f}"
        raise BenchError(f"{source}: the saved scores give {what} {t} against the dataset's own test labels but the "
                         f"record says {r}; the scores or the record were changed, or belong to another run")


def implausibility(record: dict) -> list[str]:
    """Why a record looks implausible for an honest run ([] when it does not): a validation mAP of
    :data:`IMPLAUSIBLE_VAL_MAP` or more at its first epoch. (One mask fingerprint at several
    proportions is a property of a set of records: :func:`shared_masks`.)"""
    out = []
    selection = record.get("selection", {})
    val = (record.get("metrics", {}).get("val") or {}).get("mAP")
    if selection.get("best_epoch") == 0 and val is not None and val >= IMPLAUSIBLE_VAL_MAP:
        out.append(f"validation mAP {val:.1f} at its first epoch")
    return out


def shared_masks(records: list[dict]) -> dict[str, list[float]]:
    """Mask fingerprints that records file at several known proportions (``{fingerprint: [knowns]}``);
    an honest PAL/PPL mask depends on the proportion, so one mask at two proportions is not a
    protocol draw. Settings whose mask does not depend on the proportion (full, spl) are left out."""
    from mlrpl_bench.vocabulary import PROPORTION_FREE_SETTINGS

    seen: dict[str, set[float]] = {}
    for record in records:
        p = record["protocol"]
        if p["setting"] not in PROPORTION_FREE_SETTINGS:
            seen.setdefault(p["mask_fingerprint"], set()).add(float(p["known"]))
    return {fp: sorted(knowns) for fp, knowns in seen.items() if len(knowns) > 1}
