"""Procedural multi-label scenes: handwritten digits and drawn shapes on textured backgrounds.

This module makes the pixels and labels of the built-in ``digit-scenes`` dataset (see
:mod:`.builtin`, which writes them to disk and reads them back). Nothing is downloaded: the
digits are scikit-learn's bundled 8x8 handwritten digits (``sklearn.datasets.load_digits``),
scaled up; the shapes are drawn with ``PIL.ImageDraw``.

Generation has two stages so that labels can be produced without drawing a pixel:

1. :func:`sample_layouts` draws, for each image, a *scene type* (which sets how likely each
   category is, so categories co-occur), 1-4 objects with category, position, size, rotation,
   colour and, for digits, which sklearn sample to use. It depends only on
   ``(seed, split, n, image_size)``.
2. :func:`render_layout` draws one layout into an ``(H, W, 3)`` ``uint8`` array; its own noise
   (background texture, clutter) comes from a generator seeded by ``(seed, split, index)``.

:func:`layout_labels` turns layouts into the label matrix (1 present, -1 absent), so the fast
label-only path and the drawn images always agree. :func:`generate_scene_images` does both in
memory for small test fixtures.

:func:`render_glyphs` makes the *source task* of the shipped pretrained backbone (the built-in
analogue of ImageNet pretraining): one object per image, drawn by the same renderer, from the
same 20 categories, with its own random streams and only the handwritten samples of the train
pool (see :func:`glyph_digit_pools`). It never draws an image of the benchmark's splits.

The sklearn digit samples are split per digit class into a train pool and a test pool before
any scene is drawn, so no handwritten sample appears in both splits.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import NamedTuple

import numpy as np

#: Bump when the layouts or pixels for the same options change (part of the cache key).
GENERATOR_VERSION = 3

DIGIT_NAMES = [f"digit-{d}" for d in range(10)]
SHAPE_NAMES = ["circle", "square", "triangle", "cross", "ring", "star", "diamond",
               "bar-horizontal", "bar-vertical", "crescent"]
#: The 20 categories, in label-column order (category id = index + 1).
CLASS_NAMES = DIGIT_NAMES + SHAPE_NAMES
_INDEX = {name: i for i, name in enumerate(CLASS_NAMES)}

SPLIT_CODES = {"train": 1, "test": 2}
#: Fraction of each digit class's sklearn samples reserved for the train split.
DIGIT_TRAIN_FRACTION = 0.6


@dataclass(frozen=True)
class SceneType:
    """A kind of scene: how often it occurs, which categories it favours, its background tint."""

    name: str
    weight: float
    categories: dict[str, float]
    hue: float  # background hue in [0, 1)


# Scene types put the co-occurrence structure in: e.g. "tally" pairs digit-1 with
# bar-vertical, "night-sky" star with crescent, "clock" ring with the clock digits. Their
# weights and the category weights inside them make the class frequencies imbalanced.
SCENE_TYPES = (
    SceneType("arithmetic", 0.19, {"digit-1": 2, "digit-2": 2, "digit-3": 2, "digit-7": 2, "cross": 3,
                                   "bar-horizontal": 3, "digit-0": 1}, 0.60),
    SceneType("tally", 0.11, {"bar-vertical": 5, "digit-1": 4, "digit-4": 2, "digit-5": 1, "cross": 1}, 0.08),
    SceneType("night-sky", 0.14, {"star": 5, "crescent": 4, "circle": 2, "ring": 1, "digit-8": 0.5}, 0.66),
    SceneType("geometry", 0.18, {"triangle": 3, "square": 3, "diamond": 2, "circle": 2, "ring": 1,
                                 "digit-6": 0.5}, 0.33),
    SceneType("clock", 0.10, {"ring": 4, "digit-1": 2, "digit-2": 2, "digit-3": 2, "digit-6": 2,
                              "digit-9": 2, "bar-vertical": 1}, 0.12),
    SceneType("cards", 0.12, {"diamond": 4, "star": 1, "digit-4": 2, "digit-7": 2, "digit-8": 2,
                              "square": 1}, 0.95),
    SceneType("signs", 0.16, {"triangle": 2, "circle": 2, "bar-horizontal": 2, "cross": 2, "digit-5": 2,
                              "digit-0": 2, "square": 1, "digit-9": 1}, 0.45),
)


@dataclass(frozen=True)
class Difficulty:
    """Knobs of the generator (fixed per :data:`GENERATOR_VERSION`; tuned for SmallCNN on CPU)."""

    num_objects_p: tuple[float, ...] = (0.35, 0.4, 0.2, 0.05)  # P(1), P(2), P(3), P(4 objects)
    distractor_p: float = 0.10  # an object drawn from all categories, ignoring the scene type
    # Object side as a fraction of the image side: 12-16 px at 32 px, within SmallCNN's
    # 17 px receptive field, so one feature location can see a whole object.
    size_range: tuple[float, float] = (0.36, 0.5)
    max_overlap: float = 0.2  # intersection / smaller box area allowed between two objects
    max_rotation: float = 8.0  # degrees, shapes and digits
    clutter_max: int = 1  # thin lines / dots that are no category
    pixel_noise: float = 0.02  # std of per-pixel noise (0-1 intensity scale)
    texture: float = 0.07  # amplitude of the low-frequency background texture
    # Light background with dark objects (else dark with bright). Mixed polarities made the
    # task much slower to learn for a small CNN in 8 epochs, so the default is dark only.
    light_background_p: float = 0.0
    # Brightness (HSV value) ranges on a dark background, and the objects' opacity: how far
    # the objects stand out from the background.
    background_value: tuple[float, float] = (0.12, 0.35)
    object_value: tuple[float, float] = (0.7, 1.0)
    opacity: tuple[float, float] = (0.75, 1.0)
    # Outsiders: shapes of no category (:data:`OUTSIDER_NAMES`) drawn into an image, between
    # these counts (inclusive); about half of them over the objects, so they can occlude.
    outsiders: tuple[int, int] = (0, 0)


#: The digit-scenes generator of :data:`GENERATOR_VERSION` (the ``standard`` difficulty).
DIFFICULTY = Difficulty()

#: The ``difficulty`` levels of the built-in datasets' ``--dataset-option difficulty=LEVEL``.
#: ``standard`` is :data:`DIFFICULTY`, the rendering every earlier record used, pixel for pixel.
#: The harder levels keep the label sets' source (scene types or real VOC rows) and change the
#: drawing. ``hard``: glyphs 0.9x the size (11-14 px at 32 px), overlap up to 0.3, rotation up to
#: 15 degrees, up to 2 clutter marks, more texture and pixel noise. ``harder``: the same with
#: weaker contrast (dimmer, more transparent glyphs on brighter backgrounds). Both were set by
#: measurement so that the best method keeps VOC-like headroom at 90 % known on voc2007-scenes
#: (docs/difficulty.md). For digit-scenes they also draw more objects per image (P(1-4) =
#: .1/.2/.3/.4) with more off-scene categories (distractor_p 0.3), issue 19's harder layout;
#: voc2007-scenes ignores those two layout knobs (its label sets are the real ones). No level
#: draws outsider shapes: alone, 0-2 per image cost partial BCE 31 mAP at 90 % known (frozen
#: backbone pretrained on the 20 classes only), far past VOC's headroom.
_HARDER_LAYOUT = dict(num_objects_p=(0.1, 0.2, 0.3, 0.4), distractor_p=0.3)
_HARD = Difficulty(**_HARDER_LAYOUT, size_range=(0.32, 0.45), max_overlap=0.3, max_rotation=15.0, clutter_max=2,
                   pixel_noise=0.03, texture=0.1)
DIFFICULTIES: dict[str, Difficulty] = {
    "standard": DIFFICULTY,
    "hard": _HARD,
    "harder": replace(_HARD, background_value=(0.12, 0.4), object_value=(0.6, 1.0), opacity=(0.7, 1.0)),
}
#: The default level.
STANDARD = "standard"


def difficulty_digest(knobs: Difficulty) -> str:
    """12 hex digits of the sha256 of ``knobs``' fields as canonical JSON (names a level's drawing)."""
    return hashlib.sha256(json.dumps(asdict(knobs), sort_keys=True).encode()).hexdigest()[:12]


def difficulty_of(level: str) -> Difficulty:
    """The knobs of difficulty ``level`` (one of :data:`DIFFICULTIES`)."""
    try:
        return DIFFICULTIES[level]
    except KeyError:
        raise ValueError(f"difficulty must be one of {', '.join(DIFFICULTIES)}, got {level!r}") from None


@dataclass(frozen=True)
class SceneObject:
    """One object of a layout. Coordinates are pixels of the final image."""

    category: int  # column index into CLASS_NAMES
    x: int
    y: int
    size: int
    angle: float
    colour: tuple[float, float, float]  # RGB in [0, 1]
    opacity: float
    digit_sample: int = -1  # row of sklearn's load_digits() for digits, -1 for shapes

    @property
    def bbox(self) -> list[int]:
        """COCO box ``[x, y, width, height]``."""
        return [self.x, self.y, self.size, self.size]


@dataclass(frozen=True)
class SceneLayout:
    """Everything that defines one image except its noise: scene type, background, objects."""

    scene: str
    background: tuple[float, float, float]
    objects: tuple[SceneObject, ...] = field(default_factory=tuple)


class SceneImages(NamedTuple):
    """In-memory scenes from :func:`generate_scene_images`."""

    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N, C) int8, 1 present / -1 absent
    class_names: list[str]
    layouts: list[SceneLayout]


# ---------------------------------------------------------------------------------------------
# Digit sources
# ---------------------------------------------------------------------------------------------


def _digits_file():
    """scikit-learn's bundled ``digits.csv.gz``, located without importing sklearn (slow)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("sklearn")
    for base in (spec.submodule_search_locations or []) if spec else []:
        path = Path(base) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return path
    return None


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 sklearn digits as ``(N, 8, 8)`` float32 in [0, 1] and their targets."""
    path = _digits_file()
    if path is not None:
        # The same file load_digits() reads: 64 pixel values (0-16) then the target per row.
        data = np.loadtxt(path, delimiter=",", dtype=np.float64)
        pixels, targets = data[:, :-1].reshape(-1, 8, 8), data[:, -1]
    else:  # pragma: no cover - a scikit-learn that stores the file elsewhere
        from sklearn.datasets import load_digits

        bunch = load_digits()
        pixels, targets = bunch.images, bunch.target
    images = np.clip(pixels / 16.0, 0.0, 1.0).astype(np.float32)
    images.setflags(write=False)
    return images, targets.astype(np.int64)


def digit_pools(seed: int, split: str) -> list[np.ndarray]:
    """For each digit 0-9, the sklearn sample rows ``split`` may use.

    The pools of ``train`` and ``test`` are disjoint: each digit class is shuffled with ``seed``
    and its first :data:`DIGIT_TRAIN_FRACTION` goes to train, the rest to test.
    """
    _check_split(split)
    _, targets = _digits()
    rng = np.random.default_rng([seed, 0, 0])
    pools = []
    for d in range(10):
        rows = rng.permutation(np.flatnonzero(targets == d))
        cut = int(round(len(rows) * DIGIT_TRAIN_FRACTION))
        pools.append(np.sort(rows[:cut] if split == "train" else rows[cut:]))
    return pools


def _check_split(split: str) -> None:
    if split not in SPLIT_CODES:
        raise ValueError(f"split must be one of {', '.join(SPLIT_CODES)}, got {split!r}")


# ---------------------------------------------------------------------------------------------
# Stage 1: layouts (labels without pixels)
# ---------------------------------------------------------------------------------------------


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    import colorsys

    return tuple(float(c) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))


def _overlap(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    ax, ay, asz = a
    bx, by, bsz = b
    iw = max(0, min(ax + asz, bx + bsz) - max(ax, bx))
    ih = max(0, min(ay + asz, by + bsz) - max(ay, by))
    return iw * ih / float(min(asz, bsz) ** 2)


def sample_layouts(seed: int, split: str, n: int, image_size: int,
                   difficulty: Difficulty = DIFFICULTY) -> list[SceneLayout]:
    """Draw ``n`` scene layouts for ``split`` (deterministic in all arguments).

    Each layout has a scene type, a background colour and 1-4 non-overlapping (up to
    ``difficulty.max_overlap``) objects. An object that finds no free place is dropped, so a
    layout can end up with fewer objects than drawn, never with none.
    """
    _check_split(split)
    rng = np.random.default_rng([seed, SPLIT_CODES[split], 1])
    pools = digit_pools(seed, split)
    scene_p = np.array([s.weight for s in SCENE_TYPES], dtype=np.float64)
    scene_p /= scene_p.sum()
    per_scene = []
    for scene in SCENE_TYPES:
        cats = np.array([_INDEX[c] for c in scene.categories])
        p = np.array(list(scene.categories.values()), dtype=np.float64)
        per_scene.append((cats, p / p.sum()))
    count_p = np.asarray(difficulty.num_objects_p, dtype=np.float64)
    count_p /= count_p.sum()
    lo, hi = difficulty.size_range
    layouts = []
    for _ in range(n):
        s = int(rng.choice(len(SCENE_TYPES), p=scene_p))
        scene = SCENE_TYPES[s]
        dark = bool(rng.random() >= difficulty.light_background_p)
        bg = _hsv_to_rgb(scene.hue + rng.normal(0, 0.04), rng.uniform(0.15, 0.45),
                         rng.uniform(*difficulty.background_value) if dark else rng.uniform(0.65, 0.9))
        num = 1 + int(rng.choice(len(count_p), p=count_p))
        boxes: list[tuple[int, int, int]] = []
        objects = []
        for _k in range(num):
            if rng.random() < difficulty.distractor_p:
                cat = int(rng.integers(len(CLASS_NAMES)))
            else:
                cats, p = per_scene[s]
                cat = int(cats[rng.choice(len(cats), p=p)])
            size = int(round(rng.uniform(lo, hi) * image_size))
            size = max(4, min(size, image_size))
            placed = None
            for _try in range(25):
                x = int(rng.integers(0, image_size - size + 1))
                y = int(rng.integers(0, image_size - size + 1))
                if all(_overlap((x, y, size), b) <= difficulty.max_overlap for b in boxes):
                    placed = (x, y, size)
                    break
            # Draw every remaining attribute even for a dropped object so that the stream of
            # random numbers does not depend on whether a place was found.
            angle = float(rng.uniform(-difficulty.max_rotation, difficulty.max_rotation))
            colour = _hsv_to_rgb(rng.random(), rng.uniform(0.45, 1.0),
                                 rng.uniform(*difficulty.object_value) if dark else rng.uniform(0.05, 0.4))
            opacity = float(rng.uniform(*difficulty.opacity))
            sample = -1
            if cat < 10:
                pool = pools[cat]
                sample = int(pool[rng.integers(len(pool))])
            if placed is None:
                continue
            boxes.append(placed)
            objects.append(SceneObject(cat, placed[0], placed[1], placed[2], angle, colour, opacity, sample))
        layouts.append(SceneLayout(scene.name, bg, tuple(objects)))
    return layouts


def layout_labels(layouts: list[SceneLayout], num_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """The ``(N, C)`` int8 label matrix of ``layouts``: 1 where a category is drawn, else -1."""
    labels = np.full((len(layouts), num_classes), -1, dtype=np.int8)
    for i, layout in enumerate(layouts):
        for obj in layout.objects:
            labels[i, obj.category] = 1
    return labels


# ---------------------------------------------------------------------------------------------
# Stage 2: pixels
# ---------------------------------------------------------------------------------------------

_SUPERSAMPLE = 4


def _canvas(size: int):
    """A supersampled ``L`` canvas for a ``size`` x ``size`` mask, its drawer and two helpers
    that map unit-square coordinates to it (``box`` for rectangles/ellipses, ``poly`` for points)."""
    from PIL import Image, ImageDraw

    s = size * _SUPERSAMPLE
    img = Image.new("L", (s, s), 0)

    def box(x0, y0, x1, y1):
        return [x0 * s, y0 * s, x1 * s - 1, y1 * s - 1]

    def poly(points):
        return [(px * s, py * s) for px, py in points]

    return img, ImageDraw.Draw(img), box, poly


def _finish_mask(img, size: int, angle: float) -> np.ndarray:
    """Rotate a supersampled canvas by ``angle`` degrees and box-filter it down to ``size``."""
    from PIL import Image

    if angle:
        img = img.rotate(angle, resample=Image.BILINEAR)
    return np.asarray(img.resize((size, size), Image.BOX), dtype=np.float32) / 255.0


def _shape_mask(name: str, size: int, angle: float):
    """An anti-aliased ``L`` mask of shape ``name`` filling a ``size`` x ``size`` box."""
    img, d, box, poly = _canvas(size)
    if name == "circle":
        d.ellipse(box(0.08, 0.08, 0.92, 0.92), fill=255)
    elif name == "ring":
        d.ellipse(box(0.06, 0.06, 0.94, 0.94), fill=255)
        d.ellipse(box(0.26, 0.26, 0.74, 0.74), fill=0)
    elif name == "square":
        d.rectangle(box(0.14, 0.14, 0.86, 0.86), fill=255)
    elif name == "triangle":
        d.polygon(poly([(0.5, 0.08), (0.93, 0.86), (0.07, 0.86)]), fill=255)
    elif name == "diamond":
        d.polygon(poly([(0.5, 0.04), (0.86, 0.5), (0.5, 0.96), (0.14, 0.5)]), fill=255)
    elif name == "cross":
        d.rectangle(box(0.38, 0.08, 0.62, 0.92), fill=255)
        d.rectangle(box(0.08, 0.38, 0.92, 0.62), fill=255)
    elif name == "star":
        k = np.arange(10)
        r = np.where(k % 2 == 0, 0.47, 0.19)
        a = -np.pi / 2 + k * np.pi / 5
        d.polygon(poly(list(zip(0.5 + r * np.cos(a), 0.53 + r * np.sin(a)))), fill=255)
    elif name == "bar-horizontal":
        d.rectangle(box(0.06, 0.39, 0.94, 0.61), fill=255)
    elif name == "bar-vertical":
        d.rectangle(box(0.39, 0.06, 0.61, 0.94), fill=255)
    elif name == "crescent":
        d.ellipse(box(0.06, 0.06, 0.94, 0.94), fill=255)
        d.ellipse(box(0.32, 0.0, 1.1, 0.78), fill=0)
    else:  # pragma: no cover - CLASS_NAMES and this function are kept in step
        raise ValueError(f"no drawing for shape {name!r}")
    return _finish_mask(img, size, angle)


#: Shapes that are no category, drawn by the harder difficulty levels as distractors. Several
#: resemble a class in part (a frame a square or ring, a chevron a triangle, a tee a cross).
OUTSIDER_NAMES = ("hexagon", "pentagon", "arrow", "tee", "ell", "chevron", "hourglass", "half-disc", "frame")


def _regular_polygon(k: int, radius: float) -> list[tuple[float, float]]:
    a = -np.pi / 2 + np.arange(k) * 2 * np.pi / k
    return list(zip(0.5 + radius * np.cos(a), 0.5 + radius * np.sin(a)))


def _outsider_mask(name: str, size: int, angle: float) -> np.ndarray:
    """An anti-aliased mask of outsider shape ``name`` (:data:`OUTSIDER_NAMES`), like :func:`_shape_mask`."""
    img, d, box, poly = _canvas(size)
    if name == "hexagon":
        d.polygon(poly(_regular_polygon(6, 0.45)), fill=255)
    elif name == "pentagon":
        d.polygon(poly(_regular_polygon(5, 0.46)), fill=255)
    elif name == "arrow":
        d.polygon(poly([(0.08, 0.4), (0.55, 0.4), (0.55, 0.18), (0.92, 0.5), (0.55, 0.82), (0.55, 0.6),
                        (0.08, 0.6)]), fill=255)
    elif name == "tee":
        d.rectangle(box(0.1, 0.1, 0.9, 0.32), fill=255)
        d.rectangle(box(0.39, 0.1, 0.61, 0.92), fill=255)
    elif name == "ell":
        d.rectangle(box(0.15, 0.08, 0.37, 0.92), fill=255)
        d.rectangle(box(0.15, 0.7, 0.88, 0.92), fill=255)
    elif name == "chevron":
        d.polygon(poly([(0.08, 0.3), (0.5, 0.68), (0.92, 0.3), (0.92, 0.56), (0.5, 0.94), (0.08, 0.56)]), fill=255)
    elif name == "hourglass":
        d.polygon(poly([(0.15, 0.08), (0.85, 0.08), (0.5, 0.5)]), fill=255)
        d.polygon(poly([(0.15, 0.92), (0.85, 0.92), (0.5, 0.5)]), fill=255)
    elif name == "half-disc":
        d.pieslice(box(0.06, 0.25, 0.94, 1.13), 180, 360, fill=255)
    elif name == "frame":
        d.rectangle(box(0.1, 0.1, 0.9, 0.9), fill=255)
        d.rectangle(box(0.3, 0.3, 0.7, 0.7), fill=0)
    else:
        raise ValueError(f"no drawing for outsider {name!r}")
    return _finish_mask(img, size, angle)


def _digit_mask(sample: int, size: int, angle: float) -> np.ndarray:
    from PIL import Image

    images, _ = _digits()
    # Pad the 8x8 sample by one pixel so the strokes do not touch the box edge after scaling.
    padded = np.pad(images[sample], 1)
    img = Image.fromarray((padded * 255).astype(np.uint8), mode="L")
    img = img.resize((size, size), Image.BICUBIC)
    if angle:
        img = img.rotate(angle, resample=Image.BILINEAR)
    return np.asarray(img, dtype=np.float32) / 255.0


def render_layout(layout: SceneLayout, image_size: int, rng: np.random.Generator,
                  difficulty: Difficulty = DIFFICULTY) -> np.ndarray:
    """Draw ``layout`` into an ``(image_size, image_size, 3)`` ``uint8`` array.

    ``rng`` supplies only the noise: the low-frequency background texture, clutter (thin lines
    and dots that are no category) and per-pixel noise.
    """
    from PIL import Image, ImageDraw

    n = image_size
    bg = np.asarray(layout.background, dtype=np.float32)
    # Low-frequency texture: a coarse random grid, smoothly upsampled.
    grid = rng.uniform(-1, 1, size=(4, 4, 3)).astype(np.float32)
    texture = np.stack([np.asarray(Image.fromarray(grid[..., c], mode="F").resize((n, n), Image.BICUBIC))
                        for c in range(3)], axis=-1)
    img = np.clip(bg + difficulty.texture * texture, 0, 1)

    # Clutter in a colour close to the background: visible, but weaker than the objects.
    num_clutter = int(rng.integers(0, difficulty.clutter_max + 1))
    if num_clutter:
        layer = Image.new("L", (n, n), 0)
        d = ImageDraw.Draw(layer)
        for _ in range(num_clutter):
            x0, y0 = rng.integers(0, n, size=2)
            if rng.random() < 0.6:
                length = rng.uniform(0.15, 0.4) * n
                theta = rng.uniform(0, np.pi)
                d.line([(int(x0), int(y0)), (int(x0 + length * np.cos(theta)), int(y0 + length * np.sin(theta)))],
                       fill=255, width=1)
            else:
                r = max(1, int(rng.uniform(0.02, 0.05) * n))
                d.ellipse([int(x0) - r, int(y0) - r, int(x0) + r, int(y0) + r], fill=255)
        alpha = np.asarray(layer, dtype=np.float32)[..., None] / 255.0 * rng.uniform(0.25, 0.5)
        shade = np.clip(bg + rng.uniform(-0.5, 0.5, size=3).astype(np.float32), 0, 1)
        img = img * (1 - alpha) + shade * alpha

    under, over = _sample_outsiders(n, rng, difficulty)
    for mask, (x, y), colour, opacity in under:
        _paint(img, mask, x, y, colour, opacity)
    for obj in layout.objects:
        name = CLASS_NAMES[obj.category]
        if obj.digit_sample >= 0:
            mask = _digit_mask(obj.digit_sample, obj.size, obj.angle)
        else:
            mask = _shape_mask(name, obj.size, obj.angle)
        _paint(img, mask, obj.x, obj.y, obj.colour, obj.opacity)
    for mask, (x, y), colour, opacity in over:
        _paint(img, mask, x, y, colour, opacity)

    img = img + rng.normal(0, difficulty.pixel_noise, size=img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def _paint(img: np.ndarray, mask: np.ndarray, x: int, y: int, colour, opacity: float) -> None:
    """Blend ``colour`` into ``img`` (in place) through ``mask * opacity``, top-left at ``(x, y)``."""
    size = mask.shape[0]
    alpha = (mask * opacity)[..., None]
    region = img[y:y + size, x:x + size]
    img[y:y + size, x:x + size] = region * (1 - alpha) + np.asarray(colour, dtype=np.float32) * alpha


def _sample_outsiders(image_size: int, rng: np.random.Generator, difficulty: Difficulty):
    """The outsider shapes of one image: ``(under, over)`` lists of ``(mask, (x, y), colour,
    opacity)``, drawn below and above the objects. Draws nothing from ``rng`` when
    ``difficulty.outsiders`` is ``(0, 0)``, so the standard level's noise stream is untouched."""
    lo, hi = difficulty.outsiders
    under: list = []
    over: list = []
    if hi <= 0:
        return under, over
    for _ in range(int(rng.integers(lo, hi + 1))):
        name = OUTSIDER_NAMES[int(rng.integers(len(OUTSIDER_NAMES)))]
        size = max(4, min(int(round(rng.uniform(*difficulty.size_range) * image_size)), image_size))
        x = int(rng.integers(0, image_size - size + 1))
        y = int(rng.integers(0, image_size - size + 1))
        angle = float(rng.uniform(-difficulty.max_rotation, difficulty.max_rotation))
        colour = _hsv_to_rgb(rng.random(), rng.uniform(0.45, 1.0), rng.uniform(*difficulty.object_value))
        opacity = float(rng.uniform(*difficulty.opacity))
        (over if rng.random() < 0.5 else under).append((_outsider_mask(name, size, angle), (x, y), colour, opacity))
    return under, over


