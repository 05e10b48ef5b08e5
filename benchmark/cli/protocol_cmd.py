"""``mlrpl-bench protocol``: make a partial label matrix from a full one (no torch, instant)."""

from __future__ import annotations

import click

from ..errors import BenchError
from . import PathArg


def _parse_seed(text: str) -> int:
    """``--seed`` text as a seed (the vocabulary's rule), or one line saying what is allowed."""
    from ..vocabulary import VocabularyError, check_seed

    try:
        return check_seed(int(text))
    except (ValueError, VocabularyError):
        raise BenchError(f"--seed {text!r}: expected an integer in [0, 2**32), e.g. --seed 0") from None


@click.command("protocol")
@click.option("--labels", "labels_path", required=True, metavar="IN", type=PathArg(),
              help="Full label matrix: .npy or comma-separated text, values 1/-1 (0 = already unknown).")
@click.option("--out", "out_path", required=True, metavar="OUT", type=PathArg(),
              help="Where to write the partial matrix (.npy, otherwise comma-separated text). Written atomically.")
@click.option("--setting", default="pal", show_default=True, help="full, pal, ppl or spl.")
@click.option("--known", default=None, metavar="P",
              help="Known-label proportion in (0, 1] (required for pal and ppl; ignored by full and spl).")
@click.option("--seed", default="0", show_default=True, help="Non-negative integer seed.")
@click.option("--scheme", default="generator", show_default=True,
              help="generator (seeded numpy Generator) or hcp (bit-exact official SST/HST/DSRB PAL masks).")
@click.option("--key", default="", help="Names the data (e.g. dataset name); part of the generator seed.")
@click.option("--replace", is_flag=True, help="Overwrite OUT when it exists (refused otherwise).")
def protocol(labels_path: str, out_path: str, setting: str, known: str | None, seed: str, scheme: str, key: str,
             replace: bool) -> None:
    """Make a partial label matrix from a full one and print a one-line summary.

    \b
    Example (30% of the labels known, official masks):
      mlrpl-bench protocol --labels train_full.npy --out train_pal_0.3.txt --setting pal --known 0.3 --scheme hcp
    """
    from ..atomic import refuse_existing_outputs, refuse_overwriting_inputs
    from ..labels import read_label_file, write_label_file
    from ..protocol import fingerprint_array, make_partial_labels, protocol_summary
    from ..vocabulary import check_proportion, check_setting_scheme, known_text

    check_setting_scheme(setting, scheme)
    refuse_overwriting_inputs(out_path, {"--labels": labels_path})
    refuse_existing_outputs({"--out": out_path}, replace=replace)
    if known is None:
        if setting in ("pal", "ppl"):
            raise BenchError(f"--known is required for setting {setting!r}; e.g. --known 0.3 for 30% known labels")
        known = "1.0"
    # Options are checked before any file is touched.
    known_value = check_proportion(known, name="--known")
    seed_value = _parse_seed(seed)
    full = read_label_file(labels_path)
    partial = make_partial_labels(full, setting, known_value, seed_value, scheme=scheme, key=key,
                                  source=str(labels_path))
    try:
        write_label_file(out_path, partial)
    except OSError as exc:
        raise BenchError(f"{out_path}: cannot write ({exc.strerror or exc}); choose a writable output file path") from None
    s = protocol_summary(partial)
    n = s["images"]
    click.echo(
        f"{setting} known={known_text(known_value)} seed={seed_value} scheme={scheme}: {n}x{s['classes']} labels, "
        f"{s['known_fraction']:.1%} known; {s['images_no_known_label_count']}/{n} images "
        f"({s['images_no_known_label']:.1%}) without a known label, {s['images_no_known_positive_count']} "
        f"({s['images_no_known_positive']:.1%}) without a known positive; "
        f"mask sha256 {fingerprint_array(partial)} -> {out_path}"
    )
