"""The baseline plugins' rules, each pinned on small hand-checkable tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mlrpl_bench.errors import BenchError
from mlrpl_bench.method import Batch, MethodContext, TrainConfig
from mlrpl_bench.models.backbones import SmallCNN
from mlrpl_bench.plugins._baseline_common import estimate_expected_positives
from mlrpl_bench.plugins._mixup import mixup_loss, mixup_targets, sample_mixup
from mlrpl_bench.plugins.an import AssumeNegative, an_loss
from mlrpl_bench.plugins.an_ls import an_ls_loss
from mlrpl_bench.plugins.asl import ASL
from mlrpl_bench.plugins.bce_ls import BCELabelSmoothing
from mlrpl_bench.plugins.curriculum import CurriculumLabeling, select_curriculum_labels
from mlrpl_bench.plugins.epr import ExpectedPositiveRegularization, epr_loss
from mlrpl_bench.plugins.focal import Focal
from mlrpl_bench.plugins.ip_mixup import PixelMixup
from mlrpl_bench.plugins.ll_r import LargeLossRejection, large_loss_keep_mask, ll_r_loss, rejection_rate
from mlrpl_bench.plugins.role import ROLE, init_label_logits, role_loss
from mlrpl_bench.plugins.ssgrl_pl import confidence_pseudo_labels
from mlrpl_bench.plugins.wan import WeakAssumeNegative, wan_loss, wan_weights


def bce(p: float, y: float) -> float:
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def ctx_for(labels, *, setting="pal", known=0.5, epochs=3, feature_batches=None) -> MethodContext:
    labels = np.asarray(labels, dtype=np.int8)
    c = labels.shape[1]
    kwargs = {"feature_batches": feature_batches} if feature_batches else {}
    return MethodContext(num_classes=c, class_names=[str(i) for i in range(c)], train_labels=labels,
                         word_embeddings=np.ones((c, 4), np.float32), epochs=epochs, steps_per_epoch=1,
                         setting=setting, known=known, seed=0, generator=torch.Generator().manual_seed(0), **kwargs)


class FixedLogits(torch.nn.Module):
    """A 'model' that returns preset logits, so a method's loss can be checked by hand."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.as_tensor(logits, dtype=torch.float32)
        self.backbone = torch.nn.Identity()

    def forward(self, x):
        return self.logits


# Two images, three classes; probabilities 0.8/0.3/0.6 and 0.1/0.9/0.5.
P = [[0.8, 0.3, 0.6], [0.1, 0.9, 0.5]]
LOGITS = [[logit(p) for p in row] for row in P]
LABELS = [[1, -1, 0], [0, 1, 0]]


def batch():
    return Batch(torch.zeros(2, 1), torch.tensor(LABELS, dtype=torch.float32), torch.tensor([0, 1]))


# --- loss-only baselines on known labels --------------------------------------------------------


def test_bce_ls_trains_on_smoothed_known_labels_only():
    method = BCELabelSmoothing(BCELabelSmoothing.make_options({}), ctx_for(LABELS))
    loss = method.training_step(FixedLogits(LOGITS), batch(), 0)["loss"].item()
    image0 = (bce(0.8, 0.9) + bce(0.3, 0.1)) / 2
    image1 = bce(0.9, 0.9)
    assert loss == pytest.approx((image0 + image1) / 2, rel=1e-5)


def test_bce_ls_unknown_negative_smooths_every_entry():
    method = BCELabelSmoothing(BCELabelSmoothing.make_options({"unknown": "negative"}), ctx_for(LABELS))
    loss = method.training_step(FixedLogits(LOGITS), batch(), 0)["loss"].item()
    targets = [[0.9, 0.1, 0.1], [0.1, 0.9, 0.1]]
    expected = np.mean([bce(p, y) for pr, tr in zip(P, targets) for p, y in zip(pr, tr)])
    assert loss == pytest.approx(expected, rel=1e-5)


def test_focal_method_on_known_labels():
    method = Focal(Focal.make_options({"alpha": "-1"}), ctx_for(LABELS))
    loss = method.training_step(FixedLogits(LOGITS), batch(), 0)["loss"].item()
    image0 = (-(0.2**2) * math.log(0.8) + -(0.3**2) * math.log(0.7)) / 2
    image1 = -(0.1**2) * math.log(0.9)
    assert loss == pytest.approx((image0 + image1) / 2, rel=1e-5)


