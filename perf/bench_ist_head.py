"""Factorised vs naive IST co-occurrence head φ_intra: time and peak memory per training batch.

    python perf/bench_ist_head.py [--classes 20,80,200] [--batch 2] [--dim 1024]
                                        [--hidden 512,1024] [--repeats 5] [--threads 1]

Both variants are :class:`mlrpl_bench.plugins._semantic_transfer.model.CooccurrenceHead` with the same weights:
``forward`` (first layer applied per category: ``W_a f_i + W_b f_j + b`` by broadcasting) and
``naive_logits`` (first layer applied to every concatenated pair ``[f_i ; f_j]``). One "batch" is
a forward and a backward pass of ``sum(logits²)`` for ``(batch, C, dim)`` category features at
the paper's sizes (D = 1024, hidden 512 and 1024).

Method:

* **equivalence** first: the two logits must agree (max |Δ| printed; the script stops if > 1e-3).
* **time**: the two variants alternate repeat by repeat in this process (so both see the same
  machine load); the median over repeats is reported, after one untimed warm-up each.
* **peak memory**: each (variant, C) runs once in a fresh child process. With inputs and weights
  allocated, the child resets the kernel's peak-RSS mark (``echo 5 > /proc/self/clear_refs``),
  reads its resident set size (``VmRSS``), runs the batch and reads the peak (``VmHWM``); the
  difference is the batch's peak extra memory (activations kept for backward, gradients,
  temporaries; PyTorch's CPU allocator returns large blocks to the OS, so RSS tracks live
  tensors). A fresh process per measurement keeps one measurement's peak from hiding another's.
  CPU only; no CUDA needed.
* the size of the largest single intermediate is also printed: the concatenated pairs
  ``B·C²·2D`` floats (naive) vs the broadcast first-layer sum ``B·C²·H1`` (factorised).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from mlrpl_bench.plugins._semantic_transfer.model import CooccurrenceHead


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _setup(c: int, batch: int, dim: int, hidden: tuple[int, int]):
    torch.manual_seed(0)
    head = CooccurrenceHead(dim, hidden)
    feats = torch.randn(batch, c, dim, requires_grad=True)
    return head, feats


def _step(head: CooccurrenceHead, feats: torch.Tensor, variant: str) -> None:
    logits = head(feats) if variant == "factorised" else head.naive_logits(feats)
    logits.square().sum().backward()
    head.zero_grad(set_to_none=True)
    feats.grad = None


def child(variant: str, c: int, batch: int, dim: int, hidden: tuple[int, int]) -> None:
    """Measure one batch's peak extra memory in this (fresh) process; print JSON."""
    head, feats = _setup(c, batch, dim, hidden)
    # One tiny batch first, so one-time costs (autograd engine start-up, kernel libraries) are
    # not counted against the measured batch.
    _step(head, feats[:, :2].detach().requires_grad_(), variant)
    reset = _reset_peak()
    before = _status_kib("VmRSS")
    _step(head, feats, variant)
    # Without a reset, fall back to the lifetime high-water mark (may include import-time peaks).
    peak = _status_kib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_extra": max(peak - before, 0) * 1024, "reset": reset}))


def measure_memory(variant: str, c: int, args) -> int:
    cmd = [sys.executable, __file__, "--child", variant, "--classes", str(c), "--batch", str(args.batch), "--dim",
           str(args.dim), "--hidden", args.hidden, "--threads", str(args.threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return int(json.loads(out.strip().splitlines()[-1])["peak_extra"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", default="20,80,200")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--hidden", default="512,1024")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0 = torch's default; 1 keeps a shared machine's contention out of the ratio)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    hidden = tuple(int(x) for x in args.hidden.split(","))
    classes = [int(x) for x in args.classes.split(",")]
    if args.child:
        child(args.child, classes[0], args.batch, args.dim, hidden)
        return 0

    print(f"# IST head, batch {args.batch}, D {args.dim}, hidden {hidden}, forward+backward, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, median of {args.repeats}")
    rows = []
    for c in classes:
        head, feats = _setup(c, args.batch, args.dim, hidden)
        with torch.no_grad():
            diff = (head(feats) - head.naive_logits(feats)).abs().max().item()
        if diff > 1e-3:
            print(f"C={c}: factorised and naive logits differ by {diff}", file=sys.stderr)
            return 1
        times: dict[str, list[float]] = {"naive": [], "factorised": []}
        for variant in times:
            _step(head, feats, variant)  # warm-up
        for _ in range(args.repeats):
            for variant in times:
                t0 = time.perf_counter()
                _step(head, feats, variant)
                times[variant].append(time.perf_counter() - t0)
        del head, feats
        mem = {v: measure_memory(v, c, args) for v in ("naive", "factorised")}
        t_naive, t_fact = statistics.median(times["naive"]), statistics.median(times["factorised"])
        big_naive = args.batch * c * c * 2 * args.dim * 4
        big_fact = args.batch * c * c * hidden[0] * 4
        rows.append((c, c * c, t_naive, t_fact, mem["naive"], mem["factorised"], big_naive, big_fact, diff))
        print(f"C={c}: done (max |Δlogit| = {diff:.1e})", file=sys.stderr)

    mib = 1024 * 1024
    print("\n| C | pairs/image | naive ms | factorised ms | speed-up | naive peak MiB | factorised peak MiB | memory ratio | largest intermediate naive / factorised MiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c, pairs, tn, tf, mn, mf, bn, bf, _ in rows:
        print(f"| {c} | {pairs:,} | {tn * 1e3:.0f} | {tf * 1e3:.0f} | {tn / tf:.2f}× | {mn / mib:.0f} | {mf / mib:.0f} | "
              f"{mn / max(mf, 1):.2f}× | {bn / mib:.0f} / {bf / mib:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
