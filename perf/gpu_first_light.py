"""First light on a GPU: the papers' profile measured through ``mlrpl-bench run`` on synthetic VOC data.

Run:  bash perf/gpu_first_light.sh [OUT_DIR]        (or: python perf/gpu_first_light.py --out DIR)

Made for a machine with one CUDA GPU where nothing can be downloaded, and the README's install
command only. It

1. writes a synthetic PASCAL VOC 2007 tree (``voc2007`` loader layout: Annotations, ImageSets,
   JPEGImages) of the release's image sizes (mostly 500x375 textured JPEGs, 1-3 objects each);
2. trains ``sst``, ``hst`` and ``dsrb`` at ``--profile paper`` -- the official training
   (docs/fidelity.md, "Training"): the image track with the official bicubic augmentation,
   ResNet-101 with the official 2x2 pool after layer4 (randomly initialised: no ImageNet weights
   can be fetched; the cost is the same), layers 1-3 frozen and layer4 trained, 448 px, batch 32,
   Adam 1e-5 -- for two epochs each, in fp32 (the profile's precision) and in bf16 autocast,
   through ``mlrpl-bench run`` in this process (``dsrb`` blends from its second epoch, so that the
   measured epoch runs every module), and reads from the second epoch's log: training images/s,
   the fraction of the training loop's time spent waiting for the data loader
   (``data_wait / train_time``), and the peak GPU memory;
3. runs two training steps of ``hst --profile paper`` through ``torchrun`` (one process on the one
   GPU: the launcher, its environment, device placement and the rank-0 record);
4. writes everything to ``OUT_DIR/first_light.json`` and prints a summary table.

Without CUDA it says so and runs the same code path at tiny sizes on the CPU (the smoke mode:
64 px, and ResNet-50 with the same pool, ``resnet50-pool2``, for ResNet-101: a few minutes on
shared cores), then exits 0. ``--smoke`` forces that mode.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (see perf/README.md)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

METHODS = ("sst", "hst", "dsrb")
PRECISIONS = ("fp32", "bf16")
#: The methods' ``paper`` profile (the official training), minus the ImageNet weights that cannot
#: be fetched here; ``--precision`` and the sizes below are given after it.
PAPER = ("--profile", "paper", "--backbone-weights", "none")
#: Per method: options that make the measured (second) epoch run every module of the method.
EXTRA = {"dsrb": ("--option", "blend_start_epoch=1")}


def sizes(smoke: bool) -> dict:
    """How big everything is: the papers' sizes on a GPU, tiny ones in the CPU smoke."""
    if smoke:
        # 64 px: the smallest side at which ResNet's layer4 maps (2 x 2) survive the 2 x 2 pool
        return {"train": 12, "test": 4, "ddp": 8, "scale": 0.1, "image_size": 64, "batch_size": 4, "workers": 0,
                "backbone": "resnet50-pool2"}
    cpus = os.cpu_count() or 2
    return {"train": 704, "test": 64, "ddp": 70, "scale": 1.0, "image_size": 448, "batch_size": 32,
            "workers": max(1, min(8, cpus - 1))}


def write_data(root: Path, size: dict) -> tuple[Path, float]:
    """The synthetic VOC tree, plus a small ``ddp`` image set for the torchrun check."""
    from bench_data_loading import write_voc_tree

    devkit, kb = write_voc_tree(root, size["train"], size["test"], seed=0, scale=size["scale"])
    main = devkit / "VOC2007" / "ImageSets" / "Main"
    ids = (main / "trainval.txt").read_text().split()
    (main / "ddp.txt").write_text("".join(f"{i}\n" for i in ids[: size["ddp"]]))
    return devkit, kb


def run_args(devkit: Path, out: Path, size: dict, method: str, precision: str, epochs: int, train_set: str) -> list[str]:
    return ["run", "--plugin", method, "--dataset", "voc2007", "--data-root", str(devkit), "--known", "0.5",
            "--epochs", str(epochs), "--image-size", str(size["image_size"]), "--batch-size", str(size["batch_size"]),
            "--workers", str(size["workers"]), "--precision", precision, "--output", str(out), "--no-progress",
            "--no-save-scores", "--dataset-option", f"train_set={train_set}", *PAPER, *EXTRA.get(method, ()),
            *(("--backbone", size["backbone"]) if "backbone" in size else ())]


