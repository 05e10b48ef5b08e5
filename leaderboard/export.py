"""``leaderboard export``: the leaderboard as data — the per-run table and the aggregated table.

Two tables, the same ones the page is built from:

* ``runs`` — the long-form frame of :mod:`.frame`, one row per record (``per_class_ap`` and
  ``per_class_known_positives`` are list columns);
* ``aggregated`` — :func:`.aggregate.aggregated_frame`, one row per (table, row, proportion or
  ``ave``) with mean, std, interval, the paired comparison and the frequency bins.

Formats: ``parquet`` (``runs.parquet``, ``aggregated.parquet``), ``csv`` (``runs.csv``,
``aggregated.csv``; list columns as JSON text) and ``hf``: each table a :class:`datasets.Dataset`
saved with ``save_to_disk`` under ``runs/`` and ``aggregated/`` (load with
``datasets.load_from_disk`` and ``push_to_hub`` it as you like). Everything is written to a
temporary folder first and moved into ``--out`` at the end, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from mlrpl_bench.atomic import not_a_folder
from mlrpl_bench.errors import BenchError

from .aggregate import DEFAULT_BASELINE, aggregated_frame, build_tables, check_baseline
from .discover import discover
from .frame import records_frame
from .reference import ReferenceIndex, load_reference

FORMATS = ("parquet", "csv", "hf")
#: Columns of the runs table that hold lists.
LIST_COLUMNS = ("per_class_ap", "per_class_known_positives")


def export_tables(results_dirs, *, baseline: str = DEFAULT_BASELINE, explicit_baseline: bool = False,
                  reference: ReferenceIndex | None = None) -> dict[str, pd.DataFrame]:
    """``{"runs": ..., "aggregated": ...}`` from the records under ``results_dirs``."""
    from .truth import check_against_truth

    found = discover(results_dirs)
    for item in found.records:  # as build does: the leaderboard's own labels and masks
        check_against_truth(item.path, item.record)
    frame = records_frame(found)
    tables = build_tables(frame, reference or ReferenceIndex(load_reference()), baseline=baseline)
    if explicit_baseline:
        check_baseline(tables, baseline)
    runs = frame.copy()
    runs.attrs = {}
    return {"runs": runs, "aggregated": aggregated_frame(tables)}


#: A text cell starting with one of these is a formula to a spreadsheet.
_FORMULA_START = ("=", "+", "-", "@")


def _text_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c])]


def defuse_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells that start like a formula (``= + - @``) get a leading ``'`` (CSV only)."""
    frame = frame.copy()
    for column in _text_columns(frame):
        frame[column] = frame[column].map(lambda v: "'" + v if isinstance(v, str) and v.startswith(_FORMULA_START) else v)
    return frame


def _csv_ready(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for column in LIST_COLUMNS:
        if column in frame:
            frame[column] = frame[column].map(lambda v: None if v is None else json.dumps(v))
    return defuse_formulas(frame)


def read_csv_table(path: str | Path) -> pd.DataFrame:
    """A table written by ``export --format csv``: list columns decoded, defused formulas restored."""
    frame = pd.read_csv(path, keep_default_na=True)
    for column in _text_columns(frame):
        frame[column] = frame[column].map(
            lambda v: v[1:] if isinstance(v, str) and v.startswith("'") and v[1:].startswith(_FORMULA_START) else v)
    for column in LIST_COLUMNS:
        if column in frame:
            frame[column] = frame[column].map(lambda v: json.loads(v) if isinstance(v, str) else None)
    return frame


def write_export(tables: dict[str, pd.DataFrame], out_dir: str | Path, fmt: str) -> list[Path]:
    """Write ``tables`` in ``fmt`` under ``out_dir``; return the written paths (files, or folders for ``hf``)."""
    if fmt not in FORMATS:
        raise BenchError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
    except OSError as exc:
        raise BenchError(f"--out {out_dir}: cannot write here ({not_a_folder(out_dir) or exc.strerror}); choose a "
                         "writable --out folder") from None
    written = []
    try:
        for name, frame in tables.items():
            if fmt == "parquet":
                target = staging / f"{name}.parquet"
                frame.to_parquet(target, index=False)
            elif fmt == "csv":
                target = staging / f"{name}.csv"
                _csv_ready(frame).to_csv(target, index=False, lineterminator="\n")
            else:
                import datasets

                target = staging / name
                datasets.Dataset.from_pandas(frame, preserve_index=False).save_to_disk(str(target))
            written.append(target)
        final = []
        for target in written:
            dest = out_dir / target.name
            if dest.is_dir():
                shutil.rmtree(dest)
            target.replace(dest)
            final.append(dest)
        return final
    finally:
        shutil.rmtree(staging, ignore_errors=True)
