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
    """Options the harness owns (the same for every method unless a profile changes them).

    The defaults are the CPU miniature of the papers' recipe (docs/miniature.md, where every
    choice has the validation figure that decided it): the backbone pretrained on a disjoint task
    and frozen, its feature maps cached (``track="frozen"``), the official optimiser and schedule
    -- Adam with coupled weight decay, 20 epochs, StepLR(10, 0.1), batch 32 -- with the learning
    rate scaled to heads trained on frozen features (1e-2 instead of 1e-5) and the weight decay
    scaled so that their product, the decay's pull per step, stays the official 1e-5 x 5e-4:
    5e-7. (The official 5e-4 at lr 1e-2 drives the semantic-decoupling weights to their decay
    equilibrium within epochs: the attention becomes exactly uniform; 0 would remove the pull
    that lowers HST's official thresholds.) The ``paper`` profiles of the methods are the GPU
    recipe (ResNet-101, 448 px, lr 1e-5, weight decay 5e-4); those of the seed methods are the
    official training (``track="finetune"``, ``resnet101-pool2``, ``freeze_backbone="official"``,
    ``precision="fp32"``; docs/fidelity.md, "Training").
    """

    epochs: Annotated[int, Field(ge=1)] = field(default=20, metadata={"help": "training epochs (the papers' 20)"})
    batch_size: Annotated[int, Field(ge=1)] = field(default=32, metadata={"help": "global batch size"})
    lr: Annotated[float, Field(gt=0)] = field(default=1e-2, metadata={"help": "learning rate (Adam)"})
    weight_decay: Annotated[float, Field(ge=0)] = field(default=5e-7, metadata={
        "help": "weight decay, coupled as in the official Adam; 5e-7 keeps the official lr x decay product "
                "at the miniature's lr (the paper profiles: 5e-4 at lr 1e-5)"})
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
    precision: Literal["auto", "fp32", "bf16", "fp16"] = field(default="auto", metadata={
        "help": "autocast dtype: auto = bf16 on CUDA (fp16 on GPUs without bf16), fp32 on CPU"})
    channels_last: bool = field(default=False, metadata={"help": "NHWC images and convolution weights (GPU speed)"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the backbone"})
    track: Literal["finetune", "frozen"] = field(
        default="frozen", metadata={"help": "frozen: the backbone is frozen and its outputs cached on disk; finetune: "
                                            "the backbone trains (set --freeze-backbone official for the papers' partial freeze)"})
    frozen_features: Literal["maps", "pooled"] = field(
        default="maps", metadata={"help": "frozen track: cache feature maps, or pooled (1x1) maps"})
    feature_cache: bool = field(default=True, metadata={"help": "frozen track: False recomputes the backbone every step"})

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}


__all__ = ["FreezeMode", "TrainConfig"]
