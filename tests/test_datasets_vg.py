"""vg200 loader: objects.json (v1.4 format) and SSGRL split files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from dataset_fixtures import write_image, write_vg_objects

from mlrpl_bench.data.vg import VG200
from mlrpl_bench.errors import BenchError

# Instance counts: tree 5, man 3, car 3, sky 2, dog 1 -> top 3 = tree, car, man (car/man tie: by name).
IMAGES = {
    30: ["tree", "tree", "Man "],
    10: ["tree", "car", "sky"],
    20: ["car", "dog"],
    40: ["tree", "man", "sky"],
    50: ["tree", "car", "man"],
    60: ["dog"],
}


def options(**kw):
    base = dict(num_classes=3, test_size=2, seed=0)
    base.update(kw)
    return VG200.Options(**base)


def expected_split(seed, test_size):
    ids = sorted(IMAGES)
    test = {ids[k] for k in np.random.default_rng(seed).permutation(len(ids))[:test_size]}
    return [str(i) for i in ids if i not in test], [str(i) for i in ids if i in test]


def expected_labels(ids, classes):
    out = np.full((len(ids), len(classes)), -1, dtype=np.int8)
    for r, i in enumerate(ids):
        for name in IMAGES[int(i)]:
            name = name.strip().lower()
            if name in classes:
                out[r, classes.index(name)] = 1
    return out


@pytest.fixture
def root(tmp_path):
    return write_vg_objects(tmp_path / "vg", IMAGES, second_dir={40, 60})


@pytest.mark.parametrize("seed", [0, 3])
def test_objects_top_categories_seeded_split_and_labels(root, seed):
    ds = VG200(root, options(seed=seed))
    train, test = ds.load_split("train"), ds.load_split("test")
    assert train.class_names == ["tree", "car", "man"]
    exp_train, exp_test = expected_split(seed, 2)
    assert train.image_ids == exp_train and test.image_ids == exp_test
    np.testing.assert_array_equal(train.labels, expected_labels(exp_train, train.class_names))
    np.testing.assert_array_equal(test.labels, expected_labels(exp_test, test.class_names))
    # Images are found in VG_100K or VG_100K_2.
    for split in (train, test):
        for i, path in zip(split.image_ids, split.image_paths):
            assert path.parent.name == ("VG_100K_2" if int(i) in (40, 60) else "VG_100K") and path.is_file()
    assert train.options["source"] == "objects" and "cache_dir" not in train.options


def test_split_and_categories_are_saved_and_reused(root):
    first = VG200(root, options()).load_split("test")
    cache_dirs = list((root / "mlrpl_bench_cache" / "vg200").iterdir())
    assert len(cache_dirs) == 1
    saved = cache_dirs[0]
    assert (saved / "categories.txt").read_text().split() == ["tree", "car", "man"]
    assert (saved / "test_list.txt").read_text().split() == first.image_ids
    # The saved lists win over recomputation: a run reads back exactly what was saved.
    (saved / "test_list.txt").write_text("".join(f"{i}\n" for i in reversed(first.image_ids)))
    np.save(saved / "test_labels.npy", first.labels[::-1])
    again = VG200(root, options()).load_split("test")
    assert again.image_ids == first.image_ids[::-1]
    # Another seed is another cache entry.
    VG200(root, options(seed=5)).load_split("test")
    assert len(list((root / "mlrpl_bench_cache" / "vg200").iterdir())) == 2


def test_cache_dir_option(root, tmp_path):
    VG200(root, options(cache_dir=str(tmp_path / "elsewhere"))).load_split("train")
    assert (tmp_path / "elsewhere" / "vg200").is_dir()
    assert not (root / "mlrpl_bench_cache").exists()


def test_ssgrl_files(tmp_path):
    root = tmp_path / "vg"
    part = root / "ssgrl_partition"
    part.mkdir(parents=True)
    (part / "train_list_500.txt").write_text("1.jpg\n2.jpg\n")
    (part / "test_list_500.txt").write_text("3.jpg\n")
    (part / "vg_category_4_labels_index.json").write_text(json.dumps({"1.jpg": [0, 3], "2.jpg": [], "3.jpg": [2]}))
    (part / "vg_category_4.json").write_text(json.dumps({"tree": 0, "man": 1, "car": 2, "sky": 3}))
    for name, folder in (("1.jpg", "VG_100K"), ("2.jpg", "VG_100K_2"), ("3.jpg", "VG_100K")):
        write_image(root / folder / name, 8)
    ds = VG200(root, VG200.Options(num_classes=4))
    train, test = ds.load_split("train"), ds.load_split("test")
    assert train.class_names == ["tree", "man", "car", "sky"]
    assert train.image_ids == ["1.jpg", "2.jpg"]
    np.testing.assert_array_equal(train.labels, [[1, -1, -1, 1], [-1, -1, -1, -1]])
    np.testing.assert_array_equal(test.labels, [[-1, -1, 1, -1]])
    assert train.image_paths[1] == root / "VG_100K_2" / "2.jpg"
    assert train.options["source"] == "ssgrl"
    (part / "vg_category_4_labels_index.json").write_text(json.dumps({"1.jpg": [0, 4], "2.jpg": [], "3.jpg": [2]}))
    with pytest.raises(BenchError, match=r"label index 4 outside 0\.\.3"):
        VG200(root, VG200.Options(num_classes=4)).load_split("train")


def test_bad_inputs(root, tmp_path):
    with pytest.raises(BenchError, match="only 5 distinct object names"):
        VG200(root, options(num_classes=6)).load_split("train")
    with pytest.raises(BenchError, match="lower --dataset-option test_size"):
        VG200(root, options(test_size=6)).load_split("train")
    (root / "objects.json").write_text('[{"image_id": 1, "objects": [}]')
    with pytest.raises(BenchError, match=r"objects\.json:1:\d+: malformed JSON"):
        VG200(root, options()).load_split("train")
    with pytest.raises(BenchError, match="source=objects"):
        VG200(root, options(source="ssgrl")).load_split("train")
    bare = tmp_path / "bare"
    bare.mkdir()
    with pytest.raises(BenchError, match="neither VG_100K/ nor VG_100K_2/"):
        VG200(bare, options()).load_split("train")


def _deny_writes_under(monkeypatch, protected):
    """Make ``protected`` (and everything under it) look read-only to the loaders, as a data root
    on a read-only mount would (chmod does not stop root, which runs these tests in CI)."""
    import os

    real_access = os.access
    protected = protected.resolve()

    def access(path, mode, *a, **k):
        p = Path(path).resolve()
        if mode & os.W_OK and (p == protected or protected in p.parents):
            return False
        return real_access(path, mode, *a, **k)

    monkeypatch.setattr(os, "access", access)


def test_read_only_data_root_falls_back_to_the_user_cache(root, tmp_path, monkeypatch):
    user_cache = tmp_path / "user-cache"
    monkeypatch.setenv("MLRPL_BENCH_CACHE", str(user_cache))
    _deny_writes_under(monkeypatch, root)
    split = VG200(root, options()).load_split("train")
    saved = list((user_cache / "datasets" / "vg200").iterdir())
    assert len(saved) == 1 and (saved[0] / "train_list.txt").read_text().split() == split.image_ids
    # The data root only got the (empty) folder the probe made; no derived file was written there.
    assert not any(p.is_file() for p in (root / "mlrpl_bench_cache").rglob("*"))


def test_nowhere_writable_names_the_cache_dir_option(root, tmp_path, monkeypatch):
    user_cache = tmp_path / "user-cache"
    monkeypatch.setenv("MLRPL_BENCH_CACHE", str(user_cache))
    _deny_writes_under(monkeypatch, root)
    _deny_writes_under(monkeypatch, user_cache)
    with pytest.raises(BenchError, match=r"vg200.*cache_dir=DIR"):
        VG200(root, options()).load_split("train")
