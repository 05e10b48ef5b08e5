"""Backbones: what --freeze-backbone freezes, the wrappings --backbone-weights PATH accepts, the
shipped weights' checks, the dataset's default weights and the sha256 every record stores."""

from __future__ import annotations

import hashlib
import shutil

import pytest
import torch
import torchvision

from conftest import TINY_SCENES
from mlrpl_bench.data.builtin import DigitScenes
from mlrpl_bench.data.voc import VOC2007
from mlrpl_bench.errors import BenchError
from mlrpl_bench.models import backbones as B
from mlrpl_bench.models.backbones import ResNetTrunk, SmallCNN, load_state_dict_file
from mlrpl_bench.results import read_record
from mlrpl_bench.run_config import make_run_config, prepare_run


def _trainable_blocks(model: SmallCNN) -> list[bool]:
    return [all(p.requires_grad for p in block.parameters()) for block in model.features]


# -- freezing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("freeze, trainable", [("none", [True] * 6), ("official", [False] * 4 + [True] * 2),
                                               ("all", [False] * 6)])
def test_small_cnn_freeze_modes_choose_which_blocks_train(freeze, trainable):
    model = SmallCNN(freeze=freeze)
    assert _trainable_blocks(model) == trainable
    # No block is half frozen.
    assert all(len({p.requires_grad for p in block.parameters()}) == 1 for block in model.features)


@pytest.mark.parametrize("freeze", ["official", "all"])
def test_frozen_batchnorm_statistics_do_not_move_in_train_mode(freeze):
    torch.manual_seed(0)
    model = SmallCNN(width=4, out_channels=8, freeze=freeze).train()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    model(torch.randn(4, 3, 16, 16) * 3 + 1)
    after = model.state_dict()
    frozen = model.OFFICIAL_FROZEN_BLOCKS if freeze == "official" else 6
    for key, value in before.items():
        block = int(key.split(".")[1])
        moved = not torch.equal(value, after[key])
        assert moved == (block >= frozen), key
    assert [block.training for block in model.features] == [i >= frozen for i in range(6)]
    assert model.training


def test_resnet_official_freezes_stem_and_layers_1_to_3_with_their_batchnorm():
    trunk = ResNetTrunk(torchvision.models.resnet18(weights=None), "official").train()
    assert all(p.requires_grad for p in trunk.layer4.parameters())
    for part in (trunk.stem, trunk.layer1, trunk.layer2, trunk.layer3):
        assert not any(p.requires_grad for p in part.parameters())
        assert not any(m.training for m in part.modules())
    assert trunk.layer4.training
    assert not any(p.requires_grad for p in ResNetTrunk(torchvision.models.resnet18(weights=None), "all").parameters())


def test_unknown_freeze_mode_is_refused_by_the_train_settings():
    with pytest.raises(BenchError, match=r"--freeze-backbone half: input should be 'none', 'official' or 'all'"):
        _prepare(freeze_backbone="half")


# -- --backbone-weights PATH wrappings -----------------------------------------------------------


def _tiny() -> SmallCNN:
    return SmallCNN(width=4, out_channels=8)


@pytest.fixture
def source():
    torch.manual_seed(3)
    model = _tiny()
    model(torch.randn(2, 3, 16, 16))  # BatchNorm statistics that differ from a fresh model's
    return model.state_dict()


def _assert_loaded(model, source):
    for key, value in model.state_dict().items():
        assert torch.equal(value, source[key].to(value.dtype)), key


def _prefixed(state, prefix):
    return {prefix + k: v for k, v in state.items()}


