"""The CPU miniature on the built-in data: the SARL head learns where the objects are.

Issue 11: with the old regime (a small CNN from scratch, Adam 1e-3, coupled weight decay 5e-4)
semantic decoupling's attention stayed exactly uniform (1/16 on a 4x4 map) -- the head was an
average pooling. With the miniature's defaults (the shipped pretrained backbone, frozen; the
default learning rate and weight decay of TrainConfig) the attention of a class concentrates on
a few locations of the images that contain it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlrpl_bench import plugin_manager as P
from mlrpl_bench.data.builtin import DigitScenes
from mlrpl_bench.data.embeddings import load_word_embeddings
from mlrpl_bench.method import Batch, MethodContext
from mlrpl_bench.protocol import make_partial_labels
from mlrpl_bench.train_config import TrainConfig


class _Cached(torch.nn.Module):
    """The frozen track's stand-in backbone: the inputs already are the cached feature maps."""

    out_channels = 128

    def forward(self, x):
        return x


def _attention_peak(model, maps, labels):
    """Mean over (image, class present) of the largest attention weight of that class."""
    model.eval()
    with torch.no_grad():
        _, attention, _ = model.category_features(maps)
    model.train()
    peak = attention.flatten(2).amax(-1)  # (B, C)
    return float(peak[torch.as_tensor(labels == 1)].mean())


@pytest.fixture(scope="module")
def builtin_features(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    dataset = DigitScenes(None, DigitScenes.Options(train_size=400, test_size=30, cache_dir=str(root)))
    split = dataset.load_split("train")
    transform = dataset.transforms(32, False)
    images = torch.stack([transform(split.open_image(i)) for i in range(len(split))])
    backbone = P.get_backbone("small-cnn").build("builtin", "all").eval()
    with torch.no_grad():
        maps = backbone(images)
    return split, maps


def _train_ssgrl(split, maps, train: TrainConfig, epochs: int = 6, batch: int = 32):
    """ssgrl at its defaults on the cached maps of ``split`` (PAL, 50 % known), as the engine
    drives it; returns the model and the attention peak before training."""
    torch.manual_seed(0)
    partial = make_partial_labels(split.labels, setting="pal", known=0.5, seed=0)
    ctx = MethodContext(num_classes=split.num_classes, class_names=list(split.class_names), train_labels=partial,
                        word_embeddings=load_word_embeddings(split.class_names, None), epochs=epochs,
                        steps_per_epoch=-(-len(maps) // batch), setting="pal", known=0.5, seed=0)
    cls = P.get_method("ssgrl")
    method = cls(cls.make_options(), ctx)
    model = method.build_model(_Cached())
    before = _attention_peak(model, maps, split.labels)
    optimizer, _ = method.configure_optimizers(model, train)
    labels = torch.as_tensor(partial, dtype=torch.float32)
    order = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        perm = torch.randperm(len(maps), generator=order)
        for start in range(0, len(maps), batch):
            idx = perm[start:start + batch]
            loss = method.training_step(model, Batch(maps[idx], labels[idx], idx), epoch)["loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    assert np.isfinite(float(loss.detach()))
    return model, before


def test_semantic_decoupling_attends_after_training_with_the_miniature_defaults(builtin_features):
    split, maps = builtin_features
    defaults = TrainConfig()
    model, before = _train_ssgrl(split, maps, defaults)
    uniform = 1.0 / (maps.shape[-1] * maps.shape[-2])
    assert before < 1.2 * uniform  # untrained: near uniform
    peak = _attention_peak(model, maps, split.labels)
    # Trained at the defaults, a present class puts several times the uniform weight on its peak.
    assert peak > 3 * uniform, f"attention peak {peak:.3f} vs uniform {uniform:.3f} (lr {defaults.lr}, wd {defaults.weight_decay})"


def test_the_official_weight_decay_at_the_miniature_lr_would_erase_the_attention(builtin_features):
    """Why the weight decay is scaled (docs/miniature.md): the same training with the official 5e-4."""
    split, maps = builtin_features
    model, _ = _train_ssgrl(split, maps, TrainConfig(weight_decay=5e-4))
    uniform = 1.0 / (maps.shape[-1] * maps.shape[-2])
    assert _attention_peak(model, maps, split.labels) == pytest.approx(uniform, rel=0.05)
