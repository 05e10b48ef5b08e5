"""SST: the IST/CST equations on hand-checkable tensors, the factorised IST head, the schedule,
the bank, ablation options and the method lifecycle on tiny random data."""

import io
import math

import numpy as np
import pytest
import torch

from mlrpl_bench.errors import BenchError
from mlrpl_bench.method import Batch, MethodContext, TrainConfig
from mlrpl_bench.models.backbones import SmallCNN
from mlrpl_bench.models.sarl import SemanticAttention, build_label_graph
from mlrpl_bench.plugins._sarl.losses import category_contrastive_loss, category_cosine
from mlrpl_bench.plugins._semantic_transfer.equations import (
    TransferSchedule, asymmetric_pair_loss, instance_scores, ist_scores, pseudo_positives, transfer_targets,
)
from mlrpl_bench.plugins._semantic_transfer.model import CooccurrenceHead, OfficialCooccurrenceHead
from mlrpl_bench.plugins.sst import SST

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_ctx(labels, epochs=1, batches=None, dim=7):
    labels = np.asarray(labels, dtype=np.int8)
    c = labels.shape[1]
    rng = np.random.default_rng(0)
    return MethodContext(num_classes=c, class_names=[f"c{i}" for i in range(c)], train_labels=labels,
                         word_embeddings=rng.random((c, dim)).astype(np.float32), epochs=epochs, steps_per_epoch=1,
                         setting="pal", known=0.5, seed=0, feature_batches=batches or (lambda: iter(())),
                         generator=torch.Generator().manual_seed(0))


def tiny_setup(cls, overrides=None, epochs=1, n=8, c=4, seed=0):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    labels = rng.choice([-1, 0, 1], size=(n, c), p=[0.4, 0.3, 0.3]).astype(np.int8)
    labels[:, 0] = 1  # every image has a known positive, so IST has something to transfer
    inputs = torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
    batch = Batch(inputs, torch.tensor(labels).float(), torch.arange(n))
    ctx = make_ctx(labels, epochs=epochs, batches=lambda: iter([batch]))
    method = cls(cls.make_options(overrides or {}), ctx)
    model = method.build_model(SmallCNN(width=4, out_channels=8))
    return method, model, batch


# ---------------------------------------------------------------------------------------------
# IST equations
# ---------------------------------------------------------------------------------------------

P = torch.tensor([[[0.9, 0.2, 0.7], [0.4, 0.8, 0.6], [0.3, 0.5, 0.1]]])


def test_ist_scores_eq2_sum_over_known_positives():
    labels = torch.tensor([[1.0, 0.0, 1.0]])
    # paper eq. 2 for the unknown class 1: the sum over the known positives j of p_1j = 0.4 + 0.6
    assert ist_scores(P, labels, "sum", "matrix")[0, 1].item() == pytest.approx(1.0)
    # the known positives: the paper's sum includes j = i (p_00 = 0.9, p_22 = 0.1)
    assert torch.allclose(ist_scores(P, labels, "sum", "matrix"), torch.tensor([[1.6, 1.0, 0.4]]))
    # j != i only
    assert torch.allclose(ist_scores(P, labels, "sum", "exclude"), torch.tensor([[0.7, 1.0, 0.3]]))
    assert torch.allclose(ist_scores(P, labels, "mean", "exclude"), torch.tensor([[0.7, 0.5, 0.3]]))
    # official: mean over the known positives with P(i, i) = 1: class 0 = (1 + 0.7) / 2
    assert torch.allclose(ist_scores(P, labels, "mean", "one"), torch.tensor([[0.85, 0.5, 0.65]]))


