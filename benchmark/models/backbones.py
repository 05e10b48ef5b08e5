"""Backbones: modules that map images ``(B, 3, H, W)`` to feature maps ``(B, D, h, w)``.

A backbone is registered as a :class:`BackboneSpec` through the ``mlrpl_backbones`` hook. Every
built module has an ``out_channels`` attribute (D). Weights (``--backbone-weights``) are one of

* ``none``: random initialisation (train from scratch);
* ``builtin``: the weights that ship with the package (today: ``small-cnn`` pretrained on the
  single-glyph source task by ``tools/pretrain_backbone.py``; sha256 pinned in
  :data:`BUILTIN_WEIGHTS`, checked on every load);
* ``imagenet``: torchvision's weights API (cached by torch, needs internet once);
* a PATH to a local state dict, in the usual wrappings (see :func:`load_state_dict_file`).

Nothing else is ever downloaded. :func:`weights_sha256` gives the hash every record stores.
"""

from __future__ import annotations

import hashlib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import permutations
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from ..errors import BenchError
from ..train_config import FreezeMode

#: ``--freeze-backbone``: the choices, declared once (the train settings' field type).
FREEZE_MODES: tuple[str, ...] = typing.get_args(FreezeMode)

#: Where the shipped weights live (package data) and their pinned sha256, per backbone name.
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
BUILTIN_WEIGHTS: dict[str, tuple[str, str]] = {
    "small-cnn": ("small-cnn-glyphs.pt", "605bfb8adec47f352ab5062e904d129d82394ba60e94e323db3f95847e53c762"),
}

#: Top-level keys of a checkpoint that wrap the state dict (``{"state_dict": {...}}``).
WRAPPER_KEYS = ("state_dict", "model")
#: Key prefixes of wrapped models (DataParallel's ``module.``, a ``model``/``backbone``/``encoder``
#: attribute); the one (or the chain of two) that makes the keys fit is stripped.
WRAPPER_PREFIXES = ("module.", "model.", "backbone.", "encoder.")
#: Keys of a classifier that a checkpoint may carry beside the backbone; they are ignored.
CLASSIFIER_PREFIXES = ("fc.", "classifier.", "head.")


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone.

    :ivar name: registry name (``--backbone NAME``).
    :ivar build: ``build(weights, freeze) -> nn.Module`` with an ``out_channels`` attribute;
        ``weights`` is ``"none"``, ``"builtin"``, ``"imagenet"`` or a path to a state dict;
        ``freeze`` one of :data:`FREEZE_MODES`: ``none``, ``official`` (the papers' partial
        freeze: the early stages and their BatchNorm frozen), ``all``.
    :ivar out_channels: D, the channels of the feature maps.
    :ivar summary: one line for ``mlrpl-bench plugins``.
    """

    name: str
    build: Callable[[str, str], nn.Module]
    out_channels: int
    summary: str = ""


class _PartlyFrozen(nn.Module):
    """A backbone whose :meth:`frozen_modules` never train: no gradients, BatchNorm in eval mode.

    The official code keeps the BatchNorm of its frozen layers in eval mode, so their running
    statistics stay the pretrained ones while the later layers train.
    """

    freeze: str = "none"

    def frozen_modules(self) -> list[nn.Module]:
        raise NotImplementedError

    def _freeze(self) -> None:
        for module in self.frozen_modules():
            for p in module.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()
        return self


class SmallCNN(_PartlyFrozen):
    """A six-layer CNN for small images on a CPU (the built-in dataset's default backbone).

    Three stride-2 stages with an extra 3x3 layer after each: stride 8 overall (the built-in
    dataset's 32 px images give 4x4 feature maps, 48 px give 6x6) and a 43 px receptive field, so a unit
    sees a whole object of the built-in scenes. (A four-layer version with a 17 px receptive
    field could not tell the shapes apart: 38 vs 54 test mAP after 10 epochs on full labels.)

    ``freeze="official"`` freezes the first two stages (4 of the 6 blocks) and keeps their
    BatchNorm in eval mode: the analogue of the papers' ResNet with layers 1-3 frozen and only
    layer4 training. ``"all"`` freezes every block.
    """

    #: Blocks frozen by ``freeze="official"``: stages 1-2 of 3, as layers 1-3 of ResNet's 4.
    OFFICIAL_FROZEN_BLOCKS = 4

    def __init__(self, width: int = 32, out_channels: int = 128, freeze: FreezeMode = "none"):
        super().__init__()

        def block(cin, cout, stride):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        self.features = nn.Sequential(block(3, width, 2), block(width, width * 2, 1),
                                      block(width * 2, width * 4, 2), block(width * 4, width * 4, 1),
                                      block(width * 4, out_channels, 2), block(out_channels, out_channels, 1))
        self.out_channels = out_channels
        self.freeze = freeze
        self._freeze()

    def frozen_modules(self) -> list[nn.Module]:
        count = {"official": self.OFFICIAL_FROZEN_BLOCKS, "all": len(self.features)}.get(self.freeze, 0)
        return list(self.features[:count])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class ResNetTrunk(_PartlyFrozen):
    """A torchvision ResNet without its global pooling and classifier: images -> layer4 feature maps.

    ``freeze="official"`` is the official code's: stem and layers 1-3 frozen (BatchNorm in eval
    mode), only layer4 trains; ``"all"`` freezes layer4 too. ``map_pool=2`` adds the official
    backbone's 2x2 average pool with stride 2 after layer4 (HCP-MLR-PL ``model/backbone/resnet.py``
    lines 108 and 146, the backbone of ``model/SST.py``, ``HST.py`` and ``DSRB.py``): 7x7 maps at
    448 px instead of 14x14 (the ``resnet101-pool2`` backbone).
    """

    def __init__(self, resnet: nn.Module, freeze: FreezeMode = "none", map_pool: int = 1):
        super().__init__()
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4
        self.out_channels = resnet.fc.in_features
        self.map_pool = int(map_pool)
        self.freeze = freeze
        self._freeze()

    def fingerprint_extra(self) -> str:
        """What shapes the outputs beside the weights (the pool has none): part of feature-cache keys."""
        return f"map_pool={self.map_pool}" if self.map_pool > 1 else ""

    def frozen_modules(self) -> list[nn.Module]:
        early = [self.stem, self.layer1, self.layer2, self.layer3]
        return {"official": early, "all": [*early, self.layer4]}.get(self.freeze, [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        if self.map_pool > 1:  # floor division of the map, as nn.AvgPool2d(2, stride=2) in the official code
            x = nn.functional.avg_pool2d(x, self.map_pool, stride=self.map_pool)
        return x


class FrozenBackbone(nn.Module):
    """Wraps a backbone for the frozen track: no gradients, and always in eval mode (BatchNorm
    statistics never move), whatever ``model.train()`` says."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.inner = backbone
        self.out_channels = backbone.out_channels
        for p in self.inner.parameters():
            p.requires_grad_(False)
        self.inner.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.inner.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.inner(x)