WRAPPINGS = {
    "plain": lambda s: s,
    "state_dict": lambda s: {"state_dict": s, "epoch": 3},
    "model": lambda s: {"model": s, "optimizer_step": 10},
    "model-state_dict": lambda s: {"model": {"state_dict": s}},
    "module.": lambda s: _prefixed(s, "module."),
    "model.": lambda s: _prefixed(s, "model."),
    "backbone.": lambda s: _prefixed(s, "backbone."),
    "encoder.": lambda s: {"state_dict": _prefixed(s, "encoder.")},
    "module.backbone.": lambda s: _prefixed(s, "module.backbone."),
    "classifier keys": lambda s: {**s, "fc.weight": torch.ones(20, 8), "fc.bias": torch.zeros(20),
                                  "classifier.0.weight": torch.ones(3), "head.bias": torch.ones(2)},
    "prefix and classifier": lambda s: {**_prefixed(s, "module.backbone."), "module.head.fc.weight": torch.ones(5, 8)},
    "float16": lambda s: {k: v.half() if v.is_floating_point() else v for k, v in s.items()},
    "no num_batches_tracked": lambda s: {k: v for k, v in s.items() if not k.endswith("num_batches_tracked")},
}


@pytest.mark.parametrize("wrapping", list(WRAPPINGS))
def test_state_dict_wrappings_load(tmp_path, source, wrapping):
    path = tmp_path / "w.pt"
    torch.save(WRAPPINGS[wrapping](source), path)
    model = _tiny()
    load_state_dict_file(model, path)
    expected = dict(source)
    if wrapping == "no num_batches_tracked":
        expected.update({k: v for k, v in _tiny().state_dict().items() if k.endswith("num_batches_tracked")})
    if wrapping == "float16":
        expected = {k: v.half().float() if v.is_floating_point() else v for k, v in expected.items()}
    _assert_loaded(model, expected)