def test_ist_pseudo_labels_from_cooccurrence_and_threshold():
    labels = torch.tensor([[1.0, 0.0, 1.0]])
    scores = ist_scores(P, labels, "sum")
    assert pseudo_positives(scores, labels, 0.95).tolist() == [[0.0, 1.0, 0.0]]
    assert pseudo_positives(scores, labels, 1.01).tolist() == [[0.0, 0.0, 0.0]]
    assert pseudo_positives(ist_scores(P, labels, "mean"), labels, 0.5).tolist() == [[0.0, 1.0, 0.0]]
    # strict (official HST): a score equal to θ gives no pseudo label
    assert pseudo_positives(ist_scores(P, labels, "mean"), labels, 0.5, strict=True).sum() == 0
    # an image without known positives transfers nothing
    none = torch.tensor([[0.0, -1.0, 0.0]])
    assert pseudo_positives(ist_scores(P, none), none, 0.01).sum() == 0


def test_pseudo_labels_never_on_known_entries():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(-1, 2, (50, 9), generator=g).float()
    scores = torch.rand(50, 9, generator=g)
    pseudo = pseudo_positives(scores, labels, -1.0)  # every score passes
    assert torch.equal(pseudo, (labels == 0).float())
    assert pseudo[labels != 0].sum() == 0
    # SST combines known + pseudo: known entries are unchanged
    combined = transfer_targets(labels, pseudo, combine=True)
    assert torch.equal(combined[labels != 0], labels[labels != 0])
    assert torch.equal(transfer_targets(labels, pseudo, combine=False), pseudo)


def test_asymmetric_pair_loss_positive_pair_by_hand():
    labels = torch.tensor([[1.0, 1.0]])
    logits = torch.zeros(1, 2, 2)  # p = 0.5
    # -(1 - 0.5)^1 * log(0.5)
    assert asymmetric_pair_loss(logits, labels).item() == pytest.approx(0.5 * math.log(2), rel=1e-5)


def test_asymmetric_pair_loss_negative_pair_by_hand():
    labels = torch.tensor([[1.0, -1.0]])
    logits = torch.full((1, 2, 2), math.log(3.0))  # p = 0.75
    # -(0.75 - 0.05)^2 * log(1 - 0.75)
    assert asymmetric_pair_loss(logits, labels).item() == pytest.approx(0.49 * math.log(4), rel=1e-5)
    # ASL form: p_m = 0.70 inside the log as well
    assert asymmetric_pair_loss(logits, labels, form="asl").item() == pytest.approx(-0.49 * math.log(0.3), rel=1e-5)
    # an easy negative below the margin m = 0.05 costs nothing
    easy = torch.full((1, 2, 2), math.log(0.04 / 0.96))
    assert asymmetric_pair_loss(easy, labels).item() == pytest.approx(0.0, abs=1e-7)


def test_asymmetric_pair_loss_pairs_with_unknowns():
    labels = torch.tensor([[1.0, 0.0]])
    logits = torch.full((1, 2, 2), math.log(3.0))
    assert asymmetric_pair_loss(logits, labels, pairs="known").item() == 0.0
    assert asymmetric_pair_loss(logits, labels, pairs="all").item() == pytest.approx(0.49 * math.log(4), rel=1e-5)


def test_factorised_ist_head_equals_naive_pairwise():
    torch.manual_seed(0)
    head = CooccurrenceHead(6, (5, 7))
    feats = torch.randn(3, 9, 6, requires_grad=True)
    fast = head(feats)
    naive = head.naive_logits(feats)
    assert fast.shape == (3, 9, 9)
    assert torch.allclose(fast, naive, atol=1e-5)
    # ordered pairs: [f_i ; f_j] differs from [f_j ; f_i]
    assert not torch.allclose(fast, fast.transpose(1, 2))
    g_fast = torch.autograd.grad(fast.square().sum(), [feats, head.fc1.weight])
    g_naive = torch.autograd.grad(naive.square().sum(), [feats, head.fc1.weight])
    for a, b in zip(g_fast, g_naive):
        assert torch.allclose(a, b, atol=1e-4)