def measure(devkit: Path, runs: Path, size: dict, method: str, precision: str, cuda: bool) -> dict:
    """One two-epoch run in this process; the second epoch's speed, data wait and peak memory."""
    import torch

    from mlrpl_bench.cli import cli
    from mlrpl_bench.errors import BenchError

    out = runs / f"{method}-{precision}"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    try:
        cli.main(args=run_args(devkit, out, size, method, precision, 2, "trainval"), prog_name="mlrpl-bench",
                 standalone_mode=False)
    except torch.cuda.OutOfMemoryError:
        return {"method": method, "precision": precision, "status": "out of GPU memory at batch "
                f"{size['batch_size']}"}
    except BenchError as exc:
        return {"method": method, "precision": precision, "status": f"error: {exc}"}
    (run_dir,) = [p.parent for p in out.glob("*/record.json")]
    record = json.loads((run_dir / "record.json").read_text())
    last = json.loads((run_dir / "epochs.jsonl").read_text().splitlines()[-1])
    train_rows = record["dataset"]["sizes"]["train"]
    train = record["train"]
    return {"method": method, "precision": precision, "status": "ok",
            "precision_used": train.get("precision_used"), "track": train["track"], "backbone": train["backbone"],
            "freeze_backbone": train["freeze_backbone"],
            "train_images": train_rows, "steps_per_epoch": -(-train_rows // size["batch_size"]),
            "images_per_s": round(train_rows / last["train_time"], 2),
            "data_wait_fraction": round(last["data_wait"] / last["train_time"], 4),
            "train_seconds": round(last["train_time"], 3), "epoch_seconds_with_validation": round(last["time"], 3),
            "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 3) if cuda else None,
            "run_seconds": round(time.perf_counter() - t0, 1), "test_mAP_random_init": record["metrics"]["test"]["mAP"]}


def ddp_check(devkit: Path, runs: Path, size: dict, cuda: bool) -> dict:
    """Two optimiser steps of hst's paper profile through torchrun (one process per GPU; one here)."""
    out = runs / "ddp"
    args = run_args(devkit, out, size, "hst", "fp32", 1, "ddp")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m", "mlrpl_bench", *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    result = {"command": "torchrun --standalone --nproc_per_node=1 -m mlrpl_bench " + " ".join(args[:4]) + " ...",
              "seconds": round(time.perf_counter() - t0, 1)}
    records = list(out.glob("*/record.json"))
    if proc.returncode != 0 or len(records) != 1:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {**result, "status": f"failed (exit {proc.returncode}): {' | '.join(tail)}"}
    record = json.loads(records[0].read_text())
    train_rows = record["dataset"]["sizes"]["train"]
    return {**result, "status": "ok", "world_size": record["train"]["world_size"], "device": record["train"]["device"],
            "steps": -(-train_rows // size["batch_size"]), "precision_used": record["train"].get("precision_used")}


def environment(cuda: bool) -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
            "host": platform.node()}
    if cuda:
        props = torch.cuda.get_device_properties(0)
        info.update({"gpu": props.name, "gpu_memory_gb": round(props.total_memory / 2**30, 1),
                     "cuda": torch.version.cuda, "bf16_supported": torch.cuda.is_bf16_supported(),
                     "cudnn": torch.backends.cudnn.version()})
    return info


def table(results: dict) -> str:
    from tabulate import tabulate

    rows = []
    for r in results["runs"]:
        if r["status"] != "ok":
            rows.append((r["method"], r["precision"], r["status"], "", "", ""))
            continue
        memory = "n/a (CPU)" if r["peak_gpu_memory_gb"] is None else f"{r['peak_gpu_memory_gb']:.2f}"
        rows.append((r["method"], r["precision"], f"{r['images_per_s']:.1f}", memory,
                     f"{100 * r['data_wait_fraction']:.1f} %", f"{r['train_seconds']:.2f}"))
    text = tabulate(rows, headers=("method", "precision", "train images/s", "peak GPU GiB", "waiting for data",
                                   "train s (epoch 2)"), tablefmt="github")
    ddp = results["ddp"]
    return text + (f"\n\ntorchrun, 1 process: {ddp['status']}" + (f" ({ddp['steps']} steps on {ddp['device']}, "
                                                                   f"world size {ddp['world_size']})" if ddp["status"] == "ok" else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT") or "first-light", help="folder for first_light.json [$OUT]")
    parser.add_argument("--smoke", action="store_true", help="the CPU smoke at tiny sizes, even with a GPU")
    parser.add_argument("--budget-seconds", type=float, default=420, help="skip what would start after this (8 min in all)")
    parser.add_argument("--keep-data", action="store_true", help="keep the synthetic data and run folders")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    import torch

    cuda = torch.cuda.is_available() and not args.smoke
    if not cuda:
        print("no CUDA device here: running the CPU smoke of the same code path (tiny sizes); nothing measured is a GPU figure"
              if not torch.cuda.is_available() else "--smoke: the CPU smoke at tiny sizes")
    size = sizes(not cuda)
    out = Path(args.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="first-light-", dir=out))
    try:
        t0 = time.perf_counter()
        devkit, kb = write_data(work / "data", size)
        results = {"mode": "gpu" if cuda else "cpu-smoke", "environment": environment(cuda),
                   "data": {"train_images": size["train"], "test_images": size["test"], "mean_jpeg_kb": round(kb, 1),
                            "image_size": size["image_size"], "batch_size": size["batch_size"],
                            "workers": size["workers"], "seconds_to_write": round(time.perf_counter() - t0, 1)},
                   "profile": " ".join(PAPER), "runs": []}
        runs = work / "runs"
        for method in METHODS:
            for precision in PRECISIONS:
                if time.perf_counter() - start > args.budget_seconds:
                    results["runs"].append({"method": method, "precision": precision, "status": "skipped: time budget"})
                    continue
                print(f"measuring {method} {precision} ...", flush=True)
                results["runs"].append(measure(devkit, runs, size, method, precision, cuda))
        print("torchrun check ...", flush=True)
        results["ddp"] = ddp_check(devkit, runs, size, cuda)
        results["total_seconds"] = round(time.perf_counter() - start, 1)
        results["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
        target = out / "first_light.json"
        target.write_text(json.dumps(results, indent=1) + "\n")
    finally:
        if not args.keep_data:
            shutil.rmtree(work, ignore_errors=True)
    print("")
    print(table(results))
    print(f"\n{results['mode']}: {results['total_seconds']} s in all -> {target}")
    failed = [r for r in results["runs"] if r["status"] not in ("ok",) and not r["status"].startswith("skipped")]
    return 1 if cuda and (failed or results["ddp"]["status"] != "ok") else (0 if cuda else _smoke_exit(results))


def _smoke_exit(results: dict) -> int:
    """The smoke passes when every run and the torchrun check completed."""
    ok = all(r["status"] == "ok" for r in results["runs"]) and results["ddp"]["status"] == "ok"
    if not ok:
        print("smoke FAILED: a run or the torchrun check did not complete (see the table)", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