def test_asl_method_on_known_labels_with_paper_defaults():
    method = ASL(ASL.make_options({}), ctx_for(LABELS))
    loss = method.training_step(FixedLogits(LOGITS), batch(), 0)["loss"].item()
    image0 = (-math.log(0.8) + 0.25**4 * -math.log(0.75)) / 2  # negative p=0.3 -> p_m = 0.25
    image1 = -math.log(0.9)
    assert loss == pytest.approx((image0 + image1) / 2, rel=1e-5)


# --- Cole et al.: AN, AN-LS, WAN, EPR, ROLE ----------------------------------------------------


def test_an_treats_unknowns_as_negatives_over_all_entries():
    targets = [[1, 0, 0], [0, 1, 0]]
    expected = np.mean([bce(p, y) for pr, tr in zip(P, targets) for p, y in zip(pr, tr)])
    assert an_loss(torch.tensor(LOGITS), torch.tensor(LABELS, dtype=torch.float32)).item() == pytest.approx(expected, rel=1e-5)
    method = AssumeNegative(AssumeNegative.make_options({}), ctx_for(LABELS))
    assert method.training_step(FixedLogits(LOGITS), batch(), 0)["loss"].item() == pytest.approx(expected, rel=1e-5)


def test_an_ls_smooths_assumed_and_known_targets():
    targets = [[0.9, 0.1, 0.1], [0.1, 0.9, 0.1]]
    expected = np.mean([bce(p, y) for pr, tr in zip(P, targets) for p, y in zip(pr, tr)])
    value = an_ls_loss(torch.tensor(LOGITS), torch.tensor(LABELS, dtype=torch.float32), 0.1).item()
    assert value == pytest.approx(expected, rel=1e-5)


def test_wan_weights_assumed_negatives_by_one_over_c_minus_one():
    labels = torch.tensor(LABELS, dtype=torch.float32)
    method = WeakAssumeNegative(WeakAssumeNegative.make_options({}), ctx_for(LABELS))
    assert method.gamma == pytest.approx(0.5)  # C = 3
    assert wan_weights(labels, 0.5).tolist() == [[1.0, 1.0, 0.5], [0.5, 1.0, 0.5]]
    expected = (bce(0.8, 1) + bce(0.3, 0) + 0.5 * bce(0.6, 0) + 0.5 * bce(0.1, 0) + bce(0.9, 1) + 0.5 * bce(0.5, 0)) / 6
    assert wan_loss(torch.tensor(LOGITS), labels, 0.5).item() == pytest.approx(expected, rel=1e-5)


def test_epr_is_observed_bce_plus_the_count_penalty():
    labels = torch.tensor(LABELS, dtype=torch.float32)
    bce_part, reg = epr_loss(torch.tensor(LOGITS), labels, expected_positives=2.0)
    assert bce_part.item() == pytest.approx((bce(0.8, 1) + bce(0.3, 0) + bce(0.9, 1)) / 6, rel=1e-5)
    mean_count = (0.8 + 0.3 + 0.6 + 0.1 + 0.9 + 0.5) / 2  # 1.6
    assert reg.item() == pytest.approx((mean_count - 2.0) ** 2 / 9, rel=1e-5)
    method = ExpectedPositiveRegularization(ExpectedPositiveRegularization.make_options({"expected_positives": "2"}), ctx_for(LABELS))
    out = method.training_step(FixedLogits(LOGITS), batch(), 0)
    assert out["loss"].item() == pytest.approx(bce_part.item() + reg.item(), rel=1e-6)


def test_expected_positives_estimated_from_partial_labels_only():
    pal = np.array([[1, -1, 0], [1, 0, -1], [-1, 1, 0], [0, 0, 1]])
    # class 0: 2 pos of 3 known; class 1: 1 of 2; class 2: 1 of 2 -> 2/3 + 1/2 + 1/2
    assert estimate_expected_positives(pal, "pal", 0.5) == pytest.approx(2 / 3 + 1.0)
    ppl = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 0, 1]])
    assert estimate_expected_positives(ppl, "ppl", 0.5) == pytest.approx(1.0 / 0.5)
    spl = np.array([[1, 0, 0], [0, 1, 0]])
    assert estimate_expected_positives(spl, "spl", 1.0) == pytest.approx(1.0)
    method = ExpectedPositiveRegularization(ExpectedPositiveRegularization.make_options({}), ctx_for(pal))
    assert method.expected_positives == pytest.approx(2 / 3 + 1.0)


