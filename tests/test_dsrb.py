"""Tests of the ``dsrb`` plugin: blending rules, prototypes and losses on hand-made tensors."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from mlrpl_bench.errors import BenchError
from mlrpl_bench.losses import partial_bce
from mlrpl_bench.method import Batch, MethodContext, TrainConfig
from mlrpl_bench.models.backbones import SmallCNN
from mlrpl_bench.plugins import dsrb as dsrb_module
from mlrpl_bench.plugins._blending.functions import (first_seen, iprb_blend, map_prototype_sums, pick_prototype_index,
                                                     pprb_blend, pprb_select, prototypes_from_sums, region_index,
                                                     soft_partial_bce)
from mlrpl_bench.plugins._sarl.losses import category_contrastive_loss
from mlrpl_bench.plugins._blending.model import DSRBModel
from mlrpl_bench.plugins.dsrb import DSRB, quarter_of

# -- IPRB (eq. 6-9) -------------------------------------------------------------------------------


def hand_maps(b, c):
    """(B, C, 1, 2, 2) maps whose entries are distinct and easy to read: value = 10 n + c + pos/10."""
    maps = torch.zeros(b, c, 1, 2, 2)
    for n in range(b):
        for k in range(c):
            maps[n, k, 0] = 10 * n + k + torch.tensor([[0.0, 0.1], [0.2, 0.3]])
    return maps


def test_iprb_blends_only_unknown_in_image_and_positive_in_partner():
    maps = hand_maps(2, 3)
    labels = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, -1.0]])
    alpha = torch.tensor([0.2, 0.7, 0.9], requires_grad=True)
    blended, blended_labels, mask = iprb_blend(maps, labels, alpha)
    assert mask.tolist() == [[True, False, False], [False, True, False]]
    # Image 0, class 0: unknown here, positive in the partner (image 1) -> 0.2 F0 + 0.8 F1.
    assert torch.allclose(blended[0, 0], 0.2 * maps[0, 0] + 0.8 * maps[1, 0])
    # Image 1, class 1: unknown here, positive in image 0 -> 0.7 F1 + 0.3 F0.
    assert torch.allclose(blended[1, 1], 0.7 * maps[1, 1] + 0.3 * maps[0, 1])
    # Everything else is the image's own map: class 2 of image 0 is unknown but the partner's is -1.
    for n, k in [(0, 1), (0, 2), (1, 0), (1, 2)]:
        assert torch.equal(blended[n, k], maps[n, k])
    # Eq. 7: 1 - α on blended entries, the own label elsewhere.
    want = torch.tensor([[0.8, 1.0, 0.0], [1.0, 0.3, -1.0]])
    assert torch.allclose(blended_labels, want)
    # α only acts where the rule says: class 2 never blends, so it receives no gradient.
    (blended.sum() + blended_labels.sum()).backward()
    assert alpha.grad[2] == 0 and alpha.grad[0] != 0 and alpha.grad[1] != 0


def test_iprb_partner_is_the_flipped_batch():
    labels = torch.tensor([[0.0], [1.0], [1.0]])  # the middle image is its own partner
    maps = hand_maps(3, 1)
    blended, blended_labels, mask = iprb_blend(maps, labels, torch.tensor([0.5]))
    assert mask[:, 0].tolist() == [True, False, False]
    assert torch.allclose(blended[0], 0.5 * maps[0] + 0.5 * maps[2])
    assert torch.allclose(blended_labels[:, 0], torch.tensor([0.5, 1.0, 1.0]))


def test_iprb_on_vectors_equals_pooled_maps():
    # Pooling is linear: the RV variant of IPRB gives the pooled map blend.
    maps = torch.randn(4, 3, 5, 2, 2)
    labels = torch.tensor([[0, 1, 0], [1, 0, 0], [0, 0, 1], [1, 1, 0]], dtype=torch.float32)
    alpha = torch.tensor([0.3, 0.6, 0.1])
    on_maps = iprb_blend(maps, labels, alpha)[0].sum(dim=(-2, -1))
    on_vectors = iprb_blend(maps.sum(dim=(-2, -1)), labels, alpha)[0]
    assert torch.allclose(on_maps, on_vectors, atol=1e-5)


# -- PPRB (eq. 10-13) -------------------------------------------------------------------------------


def test_pprb_blends_selected_entries_with_chosen_prototypes():
    maps = hand_maps(2, 3)
    labels = torch.tensor([[1.0, -1.0, 0.0], [0.0, 0.0, 1.0]])
    prototypes = torch.arange(3 * 4 * 4, dtype=torch.float32).reshape(3, 4, 1, 2, 2)
    selected = torch.tensor([[False, False, True], [True, False, False]])
    k = torch.tensor([[0, 0, 3], [1, 0, 0]])
    beta = torch.tensor([0.3, 0.6, 0.8], requires_grad=True)
    blended, blended_labels = pprb_blend(maps, labels, beta, prototypes, selected, k)
    assert torch.allclose(blended[0, 2], 0.8 * maps[0, 2] + 0.2 * prototypes[2, 3])
    assert torch.allclose(blended[1, 0], 0.3 * maps[1, 0] + 0.7 * prototypes[0, 1])
    for n, c in [(0, 0), (0, 1), (1, 1), (1, 2)]:
        assert torch.equal(blended[n, c], maps[n, c])
    # Eq. 11: 1 - β on the selected entries, the own label elsewhere (image 1, class 1 stays unknown).
    assert torch.allclose(blended_labels, torch.tensor([[1.0, -1.0, 0.2], [0.7, 0.0, 1.0]]))
    (blended.sum() + blended_labels.sum()).backward()
    assert beta.grad[1] == 0 and beta.grad[0] != 0 and beta.grad[2] != 0


def test_pprb_selects_one_unknown_class_with_prototypes_per_image():
    labels = torch.tensor([[0, 0, 1, 0], [1, -1, 1, 1], [0, 1, -1, 1], [0, 0, 0, 0]], dtype=torch.float32)
    valid = torch.tensor([True, True, True, False])
    seen = set()
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        sel = pprb_select(labels, valid, 1, g)
        assert sel.sum(1).tolist() == [1, 0, 1, 1]  # image 1 has no unknown; image 2 only class 0
        assert not (sel & (labels != 0)).any() and not sel[:, 3].any()  # class 3 has no prototype
        seen.add(int(sel[0].nonzero()))
    assert seen == {0, 1}  # random among the eligible classes of image 0
    assert pprb_select(labels, valid, 2, g).sum(1).tolist() == [2, 0, 1, 2]


def test_prototype_index_avoids_the_own_region_and_is_uniform_otherwise():
    own = torch.tensor([0, 1, 2, 3] * 50)
    g = torch.Generator().manual_seed(1)
    k = pick_prototype_index(own, 4, avoid_own=True, generator=g)
    assert not (k == own).any()
    for region in range(4):
        assert set(k[own == region].tolist()) == set(range(4)) - {region}
    assert pick_prototype_index(own, 1, avoid_own=True).eq(0).all()


# -- prototypes from the quadrant split ---------------------------------------------------------------


def peak_map(row, col, size=4, channels=2, value=1.0):
    m = torch.zeros(channels, size, size)
    m[:, row, col] = value
    return m


def test_region_index_quadrants_and_finer_grids():
    maps = torch.stack([peak_map(0, 1), peak_map(1, 3), peak_map(3, 0), peak_map(2, 2)])
    assert region_index(maps, 1).tolist() == [0, 1, 2, 3]
    # K = 2 on a 4x4 map: every location is its own cell.
    assert region_index(maps, 2).tolist() == [1, 7, 12, 10]
    assert region_index(maps, 0).tolist() == [0, 0, 0, 0]
    # Odd size 5: the boundary is floor(5/2) = 2, so row 2 is in the bottom half.
    assert region_index(torch.stack([peak_map(2, 1, size=5), peak_map(1, 2, size=5)]), 1).tolist() == [2, 1]
    # The response is the channel sum: a strong single channel beats a weaker spread one.
    m = peak_map(0, 0, channels=2, value=1.0)
    m[0, 3, 3] = 3.0
    assert region_index(m[None], 1).item() == 3


def test_prototypes_are_region_means_of_known_positives():
    size = 4
    maps = torch.zeros(5, 3, 2, size, size)
    maps[0, 0] = peak_map(0, 0, value=1.0)   # class 0 positive, top-left
    maps[1, 0] = peak_map(1, 1, value=3.0)   # class 0 positive, top-left
    maps[2, 0] = peak_map(3, 3, value=2.0)   # class 0 positive, bottom-right
    maps[3, 0] = peak_map(0, 3, value=9.0)   # class 0 unknown: not counted
    maps[4, 0] = peak_map(0, 3, value=7.0)   # class 0 negative: not counted
    maps[0, 1] = peak_map(0, 2, value=4.0)   # class 1 positive, top-right
    labels = torch.tensor([[1, 1, 0], [1, 0, 0], [1, -1, 0], [0, 0, -1], [-1, 0, 0]], dtype=torch.float32)
    # Split over two "batches" to check that sums and counts add up.
    s1, c1 = map_prototype_sums(maps[:2], labels[:2])
    s2, c2 = map_prototype_sums(maps[2:], labels[2:])
    protos, valid = prototypes_from_sums(s1 + s2, c1 + c2)
    assert (c1 + c2).tolist() == [[2, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0]]
    assert valid.tolist() == [True, True, False]
    assert torch.allclose(protos[0, 0], (maps[0, 0] + maps[1, 0]) / 2)
    assert torch.allclose(protos[0, 3], maps[2, 0])
    class_mean = (maps[0, 0] + maps[1, 0] + maps[2, 0]) / 3
    assert torch.allclose(protos[0, 1], class_mean) and torch.allclose(protos[0, 2], class_mean)
    for q in range(4):
        assert torch.allclose(protos[1, q], maps[0, 1])
    assert protos[2].abs().sum() == 0
    # official: each region's list starts with a zero map that its mean counts; the class mean
    # for an empty region does not
    official, _ = prototypes_from_sums(s1 + s2, c1 + c2, zero_map=True)
    assert torch.allclose(official[0, 0], (maps[0, 0] + maps[1, 0]) / 3)
    assert torch.allclose(official[0, 3], maps[2, 0] / 2)
    assert torch.allclose(official[0, 1], class_mean)


def test_first_seen_keeps_the_cap_earliest_images_per_group():
    keys = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.7])  # image order: 1, 3, 2, 4, 0
    images = torch.tensor([0, 1, 2, 3, 4, 0, 2])
    groups = torch.tensor([0, 0, 0, 0, 0, 1, 1])
    keep = first_seen(keys, images, groups, cap=2)
    assert keep.tolist() == [False, True, False, True, False, True, True]  # group 0: images 1 and 3

# -- losses -----------------------------------------------------------------------------------------


def test_soft_partial_bce_matches_partial_bce_and_soft_targets():
    logits = torch.tensor([[0.3, -1.2, 2.0, 0.0], [1.0, 0.5, -0.5, 0.2]])
    hard = torch.tensor([[1.0, -1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    assert torch.allclose(soft_partial_bce(logits, hard).mean(), partial_bce(logits, hard))
    assert torch.allclose(soft_partial_bce(logits, hard, "entries"), partial_bce(logits, hard, reduction="entries"))
    soft = torch.tensor([[0.25, -1.0, 0.0, 0.0]])
    s0, s1 = torch.sigmoid(logits[0, 0]).item(), torch.sigmoid(logits[0, 1]).item()
    want = -(0.25 * math.log(s0) + 0.75 * math.log(1 - s0) + math.log(1 - s1)) / 2
    assert soft_partial_bce(logits[:1], soft).item() == pytest.approx(want, rel=1e-5)


def test_contrastive_loss_eq_3_4():
    features = torch.tensor([[[1.0, 0.0], [1.0, 0.0]],
                             [[1.0, 1.0], [-1.0, 0.0]]])  # (B=2, C=2, D=2)
    labels = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    # Class 0: both positive, cos = 1/sqrt(2) -> 1 - cos. Class 1: not both positive, cos = -1 -> 1 + cos = 0.
    pos_pair = 1 - 1 / math.sqrt(2)
    assert category_contrastive_loss(features, labels, "all").item() == pytest.approx((2 * pos_pair + 2 * 0.0) / 4, rel=1e-5)
    # "known": class 1's pair has an unknown label and is left out.
    assert category_contrastive_loss(features, labels, "known").item() == pytest.approx(pos_pair, rel=1e-5)
    labels_neg = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    # Class 0 is now a positive/negative pair: 1 + cos.
    expected = (2 * (1 + 1 / math.sqrt(2)) + 0.0) / 4
    assert category_contrastive_loss(features, labels_neg, "all").item() == pytest.approx(expected, rel=1e-5)
    assert category_contrastive_loss(features[:1], labels[:1], "all").item() == 0.0


# -- the model and the method -------------------------------------------------------------------------


def make_ctx(n=12, c=4, epochs=4, seed=0, image=16):
    rng = np.random.default_rng(seed)
    labels = rng.choice([-1, 0, 1], size=(n, c), p=[0.3, 0.4, 0.3]).astype(np.int8)
    images = torch.from_numpy(rng.normal(size=(n, 3, image, image)).astype(np.float32))

    def feature_batches():
        for start in range(0, n, 5):
            rows = torch.arange(start, min(n, start + 5))
            yield Batch(images[rows], torch.from_numpy(labels[rows.numpy()]).float(), rows)

    ctx = MethodContext(num_classes=c, class_names=[f"c{i}" for i in range(c)], train_labels=labels,
                        word_embeddings=rng.normal(size=(c, 6)).astype(np.float32), epochs=epochs, steps_per_epoch=2,
                        setting="pal", known=0.7, seed=seed, generator=torch.Generator().manual_seed(seed),
                        feature_batches=feature_batches)
    return ctx, images


def make_method(ctx, **overrides):
    method = DSRB(DSRB.make_options(overrides), ctx)
    torch.manual_seed(0)
    model = method.build_model(SmallCNN(width=4, out_channels=8))
    return method, model


@pytest.mark.parametrize("sarl", ["sd", "sa"])
def test_model_maps_pool_to_the_sarl_features(sarl):
    torch.manual_seed(0)
    model = DSRBModel(SmallCNN(width=4, out_channels=8), 3, np.random.randn(3, 5), np.ones((3, 3)) - np.eye(3), sarl=sarl,
                      coefficients="per-class")
    model.eval()
    x = torch.randn(2, 3, 24, 24)
    out = model(x, return_all=True)
    assert out.maps.shape == (2, 3, 4, 3, 3)  # D = 8 // 2
    assert torch.allclose(model.pool(out.maps), out.features, atol=1e-5)
    assert torch.allclose(model(x), out.logits, atol=1e-5)
    assert torch.allclose(model.classify(out.features), out.logits, atol=1e-6)
    assert model.alpha.tolist() == [0.5] * 3 and model.beta.tolist() == [0.5] * 3


def test_alpha_beta_are_clamped_to_unit_interval():
    ctx, images = make_ctx()
    method, model = make_method(ctx, blend_start_epoch=0, coefficients="per-class")
    with torch.no_grad():
        model.alpha.copy_(torch.tensor([-0.5, 1.7, 0.3, 0.5]))
        model.beta.copy_(torch.tensor([2.0, -1.0, 0.9, 0.5]))
    batch = next(ctx.feature_batches())
    method.training_step(model, batch, epoch=0)
    assert model.alpha.tolist() == pytest.approx([0.0, 1.0, 0.3, 0.5])
    assert model.beta.tolist() == pytest.approx([1.0, 0.0, 0.9, 0.5])


def test_schedule_defaults_to_a_quarter_of_the_epochs():
    assert [quarter_of(e) for e in (1, 2, 3, 8, 20)] == [0, 0, 1, 2, 5]
    ctx, _ = make_ctx(epochs=8)
    method, _ = make_method(ctx)
    assert (method.blender.start_epoch, method.blender.prototype_interval) == (2, 2)
    assert [e for e in range(3) if method.blender.prototypes_due(e)] == [2]  # not before blending starts
    method.blender.prototype_epoch = 2
    assert [e for e in range(3, 8) if method.blender.prototypes_due(e)] == [4, 6]
    paper = DSRB.profiles["paper"]
    assert (paper["blend_start_epoch"], paper["prototype_interval"], paper["epochs"], paper["lr"]) == (5, 5, 20, 1e-5)
    iprb_only, _ = make_method(ctx, modules="iprb")
    assert not any(iprb_only.blender.prototypes_due(e) for e in range(8))


def run_epochs(method, model, ctx, epochs):
    opt, sched = method.configure_optimizers(model, TrainConfig(lr=1e-2))
    method.on_train_start(model)
    logs = []
    for epoch in range(epochs):
        method.on_epoch_start(model, epoch)
        model.train()
        for batch in ctx.feature_batches():
            out = method.training_step(model, batch, epoch)
            assert torch.isfinite(out["loss"])
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
            logs.append({k: float(v.detach()) for k, v in out.items()})
        method.on_epoch_end(model, epoch)
        sched.step()
    return logs


@pytest.mark.parametrize("overrides", [{}, {"space": "vectors"}, {"sarl": "sa", "modules": "pprb", "fixed_beta": True}])
def test_lifecycle_blends_from_the_start_epoch_and_predicts_probabilities(overrides):
    ctx, images = make_ctx(epochs=3)
    method, model = make_method(ctx, blend_start_epoch=1, prototype_interval=1, coefficients="per-class", **overrides)
    logs = run_epochs(method, model, ctx, 3)
    per_epoch = len(logs) // 3
    assert not any("pprb_blended" in row for row in logs[:per_epoch])  # epoch 0: no blending
    assert all("pprb_blended" in row for row in logs[per_epoch:])
    assert method.blender.prototype_epoch == 2 and bool(method.blender.prototype_valid.any())
    if method.options.space == "maps":
        assert method.blender.prototypes.shape == (4, 4, 4, 2, 2)  # D = half the backbone's 8
    else:
        assert method.blender.prototypes.shape == (4, 10, 4)
    if overrides.get("fixed_beta"):
        assert model.beta.tolist() == [0.5] * 4
    else:
        assert not torch.allclose(model.alpha, torch.full((4,), 0.5))  # α learns once blending starts
    assert ((model.alpha >= 0) & (model.alpha <= 1)).all()
    model.eval()
    scores = method.predict(model, images[:3])
    assert scores.shape == (3, 4) and torch.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()


@pytest.mark.parametrize("sarl", ["sd", "sa"])
def test_blending_pooled_vectors_equals_pooling_blended_maps(sarl):
    """``space=maps`` blends the pooled vectors (pool_first): the same blended vectors, labels,
    masks and gradients as blending the maps and pooling them (pool_first False), to rounding."""
    ctx, _ = make_ctx(epochs=2)
    method, model = make_method(ctx, blend_start_epoch=0, prototype_interval=1, coefficients="per-class", sarl=sarl)
    method.on_epoch_start(model, 0)
    assert bool(method.blender.prototype_valid.any())
    with torch.no_grad():
        model.alpha.copy_(torch.tensor([0.2, 0.7, 0.4, 0.9]))
        model.beta.copy_(torch.tensor([0.3, 0.6, 0.8, 0.1]))
    batch = next(ctx.feature_batches())
    results = []
    for pool_first in (True, False):
        method.blender.pool_first = pool_first
        method.ctx.generator.manual_seed(5)  # the same draws (PPRB's categories and prototypes)
        model.zero_grad()
        out = model(batch.inputs, return_all=True, blend=method.blender.blend_fn(batch.labels))
        weights = torch.randn(out.logits.shape[0], 4, generator=torch.Generator().manual_seed(3))
        sum(((logits * weights).sum() for logits, _, _ in out.blended.values())).backward()
        grads = [p.grad.clone() for p in (model.alpha, model.beta, *model.semantic.parameters())]
        results.append((out.blended, grads))
    method.blender.pool_first = True
    (fast, fast_grads), (maps, maps_grads) = results
    assert set(fast) == set(maps) == {"iprb", "pprb"}
    for key in fast:
        assert torch.allclose(fast[key][0], maps[key][0], atol=1e-5)  # logits of the blended vectors
        assert torch.equal(fast[key][1], maps[key][1]) and torch.equal(fast[key][2], maps[key][2])
    assert fast["iprb"][2].any() and fast["pprb"][2].any()
    for a, b in zip(fast_grads, maps_grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    assert maps_grads[0].abs().sum() > 0 and maps_grads[1].abs().sum() > 0


def test_blend_parameters_are_not_decayed_and_fixed_ones_not_optimised():
    ctx, _ = make_ctx()
    method, model = make_method(ctx)
    opt, _ = method.configure_optimizers(model, TrainConfig(weight_decay=5e-4))
    # official: α and β are weights like any other (decayed in the steps where they take part)
    assert len(opt.param_groups) == 1 and any(p is model.alpha for p in opt.param_groups[0]["params"])
    method, model = make_method(ctx, coefficient_decay="separate")
    opt, _ = method.configure_optimizers(model, TrainConfig(weight_decay=5e-4))
    blend_group = [g for g in opt.param_groups if any(p is model.alpha for p in g["params"])]
    assert len(blend_group) == 1 and blend_group[0]["weight_decay"] == 0.0
    assert opt.param_groups[0]["weight_decay"] == 5e-4
    fixed, fixed_model = make_method(ctx, fixed_alpha=True, fixed_beta=True)
    opt, _ = fixed.configure_optimizers(fixed_model, TrainConfig())
    assert all(p is not fixed_model.alpha and p is not fixed_model.beta for g in opt.param_groups for p in g["params"])


def test_state_dict_round_trip_with_weights_only_load():
    ctx, images = make_ctx(epochs=2)
    method, model = make_method(ctx, blend_start_epoch=0, prototype_interval=5)
    run_epochs(method, model, ctx, 1)
    assert method.blender.prototypes.numel() > 0
    buf = io.BytesIO()
    torch.save({"method": method.state_dict(), "model": model.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    fresh, fresh_model = make_method(ctx, blend_start_epoch=0, prototype_interval=5)
    fresh.load_state_dict(state["method"])
    fresh_model.load_state_dict(state["model"])
    assert torch.equal(fresh.blender.prototypes, method.blender.prototypes)
    assert torch.equal(fresh.blender.prototype_valid, method.blender.prototype_valid)
    assert fresh.blender.prototype_epoch == 0 and not fresh.blender.prototypes_due(1)  # resumed: no recomputation needed
    assert torch.equal(fresh_model.alpha, model.alpha)
    with pytest.raises(BenchError, match="space"):
        vec, _ = make_method(ctx, space="vectors")
        vec.load_state_dict(state["method"])


def test_bad_options_are_one_line_errors():
    ctx, _ = make_ctx()
    for bad in ({"modules": "all"}, {"space": "pixels"}, {"sarl": "gcn"}, {"region_k": 5}, {"contrastive_pairs": "x"}):
        with pytest.raises(BenchError, match="method 'dsrb'|method dsrb"):
            make_method(ctx, **bad)


def test_registration():
    assert dsrb_module.mlrpl_methods() == [DSRB]
    assert set(DSRB.profiles["paper"]) - TrainConfig.field_names() <= {f.name for f in DSRB.option_fields()}
