"""Finding result records in folders: the leaderboard's results tree or a ``runs/`` tree.

One function, :func:`discover`, used by ``leaderboard build`` and ``leaderboard export``
(several ``--results`` folders). Every ``*.json`` file below each folder is read (strictly, as
:func:`mlrpl_bench.schema.read_json_file` reads every JSON file):

* a JSON object with ``schema_version`` is a record: it is validated
  (:func:`mlrpl_bench.results.validate_record`) and a bad one stops the build with the file and
  field named;
* a protocol-cache metadata file (``runs/_protocol/*.json``, written by
  :func:`mlrpl_bench.protocol.prepare_protocol`) is skipped as a record but remembered by its
  mask fingerprint: the frequency bins read the per-class known positives from its mask when a
  record does not carry them;
* any other JSON is skipped; the skipped files are counted by kind for the build's summary.

A file that is not JSON at all stops the build (a ``.json`` that does not parse is most likely
a damaged record). Pure Python + json.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mlrpl_bench.errors import BenchError
from mlrpl_bench.results import validate_record
from mlrpl_bench.schema import read_json_file

#: Skipped-file kinds, as counted in :attr:`Discovery.skipped`.
PROTOCOL_CACHE = "protocol-cache metadata"
OTHER_JSON = "other JSON (not a results record)"


@dataclass(frozen=True)
class Found:
    """One record: its file, the folder it was found under (as given) and its content."""

    path: Path
    root: Path
    record: dict


@dataclass
class Discovery:
    """What :func:`discover` found: records, skipped files by kind, protocol caches by mask fingerprint."""

    records: list[Found] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    protocol_caches: dict[str, Path] = field(default_factory=dict)

    def skipped_text(self) -> str:
        """``skipped 18 JSON file(s) that are not records: 18 protocol-cache metadata`` or ``""``."""
        total = sum(self.skipped.values())
        if not total:
            return ""
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(self.skipped.items()))
        return f"skipped {total} JSON file(s) that are not records: {kinds}"


def _is_protocol_cache(data: dict) -> bool:
    return {"format", "mask_fingerprint", "labels_fingerprint"} <= set(data)


def discover(paths) -> Discovery:
    """Every record under each of ``paths`` (folders, or record files given one by one).

    :raises BenchError: for a folder that does not exist, a ``.json`` that is not JSON, or a
        record that fails validation (naming the file and field).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out = Discovery()
    for root in map(Path, paths):
        if root.is_file():
            files = [root]
        elif root.is_dir():
            files = sorted(root.rglob("*.json"))
        else:
            raise BenchError(f"{root}: results directory not found; submit records with "
                             "`mlrpl-bench leaderboard submit` or pass --results DIR (a results tree or a runs/ folder)")
        for path in files:
            if path.is_dir():  # a folder whose name ends in .json holds no record itself
                continue
            try:
                data = read_json_file(path, what="record file")  # strict: no NaN/Infinity, as records are written
            except BenchError as exc:
                raise BenchError(f"{exc}; remove the file or pass --results folders that hold only records and run "
                                 "outputs") from None
            if isinstance(data, dict) and "schema_version" in data:
                out.records.append(Found(path, root, validate_record(data, source=str(path))))
            elif isinstance(data, dict) and _is_protocol_cache(data):
                out.skipped[PROTOCOL_CACHE] += 1
                out.protocol_caches.setdefault(str(data["mask_fingerprint"]), path)
            else:
                out.skipped[OTHER_JSON] += 1
    return out
