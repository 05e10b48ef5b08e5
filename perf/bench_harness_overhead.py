"""Harness overhead: one training epoch of ``partial-bce`` through the Engine against a plain PyTorch loop.

Run:  python perf/bench_harness_overhead.py [--repeats 5] [--batch-size 32] [--quick] [--profile]

The Engine is built the way ``benchmark/runner.py`` builds it for ``mlrpl-bench run --plugin
partial-bce`` on the built-in ``digit-scenes`` dataset: the protocol's partial labels and training
rows, the ``small-cnn`` backbone under the method's ``PooledLinearClassifier``, the method's own
Adam optimiser. Only the training epoch is timed: the Engine has no public training-epoch call
(``fit`` also validates every epoch and scores the test set), so ``Engine._train_epoch`` is timed.

The baseline is a hand-written loop over the *same* model architecture (same initial weights),
the same optimiser, the same loss function, the same dataset object and batch size, with a plain
``DataLoader(shuffle=True)`` and no logging at all. Two data modes:

* ``images``: the dataset's training transform on the PNG files (``SplitRows``, as in a run);
* ``tensors``: images decoded and transformed once beforehand (the evaluation transform), so the
  epoch is almost pure compute and any per-step overhead of the harness shows most.

Variants, interleaved repeat by repeat, medians reported:

* ``engine``: ``Engine._train_epoch`` with the progress bar on (the CLI default; tqdm writes to
  /dev/null here);
* ``engine (no progress)``: the same with ``progress=False`` (``--no-progress``);
* ``plain loop``: the hand-written loop with a DataLoader;
* ``plain loop, slicing`` (tensors mode only): the hand-written loop indexing the pre-decoded
  tensors directly, without a DataLoader (the floor for any per-sample Dataset).

Target (issue 7): engine / plain loop <= 1.05.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os
import sys
import tempfile
from pathlib import Path

# OpenMP threads that spin-wait make every step ~13x slower on an oversubscribed machine (measured
# here: 1.05 s vs 0.08 s per SmallCNN step at load 12 on 2 cores); must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from torch.utils.data import Dataset as TorchDataset  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleave, load_note, machine_note, median, paired_ratio, spread, timed_cpu  # noqa: E402

TARGET = 1.05


class TensorRows(TorchDataset):
    """Pre-decoded rows: item ``i`` is ``(images[i], labels[i], i)`` (the SplitRows item layout)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], self.labels[i], i


def build_setup(args):
    """Dataset, protocol and training rows as ``run_single`` makes them (finetune track)."""
    from mlrpl_bench.data.builtin import DigitScenes
    from mlrpl_bench.data.loading import SplitRows
    from mlrpl_bench.protocol import prepare_protocol

    dataset = DigitScenes(None, DigitScenes.Options(train_size=args.train_size, test_size=args.test_size,
                                                     image_size=args.image_size))
    split = dataset.load_split("train")
    protocol = prepare_protocol(split.labels, setting="pal", known=args.known, seed=args.seed, scheme="generator",
                                val_fraction=0.1, key=split.fingerprint(), cache_dir=None)
    train_labels = protocol.partial[protocol.train_idx]
    train_tf, eval_tf = dataset.transforms(args.image_size, True), dataset.transforms(args.image_size, False)
    image_rows = SplitRows(split, protocol.train_idx, train_labels, train_tf)
    decoded = SplitRows(split, protocol.train_idx, train_labels, eval_tf)
    images = torch.stack([decoded[i][0] for i in range(len(decoded))])
    tensor_rows = TensorRows(images, torch.as_tensor(train_labels, dtype=torch.float32))
    return split, train_labels, {"images": image_rows, "tensors": tensor_rows}