# ---------------------------------------------------------------------------------------------
# Weights files
# ---------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``path`` (safely, ``weights_only=True``), unwrapping
    ``{"state_dict": ...}`` / ``{"model": ...}`` checkpoints.

    :raises BenchError: the file is missing, unreadable or holds no mapping of names to tensors.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise BenchError(f"{path}: backbone weights file not found; pass --backbone-weights none, builtin, imagenet or PATH")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise BenchError(f"{path}: not a readable PyTorch state dict ({type(exc).__name__}); "
                         f"save one with torch.save(model.state_dict(), PATH)") from None
    for _ in range(len(WRAPPER_KEYS)):  # e.g. {"model": {"state_dict": {...}}}
        inner = next((state[k] for k in WRAPPER_KEYS if isinstance(state, Mapping) and isinstance(state.get(k), Mapping)), None)
        if inner is None:
            break
        state = inner
    if not isinstance(state, Mapping) or not state:
        raise BenchError(f"{path}: expected a state dict (a mapping of parameter names to tensors), got {type(state).__name__}")
    other = next((k for k, v in state.items() if not isinstance(v, torch.Tensor)), None)
    if other is not None:
        raise BenchError(f"{path}: entry {other!r} is not a tensor; save model.state_dict() alone, or wrap it as "
                         f"{{'state_dict': ...}}")
    return {str(k): v for k, v in state.items()}


def _strip_wrappers(key: str) -> str:
    while key.startswith(WRAPPER_PREFIXES):
        key = key.split(".", 1)[1]
    return key


def _fit(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v for k, v in state.items()}


