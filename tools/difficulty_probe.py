"""Probe one set of rendering knobs on voc2007-scenes (how docs/difficulty.md chose its levels).

The ``difficulty`` option offers fixed levels (:data:`mlrpl_bench.data.scenes.DIFFICULTIES`).
To measure a knob that no level sets -- e.g. ``outsiders`` (shapes of no class), which no level
draws -- this script puts the given overrides of the standard knobs in place of the ``hard``
level *in its own process only*, then runs ``mlrpl-bench run`` on that level with a cache of its
own (``--cache``): the level's options carry a digest of its knobs, so the generated images and
features never mix with the real ``hard`` level's.

Usage (knobs as JSON, lists for tuples; the calibration in docs/difficulty.md used these)::

    python tools/difficulty_probe.py --cache /tmp/probe/std '{}'
    python tools/difficulty_probe.py --cache /tmp/probe/size '{"size_range": [0.29, 0.4]}'
    python tools/difficulty_probe.py --cache /tmp/probe/outs '{"outsiders": [0, 2]}'

Defaults: partial BCE, lr 3e-2, 90 % known, seed 1, the first 2,000 trainval / 1,500 test rows.
Extra ``mlrpl-bench run`` arguments follow ``--`` (e.g. ``-- --plugin sst --lr 3e-3``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("knobs", help="JSON object of Difficulty fields to override, e.g. '{\"pixel_noise\": 0.04}'")
    parser.add_argument("--cache", required=True, help="a cache folder of this probe's own (MLRPL_BENCH_CACHE)")
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--test-size", type=int, default=1500)
    parser.add_argument("--output", default=None, help="records folder (default: <cache>/runs)")
    parser.add_argument("rest", nargs="*", help="after --: more mlrpl-bench run arguments")
    args = parser.parse_args(argv)
    os.environ["MLRPL_BENCH_CACHE"] = args.cache  # before the package reads it

    from mlrpl_bench.cli import main as cli
    from mlrpl_bench.data import scenes

    fields = {f.name for f in dataclasses.fields(scenes.Difficulty)}
    knobs = json.loads(args.knobs)
    unknown = set(knobs) - fields
    if unknown:
        print(f"error: unknown knob(s) {', '.join(sorted(unknown))}; knobs are {', '.join(sorted(fields))}",
              file=sys.stderr)
        sys.exit(2)
    knobs = {k: tuple(v) if isinstance(v, list) else v for k, v in knobs.items()}
    scenes.DIFFICULTIES["hard"] = dataclasses.replace(scenes.DIFFICULTY, **knobs)
    run = ["run", "--plugin", "partial-bce", "--lr", "3e-2", "--known", "0.9", "--seeds", "1", *args.rest,
           "--dataset", "voc2007-scenes", "--dataset-option", "difficulty=hard",
           "--dataset-option", f"train_size={args.train_size}", "--dataset-option", f"test_size={args.test_size}",
           "--jobs", "1", "--threads", "1", "--no-progress", "--output", args.output or f"{args.cache}/runs"]
    cli(run)


if __name__ == "__main__":
    main()
