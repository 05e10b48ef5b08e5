"""The ``difficulty`` option of the built-in datasets (``digit-scenes``, ``voc2007-scenes``).

``standard`` must stay the rendering of every earlier run, byte for byte, with the same cache
key, manifest and split fingerprints; each harder level must be deterministic, differ from it,
be recorded, and keep voc2007-scenes' label sets the real VOC rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest

from mlrpl_bench.data import scenes, voc_scenes
from mlrpl_bench.data.builtin import DigitScenes
from mlrpl_bench.data.voc_scenes import VocScenes, voc_labels

LEVELS = [level for level in scenes.DIFFICULTIES if level != scenes.STANDARD]


def voc_digest(difficulty: scenes.Difficulty) -> str:
    """sha256 of the pixels of voc2007-scenes rows 0-39 of both splits and the train split's most
    crowded row (6 glyphs, row 2864), drawn at ``difficulty``."""
    h = hashlib.sha256()
    for split in ("train", "test"):
        labels = voc_labels(split)
        for i in [*range(40), int(np.argmax((labels == 1).sum(axis=1)))]:
            layout = voc_scenes.layout_of(labels[i], 0, split, i, 32, difficulty)
            h.update(voc_scenes.render_image(layout, 0, split, i, 32, difficulty).tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- standard = before


def test_standard_is_the_default_and_draws_what_the_generator_drew_before():
    assert scenes.DIFFICULTIES[scenes.STANDARD] is scenes.DIFFICULTY
    assert DigitScenes.Options().difficulty == VocScenes.Options().difficulty == scenes.STANDARD
    # Computed with the code before the option existed (commit 2369276), for both datasets.
    assert voc_digest(scenes.DIFFICULTY) == "97d6f66fe5eb5c2c07cc0f766d969f473eb6372973acf2be2a723306bfc096c7"
    a = scenes.generate_scene_images(64, 32, seed=0, split="test")
    b = scenes.generate_scene_images(64, 32, seed=0, split="test", difficulty="standard")
    np.testing.assert_array_equal(a.images, b.images)  # digests of these: tests/test_pretrained_backbone.py


def test_standard_keeps_its_cache_key_manifest_and_fingerprint_options():
    """The standard level adds nothing to the generator options, so the datasets generated and the
    split fingerprints recorded before the option existed stay valid."""
    for cls in (DigitScenes, VocScenes):
        assert "difficulty" not in cls(None).generator_options()
    assert DigitScenes(None).directory.name == "digit-scenes-86b7704b0508"
    assert VocScenes(None).directory.name == "voc2007-scenes-cac987c054e1"


# --------------------------------------------------------------------------- the harder levels


@pytest.mark.parametrize("level", LEVELS)
def test_harder_levels_are_deterministic_and_differ_from_standard(level):
    knobs = scenes.difficulty_of(level)
    assert voc_digest(knobs) == voc_digest(knobs) != voc_digest(scenes.DIFFICULTY)
    a = scenes.generate_scene_images(24, 32, seed=0, split="train", difficulty=level)
    b = scenes.generate_scene_images(24, 32, seed=0, split="train", difficulty=level)
    std = scenes.generate_scene_images(24, 32, seed=0, split="train")
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.images, std.images)


def test_levels_grow_harder_knob_by_knob():
    """Each level is at least as hard as the one before on every knob (size, overlap, rotation,
    clutter, noise, contrast, objects per image) and strictly harder on one at least."""
    mean = lambda d: float(np.dot(np.arange(1, 5), d.num_objects_p) / np.sum(d.num_objects_p))  # noqa: E731

    def hardness(d):  # every entry grows with difficulty
        return [-d.size_range[0], -d.size_range[1], d.max_overlap, d.max_rotation, d.clutter_max, d.pixel_noise,
                d.texture, d.background_value[1], -d.object_value[0], -d.opacity[0], mean(d), d.distractor_p]

    knobs = [hardness(scenes.DIFFICULTIES[name]) for name in ("standard", "hard", "harder")]
    for easy, hard in zip(knobs, knobs[1:]):
        assert all(h >= e for h, e in zip(hard, easy)) and hard != easy
    assert all(d.outsiders == (0, 0) for d in scenes.DIFFICULTIES.values())  # see the docstring of DIFFICULTIES


def test_digit_scenes_hard_draws_more_objects_per_image():
    std = scenes.generate_scene_images(300, 32, seed=0, split="train")
    hard = scenes.generate_scene_images(300, 32, seed=0, split="train", difficulty="hard")
    assert (hard.labels == 1).sum(axis=1).mean() > (std.labels == 1).sum(axis=1).mean() + 0.4
    assert all(1 <= len(layout.objects) <= 4 for layout in hard.layouts)


@pytest.mark.parametrize("level", LEVELS)
def test_voc_levels_keep_one_glyph_per_real_class(level):
    """Only the drawing changes: every present class is drawn once, nothing else is labelled."""
    knobs = scenes.difficulty_of(level)
    labels = voc_labels("train")
    for i in [*range(30), int(np.argmax((labels == 1).sum(axis=1)))]:
        layout = voc_scenes.layout_of(labels[i], 0, "train", i, 32, knobs)
        assert sorted(o.category for o in layout.objects) == list(np.flatnonzero(labels[i] == 1))
        lo, hi = voc_scenes.glyph_size_range(len(layout.objects), knobs)
        assert all(round(lo * 32) <= o.size <= round(hi * 32) for o in layout.objects)


def test_glyph_size_range_scales_with_the_level_by_hand():
    hard = scenes.DIFFICULTIES["hard"]  # size_range (0.32, 0.45)
    assert voc_scenes.glyph_size_range(1, hard) == (0.32, 0.45)
    lo, hi = voc_scenes.glyph_size_range(6, hard)  # sqrt(0.5 / 6) * 0.45 / 0.5 = 0.259808
    assert hi == pytest.approx(0.259808, abs=1e-6) and lo == pytest.approx(0.8 * 0.259808, abs=1e-6)
    assert voc_scenes.glyph_size_range(6) == pytest.approx((0.8 * np.sqrt(0.5 / 6), np.sqrt(0.5 / 6)))


def test_outsider_shapes_are_drawn_and_are_no_class():
    for name in scenes.OUTSIDER_NAMES:
        mask = scenes._outsider_mask(name, 16, 0.0)
        assert mask.shape == (16, 16) and 0.1 < mask.mean() < 0.8, name
        for cls in scenes.SHAPE_NAMES:
            assert np.abs(mask - scenes._shape_mask(cls, 16, 0.0)).mean() > 0.03, (name, cls)  # hexagon-circle: 0.044
    assert not set(scenes.OUTSIDER_NAMES) & set(scenes.CLASS_NAMES)
    with pytest.raises(ValueError, match="outsider"):
        scenes._outsider_mask("circle", 16, 0.0)


def test_outsider_counts_follow_the_knob():
    rng = np.random.default_rng(0)
    assert scenes._sample_outsiders(32, rng, scenes.DIFFICULTY) == ([], [])
    assert rng.bit_generator.state == np.random.default_rng(0).bit_generator.state  # nothing drawn
    harder = dataclasses.replace(scenes.DIFFICULTIES["harder"], outsiders=(1, 3))
    counts = [sum(map(len, scenes._sample_outsiders(32, np.random.default_rng(s), harder))) for s in range(40)]
    assert min(counts) >= harder.outsiders[0] and max(counts) <= harder.outsiders[1]
    assert len(set(counts)) > 1


def test_knob_digest_names_the_drawing():
    """The split fingerprint (which keys the feature cache) covers options, not pixels: a level's
    options carry a digest of its knobs, so changing a knob cannot reuse stale features."""
    digests = {scenes.difficulty_digest(k) for k in scenes.DIFFICULTIES.values()}
    assert len(digests) == len(scenes.DIFFICULTIES) and all(len(d) == 12 for d in digests)
    hard = scenes.DIFFICULTIES["hard"]
    assert scenes.difficulty_digest(dataclasses.replace(hard, pixel_noise=0.05)) != scenes.difficulty_digest(hard)
    assert scenes.difficulty_digest(dataclasses.replace(hard)) == scenes.difficulty_digest(hard)


def test_unknown_level_is_refused():
    with pytest.raises(ValueError, match="difficulty must be one of standard, hard, harder, got 'extreme'"):
        scenes.difficulty_of("extreme")


# --------------------------------------------------------------------------- options and records


@pytest.mark.parametrize("cls", [DigitScenes, VocScenes])
def test_level_is_in_the_cache_key_manifest_and_split_options(tmp_path, cls):
    small = dict(train_size=12, test_size=6)
    std = cls(None, cls.Options(**small, cache_dir=str(tmp_path)))
    hard = cls(None, cls.Options(**small, cache_dir=str(tmp_path), difficulty="hard"))
    assert std.directory != hard.directory
    assert hard.generator_options()["difficulty"] == "hard"
    assert hard.generator_options()["difficulty_knobs"] == scenes.difficulty_digest(scenes.DIFFICULTIES["hard"])
    train = hard.load_split("train")
    assert train.options["difficulty"] == "hard"
    assert train.fingerprint() != std.load_split("train").fingerprint()
    manifest = json.loads((hard.directory / "DONE.json").read_text())
    assert manifest["options"]["difficulty"] == "hard"
    assert "difficulty" not in json.loads((std.directory / "DONE.json").read_text())["options"]
    if cls is VocScenes:  # the labels stay the official rows
        np.testing.assert_array_equal(train.labels, voc_labels("train")[:12])


@pytest.mark.parametrize("dataset", ["digit-scenes", "voc2007-scenes"])
def test_unknown_level_is_one_line_and_exit_2(cli, dataset):
    res = cli("datasets", "stats", dataset, "--dataset-option", "difficulty=extreme")
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "difficulty='extreme'" in lines[0] and "standard, hard or harder" in lines[0]


@pytest.mark.slow
def test_tiny_run_at_a_hard_level_records_it(cli, tmp_path):
    out = tmp_path / "runs"
    res = cli("run", "--plugin", "partial-bce", "--dataset", "voc2007-scenes", "--dataset-option", "train_size=60",
              "--dataset-option", "test_size=30", "--dataset-option", "difficulty=harder",
              "--dataset-option", f"cache_dir={tmp_path / 'cache'}", "--known", "0.5", "--seeds", "0",
              "--epochs", "1", "--batch-size", "16", "--no-progress", "--output", out)
    assert res.exit_code == 0, res.stderr
    (path,) = out.glob("*/record.json")
    record = json.loads(path.read_text())
    assert record["dataset"]["options"]["difficulty"] == "harder"
    assert 0.0 <= record["metrics"]["test"]["mAP"] <= 100.0
    (generated,) = (tmp_path / "cache" / "datasets").glob("voc2007-scenes-*")
    assert json.loads((generated / "DONE.json").read_text())["options"]["difficulty"] == "harder"
