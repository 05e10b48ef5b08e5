"""One test per row of docs/fidelity.md: each builds a plugin with its *default* options, computes
the behaviour on small hand-checkable tensors, and fails if the default changes (the named option
value gives the other behaviour). The rows' tests in other files are listed in the table."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from mlrpl_bench.losses import partial_bce
from mlrpl_bench.method import Batch, MethodContext
from mlrpl_bench.models.backbones import SmallCNN
from mlrpl_bench.models.sarl import ChannelReduction, GatedGNN, SARLOutput
from mlrpl_bench.plugins._blending.functions import map_prototype_sums
from mlrpl_bench.plugins._blending.model import DSRBOutput
from mlrpl_bench.plugins._semantic_transfer.model import CooccurrenceHead, OfficialCooccurrenceHead, TransferOutput
from mlrpl_bench.plugins.dsrb import DSRB
from mlrpl_bench.plugins.hst import HST
from mlrpl_bench.plugins.ipl import ImbalancePseudoLabeling
from mlrpl_bench.plugins.ssgrl import SSGRL
from mlrpl_bench.plugins.sst import SST

SQ2 = 1 / math.sqrt(2)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ctx_for(labels, epochs=1, steps=1, batches=None, words=5):
    labels = np.asarray(labels, dtype=np.int8)
    c = labels.shape[1]
    return MethodContext(num_classes=c, class_names=[f"c{i}" for i in range(c)], train_labels=labels,
                         word_embeddings=np.random.default_rng(0).random((c, words)).astype(np.float32), epochs=epochs,
                         steps_per_epoch=steps, setting="pal", known=0.5, seed=0,
                         feature_batches=batches or (lambda: iter(())), generator=torch.Generator().manual_seed(0))


def method_of(cls, labels, overrides=None, **ctx_kwargs):
    return cls(cls.make_options(overrides or {}), ctx_for(labels, **ctx_kwargs))


def batch_of(labels):
    labels = torch.as_tensor(labels, dtype=torch.float32)
    return Batch(torch.zeros(labels.shape[0], 1), labels, torch.arange(labels.shape[0]))


def bce(logit: float, positive: bool) -> float:
    """-log σ(±logit)."""
    return math.log1p(math.exp(-logit if positive else logit))


class FixedTransfer(nn.Module):
    """Stands in for the SST/HST model: fixed logits, category features and co-occurrence logits
    (all parameters, so gradients can be inspected), optional learned thresholds."""

    def __init__(self, logits, features, cooc_logits=None, thresholds=None):
        super().__init__()
        self.logits = nn.Parameter(torch.as_tensor(logits, dtype=torch.float32))
        self.features = nn.Parameter(torch.as_tensor(features, dtype=torch.float32))
        self.cooc = nn.Parameter(torch.as_tensor(cooc_logits, dtype=torch.float32)) if cooc_logits is not None else None
        self.thresholds = nn.Parameter(torch.as_tensor(thresholds, dtype=torch.float32)) if thresholds is not None else None
        self.feature_dim = self.features.shape[-1]

    def category_features(self, x):
        return self.features[: x.shape[0]], None, None

    def forward(self, x, return_all=False, blend=None):
        b, c = self.logits.shape
        sarl = SARLOutput(self.logits, self.features, self.features, self.features, torch.zeros(b, c, 1, 1), None)
        return TransferOutput(sarl, self.cooc, None)


# ---------------------------------------------------------------------------------------------
# The SARL model (ssgrl, ssgrl-pl, the mixups, sst, hst, dsrb)
# ---------------------------------------------------------------------------------------------


def ssgrl_model(labels=((1, 1, 0), (1, -1, 0)), overrides=None, channels=8):  # D = 8 // 2 = 4
    method = method_of(SSGRL, labels, overrides)
    torch.manual_seed(0)
    return method, method.build_model(SmallCNN(width=4, out_channels=channels))


def test_sd_attention_has_no_activation_between_its_two_layers():
    _, model = ssgrl_model()
    sd = model.semantic  # D = 4, hidden = 2
    with torch.no_grad():
        sd.img_proj.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
        sd.word_proj.weight.fill_(0.2)  # word vectors of ones (5-d) -> [1, 1]
        sd.fc_z.weight.copy_(3 * torch.eye(2))
        sd.fc_z.bias.zero_()
        sd.fc_a.weight.fill_(1.0)
        sd.fc_a.bias.zero_()
    fmap = torch.zeros(1, 4, 1, 2)
    fmap[0, 0, 0, 0] = 1.0  # location 0: f = e_0; location 1: f = 0
    _, att = sd(fmap, torch.ones(3, 5))
    # logit = fc_a(fc_z(tanh(U f ⊙ V w))) = 3·tanh(1) at location 0, 0 at location 1
    want = 1 / (1 + math.exp(-3 * math.tanh(1.0)))
    assert att[0, 0, 0, 0].item() == pytest.approx(want, rel=1e-5)
    # (a tanh after fc_z would give σ(tanh(3·tanh 1)) = 0.727)
    assert abs(att[0, 0, 0, 0].item() - 1 / (1 + math.exp(-math.tanh(3 * math.tanh(1.0))))) > 0.1


def test_ggnn_gates_are_two_linears_each():
    _, model = ssgrl_model()
    gnn = model.gnn
    for gate in ("update", "reset", "candidate"):
        w, u = getattr(gnn, f"{gate}_w"), getattr(gnn, f"{gate}_u")
        assert (w.in_features, w.out_features, u.in_features, u.out_features) == (8, 4, 4, 4)
        assert w.bias is not None and u.bias is not None
    # one step of a 1-d GGNN on a 2-node graph, every weight 1 and bias 0, h = [1, 0]
    one = GatedGNN(1, 1, np.array([[1.0, 1.0], [0.0, 1.0]]))
    with torch.no_grad():
        for p in one.parameters():
            p.copy_(torch.ones_like(p) if p.dim() == 2 else torch.zeros_like(p))
    h = one(torch.tensor([[[1.0], [0.0]]]))
    # node 1: a = [A h, Aᵀ h] = [0, 1]; z = r = σ(0 + 1 + 0) ; ĥ = tanh(1 + 0) ; h' = z ĥ
    s = 1 / (1 + math.exp(-1.0))
    assert h[0, 1, 0].item() == pytest.approx(s * math.tanh(1.0), rel=1e-5)


def test_label_graph_keeps_the_diagonal():
    _, model = ssgrl_model()
    # P(0|0) = 1; P(1|0) = 1/2 (class 1 known positive in 1 of class 0's 2 images); class 2 has none
    assert model.gnn.adjacency.tolist() == [[1.0, 0.5, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    _, zero = ssgrl_model(overrides={"graph_diagonal": "zero"})
    assert torch.diagonal(zero.gnn.adjacency).tolist() == [0.0, 0.0, 0.0]


def test_channel_reduction_only_when_dims_differ():
    # The default D is half the backbone's channels (the official 2048 -> 1024 ratio): 8 -> 4.
    default = method_of(SST, [[1, 0], [0, 1]]).build_model(SmallCNN(width=4, out_channels=8))
    assert isinstance(default.reduce, ChannelReduction) and default.reduce.conv.weight.shape == (4, 8, 1, 1)
    same = method_of(SST, [[1, 0], [0, 1]], {"feature_dim": 8})
    assert isinstance(same.build_model(SmallCNN(width=4, out_channels=8)).reduce, nn.Identity)
    always = method_of(SST, [[1, 0], [0, 1]], {"channel_reduction": "always", "feature_dim": 8})
    assert isinstance(always.build_model(SmallCNN(width=4, out_channels=8)).reduce, ChannelReduction)


class FixedLogits(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(torch.as_tensor(logits, dtype=torch.float32))

    def forward(self, x, return_all=False):
        b, c = self.logits.shape
        return SARLOutput(self.logits, torch.zeros(b, c, 1), None, None, None, None)


def test_partial_bce_is_the_mean_over_the_batchs_known_entries():
    labels = [[1, 0, 0, 0], [1, 1, 1, 0]]
    logits = [[0.0, 0, 0, 0], [20.0, 20.0, 20.0, 0]]
    method = method_of(SSGRL, labels)
    loss = method.training_step(FixedLogits(logits), batch_of(labels), 0)["loss"].item()
    # four known entries: log 2 and three ~0 -> log 2 / 4 (per image: (log 2 + 0) / 2)
    assert loss == pytest.approx(math.log(2) / 4, rel=1e-6)
    paper = method_of(SSGRL, labels, {"bce_reduction": "image"})
    assert paper.training_step(FixedLogits(logits), batch_of(labels), 0)["loss"].item() == pytest.approx(math.log(2) / 2, rel=1e-6)


# ---------------------------------------------------------------------------------------------
# IST (sst, hst)
# ---------------------------------------------------------------------------------------------


def test_ist_head_is_the_official_pairwise_head():
    method = method_of(SST, [[1, 0, 1, 0], [0, 1, 0, 1]])
    torch.manual_seed(0)
    model = method.build_model(SmallCNN(width=4, out_channels=16))  # D = 8
    head = model.ist_head
    assert isinstance(head, OfficialCooccurrenceHead)
    assert head.classifier.weight.shape == (6, 8)  # C(C-1)/2 = 6 pairs, one weight vector each
    assert (head.fc1.in_features, head.fc1.out_features, head.fc2.in_features, head.fc3.in_features) == (8, 4, 8, 8)
    feats = torch.randn(2, 4, 8)
    logits = head(feats)
    assert torch.equal(logits, logits.transpose(1, 2))  # p_ij = p_ji
    assert torch.allclose(logits[:, 0, 1:], head.naive_pair_logits(feats)[:, :3], atol=1e-5)  # pairs (0,1), (0,2), (0,3)
    paper = method_of(SST, [[1, 0, 1, 0], [0, 1, 0, 1]], {"ist_head": "paper"})
    assert isinstance(paper.build_model(SmallCNN(width=4, out_channels=8)).ist_head, CooccurrenceHead)


P = torch.tensor([[[0.9, 0.2, 0.7], [0.4, 0.8, 0.6], [0.3, 0.5, 0.1]]])
Y = torch.tensor([[1.0, 0.0, 1.0]])


def test_ist_score_is_the_mean_over_known_positives():
    # unknown class 1: (p_10 + p_12) / 2 = (0.4 + 0.6) / 2
    assert method_of(SST, [[1, 0, 1]]).intra_scores(P, Y)[0, 1].item() == pytest.approx(0.5)
    assert method_of(SST, [[1, 0, 1]], {"ist_score": "sum"}).intra_scores(P, Y)[0, 1].item() == pytest.approx(1.0)


def test_ist_score_counts_a_known_positive_itself():
    # known positive 0: (P(0,0) = 1 + p_02 = 0.7) / 2 known positives
    assert method_of(HST, [[1, 0, 1]]).intra_scores(P, Y)[0, 0].item() == pytest.approx(0.85)
    exclude = method_of(HST, [[1, 0, 1]], {"ist_self": "exclude"})
    assert exclude.intra_scores(P, Y)[0, 0].item() == pytest.approx(0.7)
    paper = method_of(HST, [[1, 0, 1]], {"ist_self": "matrix", "ist_score": "sum", "ist_head": "paper"})
    assert paper.intra_scores(P, Y)[0, 0].item() == pytest.approx(1.6)  # p_00 + p_02


def test_ist_loss_is_asl_with_shifted_probability():
    labels = [[1, -1]]
    cooc = torch.full((1, 2, 2), math.log(3.0))  # p = 0.75 for the pair {0, 1}: a negative pair
    method = method_of(SST, labels, {"modules": "ist"})
    out = method.training_step(FixedTransfer([[0.0, 0.0]], torch.ones(1, 2, 2), cooc), batch_of(labels), 0)
    # ASL: p_m = 0.70, -p_m^2 · log(1 - p_m)
    assert out["ist"].item() == pytest.approx(-0.49 * math.log(0.3), rel=1e-5)
    paper = method_of(SST, labels, {"modules": "ist", "ist_loss_form": "paper"})
    out = paper.training_step(FixedTransfer([[0.0, 0.0]], torch.ones(1, 2, 2), cooc), batch_of(labels), 0)
    assert out["ist"].item() == pytest.approx(-0.49 * math.log(0.25), rel=1e-5)


# ---------------------------------------------------------------------------------------------
# CST and the contrastive losses (sst, hst, dsrb)
# ---------------------------------------------------------------------------------------------

# 3 images, 1 category: f0 = f1 = e_0, f2 = (e_0 + e_1); images 0, 1 positive, image 2 negative.
F3 = torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]], [[1.0, 1.0]]])
Y3 = [[1], [1], [-1]]
SAMPLED = (0.0 + 3 * (1 + SQ2)) / 4  # 1 pos-pos pair; pos-neg cut to 2 random + 1 hardest (a duplicate)
ALL = 4 * (1 + SQ2) / 6  # every ordered pair


def test_contrastive_pairs_are_known_and_subsampled():
    method = method_of(SST, Y3, {"modules": "cst"})
    out = method.training_step(FixedTransfer([[0.0]] * 3, F3), batch_of(Y3), 0)
    assert out["cst"].item() == pytest.approx(SAMPLED, rel=1e-5)
    paper = method_of(SST, Y3, {"modules": "cst", "cst_pairs": "all"})
    assert paper.training_step(FixedTransfer([[0.0]] * 3, F3), batch_of(Y3), 0)["cst"].item() == pytest.approx(ALL, rel=1e-5)


def test_auxiliary_losses_ramp_over_the_first_epoch():
    # 20 epochs of 4 steps: the ramp is the first epoch, weights 0, 1/4, 2/4, 3/4, then 1
    method = method_of(SST, Y3, {"modules": "cst"}, epochs=20, steps=4)
    method.on_epoch_start(None, 0)
    model = FixedTransfer([[0.0]] * 3, F3)
    for step in range(4):
        out = method.training_step(model, batch_of(Y3), 0)
        assert out["loss"].item() - out["cls"].item() == pytest.approx(step / 4 * 0.05 * SAMPLED, abs=1e-6)
    method.on_epoch_start(None, 1)
    out = method.training_step(model, batch_of(Y3), 1)
    assert out["loss"].item() - out["cls"].item() == pytest.approx(0.05 * SAMPLED, abs=1e-6)
    paper = method_of(SST, Y3, {"modules": "cst", "aux_ramp_epochs": 0}, epochs=20, steps=4)
    paper.on_epoch_start(None, 0)
    out = paper.training_step(model, batch_of(Y3), 0)
    assert out["loss"].item() - out["cls"].item() == pytest.approx(0.05 * SAMPLED, abs=1e-6)


def test_sst_cross_scores_average_a_zero_initialised_bank_updated_first():
    labels = [[1], [0]]
    feats = torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]]])
    method = method_of(SST, labels, {"modules": "cst", "bank_size": 4})
    method.update_bank(feats, torch.tensor([[1.0], [0.0]]))
    scores, _ = method.cross_scores(feats, torch.tensor([[1.0], [0.0]]))
    assert scores[1, 0].item() == pytest.approx(1 / 4)  # one positive, three empty slots
    # the bank is updated before the scores: the step's own known positive makes the pseudo label
    first = method_of(SST, labels, {"modules": "cst", "bank_size": 1})  # 1-epoch run: θ = 0.95 at epoch 0
    out = first.training_step(FixedTransfer([[0.0], [0.0]], feats), batch_of(labels), 0)
    assert out["pseudo_cross"].item() == pytest.approx(0.5)  # image 1's unknown entry, mean over 2 images
    paper = method_of(SST, labels, {"modules": "cst", "cst_reference": "batch"})
    scores, _ = paper.cross_scores(feats, torch.tensor([[1.0], [0.0]]))
    assert scores[1, 0].item() == pytest.approx(1.0)  # the batch's positives only


# ---------------------------------------------------------------------------------------------
# HST: pseudo targets, DTL, thresholds, prototypes
# ---------------------------------------------------------------------------------------------

HL = [[1, 0]]  # one image: class 0 known positive, class 1 unknown
H_COOC = torch.tensor([[[0.0, math.log(9.0)], [math.log(9.0), 0.0]]])  # p_01 = 0.9


def hst_step(overrides=None, theta=0.5, logits=((2.0, -1.0),), cooc=H_COOC, labels=HL):
    method = method_of(HST, labels, overrides)
    model = FixedTransfer(logits, torch.ones(1, 2, 2), cooc.clone(), thresholds=[theta, theta])
    return method, model, method.training_step(model, batch_of(labels), 0)


def test_hst_pseudo_targets_are_known_plus_pseudo():
    _, _, out = hst_step()
    # intra score of class 1 = 0.9 > θ: pseudo positive. No prototypes yet: the cross target = known.
    # cls = BCE(known) + BCE(known + intra pseudo over 2 entries) + BCE(known)
    a, b = bce(2.0, True), bce(-1.0, True)
    assert out["cls"].item() == pytest.approx(a + (a + b) / 2 + a, rel=1e-5)
    _, _, paper = hst_step({"pseudo_target": "pseudo"})
    # known entries zeroed: the intra target is class 1 only, the cross target is empty
    assert paper["cls"].item() == pytest.approx(a + b, rel=1e-5)


def test_hst_dtl_scores_the_soft_label_as_logit():
    _, _, out = hst_step(theta=0.5)
    # the known positive 0 scores P(0,0) = 1 (its only known positive is itself): soft label
    # clamp(1 − 0.5, 0, 1) = 0.5 is the BCE logit; no prototype yet, so no cross term
    assert out["dtl"].item() == pytest.approx(bce(0.5, True), rel=1e-5)
    _, _, paper = hst_step({"dtl_form": "paper"}, theta=0.5)  # (1 − 0.5) / τ = 5 as the logit
    assert paper["dtl"].item() == pytest.approx(bce(5.0, True), rel=1e-5)
    # strict: an unknown score equal to θ makes no pseudo label (soft label 0)
    _, _, equal = hst_step(theta=0.9)
    assert equal["pseudo_intra"].item() == 0.0
    _, _, paper_equal = hst_step({"dtl_form": "paper"}, theta=0.9)
    assert paper_equal["pseudo_intra"].item() == 1.0


def test_hst_dtl_trains_the_scores_too():
    def cooc_grad(overrides):
        _, model, out = hst_step(overrides, theta=0.5, cooc=torch.zeros(1, 2, 2), labels=[[1, 1]])
        out["loss"].backward()
        return model.cooc.grad[0, 0, 1].item()

    # two known positives, p_01 = 0.5: score_0 = (1 + p_01) / 2 = 0.75, soft label 0.25. Detached
    # scores leave the co-occurrence logits L_ist's gradient only; the official DTL adds
    # 0.1 · (1/2 known entries) · (σ(0.25) − 1) · (1/2 of the mean) · σ'(0) = 1/4
    default, detached = cooc_grad({}), cooc_grad({"dtl_detach_scores": True})
    sig = 1 / (1 + math.exp(-0.25))
    assert default - detached == pytest.approx(0.1 * 0.5 * (sig - 1) * 0.5 * 0.25, rel=1e-4)


def test_hst_prototype_contrastive_term_with_the_official_sign():
    labels = [[1, -1]]
    method = method_of(HST, labels, {"modules": "cst"})
    method.prototypes = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # one prototype per class
    method.prototype_valid = torch.ones(2, 1, dtype=torch.bool)
    feats = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])  # s = [1, 1/√2]
    model = FixedTransfer([[0.0, 0.0]], feats, thresholds=[1.0, 1.0])
    out = method.training_step(model, batch_of(labels), 0)
    assert out["proto"].item() == pytest.approx(((1 + 1) + (1 - SQ2)) / 2, rel=1e-5)
    none = method_of(HST, labels, {"modules": "cst", "prototype_loss": "none"})
    none.prototypes, none.prototype_valid = method.prototypes, method.prototype_valid
    assert none.training_step(model, batch_of(labels), 0)["proto"].item() == 0.0


def test_hst_prototypes_are_sklearn_kmeans_centres():
    from sklearn.cluster import KMeans

    g = torch.Generator().manual_seed(0)
    feats = torch.randn(12, 1, 3, generator=g)
    labels = np.ones((12, 1), dtype=np.int8)
    batches = [Batch(torch.zeros(12, 1), torch.ones(12, 1), torch.arange(12))]
    method = HST(HST.make_options({}), ctx_for(labels, batches=lambda: iter(batches)))
    model = FixedTransfer(torch.zeros(12, 1), feats)
    method.compute_prototypes(model, epoch=5)
    assert method.prototypes.shape == (1, 10, 3) and method.prototype_valid.all()  # K = 10
    want = KMeans(n_clusters=10, n_init=10, random_state=5).fit(feats[:, 0].numpy()).cluster_centers_
    assert np.allclose(method.prototypes[0].numpy(), want, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# DSRB
# ---------------------------------------------------------------------------------------------


class FixedBlend(nn.Module):
    def __init__(self, logits, features, coefficient_shape=()):
        super().__init__()
        self.logits = nn.Parameter(torch.as_tensor(logits, dtype=torch.float32))
        self.features = nn.Parameter(torch.as_tensor(features, dtype=torch.float32))
        self.alpha = nn.Parameter(torch.full(coefficient_shape, 0.5))
        self.beta = nn.Parameter(torch.full(coefficient_shape, 0.5))

    def clamp_blend_parameters(self):
        pass

    def forward(self, x, return_all=False, blend=None):
        return DSRBOutput(self.logits, self.features, None, None, None, None)


def test_dsrb_coefficients_are_scalars():
    labels = [[1, 0, 0], [0, 1, -1]]
    method = method_of(DSRB, labels)
    model = method.build_model(SmallCNN(width=4, out_channels=8))
    assert model.alpha.shape == () and model.beta.shape == ()
    per_class = method_of(DSRB, labels, {"coefficients": "per-class"}).build_model(SmallCNN(width=4, out_channels=8))
    assert per_class.alpha.shape == (3,)


def test_dsrb_bce_is_the_mean_over_known_entries_including_blended_ones():
    labels = [[1, 0, 0, 0], [1, 1, 1, 0]]
    logits = [[0.0, 0, 0, 0], [20.0, 20.0, 20.0, 0]]
    method = method_of(DSRB, labels, {"contrastive_weight": 0.0})
    out = method.training_step(FixedBlend(logits, torch.ones(2, 4, 1)), batch_of(labels), 0)
    assert out["loss"].item() == pytest.approx(math.log(2) / 4, rel=1e-5)
    # the blended predictions: soft label 0.5 on one entry, a known negative on another
    blended = {"iprb": (torch.zeros(1, 2), torch.tensor([[0.5, -1.0]]), torch.tensor([[True, False]]))}
    loss, _ = method.blender.blended_loss(blended, torch.zeros(()))
    assert loss.item() == pytest.approx(math.log(2), rel=1e-5)  # both entries cost log 2 at logit 0
    paper = method_of(DSRB, labels, {"contrastive_weight": 0.0, "bce_reduction": "image"})
    out = paper.training_step(FixedBlend(logits, torch.ones(2, 4, 1)), batch_of(labels), 0)
    assert out["loss"].item() == pytest.approx(math.log(2) / 2, rel=1e-5)


def test_dsrb_contrastive_is_sampled_and_ramped():
    method = method_of(DSRB, Y3, epochs=20, steps=4)
    method.on_epoch_start(None, 0)
    model = FixedBlend([[0.0]] * 3, F3)
    out = method.training_step(model, batch_of(Y3), 0)
    assert out["loss_contrastive"].item() == pytest.approx(SAMPLED, rel=1e-5)
    cls = (2 * math.log(2) + math.log(2)) / 3
    assert out["loss"].item() == pytest.approx(cls, rel=1e-5)  # step 0 of the ramp: weight 0
    out = method.training_step(model, batch_of(Y3), 0)
    assert out["loss"].item() == pytest.approx(cls + 0.25 * 0.05 * SAMPLED, rel=1e-5)
    paper = method_of(DSRB, Y3, {"contrastive_pairs": "all", "aux_ramp_epochs": 0}, epochs=20, steps=4)
    out = paper.training_step(model, batch_of(Y3), 0)
    assert out["loss_contrastive"].item() == pytest.approx(ALL, rel=1e-5)


def test_dsrb_map_prototypes_count_the_official_zero_map():
    rng = np.random.default_rng(0)
    labels = rng.choice([-1, 0, 1], size=(10, 3), p=[0.2, 0.2, 0.6]).astype(np.int8)
    images = torch.from_numpy(rng.normal(size=(10, 3, 16, 16)).astype(np.float32))
    batches = [Batch(images[:5], torch.from_numpy(labels[:5]).float(), torch.arange(5)),
               Batch(images[5:], torch.from_numpy(labels[5:]).float(), torch.arange(5, 10))]
    protos = {}
    for maps in ("official", "all"):
        method = DSRB(DSRB.make_options({} if maps == "official" else {"prototype_maps": "all"}),
                      ctx_for(labels, epochs=4, batches=lambda: iter(batches)))
        torch.manual_seed(0)
        model = method.build_model(SmallCNN(width=4, out_channels=8))
        method.blender.compute_prototypes(model, epoch=1)
        protos[maps] = method.blender.prototypes
    model.eval()
    with torch.no_grad():
        counts = sum(map_prototype_sums(model.category_maps(b.inputs)[0], b.labels)[1] for b in batches)
    n = counts.reshape(3, 4, 1, 1, 1)
    # at most 100 maps per region (all of them here): each region's mean is divided by n + 1
    expected = torch.where(n > 0, protos["all"] * n / (n + 1), protos["all"])
    assert torch.allclose(protos["official"], expected, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# IPL (no official code: the paper is the spec; its printed equations are the paper-literal profile)
# ---------------------------------------------------------------------------------------------


def test_ipl_coefficients_follow_the_prose():
    labels = np.array([[1, 0, -1, 0], [0, 0, -1, -1]], dtype=np.int8)
    method = method_of(ImbalancePseudoLabeling, labels, epochs=10)
    probs = torch.tensor([[0.05, 0.02, 0.01, 0.09], [0.5, 0.2, 0.1, 0.3]])
    alpha, beta, d, p = method.coefficients(torch.from_numpy(labels).float(), probs, epoch=7)
    assert (alpha, beta) == pytest.approx((0.875, 0.125))  # β = max(1 positive / 8 entries, 0.05)
    assert d == pytest.approx(1.0)  # prose eq. 9: exp((7 + 3) / 10 - 1) = 1 at epoch E - m
    assert p.tolist() == [2.0, 1.0]  # prose eq. 10: 2 when every prediction is below 0.1
    printed = method_of(ImbalancePseudoLabeling, labels, ImbalancePseudoLabeling.profiles["paper-literal"], epochs=10)
    _, _, d, p = printed.coefficients(torch.from_numpy(labels).float(), probs, epoch=7)
    assert d == pytest.approx(math.e) and p.tolist() == [1.0, 2.0]


class PlainLogits(nn.Module):
    """A linear-head stand-in whose logits are one trainable tensor (the inputs are ignored)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(torch.as_tensor(logits, dtype=torch.float32).clone())

    def forward(self, inputs):
        return self.logits


