"""``voc2007-scenes``: the real VOC 2007 label sets as glyph scenes.

The official files live in ``tests/data/``: ``hcp_voc2007_partial_labels.npz`` holds the nine
official partial-label matrices (int8, 5,011 x 20) and ``hcp_voc2007_partial_labels.json``
the sha256 and git blob id of every official file used here, read from the HCP-MLR-PL commit
named there. The shipped label matrices and these test matrices are checked against those
hashes through an exact re-encoding of the official text format.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mlrpl_bench.data import scenes, voc_scenes
from mlrpl_bench.data.voc import VOC_CLASSES
from mlrpl_bench.data.voc_scenes import VocScenes, label_statistics, official_text, voc_labels
from mlrpl_bench.errors import BenchError
from mlrpl_bench.protocol import fingerprint_array, make_partial_labels, prepare_protocol

DATA = Path(__file__).parent / "data"
OFFICIAL = json.loads((DATA / "hcp_voc2007_partial_labels.json").read_text())
PROPORTIONS = [f"0.{i}" for i in range(1, 10)]


@pytest.fixture(scope="module")
def official_partial() -> dict[str, np.ndarray]:
    with np.load(DATA / "hcp_voc2007_partial_labels.npz", allow_pickle=False) as data:
        return {p: data[p.replace(".", "_")] for p in PROPORTIONS}


def tiny(tmp_path: Path, sub: str = "ds", **kw) -> VocScenes:
    return VocScenes(tmp_path / sub, VocScenes.Options(**{"train_size": 24, "test_size": 12, **kw}))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- the shipped labels


def test_shipped_file_has_the_pinned_sha256():
    assert voc_scenes._sha256_file(voc_scenes.LABELS_FILE) == voc_scenes.LABELS_SHA256


@pytest.mark.parametrize("split", ["train", "test"])
def test_shipped_labels_are_the_official_original_label_files(split):
    """Re-encoded as the official text, the shipped matrix hashes to the official file (sha256 and
    the git blob id of the commit's tree): the test split equals val.txt, the train split train.txt."""
    text = official_text(voc_labels(split))
    official = OFFICIAL["original_labels"][split]
    assert sha256(text) == official["sha256"]
    assert voc_scenes.git_blob_id(text) == official["git_blob"]
    source = voc_scenes.SOURCE_FILES[split]
    assert (source.path, source.sha256, source.git_blob) == (official["path"], official["sha256"], official["git_blob"])
    assert voc_scenes.SOURCE_COMMIT == OFFICIAL["commit"]
    labels = voc_labels(split)
    assert labels.shape == (source.rows, 20) and labels.dtype == np.int8
    assert set(np.unique(labels)) == {-1, 1}  # the official files hold no 0 (difficult-only = -1)


def test_default_sizes_are_the_whole_official_splits():
    opts = VocScenes.Options()
    assert (opts.train_size, opts.test_size) == (5011, 4952)


def test_official_text_and_git_blob_id_on_a_hand_made_matrix():
    labels = np.array([[1, -1], [-1, -1]], dtype=np.int8)
    assert official_text(labels) == b"1,-1\n-1,-1\n"
    assert voc_scenes.git_blob_id(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # git's empty blob


def test_a_changed_label_file_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "voc2007_labels.npz"
    shutil.copy(voc_scenes.LABELS_FILE, bad)
    with bad.open("ab") as handle:
        handle.write(b"\0")
    monkeypatch.setattr(voc_scenes, "LABELS_FILE", bad)
    voc_scenes._packed.cache_clear()
    try:
        with pytest.raises(BenchError, match=r"voc2007_labels\.npz: sha256 .* not the pinned .*reinstall"):
            voc_labels("train")
    finally:
        voc_scenes._packed.cache_clear()


# --------------------------------------------------------------------------- label statistics


def test_label_statistics_on_a_hand_checkable_matrix():
    labels = np.array([[1, -1, -1], [1, 1, -1], [1, -1, -1], [-1, 1, -1]], dtype=np.int8)
    st = label_statistics(labels)
    assert st["class_frequency"] == [0.75, 0.5, 0.0]
    assert st["most_frequent"] == (0, 0.75) and st["rarest"] == (1, 0.5)  # the absent class is left out
    assert st["imbalance"] == pytest.approx(1.5)
    assert st["labels_per_image"] == pytest.approx(5 / 4) and st["max_labels"] == 2


def test_voc_label_statistics_are_the_real_ones():
    train, test = label_statistics(voc_labels("train")), label_statistics(voc_labels("test"))
    person, sheep = VOC_CLASSES.index("person"), VOC_CLASSES.index("sheep")
    assert train["most_frequent"][0] == person and train["most_frequent"][1] == pytest.approx(2008 / 5011)
    assert train["rarest"][0] == sheep and train["rarest"][1] == pytest.approx(96 / 5011)
    assert train["imbalance"] == pytest.approx(2008 / 96)
    assert train["labels_per_image"] == pytest.approx(7306 / 5011)
    assert train["max_labels"] == 6 and test["max_labels"] == 5
    assert test["most_frequent"][0] == person and test["labels_per_image"] == pytest.approx(7013 / 4952)
    assert (voc_labels("train") == 1).any(axis=1).all()  # every image has a label, so a glyph


# --------------------------------------------------------------------------- hcp masks = official files


def test_shipped_test_matrices_are_the_official_partial_label_files(official_partial):
    for p in PROPORTIONS:
        text = official_text(official_partial[p])
        assert sha256(text) == OFFICIAL["files"][p]["sha256"], p
        assert voc_scenes.git_blob_id(text) == OFFICIAL["files"][p]["git_blob"], p


@pytest.mark.parametrize("proportion", PROPORTIONS)
def test_hcp_masks_equal_the_official_partial_label_files(official_partial, proportion):
    """Bit for bit, over the whole 5,011 x 20 matrix, through the path a run takes (the mask is
    drawn over the whole training split before the validation rows are carved out)."""
    full = voc_labels("train")
    official = official_partial[proportion]
    mask = make_partial_labels(full, "pal", float(proportion), 0, scheme="hcp")
    np.testing.assert_array_equal(mask, official)
    cell = prepare_protocol(full, setting="pal", known=float(proportion), seed=0, scheme="hcp", val_fraction=0.1,
                            key="voc2007-scenes")
    np.testing.assert_array_equal(cell.partial, official)
    assert cell.mask_fingerprint == fingerprint_array(official)


# --------------------------------------------------------------------------- the dataset


def test_registered_built_in_with_the_glyph_backbone():
    from mlrpl_bench import plugin_manager as P

    cls = P.get_dataset("voc2007-scenes")
    assert cls is VocScenes
    assert cls.needs_data_root is False and cls.default_backbone == "small-cnn"
    assert cls.default_backbone_weights == "builtin"
    assert list(voc_scenes.GLYPH_OF_CLASS) == list(VOC_CLASSES)
    assert list(voc_scenes.GLYPH_OF_CLASS.values()) == scenes.CLASS_NAMES


def test_splits_are_the_official_rows_in_order_one_glyph_per_class(tmp_path):
    ds = tiny(tmp_path)
    train, test = ds.load_split("train"), ds.load_split("test")
    assert train.class_names == list(VOC_CLASSES)
    np.testing.assert_array_equal(train.labels, voc_labels("train")[:24])
    np.testing.assert_array_equal(test.labels, voc_labels("test")[:12])
    data = json.loads((ds.directory / "annotations" / "instances_train.json").read_text())
    assert [c["glyph"] for c in data["categories"]] == scenes.CLASS_NAMES
    for image in data["images"]:
        glyphs = sorted(a["category_id"] - 1 for a in data["annotations"] if a["image_id"] == image["id"])
        assert glyphs == list(np.flatnonzero(train.labels[image["id"] - 1] == 1))  # one glyph per class
    assert train.options["labels_sha256"] == voc_scenes.LABELS_SHA256
    # The dataset's rows are the official rows, so its hcp mask is the official file's prefix.
    with np.load(DATA / "hcp_voc2007_partial_labels.npz") as official:
        np.testing.assert_array_equal(make_partial_labels(train.labels, "pal", 0.3, 0, scheme="hcp"),
                                      official["0_3"][:24])


def test_generated_labels_that_are_not_the_official_rows_are_refused(tmp_path, monkeypatch):
    ds = tiny(tmp_path)
    ds.prepare()
    changed = voc_labels("train").copy()
    changed[5] = -changed[5]
    real = voc_scenes.voc_labels
    monkeypatch.setattr(voc_scenes, "voc_labels", lambda split: changed if split == "train" else real(split))
    with pytest.raises(BenchError, match=r"instances_train\.json: labels differ from the official VOC 2007 rows; delete"):
        ds.load_split("train")


def test_rendering_is_deterministic_seeded_and_prefix_stable(tmp_path):
    a, b, c = tiny(tmp_path, "a"), tiny(tmp_path, "b"), tiny(tmp_path, "c", seed=1)
    small = tiny(tmp_path, "small", train_size=8, test_size=4)
    for ds in (a, b, c, small):
        ds.prepare()

    def files(ds):
        return {str(p.relative_to(ds.directory)): p.read_bytes() for p in sorted(ds.directory.rglob("*.png"))}

    fa, fb, fc, fs = files(a), files(b), files(c), files(small)
    assert fa == fb and len(fa) == 36
    assert fa["images/train/000000.png"] != fc["images/train/000000.png"]  # another drawing seed
    np.testing.assert_array_equal(c.load_split("train").labels, a.load_split("train").labels)  # same labels
    assert all(fa[name] == data for name, data in fs.items())  # a smaller dataset is a prefix
    image = np.asarray(a.load_split("test").open_image(3))
    row = voc_labels("test")[3]
    expected = voc_scenes.render_image(voc_scenes.layout_of(row, 0, "test", 3, 32), 0, "test", 3, 32)
    np.testing.assert_array_equal(image, expected)


def test_crowded_images_draw_every_class():
    """The image with the most labels (6) still gets a glyph per class, smaller ones."""
    labels = voc_labels("train")
    index = int(np.argmax((labels == 1).sum(axis=1)))
    layout = voc_scenes.layout_of(labels[index], 0, "train", index, 32)
    assert sorted(o.category for o in layout.objects) == list(np.flatnonzero(labels[index] == 1))
    lo, hi = voc_scenes.glyph_size_range(6)
    assert hi == pytest.approx(np.sqrt(0.5 / 6)) and lo == pytest.approx(0.8 * hi)
    assert voc_scenes.glyph_size_range(1) == scenes.DIFFICULTY.size_range
    assert all(round(lo * 32) <= o.size <= round(hi * 32) for o in layout.objects)


def test_sizes_beyond_the_official_rows_are_refused(cli):
    res = cli("datasets", "stats", "voc2007-scenes", "--dataset-option", "train_size=5012")
    assert res.exit_code == 2
    assert "train_size" in res.stderr and "5011" in res.stderr


@pytest.mark.slow
def test_tiny_run_records_provenance_and_the_official_mask(cli, tmp_path, official_partial):
    out = tmp_path / "runs"
    res = cli("run", "--plugin", "partial-bce", "--dataset", "voc2007-scenes", "--dataset-option", "train_size=60",
              "--dataset-option", "test_size=30", "--known", "0.1", "--seeds", "0", "--epochs", "1", "--scheme", "hcp",
              "--batch-size", "16", "--no-progress", "--output", out)
    assert res.exit_code == 0, res.stderr
    (path,) = out.glob("*/record.json")
    record = json.loads(path.read_text())
    assert record["dataset"]["name"] == "voc2007-scenes"
    assert record["dataset"]["provenance"] == json.loads(json.dumps(voc_scenes.provenance()))
    assert record["dataset"]["provenance"]["files"]["test"]["path"].endswith("original-labels/val.txt")
    assert record["protocol"]["mask_fingerprint"] == fingerprint_array(official_partial["0.1"][:60])
    assert record["dataset"]["sizes"]["test"] == 30
    assert 0.0 <= record["metrics"]["test"]["mAP"] <= 100.0
