"""Pretrain ``small-cnn`` on the single-glyph source task and write the shipped weights.

The built-in analogue of ImageNet pretraining (see docs/backbone.md): 20-way single-label
classification of one rendered object per image (:func:`mlrpl_bench.data.scenes.render_glyphs`),
images of 32 px, digits from the train pool of digit-scenes' default generator seed only.
Training is deterministic (fixed seeds, one torch thread, deterministic algorithms): rerunning
on the same machine and torch version writes the same bytes. Weights are stored as float16
(half the size; loading casts them back to float32), with the 20-way classifier as ``fc.*``
keys (the loader ignores them; the held-out check uses them)::

    python tools/pretrain_backbone.py                      # writes benchmark/weights/small-cnn-glyphs.pt
    python tools/pretrain_backbone.py --images 200 --heldout 100 --epochs 1 --output /tmp/w.pt

After writing the shipped file, put its sha256 (printed) into ``BUILTIN_WEIGHTS`` in
``benchmark/models/backbones.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mlrpl_bench.atomic import atomic_write_bytes
from mlrpl_bench.data.builtin import DigitScenes
from mlrpl_bench.data.scenes import CLASS_NAMES, render_glyphs
from mlrpl_bench.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from mlrpl_bench.models.backbones import BUILTIN_WEIGHTS, WEIGHTS_DIR, SmallCNN

SOURCE_SEED = 1  # the pretraining images
HELDOUT_SEED = 2  # the held-out check (other digit samples, other random streams)
INIT_SEED = 0  # initialisation and batch order: a raw seed, which no run's derived stream can equal (mlrpl_bench.seeds)
POOL_SEED = DigitScenes.Options().seed  # whose digit train pool the glyphs come from
IMAGE_SIZE = 32
IMAGES, HELDOUT, EPOCHS, BATCH, LR, WEIGHT_DECAY = 8000, 2000, 12, 64, 2e-3, 1e-4
DEFAULT_OUTPUT = WEIGHTS_DIR / BUILTIN_WEIGHTS["small-cnn"][0]


def to_inputs(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` -> the benchmark's normalised float input (as its eval transform)."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


class GlyphClassifier(nn.Module):
    """SmallCNN + global average pooling + a 20-way linear classifier (keys ``features.*``, ``fc.*``)."""

    def __init__(self):
        super().__init__()
        backbone = SmallCNN()
        self.features = backbone.features
        self.fc = nn.Linear(backbone.out_channels, len(CLASS_NAMES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def train(images: np.ndarray, labels: np.ndarray, epochs: int) -> GlyphClassifier:
    """Adam with a cosine learning-rate decay to 0 over ``epochs``; batch order from INIT_SEED."""
    torch.manual_seed(INIT_SEED)
    model = GlyphClassifier()
    x, y = to_inputs(images), torch.from_numpy(labels)
    steps = epochs * -(-len(y) // BATCH)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    order_rng = torch.Generator().manual_seed(INIT_SEED)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(y), generator=order_rng)
        total = 0.0
        for start in range(0, len(y), BATCH):
            idx = order[start:start + BATCH]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(idx)
        print(f"epoch {epoch + 1}/{epochs}: train loss {total / len(y):.4f}", flush=True)
    return model


def to_file_bytes(model: GlyphClassifier) -> bytes:
    """The state dict as float16 (integer buffers unchanged), serialised deterministically.

    Saving to a buffer (not a path) keeps the archive's internal name fixed, so the bytes do not
    depend on the output file's name.
    """
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def heldout_accuracy(state: dict[str, torch.Tensor], images: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of the stored weights (cast to float32) on ``images``; inference only."""
    model = GlyphClassifier()
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(labels), 500):
            logits = model(to_inputs(images[start:start + 500]))
            correct += int((logits.argmax(1).numpy() == labels[start:start + 500]).sum())
    return correct / len(labels)


def heldout_set(n: int = HELDOUT) -> tuple[np.ndarray, np.ndarray]:
    """The held-out glyphs: rendered from HELDOUT_SEED and the held-out digit samples."""
    return render_glyphs(HELDOUT_SEED, "heldout", n, IMAGE_SIZE, pool_seed=POOL_SEED)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=IMAGES, help="source-task training images")
    parser.add_argument("--heldout", type=int, default=HELDOUT, help="held-out images for the accuracy check")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    started = time.perf_counter()
    images, labels = render_glyphs(SOURCE_SEED, "source", args.images, IMAGE_SIZE, pool_seed=POOL_SEED)
    model = train(images, labels, args.epochs)
    data = to_file_bytes(model)
    accuracy = heldout_accuracy(torch.load(io.BytesIO(data), weights_only=True), *heldout_set(args.heldout))
    atomic_write_bytes(args.output, data)
    print(f"{args.output}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")
    print(f"held-out accuracy {accuracy:.4f} on {args.heldout} glyphs; {time.perf_counter() - started:.0f} s "
          f"(torch {torch.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
