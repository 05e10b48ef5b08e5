"""The engine's run-time score check (every ``predict`` output finite, in [0, 1], shape (B, C)):
what it costs next to the prediction pass it guards.

Run:  python perf/bench_score_check.py [--images 600] [--batch 32] [--repeats 7] [--quick]

Both variants score the same tensors with the same model through ``Engine.predict``; one with
``check_scores`` as the engine runs it, one with the check replaced by a no-op. Reported: the
ratio checked / unchecked (the check stays on for every batch when it is under 1.01).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _timing import interleave, load_note, machine_note, paired_ratio, spread, timed  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="a few images and repeats (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.images, args.repeats = 64, 2
    from mlrpl_bench import engine as E
    from mlrpl_bench.metrics import compute_metrics
    from mlrpl_bench.models.backbones import SmallCNN
    from mlrpl_bench.plugin_manager import get_method
    from mlrpl_bench.training import ContextSpec, method_context
    from mlrpl_bench.distributed import DistInfo
    from mlrpl_bench.run_config import TrainConfig

    c = 20
    g = np.random.default_rng(0)
    labels = np.where(g.random((args.images, c)) < 0.2, 1, -1).astype(np.int8)
    images = torch.randn(args.images, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    from mlrpl_bench.feature_cache import CachedRows

    rows = CachedRows(images.numpy(), labels)
    spec = ContextSpec(class_names=[str(i) for i in range(c)], embeddings=np.zeros((c, 4), np.float32), epochs=1,
                       batch_size=args.batch, setting="pal", known=0.5, seed=0)
    ctx = method_context(spec, labels, rows, device=torch.device("cpu"), dist=DistInfo())
    cls = get_method("partial-bce")
    method = cls(cls.make_options(), ctx)
    model = method.build_model(SmallCNN())
    opt, sched = method.configure_optimizers(model, TrainConfig())
    engine = E.Engine(method, model, opt, sched, train_rows=rows, val_rows=rows, test_rows=rows, val_targets=labels,
                      test_targets=labels, metric_fn=compute_metrics,
                      config=E.EngineConfig(epochs=1, batch_size=args.batch, seed=0, device=torch.device("cpu"),
                                            progress=False))
    real = E.check_scores

    def run(check) -> float:
        E.check_scores = check
        try:
            return timed(lambda: engine.predict(rows, "bench"))
        finally:
            E.check_scores = real

    times = interleave({"checked": lambda: run(real), "unchecked": lambda: run(lambda *a, **k: None)}, args.repeats)
    print(f"scoring {args.images} images of {args.size} px, batch {args.batch}, {c} classes | {machine_note()}")
    print(f"checked:   {spread(times['checked'])}")
    print(f"unchecked: {spread(times['unchecked'])}")
    print(f"ratio score check: checked / unchecked = {paired_ratio(times['checked'], times['unchecked']):.4f}x "
          "(kept on for every batch below 1.01)")
    print(load_note())
    return 0


if __name__ == "__main__":
    sys.exit(main())
