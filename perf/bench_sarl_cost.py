"""What a SARL-head cell costs: each method's training against a plain PyTorch loop, the fused forms
against the layer-by-layer ones, the class-count growth and seeds per CPU-hour (issue 23).

Run:  python perf/bench_sarl_cost.py [--plugins hst,sst,dsrb,ssgrl,partial-bce] [--known 0.5] [--epochs 20]
                                     [--repeats 1] [--classes 20,40,80] [--steps 20] [--quick]

Everything runs in this one process, one torch thread, CPU seconds (``time.process_time``),
variants interleaved repeat by repeat (medians reported), so that the ratios hold on a shared,
noisy machine. Three parts:

1. **Cells.** Complete ``mlrpl-bench run --track frozen`` cells (``runner.run_sweep``, one known
   proportion, seed 0, defaults, ``--jobs 1``) on the built-in ``digit-scenes`` with the shipped
   ``small-cnn`` (cached 128 x 4 x 4 maps), for every plugin, in two variants:

   * ``current`` -- the code as it is;
   * ``reference`` -- what issue 23 replaced, swapped back in inside this process only: the SARL
     head layer by layer (``literal_forward`` of semantic decoupling, GGNN and the channel
     reduction, ``literal_forward`` / ``literal_pair_logits`` of the official IST head: advanced
     indexing and indexed writes), the contrastive loss's ``EntryCosine`` with advanced-indexing
     gathers (``_AdvancedIndexEntryCosine``), DSRB's blending of the maps before pooling them
     (``RepresentationBlender.pool_first = False``), Adam's per-parameter loop (``foreach=False``) and
     the engine's per-step device-side loss sums (``_ReferenceLossMonitor``).

   Timed: the training epochs (every ``Engine._train_epoch``) and the whole cell (``train_cell``:
   epochs with their validation, prototypes, checkpoints, test), against a **plain loop** that
   trains a pooled linear head (mean over locations, ``Linear(128, C)``) with partial BCE on
   features of the same shape (the training rows x 128 x 4 x 4), batch 32, the same epochs, Adam
   -- no harness at all. The records of the two variants may differ by float rounding only (the
   fused forms sum in another order); the script prints the largest test-mAP difference.

2. **Class-count growth.** One step of ``hst``, ``sst`` and ``dsrb`` (training step, backward,
   Adam; pseudo labels and prototypes active) on synthetic 128 x 4 x 4 maps, batch 32, at C = 20,
   40, 80 classes (random partial labels at the known proportion), both variants, against the
   plain loop's step at the same C.

3. **Seeds per CPU-hour**: ``3600 / (9 x cell CPU seconds)`` -- how many seeds of one method's
   row (9 known proportions) one CPU-hour trains -- and, for the measured methods together, the
   seeds of a leaderboard made of them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# Spin-waiting OpenMP threads are ~13x slower on an oversubscribed machine (see README).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import instrument_run_path, interleave, load_note, machine_note, median, paired_ratio, quick_cache_for  # noqa: E402

VARIANTS = ("reference", "current")
GROWTH_PLUGINS = ("hst", "sst", "dsrb")


# ---------------------------------------------------------------------------------------------
# The replaced code, reachable in this process only
# ---------------------------------------------------------------------------------------------


class _ReferenceLossMonitor:
    """The engine's loss monitor before issue 23: every step adds each logged scalar into a float64
    device tensor and updates three device-side flags (about ten small tensor ops a step)."""

    def __init__(self, device, last_finite):
        self.tensor_sums, self.number_sums, self.count = {}, {}, 0
        self.first_bad = torch.full((), -1, dtype=torch.float64, device=device)
        self.bad_value = torch.zeros((), dtype=torch.float64, device=device)
        self.last_good = torch.full((), math.nan if last_finite is None else last_finite, dtype=torch.float64, device=device)

    def add(self, step, out):
        for key, value in out.items():
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = value.detach().reshape(()).float().double()
                self.tensor_sums[key] = self.tensor_sums[key] + value if key in self.tensor_sums else value
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                self.number_sums[key] = self.number_sums.get(key, 0.0) + float(np.float32(value))
        loss = out["loss"].detach().reshape(()).float().double()
        still_good = self.first_bad < 0
        fresh_bad = still_good & ~torch.isfinite(loss)
        self.first_bad = torch.where(fresh_bad, torch.full_like(self.first_bad, step), self.first_bad)
        self.bad_value = torch.where(fresh_bad, loss, self.bad_value)
        self.last_good = torch.where(still_good & ~fresh_bad, loss, self.last_good)
        self.count += 1

    def read(self, dist):
        total = self.tensor_sums.get("loss", torch.zeros_like(self.bad_value))
        row = torch.stack([self.first_bad, self.bad_value, self.last_good, total / max(self.count, 1)]).tolist()
        if row[0] >= 0:
            return int(row[0]), row[1], row[2], None
        return -1, 0.0, row[2], row[3] if self.count else None

    def means(self):
        names = list(self.tensor_sums)
        values = torch.stack(list(self.tensor_sums.values())).tolist() if names else []
        sums = dict(zip(names, values))
        sums.update(self.number_sums)
        return {f"train/{k}": v / max(self.count, 1) for k, v in sums.items()}


class _LoopAdam(torch.optim.Adam):
    """Adam with its per-parameter loop (``foreach=False``), what the optimisers were before."""

    def __init__(self, *args, **kwargs):
        kwargs["foreach"] = False
        super().__init__(*args, **kwargs)


class _AdvancedIndexEntryCosine(torch.autograd.Function):
    """``EntryCosine`` before issue 23's second pass: the same floats, with advanced indexing
    (``unit[i, c]``) for the gathers and ``index_put_(accumulate=True)`` for the backward."""

    @staticmethod
    def forward(ctx, x_j, x_i, i, j, c, eps: float):
        x = x_i
        norm = torch.linalg.vector_norm(x, 2, dim=-1, keepdim=True)
        clamped = norm.clamp_min(eps)
        unit = x / clamped
        ctx.save_for_backward(x, norm, clamped, unit, i, j, c)
        return (unit[i, c] * unit[j, c]).sum(-1)

    @staticmethod
    def backward(ctx, grad):
        x, norm, clamped, unit, i, j, c = ctx.saved_tensors
        live = grad != 0
        grad, i, j, c = grad[live].unsqueeze(-1), i[live], j[live], c[live]
        grads = []
        for rows, other in ((j, i), (i, j)):
            own, n0, n = x[rows, c], norm[rows, c], clamped[rows, c]
            g_unit = grad * unit[other, c]
            g_norm = (-g_unit * ((own / n) / n)).sum(-1, keepdim=True)
            g_own = g_unit / n + g_norm * (own / n0).masked_fill_(n0 == 0, 0)
            grads.append(torch.zeros_like(x).index_put_((rows, c), g_own, accumulate=True))
        return grads[0], grads[1], None, None, None, None


@contextlib.contextmanager
def reference_code():
    """The layer-by-layer SARL head, Adam's loop and the per-step loss sums, for the duration."""
    from mlrpl_bench import engine
    from mlrpl_bench.models.sarl import ChannelReduction, GatedGNN, SemanticDecoupling
    from mlrpl_bench.plugins._blending.blender import RepresentationBlender
    from mlrpl_bench.plugins._sarl import losses
    from mlrpl_bench.plugins._semantic_transfer.model import OfficialCooccurrenceHead

    swaps = [(SemanticDecoupling, "forward", SemanticDecoupling.literal_forward),
             (GatedGNN, "forward", GatedGNN.literal_forward),
             (ChannelReduction, "forward", ChannelReduction.literal_forward),
             (OfficialCooccurrenceHead, "forward", OfficialCooccurrenceHead.literal_forward),
             (OfficialCooccurrenceHead, "pair_logits", OfficialCooccurrenceHead.literal_pair_logits),
             (losses, "EntryCosine", _AdvancedIndexEntryCosine),
             (RepresentationBlender, "pool_first", False),
             (torch.optim, "Adam", _LoopAdam),
             (engine, "_LossMonitor", _ReferenceLossMonitor)]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in swaps]
    try:
        for owner, name, new in swaps:
            setattr(owner, name, new)
        yield
    finally:
        for owner, name, old in saved:
            setattr(owner, name, old)