def test_role_estimator_initialisation():
    labels = torch.tensor([[1, -1, 0, 0]] * 50)
    probs = torch.sigmoid(init_label_logits(labels, torch.Generator().manual_seed(0)))
    assert torch.allclose(probs[:, 0], torch.tensor(0.995), atol=1e-6)
    assert torch.allclose(probs[:, 1], torch.tensor(0.005), atol=1e-6)
    unknown = probs[:, 2:]
    assert unknown.min() >= 0.4 - 1e-6 and unknown.max() <= 0.6 + 1e-6 and unknown.std() > 0.02


def test_role_estimator_gradient_pulls_estimates_towards_predictions():
    labels = torch.tensor([[0.0, 0.0]])
    logits = torch.tensor([[logit(0.9), logit(0.2)]])
    est_logits = torch.tensor([[0.0, logit(0.7)]], requires_grad=True)  # estimates 0.5 and 0.7
    # k = predicted count = estimated count = 1.1 and 1.2: pick k so that R(g) has no gradient ...
    out = role_loss(logits, torch.sigmoid(est_logits), labels, expected_positives=1.2)
    out["loss"].backward()
    # ... then d loss / d z_g = 0.5 * (s - p) / (B*C) on unknown entries (cross term only).
    expected = 0.5 * (torch.tensor([0.5, 0.7]) - torch.tensor([0.9, 0.2])) / 2
    assert torch.allclose(est_logits.grad[0], expected, atol=1e-4)
    # A gradient step moves each estimate towards the prediction.
    with torch.no_grad():
        new = torch.sigmoid(est_logits - 1.0 * est_logits.grad)
    assert new[0, 0] > 0.5 and new[0, 1] < 0.7


def test_role_classifier_sees_estimates_as_detached_targets_and_observed_labels():
    labels = torch.tensor([[1.0, 0.0]])
    logits = torch.tensor([[logit(0.6), logit(0.4)]], requires_grad=True)
    est = torch.tensor([[0.995, 0.3]], requires_grad=True)
    out = role_loss(logits, est, labels, expected_positives=1.0)
    cross = 0.5 * (bce(0.6, 0.995) + bce(0.4, 0.3) + bce(0.995, 0.6) + bce(0.3, 0.4)) / 2
    observed = 0.5 * (bce(0.6, 1) + bce(0.995, 1)) / 2
    reg = 0.5 * ((1.0 - 1.0) ** 2 + (1.295 - 1.0) ** 2) / 4
    assert out["cross"].item() == pytest.approx(cross, rel=1e-3)
    assert out["observed"].item() == pytest.approx(observed, rel=1e-3)
    assert out["reg"].item() == pytest.approx(reg, rel=1e-4)


def test_role_keeps_its_estimator_on_the_model_with_a_larger_learning_rate():
    labels = [[1, -1, 0], [0, 1, 0], [0, 0, -1]]
    method = ROLE(ROLE.make_options({}), ctx_for(labels))
    model = method.build_model(SmallCNN(width=4, out_channels=8))
    assert model.state_dict()["label_logits"].shape == (3, 3)
    optimizer, _ = method.configure_optimizers(model, TrainConfig(lr=1e-4, weight_decay=5e-4))
    groups = {id(g["params"][0]): g for g in optimizer.param_groups}
    est_group = groups[id(model.label_logits)]
    assert est_group["lr"] == pytest.approx(1e-3) and est_group["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


# --- LL-R -------------------------------------------------------------------------------------


def test_ll_r_rejection_rate_schedule():
    assert rejection_rate(0, 0.2) == 0.0  # nothing rejected in the first epoch
    assert rejection_rate(3, 0.2) == pytest.approx(0.006)
    assert rejection_rate(10**6, 0.2) == 1.0


def test_ll_r_rejects_exactly_the_largest_unknown_losses_never_known_ones():
    per_entry = torch.tensor([[9.0, 1.0, 5.0, 2.0], [3.0, 8.0, 0.5, 4.0]])
    labels = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0]])  # 9 and 8 are known
    keep = large_loss_keep_mask(per_entry, labels, rate=0.25)  # k = ceil(0.25 * 8) = 2
    assert keep.tolist() == [[1, 1, 0, 1], [1, 1, 1, 0]]  # the unknown 5 and 4 go
    keep_u = large_loss_keep_mask(per_entry, labels, rate=0.5, rate_of="unknown")  # ceil(0.5*6) = 3
    assert keep_u.tolist() == [[1, 1, 0, 1], [0, 1, 1, 0]]
    everything = large_loss_keep_mask(per_entry, labels, rate=1.0)
    assert everything.tolist() == [[1, 0, 0, 0], [0, 1, 0, 0]]  # capped: only unknowns, all of them
    assert large_loss_keep_mask(per_entry, labels, rate=0.0).eq(1).all()