BAD = {
    "unknown prefix": (lambda s: _prefixed(s, "net."),
                       r"w\.pt: keys carry the prefix 'net\.' .*strip it: .*removeprefix\('net\.'\)"),
    "missing key": (lambda s: {k: v for k, v in s.items() if k != "features.5.1.running_var"},
                    r"w\.pt: key 'features\.5\.1\.running_var' is missing \(1 of the backbone's 30 keys missing\)"),
    "missing key under a prefix": (lambda s: {"module." + k: v for k, v in s.items() if k != "features.0.0.weight"},
                                   r"key 'features\.0\.0\.weight' is missing \(after stripping 'module\.'\)"),
    "unexpected key": (lambda s: {**s, "projector.weight": torch.ones(2)},
                       r"w\.pt: unexpected key 'projector\.weight' .*remove it"),
    "wrong shape": (lambda s: {**s, "features.0.0.weight": torch.ones(4, 3, 5, 5)},
                    r"key 'features\.0\.0\.weight' has shape \[4, 3, 5, 5\] but the backbone needs \[4, 3, 3, 3\]"),
    "two backbones": (lambda s: {**_prefixed(s, "backbone."), **_prefixed(s, "encoder.")},
                      r"keys under 'backbone\.' and 'encoder\.' each hold a whole backbone"),
    "not a tensor": (lambda s: {**s, "epoch": 3}, r"entry 'epoch' is not a tensor"),
    "not a mapping": (lambda s: [1, 2], r"expected a state dict .* got list"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_unfitting_state_dicts_are_refused_with_one_line_naming_the_file_and_the_fix(tmp_path, source, case):
    make, message = BAD[case]
    path = tmp_path / "w.pt"
    torch.save(make(source), path)
    with pytest.raises(BenchError, match=message) as info:
        load_state_dict_file(_tiny(), path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_resnet_classifier_of_another_size_is_ignored(tmp_path):
    torch.manual_seed(0)
    trained = torchvision.models.resnet18(weights=None, num_classes=20)
    path = tmp_path / "r18.pt"
    torch.save({"state_dict": _prefixed(trained.state_dict(), "module.")}, path)
    target = torchvision.models.resnet18(weights=None)
    load_state_dict_file(target, path, optional=("fc.",))
    assert torch.equal(target.layer4[1].conv2.weight, trained.layer4[1].conv2.weight)
    assert target.fc.weight.shape == (1000, 512)


# -- the shipped weights ---------------------------------------------------------------------------


def test_builtin_weights_load_and_a_changed_file_is_refused(tmp_path, monkeypatch):
    model = B.BUILTIN_BACKBONES[0].build("builtin", "none")
    shipped = B.read_state_dict(B.builtin_weights_path("small-cnn"))
    _assert_loaded(model, {k: v.float() if v.is_floating_point() else v for k, v in shipped.items()})
    copy = tmp_path / B.BUILTIN_WEIGHTS["small-cnn"][0]
    shutil.copy(B.builtin_weights_path("small-cnn"), copy)
    data = bytearray(copy.read_bytes())
    data[-100] ^= 1
    copy.write_bytes(bytes(data))
    monkeypatch.setattr(B, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(BenchError, match=r"small-cnn-glyphs\.pt: sha256 [0-9a-f]{16}\.\.\. is not the pinned"):
        B.BUILTIN_BACKBONES[0].build("builtin", "none")
    copy.unlink()
    with pytest.raises(BenchError, match="missing from this installation"):
        B.BUILTIN_BACKBONES[0].build("builtin", "none")


def test_builtin_weights_exist_only_for_small_cnn():
    with pytest.raises(BenchError, match=r"backbone 'resnet50' has no built-in weights \(only small-cnn\)"):
        B._resnet_builder("resnet50")("builtin", "none")


def test_default_weights_are_the_datasets_for_its_default_backbone_only():
    assert B.default_weights(DigitScenes, "small-cnn") == "builtin"
    assert B.default_weights(DigitScenes, "resnet50") == "none"
    assert B.default_weights(VOC2007, "resnet101") == "none"
    assert _prepare().train.backbone_weights == "builtin"
    assert _prepare(backbone="resnet50").train.backbone_weights == "none"
    assert _prepare(backbone_weights="none").train.backbone_weights == "none"


def _prepare(**train):
    """The resolved run configuration of ``mlrpl-bench run --plugin partial-bce`` with these train flags."""
    return prepare_run(make_run_config({"plugin": "partial-bce", "train": train}))


def test_weights_sha256(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(_tiny().state_dict(), path)
    assert B.weights_sha256("small-cnn", str(path)) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert B.weights_sha256("small-cnn", "builtin") == B.BUILTIN_WEIGHTS["small-cnn"][1]
    assert B.weights_sha256("small-cnn", "none") is None
    assert B.weights_sha256("my-backbone", "imagenet") is None


def test_weights_sha256_of_imagenet_is_the_cached_torchvision_file_when_present(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert B.weights_sha256("resnet50", "imagenet") is None  # not downloaded: nothing to hash
    url = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url
    cached = tmp_path / "checkpoints" / url.rsplit("/", 1)[-1]
    cached.parent.mkdir()
    cached.write_bytes(b"stand-in for the downloaded file")
    assert B.weights_sha256("resnet50", "imagenet") == hashlib.sha256(cached.read_bytes()).hexdigest()


def test_records_store_the_weights_sha256(cli, tmp_path):
    weights = tmp_path / "w.pt"
    torch.save(SmallCNN().state_dict(), weights)
    shas = {}
    for name, extra in (("builtin", ()), ("none", ("--backbone-weights", "none")),
                        ("path", ("--backbone-weights", weights))):
        out = tmp_path / name
        res = cli("run", "--plugin", "partial-bce", "--known", "0.5", "--epochs", "1", "--track", "frozen",
                  "--output", out, *TINY_SCENES, *extra)
        assert res.exit_code == 0, res.stderr
        record = read_record(out / "partial-bce__digit-scenes__pal__0.5__seed0" / "record.json")
        shas[name] = (record["train"]["backbone_weights"], record["train"]["backbone_weights_sha256"])
    assert shas == {"builtin": ("builtin", B.BUILTIN_WEIGHTS["small-cnn"][1]), "none": ("none", None),
                    "path": (str(weights), hashlib.sha256(weights.read_bytes()).hexdigest())}