def test_official_ist_head_factorised_equals_concatenated_pairs():
    torch.manual_seed(0)
    head = OfficialCooccurrenceHead(6, 5, (4, 7))
    feats = torch.randn(2, 5, 6, requires_grad=True)
    fast, naive = head.pair_logits(feats), head.naive_pair_logits(feats)
    assert fast.shape == (2, 10) and torch.allclose(fast, naive, atol=1e-5)  # C(C-1)/2 = 10 pairs
    g_fast = torch.autograd.grad(fast.square().sum(), [feats, head.fc2.weight])
    g_naive = torch.autograd.grad(naive.square().sum(), [feats, head.fc2.weight])
    for a, b in zip(g_fast, g_naive):
        assert torch.allclose(a, b, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# CST equations
# ---------------------------------------------------------------------------------------------

F3 = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]], [[1.0, 1.0]]])  # 3 images, 1 category, D = 2


def test_category_cosine_eq5():
    sim = category_cosine(F3, F3)
    assert sim.shape == (3, 3, 1)
    assert sim[0, 1, 0].item() == pytest.approx(0.0, abs=1e-7)
    assert sim[0, 2, 0].item() == pytest.approx(1 / math.sqrt(2), rel=1e-6)


def test_instance_scores_eq6_mean_over_known_positives():
    labels = torch.tensor([[0.0], [1.0], [1.0]])
    scores, has = instance_scores(F3, F3, labels, exclude_self=True)
    # image 0: mean(cos(f0, f1), cos(f0, f2)) = (0 + 1/sqrt2) / 2; images 1, 2: each other only
    assert scores[:, 0].tolist() == pytest.approx([0.5 / math.sqrt(2), 1 / math.sqrt(2), 1 / math.sqrt(2)], rel=1e-6)
    assert has.all()
    none, has_none = instance_scores(F3, F3, torch.tensor([[0.0], [-1.0], [0.0]]))
    assert not has_none.any() and none.abs().sum() == 0
    # only an unknown entry can become a pseudo label
    assert pseudo_positives(scores, labels, 0.3, has).tolist() == [[1.0], [0.0], [0.0]]


def test_cst_pair_loss_eq8_by_hand():
    labels = torch.tensor([[1.0], [1.0], [-1.0]])
    # pairs (0,1): both positive -> 1 - 0; (0,2), (1,2): otherwise -> 1 + 1/sqrt2; ordered pairs double each
    expected = (1.0 + 2 * (1 + 1 / math.sqrt(2))) / 3
    assert category_contrastive_loss(F3, labels, "all").item() == pytest.approx(expected, rel=1e-6)
    # pairs="known" drops pairs with an unknown label
    unknown = torch.tensor([[1.0], [1.0], [0.0]])
    assert category_contrastive_loss(F3, unknown, "known").item() == pytest.approx(1.0, rel=1e-6)
    assert category_contrastive_loss(F3[:1], labels[:1], "all").item() == 0.0


# ---------------------------------------------------------------------------------------------
# schedule
# ---------------------------------------------------------------------------------------------


def test_threshold_schedule_paper_timeline():
    s = TransferSchedule()
    got = [s.threshold(e, 20) for e in range(20)]
    assert got[:5] == [None] * 5  # "set to 1 during the first 5 epochs": no pseudo labels
    assert got[5] == pytest.approx(0.95)  # epoch 6 (1-based)
    assert got[6] == pytest.approx(0.925)
    assert got[12] == pytest.approx(0.775)
    assert got[13:] == pytest.approx([0.75] * 7)  # floor
    assert [e for e in range(20) if s.prototype_epoch(e, 20)] == [5, 10, 15]


