"""The harness's own train settings (:class:`TrainConfig`), the same for every method.

A leaf module (dataclasses and pydantic's ``Field`` only) so that the method API
(:mod:`mlrpl_bench.method`) and the run configuration (:mod:`mlrpl_bench.run_config`) can both
import it. Every setting declares its range or choices in its type; the schema layer
(:mod:`mlrpl_bench.schema`) checks values against them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import Field

#: How much of a backbone is frozen: ``official`` = the papers' partial freeze (ResNet layers 1-3,
#: SmallCNN stages 1-2, with their BatchNorm in eval mode), ``all`` = the whole backbone.
FreezeMode = Literal["none", "official", "all"]

@dataclass
class TrainConfig:
    """Options the harness owns (the same for every method unless a profile changes them)."""

    epochs: Annotated[int, Field(ge=1)] = field(default=8, metadata={"help": "training epochs"})
    batch_size: Annotated[int, Field(ge=1)] = field(default=32, metadata={"help": "global batch size"})
    lr: Annotated[float, Field(gt=0)] = field(default=1e-3, metadata={"help": "learning rate"})
    weight_decay: Annotated[float, Field(ge=0)] = field(default=5e-4, metadata={"help": "weight decay"})
    lr_step: Annotated[int, Field(ge=1)] = field(default=10, metadata={"help": "StepLR step (epochs)"})
    lr_gamma: Annotated[float, Field(gt=0)] = field(default=0.1, metadata={"help": "StepLR factor"})
    # The papers train at 448-576 px; past 4096 px a typo (100000) would exhaust memory, not train.
    image_size: Annotated[int, Field(ge=0, le=4096)] = field(default=0, metadata={"help": "pixels; 0: the dataset's default"})
    backbone: str = field(default="", metadata={"help": "backbone name; '': the dataset's default"})
    backbone_weights: str = field(default="", metadata={
        "help": "'': the dataset's default (builtin for digit-scenes); none, builtin, imagenet or PATH to a state dict"})
    freeze_backbone: FreezeMode = field(
        default="none", metadata={"help": "official: the papers' partial freeze (ResNet layers 1-3, SmallCNN stages 1-2, "
                                          "BatchNorm kept in eval); all: the whole backbone"})
    # A run selects its epoch on the validation split, so it needs one: 0 is not a run.
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = field(
        default=0.1, metadata={"help": "share of the training images held out for validation"})
    workers: Annotated[int, Field(ge=0)] = field(default=0, metadata={"help": "DataLoader worker processes"})
    amp: bool = field(default=True, metadata={"help": "mixed precision (on CUDA only)"})
    track: Literal["finetune", "frozen"] = field(
        default="finetune", metadata={"help": "frozen: the backbone is frozen and its outputs cached on disk"})
    frozen_features: Literal["maps", "pooled"] = field(
        default="maps", metadata={"help": "frozen track: cache feature maps, or pooled (1x1) maps"})
    feature_cache: bool = field(default=True, metadata={"help": "frozen track: False recomputes the backbone every step"})

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}


__all__ = ["FreezeMode", "TrainConfig"]
