"""The ``paper`` and ``official`` profiles of sst, hst and dsrb train what the official code trains
(HCP-MLR-PL ``SST.py``/``HST.py``/``DSRB.py``, ``utils/dataloader.py``, ``model/backbone/resnet.py``):
the image track, layer4 trained and the rest of ResNet-101 frozen with its BatchNorm in eval mode,
the official augmentation with bicubic resizing, the 2x2 pool after layer4 (7x7 maps at 448 px),
fp32. Everything is resolved through ``prepare_run`` and built through the backbone registry and
the plugin, with random weights (nothing is downloaded); the 448 px shapes come from ResNet-101
on the meta device (no arithmetic), the pool's values from a real forward at a tiny input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from mlrpl_bench.data.transforms import RandomSideCrop
from mlrpl_bench.engine import resolve_precision
from mlrpl_bench.method import MethodContext
from mlrpl_bench.run_config import make_run_config, prepare_run
from mlrpl_bench.single_run import run_transforms

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROFILES = [("sst", "paper", 32), ("sst", "official", 8), ("hst", "paper", 32), ("hst", "official", 32),
            ("dsrb", "paper", 32), ("dsrb", "official", 8)]


def prepared(plugin: str, profile: str, **train):
    return prepare_run(make_run_config({"plugin": plugin, "dataset": "voc2007", "profile": profile,
                                        "train": {"backbone_weights": "none", **train}}))


def method_for(p, classes: int = 20):
    labels = np.random.default_rng(0).choice([-1, 0, 1], size=(16, classes)).astype(np.int8)
    ctx = MethodContext(num_classes=classes, class_names=[f"c{i}" for i in range(classes)], train_labels=labels,
                        word_embeddings=np.random.default_rng(1).random((classes, 300)).astype(np.float32),
                        epochs=p.train.epochs, steps_per_epoch=2, setting="pal", known=0.5, seed=0,
                        feature_batches=lambda: iter(()), generator=torch.Generator().manual_seed(0))
    return p.method_cls(p.method_options, ctx)


@pytest.mark.parametrize("plugin,profile,batch", PROFILES)
def test_profile_is_the_official_recipe_on_the_image_track_in_fp32(plugin, profile, batch):
    train = prepared(plugin, profile).train
    assert train.track == "finetune"  # images, augmented, nothing cached
    assert (train.backbone, train.freeze_backbone, train.image_size) == ("resnet101-pool2", "official", 448)
    assert (train.lr, train.weight_decay, train.lr_step, train.lr_gamma, train.epochs) == (1e-5, 5e-4, 10, 0.1, 20)
    assert train.batch_size == batch  # scripts/SST.sh, DSRB.sh: 8; HST.sh and the papers: 32
    # fp32 on a GPU too: the profile names it, so "auto" (bf16 on CUDA) never applies
    assert train.precision == "fp32" and resolve_precision(train.precision, torch.device("cuda")) == "fp32"


def test_command_line_overrides_the_profile_precision_and_track():
    assert prepared("hst", "paper", precision="bf16").train.precision == "bf16"
    frozen = prepared("hst", "paper", track="frozen").train  # the frozen feature track stays a named option
    assert frozen.track == "frozen" and frozen.backbone == "resnet101-pool2"


def test_the_default_profile_stays_the_cpu_miniature():
    train = prepare_run(make_run_config({"plugin": "sst"})).train  # digit-scenes
    assert (train.track, train.backbone, train.backbone_weights, train.precision) == ("frozen", "small-cnn", "builtin", "auto")


@pytest.mark.parametrize("plugin", ["sst", "hst", "dsrb"])
def test_only_layer4_and_the_heads_train_and_frozen_batchnorm_stays_in_eval(plugin):
    p = prepared(plugin, "paper")
    method = method_for(p)
    with torch.device("meta"):  # ResNet-101's shapes without its arithmetic
        backbone = p.backbone_spec.build(p.train.backbone_weights, p.train.freeze_backbone)
        maps = backbone(torch.empty(2, 3, 448, 448))
    assert tuple(maps.shape) == (2, 2048, 7, 7)  # model/backbone/resnet.py: 14x14 after layer4, 7x7 after the pool
    model = method.build_model(backbone)
    model.train()
    trainable = {name for name, q in model.named_parameters() if q.requires_grad}
    in_backbone = {name for name in trainable if name.startswith("backbone.")}
    assert in_backbone == {f"backbone.layer4.{name}" for name, _ in backbone.layer4.named_parameters()}
    assert trainable - in_backbone  # the heads (SD, GGNN, classifiers, IST head, ...) train
    for name in ("stem", "layer1", "layer2", "layer3"):
        module = getattr(model.backbone, name)
        assert not any(q.requires_grad for q in module.parameters())
        assert not any(m.training for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)), name
    assert all(m.training for m in model.backbone.layer4.modules())  # layer4's BatchNorm trains (SST.py:124-126)


def test_the_pool_is_the_official_2x2_average_of_the_layer4_maps_at_a_tiny_input():
    p = prepared("dsrb", "paper")
    torch.manual_seed(0)
    pooled = p.backbone_spec.build("none", "official").eval()
    from mlrpl_bench import plugin_manager as P

    plain = P.get_backbone("resnet101").build("none", "official").eval()
    plain.load_state_dict(pooled.state_dict())  # same weights: the pool is the only difference
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        a, b = pooled(x), plain(x)
    assert b.shape[-2:] == (4, 4) and a.shape[-2:] == (2, 2)  # 448 / 64 = 7 at 448 px; 128 / 64 = 2 here
    assert torch.allclose(a[0, :, 0, 0], b[0, :, :2, :2].mean(dim=(-2, -1)), atol=1e-5)
    assert torch.allclose(a[0, :, 1, 1], b[0, :, 2:, 2:].mean(dim=(-2, -1)), atol=1e-5)
    # the frozen track's feature cache tells them apart although their weights are the same
    from mlrpl_bench.feature_cache import module_fingerprint
    from mlrpl_bench.models.backbones import FrozenBackbone

    assert module_fingerprint(FrozenBackbone(pooled)) != module_fingerprint(FrozenBackbone(plain))


@pytest.mark.parametrize("plugin", ["sst", "hst", "dsrb"])
def test_train_images_get_the_official_bicubic_augmentation(plugin, tmp_path):
    p = prepared(plugin, "paper")
    train_tf, eval_tf = run_transforms(p.dataset_cls(root=tmp_path), p.train)
    bicubic = T.InterpolationMode.BICUBIC
    steps = train_tf.transforms
    # utils/dataloader.py:72-79: resize 512, RandomChoice of RandomCrop(512..256), resize 448, flip
    assert isinstance(steps[0], T.Resize) and steps[0].size == (512, 512) and steps[0].interpolation == bicubic
    assert isinstance(steps[1], RandomSideCrop) and steps[1].sides == (512, 448, 384, 320, 256)
    assert isinstance(steps[2], T.Resize) and steps[2].size == (448, 448) and steps[2].interpolation == bicubic
    assert isinstance(steps[3], T.RandomHorizontalFlip)
    # utils/dataloader.py:81-83: the test images are resized to 448, bicubic, and nothing else
    assert isinstance(eval_tf.transforms[0], T.Resize) and eval_tf.transforms[0].interpolation == bicubic
    assert not any(isinstance(s, (RandomSideCrop, T.RandomHorizontalFlip)) for s in eval_tf.transforms)
    frozen_train, _ = run_transforms(p.dataset_cls(root=tmp_path), prepared(plugin, "paper", track="frozen").train)
    assert frozen_train is not None and not any(isinstance(s, RandomSideCrop) for s in frozen_train.transforms)


def test_augmented_images_come_out_at_the_profile_size():
    p = prepared("hst", "paper", image_size=64)
    train_tf, _ = run_transforms(p.dataset_cls(root="."), p.train)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8))
    assert tuple(train_tf(img).shape) == (3, 64, 64)
    assert train_tf.transforms[1].sides == (73, 64, 55, 46, 37)  # every length scaled by 64 / 448