def build_engine(args, split, train_labels, rows, *, progress: bool):
    """An Engine for partial-bce exactly as ``runner.run_single`` wires it (no checkpoints)."""
    from mlrpl_bench import plugin_manager as P
    from mlrpl_bench.engine import Engine, EngineConfig
    from mlrpl_bench.method import MethodContext, TrainConfig
    from mlrpl_bench.metrics import compute_metrics

    train = TrainConfig(epochs=1, batch_size=args.batch_size, image_size=args.image_size, backbone="small-cnn")
    method_cls = P.get_method("partial-bce")
    torch.manual_seed(args.seed)
    ctx = MethodContext(num_classes=split.num_classes, class_names=list(split.class_names), train_labels=train_labels,
                        word_embeddings=np.zeros((split.num_classes, 8), np.float32), epochs=1,
                        steps_per_epoch=-(-len(rows) // args.batch_size), setting="pal", known=args.known,
                        seed=args.seed, device=torch.device("cpu"), generator=torch.Generator().manual_seed(args.seed))
    method = method_cls(method_cls.make_options(), ctx)
    backbone = P.get_backbone(train.backbone).build(train.backbone_weights, train.freeze_backbone)
    model = method.build_model(backbone)
    optimizer, scheduler = method.configure_optimizers(model, train)
    # Validation/test are never run here (only the training epoch is timed): empty rows suffice.
    empty = TensorRows(torch.zeros(0, 3, args.image_size, args.image_size), torch.zeros(0, split.num_classes))
    no_targets = np.zeros((0, split.num_classes), np.int8)
    engine = Engine(method, model, optimizer, scheduler, train_rows=rows, val_rows=empty, test_rows=empty,
                    val_targets=no_targets, test_targets=no_targets, metric_fn=compute_metrics,
                    config=EngineConfig(epochs=1, batch_size=args.batch_size, seed=args.seed, device=torch.device("cpu"),
                                        workers=0, precision=train.precision, progress=progress, description="bench"))
    engine.last_finite_loss = None  # set by fit(); _train_epoch reads it only on a non-finite loss
    return engine, train


class PlainLoop:
    """The hand-written baseline: same architecture and initial weights, same optimiser and loss."""

    def __init__(self, engine, train, rows, batch_size: int, seed: int):
        from mlrpl_bench.losses import partial_bce

        self.model = copy.deepcopy(engine.model)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=train.lr, weight_decay=train.weight_decay)
        self.loss_fn = partial_bce
        self.rows, self.batch_size = rows, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def epoch_dataloader(self) -> None:
        self.model.train()
        loader = DataLoader(self.rows, batch_size=self.batch_size, shuffle=True, generator=self.generator)
        for x, y, _ in loader:
            loss = self.loss_fn(self.model(x), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()

    def epoch_slicing(self) -> None:
        self.model.train()
        images, labels = self.rows.images, self.rows.labels
        order = torch.randperm(len(images), generator=self.generator)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            loss = self.loss_fn(self.model(images[idx]), labels[idx])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()


def _is_harness(key) -> bool:
    """Profiler entries that are the harness's own work (a hand-written loop has none of it)."""
    filename, _, func = key
    path = filename.replace(os.sep, "/")
    return (path.endswith("benchmark/engine.py") or "/tqdm/" in path
            or (path.endswith("benchmark/method.py") and func == "to"))


def profile_engine_epoch(engine, devnull, top: int = 12) -> None:
    """cProfile of one engine epoch: the harness's own time, and the entries with the most own time.

    The harness's own time is the own time of engine.py, tqdm and ``Batch.to``, plus the built-ins
    (``float(loss)``, ``isinstance``, ``.detach()``...) they call directly. The profiler inflates every
    Python call, so this is an upper bound of what the harness adds.
    """
    import cProfile
    import pstats

    prof = cProfile.Profile()
    with contextlib.redirect_stderr(devnull):
        prof.runcall(engine._train_epoch, 0)
    stats = pstats.Stats(prof)
    own: dict[str, float] = {}
    for key, (_, _, tt, _, callers) in stats.stats.items():
        if _is_harness(key):
            own[f"{Path(key[0]).name}:{key[1]}({key[2]})"] = tt
        elif key[0] == "~":  # a built-in: count the share called directly from harness code
            share = sum(c[2] for caller, c in callers.items() if _is_harness(caller))
            if share:
                own[key[2]] = own.get(key[2], 0.0) + share
    total_own = sum(own.values())
    print(f"    profile: harness own time {total_own * 1000:.1f} ms of a {stats.total_tt * 1000:.0f} ms profiled epoch "
          f"= {100 * total_own / stats.total_tt:.2f}% (upper bound; largest: "
          + ", ".join(f"{name} {t * 1000:.1f} ms" for name, t in sorted(own.items(), key=lambda kv: -kv[1])[:5]) + ")")
    print(f"    profile: top {top} entries by own time")
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    lines = buf.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().startswith("ncalls")), 0)
    for line in lines[start:]:
        if line.strip():
            print(f"      {line.strip()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs per variant (after one warm-up)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--batch-size", type=int, default=32, help="the TrainConfig default")
    parser.add_argument("--train-size", type=int, default=1200, help="digit-scenes train_size (default: the dataset's)")
    parser.add_argument("--test-size", type=int, default=600)
    parser.add_argument("--image-size", type=int, default=48, help="digit-scenes image_size and --image-size")
    parser.add_argument("--known", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modes", default="images,tensors", help="comma list of images, tensors")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of one engine epoch per mode")
    parser.add_argument("--check", action="store_true", help="exit 1 if the 1.05x target is missed")
    parser.add_argument("--quick", action="store_true", help="tiny configuration (a few seconds; for the smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.train_size, args.test_size, args.image_size, args.batch_size = 1, 48, 8, 32, 16
        args.warmup = 0

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"harness overhead: partial-bce, digit-scenes train_size={args.train_size} image_size={args.image_size}, "
          f"batch {args.batch_size}, median of {args.repeats} epochs (+{args.warmup} warm-up) per variant, interleaved")
    print(f"  {machine_note()}")
    print(f"  before: {load_note()}")
    split, train_labels, rows_by_mode = build_setup(args)
    ok = True
    with open(os.devnull, "w") as devnull:
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            if mode not in rows_by_mode:
                parser.error(f"--modes: unknown mode {mode!r}; use images and/or tensors")
            rows = rows_by_mode[mode]
            engine, train = build_engine(args, split, train_labels, rows, progress=True)
            quiet_engine, _ = build_engine(args, split, train_labels, rows, progress=False)
            plain = PlainLoop(engine, train, rows, args.batch_size, args.seed)
            epoch = {"n": 0}
            names = ["engine", "engine (no progress)", "plain loop"] + (["plain loop, slicing"] if mode == "tensors" else [])
            cpu: dict[str, list[float]] = {name: [] for name in names}

            def run_engine(e, name):
                epoch["n"] += 1
                with contextlib.redirect_stderr(devnull):  # tqdm draws to stderr
                    return timed_cpu(lambda: e._train_epoch(epoch["n"]), cpu[name])

            variants = {"engine": lambda: run_engine(engine, "engine"),
                        "engine (no progress)": lambda: run_engine(quiet_engine, "engine (no progress)"),
                        "plain loop": lambda: timed_cpu(plain.epoch_dataloader, cpu["plain loop"]),
                        "plain loop, slicing": lambda: timed_cpu(plain.epoch_slicing, cpu["plain loop, slicing"])}
            times = interleave({name: variants[name] for name in names}, args.repeats, args.warmup)
            cpu = {name: ts[args.warmup:] for name, ts in cpu.items()}  # drop the warm-up round, as interleave() did
            steps = -(-len(rows) // args.batch_size)
            print(f"\n  mode {mode}: {len(rows)} training images, {steps} steps per epoch")
            for name, ts in times.items():
                print(f"    {name:22s} {median(ts) * 1000:8.1f} ms/epoch wall ({spread(ts)}), "
                      f"{median(cpu[name]) * 1000:8.1f} ms CPU ({spread(cpu[name])})")
            ratio = median(times["engine"]) / median(times["plain loop"])
            cpu_ratio = median(cpu["engine"]) / median(cpu["plain loop"])
            hit = ratio <= TARGET
            ok &= hit
            print(f"    ratio {mode}: engine / plain loop = {ratio:.3f}x wall (median of paired repeats "
                  f"{paired_ratio(times['engine'], times['plain loop']):.3f}x; target <= {TARGET}: "
                  f"{'ok' if hit else 'MISSED'})")
            print(f"    ratio {mode} CPU time: engine / plain loop = {cpu_ratio:.3f}x (median of paired repeats "
                  f"{paired_ratio(cpu['engine'], cpu['plain loop']):.3f}x)")
            print(f"    ratio {mode}: engine (no progress) / plain loop = "
                  f"{median(times['engine (no progress)']) / median(times['plain loop']):.3f}x wall, "
                  f"{median(cpu['engine (no progress)']) / median(cpu['plain loop']):.3f}x CPU")
            if "plain loop, slicing" in times:
                floor = median(times["plain loop"]) / median(times["plain loop, slicing"])
                print(f"    ratio {mode}: plain loop (DataLoader) / slicing = {floor:.3f}x wall, "
                      f"{median(cpu['plain loop']) / median(cpu['plain loop, slicing']):.3f}x CPU "
                      f"(cost of any per-sample Dataset)")
            if args.profile:
                profile_engine_epoch(engine, devnull)
    print(f"\n  after: {load_note()}")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    if "MLRPL_BENCH_CACHE" not in os.environ and "--quick" in sys.argv:
        # The tiny dataset of --quick goes to a throw-away place, not the user's cache.
        import atexit
        import shutil

        quick_cache = tempfile.mkdtemp(prefix="mlrpl-bench-quick-")
        atexit.register(shutil.rmtree, quick_cache, True)
        os.environ["MLRPL_BENCH_CACHE"] = quick_cache
    sys.exit(main())