def fit_state_dict(state: Mapping[str, torch.Tensor], module: nn.Module, path: str | Path, *,
                   optional: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """The entries of ``state`` renamed and filtered to load into ``module``.

    Strips the one wrapper prefix (:data:`WRAPPER_PREFIXES`, or a chain of two such as
    ``module.backbone.``) that makes every key of ``module`` present, drops classifier keys
    (:data:`CLASSIFIER_PREFIXES`) that ``module`` does not have, and ``module``'s ``optional``
    keys (e.g. a ResNet's own ``fc.``) that are missing or of another shape.

    :raises BenchError: one line naming ``path`` and the prefix to strip, the missing key, the
        unexpected key or the key of the wrong shape.
    """
    expected = module.state_dict()
    # num_batches_tracked only matters for BatchNorm(momentum=None); old checkpoints lack it.
    needed = [k for k in expected if not k.startswith(optional) and not k.endswith("num_batches_tracked")]
    candidates = ["", *WRAPPER_PREFIXES, *(a + b for a, b in permutations(WRAPPER_PREFIXES, 2))]
    fitting = [p for p in candidates if all(k in _fit(state, p) for k in needed)]
    if len(fitting) > 1 and fitting[0] != "":
        raise BenchError(f"{path}: keys under {fitting[0]!r} and {fitting[1]!r} each hold a whole backbone; "
                         f"save the one you mean alone with torch.save(state_dict, PATH)")
    if not fitting:
        raise BenchError(f"{path}: {_diagnose(state, needed)}")
    fitted = _fit(state, fitting[0])
    out = {}
    for key, value in fitted.items():
        if key not in expected:
            if _strip_wrappers(key).startswith(CLASSIFIER_PREFIXES):
                continue
            raise BenchError(f"{path}: unexpected key {key!r} (neither in the backbone nor a classifier key "
                             f"{'/'.join(CLASSIFIER_PREFIXES)}); remove it from the state dict")
        if tuple(value.shape) != tuple(expected[key].shape):
            if key.startswith(optional):
                continue
            raise BenchError(f"{path}: key {key!r} has shape {list(value.shape)} but the backbone needs "
                             f"{list(expected[key].shape)}; these weights are for another architecture or width")
        out[key] = value
    return out


def _diagnose(state: Mapping[str, torch.Tensor], needed: list[str]) -> str:
    """Why no wrapper prefix fits: an unknown prefix to strip, or the first missing key."""
    wanted = set(needed)
    counts: dict[str, int] = {}
    for key in state:
        parts = key.split(".")
        for i in range(1, len(parts)):
            if ".".join(parts[i:]) in wanted:
                prefix = ".".join(parts[:i]) + "."
                counts[prefix] = counts.get(prefix, 0) + 1
                break
    best = max(counts, key=counts.get, default=None)
    if best is not None and counts[best] >= len(wanted):
        return (f"keys carry the prefix {best!r} (e.g. {best + needed[0]!r}); strip it: "
                f"torch.save({{k.removeprefix({best!r}): v for k, v in state.items()}}, PATH)")
    plain = sum(k in state for k in wanted)
    prefix = best if best is not None and counts[best] > plain else ""
    missing = [k for k in needed if prefix + k not in state]
    hint = f" (after stripping {prefix!r})" if prefix else ""
    return (f"key {missing[0]!r} is missing{hint} ({len(missing)} of the backbone's {len(needed)} keys missing); "
            f"pass weights saved from the same architecture")


def load_state_dict_file(module: nn.Module, path: str | Path, *, optional: tuple[str, ...] = ()) -> None:
    """Load the state dict in ``path`` into ``module`` (see :func:`fit_state_dict` for the
    wrappings it accepts); ``optional`` key prefixes of ``module`` may be missing."""
    state = fit_state_dict(read_state_dict(path), module, path, optional=optional)
    module.load_state_dict(state, strict=False)


def builtin_weights_path(backbone: str) -> Path:
    """The shipped weights file of ``backbone``; :class:`BenchError` when it has none."""
    if backbone not in BUILTIN_WEIGHTS:
        raise BenchError(f"backbone {backbone!r} has no built-in weights (only {', '.join(BUILTIN_WEIGHTS)}); "
                         f"pass --backbone-weights none, imagenet or PATH")
    return WEIGHTS_DIR / BUILTIN_WEIGHTS[backbone][0]


def load_builtin_weights(module: nn.Module, backbone: str) -> None:
    """Load ``backbone``'s shipped weights into ``module`` after checking their pinned sha256."""
    path = builtin_weights_path(backbone)
    pinned = BUILTIN_WEIGHTS[backbone][1]
    if not path.is_file():
        raise BenchError(f"{path}: the built-in {backbone} weights are missing from this installation; "
                         f"reinstall mlrpl-bench or pass --backbone-weights none")
    digest = _sha256(path)
    if digest != pinned:
        raise BenchError(f"{path}: sha256 {digest[:16]}... is not the pinned {pinned[:16]}...; reinstall mlrpl-bench "
                         f"(or, after rerunning tools/pretrain_backbone.py, update BUILTIN_WEIGHTS)")
    load_state_dict_file(module, path)


def weights_sha256(backbone: str, weights: str) -> str | None:
    """sha256 of the weights file a run's backbone starts from (every record stores it).

    ``builtin``: the pinned hash (loading refuses any other file); a PATH: the file's hash;
    ``imagenet``: the hash of torchvision's cached file when it is there; ``none``: None.
    """
    if weights in ("none", "", None):
        return None
    if weights == "builtin":
        return BUILTIN_WEIGHTS[backbone][1] if backbone in BUILTIN_WEIGHTS else None
    if weights == "imagenet":
        if backbone not in _TORCHVISION_ARCHS:
            return None
        import torchvision

        url = torchvision.models.get_model_weights(_TORCHVISION_ARCHS[backbone]).IMAGENET1K_V1.url
        cached = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
        return _sha256(cached) if cached.is_file() else None
    path = Path(weights).expanduser()
    return _sha256(path) if path.is_file() else None


def default_weights(dataset_cls, backbone: str) -> str:
    """``--backbone-weights`` when not given: the dataset's ``default_backbone_weights`` for its
    default backbone (``builtin`` for ``digit-scenes``' ``small-cnn``), ``none`` for any other."""
    return dataset_cls.default_backbone_weights if backbone == dataset_cls.default_backbone else "none"


# ---------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------

#: Registered ResNet names -> torchvision architecture (whose ImageNet weights they load).
_TORCHVISION_ARCHS = {"resnet50": "resnet50", "resnet101": "resnet101", "resnet50-pool2": "resnet50",
                      "resnet101-pool2": "resnet101"}
#: The official backbone's pool after layer4 (``model/backbone/resnet.py:108``: ``nn.AvgPool2d(2, stride=2)``).
OFFICIAL_MAP_POOL = 2


def _resnet_builder(arch: str, map_pool: int = 1) -> Callable[[str, str], nn.Module]:
    def build(weights: str = "none", freeze: FreezeMode = "none") -> nn.Module:
        import torchvision

        ctor = getattr(torchvision.models, arch)
        if weights == "imagenet":
            enum = torchvision.models.get_model_weights(arch).IMAGENET1K_V1
            try:
                resnet = ctor(weights=enum)
            except Exception as exc:  # noqa: BLE001 - no network, no cached file
                raise BenchError(f"cannot get ImageNet weights for {arch} ({type(exc).__name__}): this machine may be offline; "
                                 f"pass --backbone-weights PATH to a local state dict") from None
        else:
            resnet = ctor(weights=None)
            if weights == "builtin":
                builtin_weights_path(arch)  # raises: no ResNet weights ship with the package
            elif weights not in ("none", "", None):
                load_state_dict_file(resnet, weights, optional=("fc.",))
        return ResNetTrunk(resnet, freeze, map_pool)

    return build


def _small_cnn_builder(weights: str = "none", freeze: FreezeMode = "none") -> nn.Module:
    model = SmallCNN(freeze=freeze)
    if weights == "builtin":
        load_builtin_weights(model, "small-cnn")
    elif weights == "imagenet":
        raise BenchError("backbone 'small-cnn' has no ImageNet weights; pass --backbone-weights builtin, none or a local PATH")
    elif weights not in ("none", "", None):
        load_state_dict_file(model, weights)
    return model


BUILTIN_BACKBONES = [
    BackboneSpec("small-cnn", _small_cnn_builder, 128,
                 "6-layer CNN for small images on CPU (the built-in dataset's default; builtin weights: pretrained on single glyphs)"),
    BackboneSpec("resnet50", _resnet_builder("resnet50"), 2048, "torchvision ResNet-50 trunk (layer4 maps)"),
    BackboneSpec("resnet101", _resnet_builder("resnet101"), 2048, "torchvision ResNet-101 trunk (layer4 maps)"),
    BackboneSpec("resnet50-pool2", _resnet_builder("resnet50", OFFICIAL_MAP_POOL), 2048,
                 "ResNet-50 trunk + the official 2x2 average pool after layer4 (7x7 maps at 448 px)"),
    BackboneSpec("resnet101-pool2", _resnet_builder("resnet101", OFFICIAL_MAP_POOL), 2048,
                 "ResNet-101 trunk + the official 2x2 average pool after layer4 (7x7 maps at 448 px): the official "
                 "code's backbone, the seed papers' paper/official profiles"),
]


from ..hookspecs import hookimpl  # noqa: E402 - registration sits beside what it registers


@hookimpl
def mlrpl_backbones() -> list[BackboneSpec]:
    return list(BUILTIN_BACKBONES)
