"""The shared SARL model pieces: label graph, SD, SA, GGNN, SARLModel."""

import numpy as np
import pytest
import torch
from torch import nn

from mlrpl_bench.errors import BenchError
from mlrpl_bench.losses import partial_bce
from mlrpl_bench.models.backbones import SmallCNN
from mlrpl_bench.models.sarl import (
    ChannelReduction, GatedGNN, SARLModel, SemanticAttention, SemanticDecoupling, build_label_graph, cam_loss,
)


def test_label_graph_is_conditional_cooccurrence_of_known_positives():
    labels = np.array([[1, 1, 0], [1, -1, 0], [1, 1, -1], [0, 1, -1]], dtype=np.int8)
    graph = build_label_graph(labels)
    # class 0 known positive in 3 images, with class 1 in 2 of them: P(1|0) = 2/3.
    assert graph[0, 1] == pytest.approx(2 / 3)
    # class 1 positive in 3 images (rows 0, 2, 3), with class 0 in 2: P(0|1) = 2/3.
    assert graph[1, 0] == pytest.approx(2 / 3)
    # official get_graph_file: each row divided by its diagonal, so P(i|i) = 1 stays
    assert np.diag(graph).tolist() == [1.0, 1.0, 0.0]
    # class 2 has no known positive: zero row and column, no NaN (unknowns are not negatives).
    assert np.all(graph[2] == 0) and np.all(graph[:, 2] == 0)
    assert np.isfinite(graph).all()
    assert np.all(np.diag(build_label_graph(labels, self_loops=False)) == 0)


def test_label_graph_without_any_positive_has_no_nan_and_gnn_runs():
    labels = np.zeros((5, 4), dtype=np.int8)
    graph = build_label_graph(labels)
    assert np.isfinite(graph).all() and graph.sum() == 0
    gnn = GatedGNN(6, 3, graph)
    out = gnn(torch.randn(2, 4, 6))
    assert torch.isfinite(out).all()


def test_gnn_rejects_non_square_and_nan_adjacency():
    with pytest.raises(BenchError):
        GatedGNN(4, 3, np.zeros((3, 2)))
    with pytest.raises(BenchError, match="NaN"):
        GatedGNN(4, 3, np.full((2, 2), np.nan))


def test_gnn_propagates_only_along_edges():
    torch.manual_seed(0)
    adj = np.array([[0, 1, 0], [0, 0, 0], [0, 0, 0]], dtype=np.float32)
    gnn = GatedGNN(4, 1, adj)
    h = torch.randn(1, 3, 4)
    base = gnn(h)
    h2 = h.clone()
    h2[0, 1] += 1.0  # node 1 is a neighbour of node 0 (A[0, 1]); node 2 is isolated
    out = gnn(h2)
    assert not torch.allclose(out[0, 0], base[0, 0])
    assert torch.allclose(out[0, 2], base[0, 2])


def test_semantic_decoupling_attention_is_a_spatial_softmax():
    torch.manual_seed(0)
    sd = SemanticDecoupling(8, 3, 5, hidden_dim=6)
    fmap = torch.randn(2, 8, 4, 4)
    feats, att = sd(fmap, torch.randn(3, 5))
    assert feats.shape == (2, 3, 8) and att.shape == (2, 3, 4, 4)
    assert torch.allclose(att.flatten(2).sum(-1), torch.ones(2, 3), atol=1e-5)
    # the feature of class c is the attention-weighted mean of the location vectors
    manual = (att[0, 1].reshape(-1, 1) * fmap[0].flatten(1).t()).sum(0)
    assert torch.allclose(feats[0, 1], manual, atol=1e-5)


def test_semantic_attention_shapes_and_cam_scores():
    sa = SemanticAttention(8, 3)
    feats, att, cam = sa(torch.randn(2, 8, 4, 4))
    assert feats.shape == (2, 3, 8) and att.shape == (2, 3, 4, 4) and cam.shape == (2, 3)
    assert ((att >= 0) & (att <= 1)).all()


@pytest.mark.parametrize("sarl", ["sd", "sa"])
def test_sarl_model_forward_backward(sarl):
    torch.manual_seed(0)
    labels = np.array([[1, 0, -1], [1, 1, 0]], dtype=np.int8)
    model = SARLModel(SmallCNN(width=4, out_channels=16), 3, np.random.rand(3, 7), build_label_graph(labels), sarl=sarl)
    x = torch.randn(2, 3, 32, 32)
    logits = model(x)
    assert logits.shape == (2, 3)
    out = model(x, return_all=True)
    assert torch.allclose(out.logits, logits)
    assert out.features.shape == (2, 3, 8) and out.outputs.shape == (2, 3, 8)  # D = 16 // 2
    assert (out.cam_logits is None) == (sarl == "sd")
    loss = logits.sum() + cam_loss(out, torch.tensor([[1.0, 0, -1], [1, 1, 0]]))
    loss.backward()
    assert model.backbone.features[0][0].weight.grad is not None
    assert isinstance(model.reduce, ChannelReduction)  # the official ratio: a 1x1 conv + BN halves the 16 channels