def test_ll_r_loss_sums_kept_entries_over_b_times_c():
    logits = torch.tensor([[logit(0.9), logit(0.2)], [logit(0.6), logit(0.1)]])
    labels = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    loss, keep = ll_r_loss(logits, labels, rate=0.25)  # k = 1: the unknown with p = 0.9 (loss -log 0.1)
    assert keep.tolist() == [[0, 1], [1, 1]]
    assert loss.item() == pytest.approx((bce(0.2, 0) + bce(0.6, 1) + bce(0.1, 0)) / 4, rel=1e-5)
    method = LargeLossRejection(LargeLossRejection.make_options({"delta_rel": "25"}), ctx_for([[0, 0], [1, 0]]))
    b = Batch(torch.zeros(2, 1), labels, torch.tensor([0, 1]))
    assert method.training_step(FixedLogits(logits), b, 0)["loss"].item() == pytest.approx(an_loss(logits, labels).item(), rel=1e-6)
    assert method.training_step(FixedLogits(logits), b, 1)["loss"].item() == pytest.approx(loss.item(), rel=1e-6)


# --- curriculum labeling -----------------------------------------------------------------------


def test_curriculum_selection_picks_the_most_confident_candidates():
    probs = torch.tensor([[0.99, 0.6, 0.02], [0.45, 0.97, 0.3]])
    candidates = torch.tensor([[False, True, True], [True, True, True]])  # (0,0) is known
    new = select_curriculum_labels(probs, candidates, strategy="proportion", count=2)
    assert new.tolist() == [[0, 0, -1], [0, 1, 0]]  # |p-0.5|: 0.48 and 0.47 beat 0.2, 0.1, 0.05
    pos_only = select_curriculum_labels(probs, candidates, strategy="proportion", count=2, only_positive=True)
    assert pos_only.tolist() == [[0, 1, 0], [0, 1, 0]]
    thr = select_curriculum_labels(probs, candidates, strategy="threshold", threshold=0.9)
    assert thr.tolist() == [[0, 0, -1], [0, 1, 0]]


def test_curriculum_labels_after_warmup_and_keeps_pseudo_labels_per_image():
    labels = np.array([[1, 0, 0], [0, -1, 0], [0, 0, 1], [-1, 0, 0]], dtype=np.int8)  # 8 unknown
    probs = torch.tensor([[0.9, 0.55, 0.01], [0.7, 0.5, 0.6], [0.95, 0.4, 0.9], [0.2, 0.99, 0.5]])
    model = FixedLogits(torch.logit(probs))

    def feature_batches():
        yield Batch(torch.zeros(2, 1), torch.zeros(2, 3), torch.tensor([2, 0]))
        yield Batch(torch.zeros(2, 1), torch.zeros(2, 3), torch.tensor([3, 1]))

    class Rows(FixedLogits):
        def forward(self, x):  # rows in the order feature_batches yields them
            return self.logits[self.order.pop(0)]

    rows = Rows(torch.logit(probs))
    rows.order = [torch.tensor([2, 0]), torch.tensor([3, 1])]
    ctx = ctx_for(labels, epochs=4, feature_batches=feature_batches)
    method = CurriculumLabeling(CurriculumLabeling.make_options({"proportion": "0.25", "warmup_epochs": "2"}), ctx)
    method.on_epoch_end(model, 0)  # still warming up
    assert (method.pseudo == 0).all()
    method.on_epoch_end(rows, 1)  # ceil(0.25 * 8) = 2 labels: p=0.01 at (0,2), p=0.99 at (3,1)
    assert method.pseudo.tolist() == [[0, 0, -1], [0, 0, 0], [0, 0, 0], [0, 1, 0]]
    b = Batch(torch.zeros(2, 1), torch.tensor(labels[[3, 0]], dtype=torch.float32), torch.tensor([3, 0]))
    assert method.current_labels(b).tolist() == [[-1, 1, 0], [1, 0, -1]]
    method.load_state_dict(method.state_dict())
    assert method.pseudo.tolist() == [[0, 0, -1], [0, 0, 0], [0, 0, 0], [0, 1, 0]]