def test_ipl_alpha_beta_weigh_the_existing_labels_only():
    # An unknown entry predicted exactly at its pseudo label: with α/β on the existing labels
    # only (default) its loss is flat there, so the pseudo label stays; the printed eq. 12
    # (paper-literal) weighs it by α = 0.95 / β = 0.05 and pushes the prediction up (drift).
    labels = np.array([[1, -1, 0, 0]], dtype=np.int8)
    pseudo = torch.tensor([[0.5, 0.5, 0.3, 0.6]])
    grads = {}
    for name, overrides in (("default", {}), ("literal", ImbalancePseudoLabeling.profiles["paper-literal"])):
        method = method_of(ImbalancePseudoLabeling, labels, {**overrides, "without_q": True}, epochs=10)
        method.pseudo_labels = pseudo.clone()
        model = PlainLogits(torch.logit(pseudo))
        method.training_step(model, batch_of(labels), epoch=7)["loss"].backward()
        grads[name] = model.logits.grad[0, 2:]
    assert torch.allclose(grads["default"], torch.zeros(2), atol=1e-7)
    assert (grads["literal"] < 0).all()


# ---------------------------------------------------------------------------------------------
# the paper-literal profiles
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [SSGRL, SST, HST, DSRB, ImbalancePseudoLabeling])
def test_paper_literal_profile_changes_only_declared_options(cls):
    profile = cls.profiles["paper-literal"]
    defaults = cls.make_options({})
    options = cls.make_options(profile)
    assert profile and all(getattr(options, k) == v != getattr(defaults, k) for k, v in profile.items())


def test_partial_bce_entries_reduction_by_hand():
    logits = torch.tensor([[0.0, 5.0], [0.0, 0.0]])
    labels = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    assert partial_bce(logits, labels, reduction="entries").item() == pytest.approx(math.log(2), rel=1e-6)
    assert partial_bce(logits, torch.zeros(2, 2), reduction="entries").item() == 0.0