def test_threshold_schedule_scaled_to_short_runs():
    s = TransferSchedule()
    assert [s.threshold(e, 8) for e in range(8)] == pytest.approx([None, None, 0.95, 0.8875, 0.825, 0.7625, 0.75, 0.75])
    assert [e for e in range(8) if s.prototype_epoch(e, 8)] == [2, 4, 6]
    assert s.threshold(0, 1) == pytest.approx(0.95) and s.prototype_epoch(0, 1)
    unscaled = TransferSchedule(scale="none")
    assert [unscaled.threshold(e, 8) for e in range(8)][4:] == pytest.approx([None, 0.95, 0.925, 0.9])
    once = TransferSchedule(prototype_every=0)
    assert [e for e in range(20) if once.prototype_epoch(e, 20)] == [5]


def test_method_thresholds_follow_schedule():
    method, model, _ = tiny_setup(SST, epochs=20)
    assert method.thresholds(model, 4) == (1.0, 1.0) and not method.pseudo_active(4)
    assert method.thresholds(model, 7) == pytest.approx((0.9, 0.9))
    fixed, model_f, _ = tiny_setup(SST, {"ablation": "fixed-threshold", "fixed_threshold": 0.6}, epochs=20)
    assert fixed.thresholds(model_f, 10) == (0.6, 0.6)


# ---------------------------------------------------------------------------------------------
# options, ablations, model pieces
# ---------------------------------------------------------------------------------------------


def test_statistical_cooccurrence_is_conditional_probability():
    labels = np.array([[1, 1, 0], [1, -1, 0], [1, 1, -1], [0, 1, -1]], dtype=np.int8)
    method = SST(SST.make_options({"ablation": "ist-stat"}), make_ctx(labels))
    # p_ij = P(i | j): P(class 0 | class 1) = 2/3, P(class 1 | class 0) = 2/3
    assert method.statistical[0, 1].item() == pytest.approx(2 / 3)
    assert torch.allclose(method.statistical, torch.from_numpy(build_label_graph(labels).T))
    model = method.build_model(SmallCNN(width=4, out_channels=8))
    assert model.ist_head is None and method.use_ist and not method.use_cst


@pytest.mark.parametrize("ablation, ist, cst, head", [
    ("", True, True, True), ("ist-only", True, False, True), ("ist-no-loss", True, False, True),
    ("cst-only", False, True, False), ("cst-no-loss", False, True, False), ("baseline", False, False, False),
])
def test_ablation_presets(ablation, ist, cst, head):
    method, model, _ = tiny_setup(SST, {"ablation": ablation})
    assert (method.use_ist, method.use_cst) == (ist, cst)
    assert (model.ist_head is not None) == head
    assert model.thresholds is None  # SST: scheduled, not learned
    # official ratio: D is half the backbone's 8 channels, through a 1x1 conv + BN
    assert type(model.reduce).__name__ == "ChannelReduction" and model.feature_dim == 4


def test_sa_ablation_and_bad_options():
    method, model, batch = tiny_setup(SST, {"ablation": "sa"})
    assert isinstance(model.semantic, SemanticAttention)
    out = method.training_step(model, batch, 0)
    assert "cam" in out and torch.isfinite(out["loss"])
    with pytest.raises(BenchError, match="ablation"):
        tiny_setup(SST, {"ablation": "nope"})
    with pytest.raises(BenchError, match="cst_reference"):
        tiny_setup(SST, {"cst_reference": "everything"})
    with pytest.raises(BenchError, match="unknown option"):
        SST.make_options({"lambda_4": 1})


def test_profiles_hold_the_papers_recipe():
    paper = SST.profiles["paper"]
    assert paper["backbone"] == "resnet101-pool2" and paper["image_size"] == 448 and paper["lr"] == 1e-5
    assert paper["epochs"] == 20 and paper["lr_step"] == 10 and paper["weight_decay"] == 5e-4
    assert paper["freeze_backbone"] == "official"
    assert SST.profiles["official"]["batch_size"] == 8  # scripts/SST.sh
    assert SST.profiles["paper-literal"]["cst_reference"] == "batch"
    names = {f.name for f in SST.option_fields()}
    for profile in SST.profiles.values():
        for key in set(profile) - set(TrainConfig.field_names()):
            assert key in names
    assert all(f.metadata.get("help") for f in SST.option_fields())