def test_channel_reduction_official_size():
    class Wide(nn.Module):
        out_channels = 2048

        def forward(self, x):
            return x

    model = SARLModel(Wide(), 2, np.zeros((2, 3)), np.zeros((2, 2)), feature_dim=0)
    assert isinstance(model.reduce, ChannelReduction)
    assert model.reduce.conv.weight.shape == (1024, 2048, 1, 1)
    assert model.semantic.img_proj.out_features == 512 and model.output_dim == 1024


def test_sarl_model_rejects_bad_inputs():
    with pytest.raises(BenchError, match="sarl"):
        SARLModel(SmallCNN(), 2, np.zeros((2, 3)), np.zeros((2, 2)), sarl="xx")
    with pytest.raises(BenchError, match="word embeddings"):
        SARLModel(SmallCNN(), 2, np.zeros((3, 3)), np.zeros((2, 2)))


def test_reduction_always_builds_conv_bn_at_equal_size_and_gives_signed_features():
    torch.manual_seed(0)
    model = SARLModel(SmallCNN(width=4, out_channels=16), 3, np.random.rand(3, 7), np.zeros((3, 3)), feature_dim=16,
                      reduction="always")
    assert isinstance(model.reduce, ChannelReduction) and model.reduce.conv.weight.shape == (16, 16, 1, 1)
    feats = model(torch.randn(4, 3, 32, 32), return_all=True).features
    assert (feats < 0).any()  # the small CNN ends with a ReLU; after conv+BN the features are signed
    with pytest.raises(BenchError, match="reduction"):
        SARLModel(SmallCNN(), 2, np.zeros((2, 3)), np.zeros((2, 2)), reduction="sometimes")


class _FrozenMaps(nn.Module):
    """A frozen backbone stand-in: the inputs are the feature maps."""

    out_channels = 16

    def forward(self, x):
        return x


def _pattern_scenes(n, generator, patterns):
    """Images of ReLU-like noise on a 3x3 map; class c present = its pattern at one random location."""
    y = (torch.rand(n, 2, generator=generator) < 0.5).float()
    x = torch.randn(n, 16, 9, generator=generator).abs()
    where = torch.randint(9, (n, 2), generator=generator)
    for c in range(2):
        rows = y[:, c] > 0
        x[rows, :, where[rows, c]] = patterns[c]
    return x.view(n, 16, 3, 3), y, where


def test_semantic_decoupling_attention_is_not_uniform_when_features_differ_by_location():
    torch.manual_seed(0)
    words = np.random.default_rng(0).normal(size=(3, 300)).astype(np.float32)
    model = SARLModel(_FrozenMaps(), 3, words, np.eye(3))  # as the plugins build it, at initialisation
    fmap = torch.zeros(1, model.feature_dim, 2, 2)  # the maps after the channel reduction
    fmap[0, :, 0, 0] = torch.rand(model.feature_dim, generator=torch.Generator().manual_seed(1)) * 3  # one distinct location
    _, att = model.semantic(fmap, model.word_embeddings)
    att = att.flatten(2)[0]  # (C, 4)
    others = att[:, 1:]
    assert torch.equal(others, others[:, :1].expand_as(others))  # equal features, equal attention
    assert ((att[:, 0] - att[:, 1]).abs() > 1e-3).all()  # every class weighs the distinct location differently


def test_semantic_decoupling_learns_to_attend_with_a_frozen_backbone_at_lr_1e3():
    # Adam at lr 1e-3 with the coupled weight decay 5e-4 of the CPU defaults: the attention of a
    # class moves from uniform (1/9) onto the location that holds its pattern.
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    patterns = 3 * torch.rand(2, 16, generator=g)
    words = np.random.default_rng(0).normal(size=(2, 300)).astype(np.float32)
    model = SARLModel(_FrozenMaps(), 2, words, build_label_graph(np.array([[1, 1], [1, -1]])))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=5e-4)
    x_val, y_val, where_val = _pattern_scenes(64, torch.Generator().manual_seed(1), patterns)

    def attention_on_pattern():
        with torch.no_grad():
            att = model(x_val, return_all=True).attention.flatten(2)
        present = y_val[:, 0] > 0
        return att[present, 0].gather(1, where_val[present, 0:1]).mean().item()

    before = attention_on_pattern()
    assert before < 0.2
    for _ in range(150):
        x, y, _ = _pattern_scenes(32, g, patterns)
        loss = partial_bce(model(x), y * 2 - 1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert attention_on_pattern() > 0.5