def render_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The noise generator of image ``index`` of ``split`` (independent of the other images)."""
    _check_split(split)
    return np.random.default_rng([seed, SPLIT_CODES[split], 2, index])


def generate_scene_images(n: int = 16, image_size: int = 32, seed: int = 0, split: str = "train",
                          difficulty: str = STANDARD) -> SceneImages:
    """Make ``n`` scene images in memory, without touching the disk.

    Meant for small fixtures in tests of other parts of the suite (e.g. 16 images of 32 px take
    a few milliseconds). The result equals the first ``n`` images of a ``digit-scenes``
    materialisation with the same ``seed``, ``split`` and ``image_size`` when that has at least
    ``n`` images of the split (the layouts of a split do not depend on its total size).

    :param n: number of images.
    :param image_size: side in pixels (at least 16 is sensible).
    :param seed: generator seed; the same arguments give identical arrays.
    :param split: ``train`` or ``test`` (they use disjoint handwritten-digit samples).
    :param difficulty: a level of :data:`DIFFICULTIES` (the ``difficulty`` dataset option).
    :return: :class:`SceneImages` with ``images`` ``(n, image_size, image_size, 3)`` uint8,
        ``labels`` ``(n, 20)`` int8 (1 present, -1 absent), ``class_names`` and ``layouts``.
    """
    knobs = difficulty_of(difficulty)
    layouts = sample_layouts(seed, split, n, image_size, knobs)
    images = np.zeros((n, image_size, image_size, 3), dtype=np.uint8)
    for i, layout in enumerate(layouts):
        images[i] = render_layout(layout, image_size, render_rng(seed, split, i), knobs)
    return SceneImages(images, layout_labels(layouts), list(CLASS_NAMES), layouts)


# ---------------------------------------------------------------------------------------------
# The pretraining source task: single glyphs
# ---------------------------------------------------------------------------------------------

#: Random-stream codes of the source task's two parts; distinct from :data:`SPLIT_CODES`, so no
#: glyph image shares a random stream with a benchmark image.
GLYPH_PARTS = {"source": 3, "heldout": 4}
#: Fraction of each digit class's *train-pool* samples held out from pretraining (to measure
#: accuracy on handwriting the backbone has not seen, as the benchmark's test split does).
GLYPH_HELDOUT_FRACTION = 0.2


def glyph_digit_pools(pool_seed: int, part: str) -> list[np.ndarray]:
    """For each digit 0-9, the sklearn sample rows the glyph task's ``part`` may use.

    Both parts are drawn from ``digit_pools(pool_seed, "train")`` only -- the digit-scenes test
    pool of generator seed ``pool_seed`` is never used -- split per class into ``source``
    (pretraining) and ``heldout`` (its accuracy check), disjoint.
    """
    if part not in GLYPH_PARTS:
        raise ValueError(f"part must be one of {', '.join(GLYPH_PARTS)}, got {part!r}")
    rng = np.random.default_rng([pool_seed, GLYPH_PARTS["source"], 0])
    pools = []
    for rows in digit_pools(pool_seed, "train"):
        rows = rng.permutation(rows)
        cut = len(rows) - int(round(len(rows) * GLYPH_HELDOUT_FRACTION))
        pools.append(np.sort(rows[:cut] if part == "source" else rows[cut:]))
    return pools


def sample_glyph_layouts(seed: int, part: str, n: int, image_size: int, *, pool_seed: int = 0,
                         difficulty: Difficulty = DIFFICULTY) -> list[SceneLayout]:
    """``n`` one-object layouts of the source task (deterministic in all arguments).

    Categories are balanced (each of the 20 appears ``n // 20`` or ``n // 20 + 1`` times, in a
    shuffled order). Size, position, rotation, colour and opacity follow the scenes' ranges; the
    background hue is uniform, since a glyph has no scene type.
    """
    if part not in GLYPH_PARTS:
        raise ValueError(f"part must be one of {', '.join(GLYPH_PARTS)}, got {part!r}")
    rng = np.random.default_rng([seed, GLYPH_PARTS[part], 1])
    pools = glyph_digit_pools(pool_seed, part)
    categories = rng.permutation(np.arange(n) % len(CLASS_NAMES))
    lo, hi = difficulty.size_range
    layouts = []
    for cat in categories:
        cat = int(cat)
        bg = _hsv_to_rgb(rng.random(), rng.uniform(0.15, 0.45), rng.uniform(0.12, 0.35))
        size = max(4, min(int(round(rng.uniform(lo, hi) * image_size)), image_size))
        x = int(rng.integers(0, image_size - size + 1))
        y = int(rng.integers(0, image_size - size + 1))
        angle = float(rng.uniform(-difficulty.max_rotation, difficulty.max_rotation))
        colour = _hsv_to_rgb(rng.random(), rng.uniform(0.45, 1.0), rng.uniform(0.7, 1.0))
        opacity = float(rng.uniform(0.75, 1.0))
        sample = int(pools[cat][rng.integers(len(pools[cat]))]) if cat < 10 else -1
        layouts.append(SceneLayout("glyph", bg, (SceneObject(cat, x, y, size, angle, colour, opacity, sample),)))
    return layouts


def render_glyphs(seed: int, part: str, n: int, image_size: int = 32, *,
                  pool_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Render ``n`` images of the source task.

    :param seed: the task's seed (the shipped weights use the seeds in ``tools/pretrain_backbone.py``).
    :param part: ``source`` (pretraining images) or ``heldout`` (accuracy check; other digit
        samples and other random streams).
    :param pool_seed: the digit-scenes generator seed whose train pool the digits come from.
    :return: ``(images, labels)``: ``(n, image_size, image_size, 3)`` uint8 and ``(n,)`` int64
        category indices into :data:`CLASS_NAMES`.
    """
    layouts = sample_glyph_layouts(seed, part, n, image_size, pool_seed=pool_seed)
    images = np.zeros((n, image_size, image_size, 3), dtype=np.uint8)
    for i, layout in enumerate(layouts):
        images[i] = render_layout(layout, image_size, np.random.default_rng([seed, GLYPH_PARTS[part], 2, i]))
    labels = np.array([layout.objects[0].category for layout in layouts], dtype=np.int64)
    return images, labels