# ---------------------------------------------------------------------------------------------
# bank (official CST reference set) and lifecycle
# ---------------------------------------------------------------------------------------------


def test_bank_keeps_latest_positives_newest_batch_first_in_batch_order():
    method, _, _ = tiny_setup(SST, {"cst_reference": "bank", "bank_size": 3})
    feats = torch.arange(1, 5, dtype=torch.float32).view(4, 1, 1).expand(4, 2, 2).contiguous()
    method.update_bank(feats[:2], torch.tensor([[1.0, -1.0], [1.0, 0.0]]))
    assert method.bank[0, :, 0].tolist() == [1.0, 2.0, 0.0]  # zero-initialised, like the official posFeature
    assert method.bank[1, :, 0].tolist() == [0.0, 0.0, 0.0]
    method.update_bank(feats[2:], torch.tensor([[1.0, 1.0], [1.0, -1.0]]))
    assert method.bank[0, :, 0].tolist() == [3.0, 4.0, 1.0]  # new batch in front, in batch order; 2 dropped
    assert method.bank[1, :, 0].tolist() == [3.0, 0.0, 0.0]


def test_sst_lifecycle_loss_decreases_and_predict_in_unit_interval():
    method, model, batch = tiny_setup(SST, epochs=1)
    opt, _ = method.configure_optimizers(model, TrainConfig(lr=1e-2))
    method.on_train_start(model)
    method.on_epoch_start(model, 0)
    losses = []
    for _ in range(6):
        out = method.training_step(model, batch, 0)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
    assert out["theta_intra"].item() == pytest.approx(0.95)  # 1-epoch run: pseudo labels from epoch 0
    model.eval()
    probs = method.predict(model, batch.inputs)
    assert probs.shape == (8, 4) and ((probs >= 0) & (probs <= 1)).all()


def test_sst_pseudo_labels_only_unknown_and_bank_round_trip():
    method, model, batch = tiny_setup(SST, {"cst_reference": "bank", "threshold_min": -1.0, "threshold_start": -1.0})
    method.training_step(model, batch, 0)
    intra, cross = method.pseudo_labels(model, batch.inputs, batch.labels, 0)
    known = batch.labels != 0
    assert intra[known].sum() == 0 and cross[known].sum() == 0
    assert cross[batch.labels[:, :] == 0].sum() > 0  # threshold -2: every unknown with a bank entry
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "method": method.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    fresh, fresh_model, _ = tiny_setup(SST, {"cst_reference": "bank", "threshold_min": -1.0, "threshold_start": -1.0}, seed=0)
    torch.manual_seed(123)
    fresh_model.load_state_dict(state["model"])
    fresh.load_state_dict(state["method"])
    assert torch.equal(fresh.bank, method.bank)
    again = fresh.pseudo_labels(fresh_model, batch.inputs, batch.labels, 0)
    assert torch.equal(again[0], intra) and torch.equal(again[1], cross)


def test_sst_end_to_end_cli(cli, tmp_path):
    from conftest import TINY_SCENES
    from mlrpl_bench.results import read_record

    res = cli("run", "--plugin", "sst", "--known", "0.5", "--epochs", "1", "--output", tmp_path,
              "--option", "ablation=ist-only", *TINY_SCENES)
    assert res.exit_code == 0, res.stderr
    rec = read_record(tmp_path / "sst__digit-scenes__pal__0.5__seed0__ablation-ist-only" / "record.json")
    assert rec["method"]["options"]["ablation"] == "ist-only"
    assert 0 <= rec["metrics"]["test"]["mAP"] <= 100
    bad = cli("run", "--plugin", "sst", "--known", "0.5", "--epochs", "1", "--output", tmp_path / "x",
              "--option", "ablation=nope", *TINY_SCENES)
    assert bad.exit_code == 2 and "ablation" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