def variant_code(name: str):
    return reference_code() if name == "reference" else contextlib.nullcontext()


# ---------------------------------------------------------------------------------------------
# The plain loop
# ---------------------------------------------------------------------------------------------


def plain_loop(features: torch.Tensor, labels: torch.Tensor, epochs: int, batch: int = 32, seed: int = 0,
               lr: float = 1e-2) -> float:
    """CPU seconds of a hand-written loop: mean-pooled ``Linear(channels, C)``, partial BCE, Adam."""
    from mlrpl_bench.losses import partial_bce

    torch.manual_seed(seed)
    head = torch.nn.Linear(features.shape[1], labels.shape[1])
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    c0 = time.process_time()
    for _ in range(epochs):
        order = torch.randperm(features.shape[0], generator=g)
        for start in range(0, features.shape[0], batch):
            idx = order[start:start + batch]
            loss = partial_bce(head(features[idx].mean(dim=(2, 3))), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return time.process_time() - c0


def random_partial_labels(n: int, c: int, known: float, seed: int) -> torch.Tensor:
    """``(n, C)`` in {1, -1, 0}: ~15 % positives, each entry known with probability ``known``."""
    g = torch.Generator().manual_seed(seed)
    signs = torch.where(torch.rand(n, c, generator=g) < 0.15, 1.0, -1.0)
    return signs * (torch.rand(n, c, generator=g) < known)


# ---------------------------------------------------------------------------------------------
# Part 1: cells
# ---------------------------------------------------------------------------------------------

_EPOCHS: list[float] = []  # CPU seconds of every timed _train_epoch
_CELLS: list[float] = []  # CPU seconds of every train_cell


def _instrument() -> None:
    """Record the CPU seconds of every ``Engine._train_epoch`` and ``train_cell`` (code unchanged)."""
    instrument_run_path(lambda eng, s: _EPOCHS.append(s), _CELLS.append)


def run_cell(plugin: str, variant: str, args, work: Path, dataset_options: dict, train: dict) -> tuple[float, float, dict]:
    """``(training CPU s, cell CPU s, record)`` of one frozen-track cell."""
    from mlrpl_bench.run_config import make_run_config
    from mlrpl_bench.runner import run_sweep

    request = make_run_config(file={
        "plugin": plugin, "dataset_options": dict(dataset_options), "known": [args.known], "seeds": [0], "device": "cpu",
        "output": str(work / f"{plugin}-{variant}"), "method_options": dict(args.method_options.get(plugin, {})),
        "train": dict(train)})
    request.progress, request.overwrite, request.jobs, request.threads = False, True, 1, 1
    first = len(_EPOCHS)
    with variant_code(variant), contextlib.redirect_stdout(io.StringIO()):
        (record,) = run_sweep(request)
    return sum(_EPOCHS[first:]), _CELLS[-1], record


def cells(args, plugins: list[str], work: Path) -> dict[str, dict[str, float]]:
    """Part 1; returns each variant's cell CPU seconds per plugin (for part 3)."""
    dataset_options: dict = {}
    train = {"track": "frozen", "epochs": args.epochs}
    if args.quick:
        dataset_options = {"train_size": 60, "test_size": 30, "image_size": 32}
        train.update(image_size=32, batch_size=16)
    train_s: dict[tuple[str, str], list[float]] = {}
    cell_s: dict[tuple[str, str], list[float]] = {}
    records: dict[tuple[str, str], dict] = {}

    def make(plugin, variant):
        def go() -> float:
            t, c, record = run_cell(plugin, variant, args, work, dataset_options, train)
            train_s.setdefault((plugin, variant), []).append(t)
            cell_s.setdefault((plugin, variant), []).append(c)
            records[(plugin, variant)] = record
            return c
        return go

    # One untimed cell first: the feature cache is built and the lazy imports (scikit-learn's
    # K-means among them) are paid outside every timed cell.
    import sklearn.cluster  # noqa: F401

    run_cell("partial-bce", "current", args, work, dataset_options, train)
    variants = {f"{p} {v}": make(p, v) for p in plugins for v in VARIANTS}
    # The plain loop on features of a cell's shape: the training rows of the split x 128 x 4 x 4.
    rows = 1080 if not args.quick else 54
    feats = torch.randn(rows, 128, 4, 4)
    labels = random_partial_labels(rows, 20, args.known, seed=0)
    plain: list[float] = []
    variants["plain loop"] = lambda: plain.append(plain_loop(feats, labels, args.epochs,
                                                             batch=train.get("batch_size", 32))) or plain[-1]
    interleave(variants, args.repeats, args.warmup)

    print(f"\n1. cells: frozen track, known {args.known}, {args.epochs} epochs, seed 0, defaults, digit-scenes"
          f"{' (tiny)' if args.quick else ''}; plain loop = pooled Linear(128, 20) + partial BCE + Adam on "
          f"{rows} x 128 x 4 x 4, batch {train.get('batch_size', 32)}")
    p_med = median(plain)
    print(f"  plain loop: {p_med:.2f} s training")
    print(f"  {'plugin':12s} {'train s ref':>11s} {'train s now':>11s} {'cell s ref':>10s} {'cell s now':>10s} "
          f"{'train/plain ref':>15s} {'train/plain now':>15s}  test mAP ref -> now")
    cell_times: dict[str, dict[str, float]] = {v: {} for v in VARIANTS}
    for p in plugins:
        tr, tn = median(train_s[(p, 'reference')]), median(train_s[(p, 'current')])
        cr, cn = median(cell_s[(p, 'reference')]), median(cell_s[(p, 'current')])
        cell_times["reference"][p], cell_times["current"][p] = cr, cn
        m_ref, m_now = _test_map(records[(p, 'reference')]), _test_map(records[(p, 'current')])
        print(f"  {p:12s} {tr:11.2f} {tn:11.2f} {cr:10.2f} {cn:10.2f} {tr / p_med:14.1f}x {tn / p_med:14.1f}x"
              f"  {m_ref:.4f} -> {m_now:.4f} (|d| {abs(m_ref - m_now):.1e})")
    for p in plugins:
        print(f"  ratio {p} training: reference / current = {median(train_s[(p, 'reference')]) / median(train_s[(p, 'current')]):.2f}x"
              f" (paired {paired_ratio(train_s[(p, 'reference')], train_s[(p, 'current')]):.2f}x)")
        print(f"  ratio {p} cell: reference / current = {median(cell_s[(p, 'reference')]) / median(cell_s[(p, 'current')]):.2f}x")
        print(f"  ratio {p} training vs plain loop: current / plain = {median(train_s[(p, 'current')]) / p_med:.2f}x")
    return cell_times


def _test_map(record: dict) -> float:
    value = record.get("metrics", {}).get("test", {}).get("mAP")
    return float(value) if value is not None else float("nan")


# ---------------------------------------------------------------------------------------------
# Part 2: class-count growth
# ---------------------------------------------------------------------------------------------


def _synthetic_method(plugin: str, c: int, known: float, rows: int, maps: torch.Tensor):
    """The plugin's method, model and optimiser on synthetic data with C classes (the epoch given
    by :func:`_active_epoch` has pseudo labels and prototypes active)."""
    from mlrpl_bench.method import Batch, MethodContext, TrainConfig
    from mlrpl_bench.plugin_manager import get_method

    cls = get_method(plugin)
    labels = random_partial_labels(rows, c, known, seed=c)
    batch = 32

    def feature_batches():
        for start in range(0, rows, batch):
            idx = torch.arange(start, min(rows, start + batch))
            yield Batch(maps[idx], labels[idx], idx)

    epochs = 20
    ctx = MethodContext(num_classes=c, class_names=[f"c{i}" for i in range(c)], train_labels=labels.numpy().astype(np.int8),
                        word_embeddings=np.random.default_rng(c).standard_normal((c, 300)).astype(np.float32),
                        epochs=epochs, steps_per_epoch=-(-rows // batch), setting="pal", known=known, seed=0,
                        generator=torch.Generator().manual_seed(0), feature_batches=feature_batches)
    method = cls(cls.make_options({}), ctx)

    class Identity(torch.nn.Module):
        out_channels = maps.shape[1]

        def forward(self, x):
            return x

    torch.manual_seed(0)
    model = method.build_model(Identity())
    optimizer, _ = method.configure_optimizers(model, TrainConfig())
    return method, model, optimizer, labels


def growth(args, work: Path) -> None:
    from mlrpl_bench.method import Batch
    from mlrpl_bench.parallel import tune_allocator

    tune_allocator()
    rows = 256 if not args.quick else 64
    maps = torch.randn(rows, 128, 4, 4)
    classes = [int(c) for c in args.classes.split(",")]
    plugins = [p for p in GROWTH_PLUGINS if p in args.growth_plugins.split(",")]
    per_step: dict[tuple[str, int, str], list[float]] = {}
    plain: dict[int, list[float]] = {}
    epoch = 15  # pseudo labels, DTL, prototypes and blending all active at 20 epochs

    def make(plugin, c, variant):
        state = {}

        def go() -> float:
            with variant_code(variant):
                if "setup" not in state:
                    state["setup"] = _synthetic_method(plugin, c, args.known, rows, maps)
                method, model, optimizer, labels = state["setup"]  # the reference's Adam is _LoopAdam
                model.train()
                method.on_epoch_start(model, epoch)
                batches = [Batch(maps[i:i + 32], labels[i:i + 32], torch.arange(i, min(rows, i + 32)))
                           for i in range(0, rows, 32)]
                steps = [batches[k % len(batches)] for k in range(args.steps)]
                c0 = time.process_time()
                for b in steps:
                    out = method.training_step(model, b, epoch)
                    optimizer.zero_grad(set_to_none=True)
                    out["loss"].backward()
                    optimizer.step()
                seconds = (time.process_time() - c0) / len(steps)
            per_step.setdefault((plugin, c, variant), []).append(seconds)
            return seconds
        return go

    def make_plain(c):
        feats = maps[:32 * max(1, args.steps // 4)]
        labels = random_partial_labels(feats.shape[0], c, args.known, seed=c)

        def go() -> float:
            steps = -(-feats.shape[0] // 32) * 4
            seconds = plain_loop(feats, labels, 4) / steps
            plain.setdefault(c, []).append(seconds)
            return seconds
        return go

    variants = {}
    for c in classes:
        variants[f"plain {c}"] = make_plain(c)
        for p in plugins:
            for v in VARIANTS:
                variants[f"{p} {c} {v}"] = make(p, c, v)
    interleave(variants, args.repeats, 1)

    print(f"\n2. class-count growth: one training step (forward, losses, backward, Adam) on synthetic 128 x 4 x 4 maps, "
          f"batch 32, known {args.known}, pseudo labels + prototypes active, {args.steps} steps per timing; ms per step")
    head = "  " + f"{'C':>4s} {'plain':>7s}" + "".join(f" {p + ' ref':>9s} {p + ' now':>9s} {'/plain':>7s}" for p in plugins)
    print(head)
    for c in classes:
        line = f"  {c:4d} {median(plain[c]) * 1000:7.2f}"
        for p in plugins:
            r, n = median(per_step[(p, c, 'reference')]), median(per_step[(p, c, 'current')])
            line += f" {r * 1000:9.2f} {n * 1000:9.2f} {n / median(plain[c]):6.0f}x"
        print(line)
    for p in plugins:
        for c in classes:
            print(f"  ratio {p} step at C={c}: reference / current = "
                  f"{median(per_step[(p, c, 'reference')]) / median(per_step[(p, c, 'current')]):.2f}x")
        lo, hi = classes[0], classes[-1]
        if hi != lo:
            grow = median(per_step[(p, hi, 'current')]) / median(per_step[(p, lo, 'current')])
            print(f"  ratio {p} growth: C={hi} / C={lo} = {grow:.2f}x (exponent {math.log(grow) / math.log(hi / lo):.2f})")


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plugins", default="hst,sst,dsrb,ssgrl,partial-bce", help="methods of part 1")
    parser.add_argument("--known", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=20, help="epochs per cell (the built-in leaderboard's 20)")
    parser.add_argument("--repeats", type=int, default=1, help="timed rounds per variant (after --warmup)")
    parser.add_argument("--warmup", type=int, default=0, help="untimed rounds first (part 1)")
    parser.add_argument("--classes", default="20,40,80", help="class counts of part 2")
    parser.add_argument("--growth-plugins", default=",".join(GROWTH_PLUGINS))
    parser.add_argument("--steps", type=int, default=20, help="steps per timing in part 2")
    parser.add_argument("--parts", default="1,2,3", help="which parts to run")
    parser.add_argument("--quick", action="store_true", help="tiny configuration (for the smoke test)")
    args = parser.parse_args(argv)
    args.method_options = {}
    if args.quick:
        args.plugins, args.epochs, args.repeats, args.warmup = "hst,partial-bce", 2, 1, 0
        args.classes, args.growth_plugins, args.steps = "4,8", "hst", 2
        args.method_options = {"hst": {"feature_dim": 8, "num_prototypes": 2}}
    parts = set(args.parts.split(","))
    plugins = [p.strip() for p in args.plugins.split(",") if p.strip()]
    torch.set_num_threads(1)
    _instrument()
    print(f"SARL-head cost (issue 23): one torch thread, CPU seconds, median of {args.repeats} interleaved run(s) per variant")
    print(f"  {machine_note()}")
    print(f"  before: {load_note()}")
    work = Path(tempfile.mkdtemp(prefix="mlrpl-bench-sarl-cost-"))
    try:
        current = cells(args, plugins, work) if "1" in parts or "3" in parts else {}
        if "2" in parts:
            growth(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if "3" in parts and current:
        print("\n3. seeds per CPU-hour (one seed of a method's row = 9 known proportions, each one cell as timed in part 1)")
        ref, now = current["reference"], current["current"]
        for p in now:
            print(f"  {p:12s} reference {3600 / (9 * ref[p]):7.1f}  current {3600 / (9 * now[p]):7.1f} seeds/CPU-hour")
        before, after = 3600 / (9 * sum(ref.values())), 3600 / (9 * sum(now.values()))
        print(f"  a leaderboard of these {len(now)} methods: reference {before:.2f}, current {after:.2f} seeds/CPU-hour")
        print(f"  ratio seeds per CPU-hour: current / reference = {after / before:.2f}x")
    print(f"  after: {load_note()}")
    return 0


if __name__ == "__main__":
    quick_cache_for(sys.argv)
    sys.exit(main())