# --- mixup ------------------------------------------------------------------------------------


def test_mixup_targets_only_where_known_in_both_images():
    a = torch.tensor([[1.0, -1.0, 0.0, 1.0, -1.0]])
    b = torch.tensor([[1.0, 1.0, 1.0, 0.0, -1.0]])
    targets, mask = mixup_targets(a, b, 0.7)
    assert mask.tolist() == [[1, 1, 0, 0, 1]]
    assert torch.allclose(targets * mask, torch.tensor([[1.0, 0.3, 0.0, 0.0, 0.0]]))


def test_mixup_losses_by_hand():
    logits = torch.tensor([[logit(0.6), logit(0.2), logit(0.5)]])
    a = torch.tensor([[1.0, -1.0, 0.0]])
    b = torch.tensor([[-1.0, -1.0, 1.0]])
    both = mixup_loss(logits, a, b, 0.75, "both").item()
    assert both == pytest.approx((bce(0.6, 0.75) + bce(0.2, 0.0)) / 2, rel=1e-5)
    mixed = mixup_loss(logits, a, b, 0.75, "loss-mix").item()
    expected = 0.75 * (bce(0.6, 1) + bce(0.2, 0)) / 2 + 0.25 * (bce(0.6, 0) + bce(0.2, 0) + bce(0.5, 1)) / 3
    assert mixed == pytest.approx(expected, rel=1e-5)


def test_ip_mixup_feeds_the_mixed_images_to_the_model():
    images = torch.arange(4 * 3 * 2 * 2, dtype=torch.float32).view(4, 3, 2, 2)
    labels = torch.tensor([[1.0, -1.0], [0.0, 1.0], [-1.0, -1.0], [1.0, 0.0]])
    seen = []

    class Recorder(torch.nn.Module):
        backbone = torch.nn.Identity()

        def forward(self, x):
            seen.append(x.clone())
            return torch.zeros(x.shape[0], 2)

    ctx = ctx_for(labels.int().numpy())
    method = PixelMixup(PixelMixup.make_options({"model": "linear"}), ctx)
    expected_gen = torch.Generator().manual_seed(0)
    lam, perm = sample_mixup(4, 1.0, expected_gen)
    out = method.training_step(Recorder(), Batch(images, labels, torch.arange(4)), 0)
    assert torch.allclose(seen[0], lam * images + (1 - lam) * images[perm])
    assert out["loss"].item() == pytest.approx(mixup_loss(torch.zeros(4, 2), labels, labels[perm], lam).item())


# --- SSGRL with pseudo labels -----------------------------------------------------------------


def test_confidence_pseudo_labels_only_fill_unknown_entries():
    probs = torch.tensor([[0.97, 0.96, 0.02, 0.5]])
    labels = torch.tensor([[0.0, -1.0, 0.0, 0.0]])
    assert confidence_pseudo_labels(probs, labels, 0.95).tolist() == [[1, -1, 0, 0]]
    assert confidence_pseudo_labels(probs, labels, 0.95, negatives=True).tolist() == [[1, -1, -1, 0]]


# --- options --------------------------------------------------------------------------------


@pytest.mark.parametrize("cls, overrides", [
    (Focal, {"unknown": "maybe"}), (ASL, {"margin": "2"}), (BCELabelSmoothing, {"scheme": "x"}),
    (LargeLossRejection, {"rate_of": "some"}), (CurriculumLabeling, {"strategy": "random"}),
    (PixelMixup, {"label_rule": "either"}), (ROLE, {"init_width": "0.7"}),
])
def test_bad_options_are_one_line_bench_errors(cls, overrides):
    with pytest.raises(BenchError) as info:
        cls(cls.make_options(overrides), ctx_for(LABELS))
    assert "\n" not in str(info.value) and cls.name in str(info.value) and next(iter(overrides)) in str(info.value)


