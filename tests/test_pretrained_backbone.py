"""The shipped pretrained small-cnn: its source task never touches the benchmark's images or test
handwriting, the script is deterministic, and the shipped file is the pinned one and classifies
fresh held-out glyphs."""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from mlrpl_bench.data import scenes
from mlrpl_bench.data.builtin import DigitScenes
from mlrpl_bench.models import backbones as B

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "pretrain_backbone.py"
#: The shipped weights classify at least this share of fresh held-out glyphs (measured: 0.965).
MIN_HELDOUT_ACCURACY = 0.95


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("pretrain_backbone", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the source task --------------------------------------------------------------------------------


def test_benchmark_scenes_are_unchanged():
    """Adding the source task left digit-scenes' pixels and labels as they were (digests of the
    generator before the source task existed)."""
    assert scenes.GENERATOR_VERSION == 3
    expected = {"train": "e0ab1b5982cdc2380df6e27c9dae5f47db9fce8465bd1d28ab87d483a1cadd33",
                "test": "6936f8b055022376809d786e4b571b5169e2379a67982e18335dec87611f1b6f"}
    for split, digest in expected.items():
        made = scenes.generate_scene_images(64, 32, seed=0, split=split)
        h = hashlib.sha256(made.images.tobytes())
        h.update(made.labels.tobytes())
        assert h.hexdigest() == digest, split


def test_glyph_digits_come_from_the_train_pool_only_and_held_out_samples_are_disjoint():
    train_pool = scenes.digit_pools(0, "train")
    test_pool = scenes.digit_pools(0, "test")
    source = scenes.glyph_digit_pools(0, "source")
    heldout = scenes.glyph_digit_pools(0, "heldout")
    for d in range(10):
        assert set(source[d]) | set(heldout[d]) == set(train_pool[d])
        assert not set(source[d]) & set(heldout[d])
        assert not (set(source[d]) | set(heldout[d])) & set(test_pool[d])
        assert len(heldout[d]) == round(len(train_pool[d]) * scenes.GLYPH_HELDOUT_FRACTION)
    for part, pools in (("source", source), ("heldout", heldout)):
        for layout in scenes.sample_glyph_layouts(5, part, 400, 32):
            (obj,) = layout.objects
            if obj.category < 10:
                assert obj.digit_sample in pools[obj.category]
            else:
                assert obj.digit_sample == -1


def test_glyphs_are_balanced_single_objects_unlike_any_benchmark_image():
    images, labels = scenes.render_glyphs(1, "source", 100)
    assert images.shape == (100, 32, 32, 3) and images.dtype == np.uint8
    assert np.bincount(labels, minlength=20).tolist() == [5] * 20
    again, _ = scenes.render_glyphs(1, "source", 100)
    np.testing.assert_array_equal(images, again)
    other, _ = scenes.render_glyphs(1, "heldout", 100)
    bench = np.concatenate([scenes.generate_scene_images(100, 32, seed=0, split=s).images for s in ("train", "test")])
    glyph_rows = {img.tobytes() for img in np.concatenate([images, other])}
    assert not glyph_rows & {img.tobytes() for img in bench}
    assert len(glyph_rows) == 200


def test_script_inputs_equal_the_benchmarks_eval_transform(script):
    from PIL import Image

    images, _ = scenes.render_glyphs(1, "source", 4)
    transform = DigitScenes(None).transforms(32, train=False)
    expected = torch.stack([transform(Image.fromarray(img)) for img in images])
    assert torch.equal(script.to_inputs(images), expected)


# -- the script ----------------------------------------------------------------------------------------


def test_reduced_script_run_twice_writes_identical_bytes_that_load_as_a_backbone(tmp_path):
    outputs = []
    for name in ("a.pt", "b.pt"):
        out = tmp_path / name
        subprocess.run([sys.executable, str(SCRIPT), "--images", "120", "--heldout", "40", "--epochs", "1",
                        "--output", str(out)], check=True, capture_output=True, text=True, cwd=tmp_path)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    state = B.read_state_dict(tmp_path / "a.pt")
    assert {v.dtype for k, v in state.items() if v.is_floating_point()} == {torch.float16}
    model = B.SmallCNN()
    B.load_state_dict_file(model, tmp_path / "a.pt")  # the fc.* classifier keys are ignored
    assert torch.equal(model.features[5][0].weight, state["features.5.0.weight"].float())
    assert state["fc.weight"].shape == (20, 128)


# -- the shipped file ------------------------------------------------------------------------------------


def test_shipped_weights_are_the_pinned_file_and_package_data():
    name, pinned = B.BUILTIN_WEIGHTS["small-cnn"]
    path = B.builtin_weights_path("small-cnn")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == pinned
    assert path.stat().st_size < 2 * 1024 * 1024
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = package_data["mlrpl_bench"]
    assert any(path.match(f"benchmark/{pattern}") for pattern in patterns), patterns


def test_shipped_weights_classify_fresh_held_out_glyphs(script):
    state = B.read_state_dict(B.builtin_weights_path("small-cnn"))
    accuracy = script.heldout_accuracy(state, *script.heldout_set(1000))
    assert accuracy >= MIN_HELDOUT_ACCURACY
