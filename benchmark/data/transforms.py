"""Image transforms.

The papers' recipe, as the official code has it (HCP-MLR-PL ``utils/dataloader.py:72-83``; 448 px):
train — resize to 512, random square crop with a side drawn from {512, 448, 384, 320, 256},
resize to 448, horizontal flip; test — resize to 448. Every resize is **bicubic**
(``PIL.Image.BICUBIC`` in the official code; :data:`PAPER_INTERPOLATION`). For another image size
every length is scaled by ``image_size / 448``.
"""

from __future__ import annotations

import random

import torch
from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PAPER_CROP_SIDES = (512, 448, 384, 320, 256)
#: The official resize of train and test images (``utils/dataloader.py:74,76,81``).
PAPER_INTERPOLATION = T.InterpolationMode.BICUBIC


class RandomSideCrop:
    """Random square crop whose side is drawn from ``sides`` (then placed uniformly)."""

    def __init__(self, sides):
        self.sides = tuple(int(s) for s in sides)

    def __call__(self, img):
        side = random.choice(self.sides)
        w, h = img.size
        side = min(side, w, h)
        left = random.randint(0, w - side)
        top = random.randint(0, h - side)
        return img.crop((left, top, left + side, top + side))

    def __repr__(self) -> str:
        return f"RandomSideCrop(sides={self.sides})"


def paper_transform(image_size: int = 448, train: bool = True):
    """The official train (augmenting) or test transform at ``image_size`` (see the module docstring)."""
    scale = image_size / 448.0
    resize = max(1, round(512 * scale))
    normalize = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if train:
        sides = [max(1, round(s * scale)) for s in PAPER_CROP_SIDES]
        return T.Compose([T.Resize((resize, resize), interpolation=PAPER_INTERPOLATION), RandomSideCrop(sides),
                          T.Resize((image_size, image_size), interpolation=PAPER_INTERPOLATION),
                          T.RandomHorizontalFlip(), *normalize])
    return T.Compose([T.Resize((image_size, image_size), interpolation=PAPER_INTERPOLATION), *normalize])


def describe(transform) -> str:
    """A stable text description of a transform (part of feature-cache fingerprints)."""
    return repr(transform)


def to_tensor_uint8(img) -> torch.Tensor:
    """PIL image to a ``uint8`` tensor ``(3, H, W)`` (used for in-memory image caches)."""
    return T.functional.pil_to_tensor(img)