# --- profiles ---------------------------------------------------------------------------------

BASELINES = [BCELabelSmoothing, Focal, ASL, AssumeNegative, WeakAssumeNegative, ExpectedPositiveRegularization,
             ROLE, CurriculumLabeling, LargeLossRejection, PixelMixup]


@pytest.mark.parametrize("cls", BASELINES, ids=lambda c: c.name)
def test_paper_profiles_name_only_train_config_or_option_fields(cls):
    valid = TrainConfig.field_names() | {f.name for f in cls.option_fields()}
    assert "paper" in cls.profiles
    assert set(cls.profiles["paper"]) <= valid, set(cls.profiles["paper"]) - valid


def test_ll_r_paper_profile_gives_the_classifier_ten_times_the_learning_rate():
    from mlrpl_bench.models.heads import PooledLinearClassifier

    method = LargeLossRejection(LargeLossRejection.make_options({"classifier_lr_mult": "10"}), ctx_for(LABELS))
    model = PooledLinearClassifier(SmallCNN(width=4, out_channels=8), 3)
    optimizer, _ = method.configure_optimizers(model, TrainConfig(lr=1e-5))
    lrs = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert lrs[id(model.classifier.weight)] == pytest.approx(1e-4)
    assert lrs[id(model.backbone.features[0][0].weight)] == pytest.approx(1e-5)
    assert len(lrs) == len(list(model.parameters()))


def test_fm_mixup_runs_ssgrl_from_the_backbone_maps_exactly_like_its_forward():
    from mlrpl_bench.plugins._sarl.model import ssgrl_logits_from_backbone_maps
    from mlrpl_bench.plugins.fm_mixup import FeatureMapMixup

    torch.manual_seed(0)
    labels = [[1, -1, 0], [0, 1, 0], [1, 0, -1]]
    method = FeatureMapMixup(FeatureMapMixup.make_options({}), ctx_for(labels))
    model = method.build_model(SmallCNN(width=4, out_channels=8)).eval()
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(ssgrl_logits_from_backbone_maps(model, model.backbone(x)), model(x), atol=1e-6)


def test_ll_ct_trains_the_selected_entries_towards_positive():
    logits = torch.tensor([[logit(0.9), logit(0.2)], [logit(0.6), logit(0.1)]])
    labels = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    loss, keep = ll_r_loss(logits, labels, rate=0.25, correct=True)
    assert keep.tolist() == [[0, 1], [1, 1]]
    assert loss.item() == pytest.approx((bce(0.9, 1) + bce(0.2, 0) + bce(0.6, 1) + bce(0.1, 0)) / 4, rel=1e-5)


def test_ll_cp_flips_selected_entries_permanently_per_image():
    logits = torch.tensor([[logit(0.9), logit(0.2)], [logit(0.6), logit(0.1)]])
    labels = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    method = LargeLossRejection(LargeLossRejection.make_options({"mode": "cp", "delta_rel": "25"}),
                                ctx_for([[0, 0], [1, 0], [0, 0]]))
    b = Batch(torch.zeros(2, 1), labels, torch.tensor([2, 1]))  # dataset rows 2 and 1
    method.training_step(FixedLogits(logits), b, 0)  # first epoch: nothing selected
    assert (method.corrected == 0).all()
    method.training_step(FixedLogits(logits), b, 1)  # k = ceil(0.25 * 4) = 1: row 2, class 0 (p = 0.9)
    assert method.corrected.tolist() == [[0, 0], [0, 0], [1, 0]]
    restored = LargeLossRejection(LargeLossRejection.make_options({"mode": "cp"}), ctx_for([[0, 0], [1, 0], [0, 0]]))
    restored.load_state_dict(method.state_dict())
    assert torch.equal(restored.corrected, method.corrected)
    # Next step: the flipped entry is now a positive label, and the next-largest unknown goes.
    out = method.training_step(FixedLogits(logits), b, 1)
    expected = (bce(0.9, 1) + bce(0.2, 1) + bce(0.6, 1) + bce(0.1, 0)) / 4
    assert out["loss"].item() == pytest.approx(expected, rel=1e-5)
    assert method.corrected.tolist() == [[0, 0], [0, 0], [1, 1]]
