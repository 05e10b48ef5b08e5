"""``mlrpl-bench evaluate``: score a prediction matrix against targets (no torch, instant)."""

from __future__ import annotations

import json

import click
import numpy as np

from ..errors import BenchError
from . import PathArg


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _parse_number(text: str, flag: str, kind=float):
    try:
        return kind(text)
    except ValueError:
        example = "0.5" if kind is float else "3"
        raise BenchError(f"{flag} {text!r}: expected a number, e.g. {flag} {example}") from None


def format_table(metrics: dict, *, threshold: float, top_k: int, per_class: bool = False) -> str:
    """Readable text of a :func:`~mlrpl_bench.metrics.compute_metrics` result."""
    from tabulate import tabulate

    n_classes = len(metrics["per_class_ap"])
    lines = [
        f"mAP            {_fmt(metrics['mAP'])}   (interpolated, VOC2010+; the SST/HST/DSRB tables)",
        f"mAP_noninterp  {_fmt(metrics['mAP_noninterp'])}   (non-interpolated; sklearn average_precision_score)",
        f"classes evaluated: {n_classes - metrics['classes_skipped']}/{n_classes}"
        + (f" ({metrics['classes_skipped']} without any positive left out)" if metrics["classes_skipped"] else ""),
        "",
    ]
    rows = [[name, _fmt(metrics[name]), _fmt(metrics[f"{name}_top{top_k}"])] for name in ("OP", "OR", "OF1", "CP", "CR", "CF1")]
    lines.append(tabulate(rows, headers=["", f"score >= {threshold:g}", f"top-{top_k}"], tablefmt="simple", disable_numparse=True))
    if per_class:
        rows = [[c, _fmt(a), _fmt(b)] for c, (a, b) in enumerate(zip(metrics["per_class_ap"], metrics["per_class_ap_noninterp"]))]
        lines += ["", tabulate(rows, headers=["class", "AP", "AP_noninterp"], tablefmt="simple", disable_numparse=True)]
    return "\n".join(lines)


@click.command("evaluate")
@click.option("--scores", "scores_path", required=True, metavar="S", type=PathArg(),
              help="Scores (N x C): .npy or comma-separated text; probabilities for the thresholded metrics.")
@click.option("--targets", "targets_path", required=True, metavar="T", type=PathArg(),
              help="Targets (N x C): 1 positive, -1 negative, 0 not annotated (ignored).")
@click.option("--threshold", default="0.5", show_default=True, help="A score >= threshold predicts positive (OP ... CF1).")
@click.option("--top-k", "top_k", default="3", show_default=True, help="Predict the k highest scores of each image (the _top3 metrics).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table (undefined values are null).")
@click.option("--per-class", is_flag=True, help="Also list the AP of every class in the table.")
@click.option("--score-type", type=click.Choice(["probabilities", "logits"]), default="probabilities", show_default=True,
              help="probabilities: scores must be in [0, 1]; logits: a sigmoid turns them into probabilities first.")
def evaluate(scores_path: str, targets_path: str, threshold: str, top_k: str, as_json: bool, per_class: bool,
             score_type: str) -> None:
    """Score predictions against targets: mAP, OP/OR/OF1, CP/CR/CF1 and their top-k variants.

    \b
    Example:
      mlrpl-bench evaluate --scores test_scores.npy --targets test_labels.npy --json
    """
    from ..labels import read_label_file
    from ..metrics import check_scores, compute_metrics, read_score_file
    from ..results import to_json_safe

    threshold_value = _parse_number(threshold, "--threshold")
    k = _parse_number(top_k, "--top-k", int)
    scores = read_score_file(scores_path)
    metric_threshold = threshold_value
    if score_type == "logits" and 0.0 < threshold_value < 1.0:
        # sigmoid(x) >= t  <=>  x >= logit(t): scoring the logits themselves keeps their ranking
        # exact (a sigmoid rounds every logit above ~37 to 1.0, turning distinct scores into ties).
        metric_threshold = float(np.log(threshold_value) - np.log1p(-threshold_value))
    elif score_type == "logits":
        with np.errstate(over="ignore"):  # exp overflow is a probability of exactly 0 or 1
            scores = 1.0 / (1.0 + np.exp(-scores.astype(np.float64)))
    else:
        check_scores(scores, source=str(scores_path), probabilities=True)
    targets = read_label_file(targets_path)
    metrics = compute_metrics(scores, targets, threshold=metric_threshold, top_k=k,
                              scores_source=str(scores_path), targets_source=str(targets_path))
    if as_json:
        click.echo(json.dumps(to_json_safe(metrics), allow_nan=False))
    else:
        click.echo(format_table(metrics, threshold=threshold_value, top_k=k, per_class=per_class))
