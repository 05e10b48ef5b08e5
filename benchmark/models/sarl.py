"""Semantic-aware representation learning (SARL): the SSGRL-style model shared by SST, HST,
DSRB and the ``ssgrl`` baselines.

Pipeline (Chen et al., "Learning Semantic-Specific Graph Representation for Multi-Label Image
Recognition", ICCV 2019; SST/HST papers §SARL)::

    images -> backbone -> feature maps (B, Cb, h, w)
           -> channel reduction (1x1 conv + BN, 2048 -> 1024 for ResNet)      [ChannelReduction]
           -> category features (B, C, D)   semantic decoupling | semantic attention
           -> gated GNN over the label graph, 3 steps                           [GatedGNN]
           -> tanh(fc([h_T ; h_0])) -> per-class classifier -> logits (B, C)

Public API (documented, stable; other plugins import it):

* :func:`build_label_graph` ``(train_labels) -> (C, C) float32`` conditional co-occurrence of
  the *known* positives, ``P[i, j] = P(j | i)`` with ``P[i, i] = 1`` (the official code's graph);
  classes without a known positive get a zero row/column, never NaN.
* :class:`SemanticDecoupling` ``(in_channels, num_classes, word_dim, hidden_dim)``: word-vector
  guided spatial attention.
* :class:`SemanticAttention` ``(in_channels, num_classes)``: class-activation-map attention.
* :class:`GatedGNN` ``(dim, steps, adjacency)``.
* :class:`ElementWiseClassifier` ``(num_classes, dim)``: one weight vector per class.
* :class:`SARLModel` ``(backbone, num_classes, word_embeddings, adjacency, sarl="sd"|"sa", ...)``:
  ``model(x)`` returns logits ``(B, C)``; ``model(x, return_all=True)`` returns a
  :class:`SARLOutput` with the logits, the per-category features and the rest. The stages are
  methods too: ``category_features(x)``, ``category_maps(x)`` (the unpooled ``F_c`` that DSRB
  blends) and ``pool(maps)``, ``head(features)`` / ``classify(features)`` (GGNN onwards).

Sizes: with ``feature_dim=1024`` every derived size equals the official code's (SD hidden 512,
output 1024). ``feature_dim=0`` picks it from the backbone: half its channels, through the 1x1
conv + BN reduction -- the official code's ratio (ResNet 2048 -> 1024), applied to every backbone
(the built-in small CNN's 128 -> 64). Derived sizes scale with ``feature_dim`` (hidden = D/2,
output = D), so the built-in 64-d model is the paper's model at 1/16 width. (Measured on the
validation split of digit-scenes, frozen pretrained small CNN, ssgrl at lr 1e-2, 20 epochs, seeds
0-2: 83.0 / 89.8 val mAP at 10 % / 50 % known with D = 64 against 80.0 / 90.8 with D = 128, at
half the cost.)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from ..errors import BenchError

SARL_KINDS = ("sd", "sa")


# ---------------------------------------------------------------------------------------------
# Label graph
# ---------------------------------------------------------------------------------------------


def cooccurrence_counts(train_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts of known positives: ``(pair (C, C), single (C,))`` with ``pair[i, j]`` the number
    of images where both i and j are known positives (diagonal = ``single``)."""
    pos = (np.asarray(train_labels) == 1).astype(np.float64)
    pair = pos.T @ pos
    return pair, pos.sum(axis=0)


def build_label_graph(train_labels: np.ndarray, *, self_loops: bool = True) -> np.ndarray:
    """Conditional co-occurrence of the known positive labels, the SSGRL label graph.

    ``P[i, j] = #(i and j known positive) / #(i known positive)`` -- the probability that j is
    present given that i is, estimated on the *partial* training labels only (unknown entries
    are never counted as negatives or positives). Classes with no known positive get an all-zero
    row (no division by zero, no NaN); their column is zero too since no image pairs with them.

    :param train_labels: ``(N, C)`` int8 in {1, -1, 0}.
    :param self_loops: keep ``P[i, i] = 1`` for classes with a known positive (default, as the
        official SST/HST/DSRB code's ``get_graph_file``, which divides each row by its diagonal);
        ``False`` zeroes the diagonal (a node's own state enters the GRU separately anyway).
        The official code leaves a NaN row for a class without known positive; here it is zero.
    :return: ``(C, C)`` float32.
    """
    labels = np.asarray(train_labels)
    if labels.ndim != 2:
        raise BenchError(f"label graph: expected an (N, C) label matrix, got shape {labels.shape}")
    pair, single = cooccurrence_counts(labels)
    with np.errstate(divide="ignore", invalid="ignore"):
        graph = np.where(single[:, None] > 0, pair / np.maximum(single[:, None], 1.0), 0.0)
    if not self_loops:
        np.fill_diagonal(graph, 0.0)
    return graph.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------


class ChannelReduction(nn.Module):
    """1x1 convolution + BatchNorm (no activation), the official 2048 -> 1024 reduction."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The 1x1 convolution as one matrix product over the locations (the same sums as the
        convolution's, in the product's order; on small maps several times cheaper than the
        convolution kernels, backward included), then the BatchNorm."""
        b, _, h, w = x.shape
        weight = self.conv.weight.flatten(1)  # (out, in)
        return self.bn(torch.matmul(weight, x.flatten(2)).view(b, weight.shape[0], h, w))

    def literal_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolution then BatchNorm, the modules as written (the reference of the equivalence test and the benchmark)."""
        return self.bn(self.conv(x))


class SemanticDecoupling(nn.Module):
    """Semantic decoupling (SSGRL): category word vectors guide a spatial attention.

    For location ``x`` and class ``c``: ``z = tanh(U f_x ⊙ V w_c)`` (both projected to
    ``hidden_dim``), attention logit ``a = fc_a(fc_z(z))`` -- no activation between ``fc_z`` and
    ``fc_a``, as in SSGRL's paper and code and the SST/HST/DSRB code (``fc3``, ``fc4``) -- softmax
    over the h*w locations, and the category feature is the attention-weighted sum of the
    (unprojected) feature vectors: ``f_c = Σ_x softmax(a)_x f_x`` of size ``in_channels``.

    :param in_channels: D, channels of the feature maps (and size of the category features).
    :param num_classes: C.
    :param word_dim: size of the word vectors (300 for GloVe).
    :param hidden_dim: size of the joint embedding (512 in the paper).
    """

    def __init__(self, in_channels: int, num_classes: int, word_dim: int, hidden_dim: int = 512):
        super().__init__()
        self.num_classes = num_classes
        self.img_proj = nn.Linear(in_channels, hidden_dim, bias=False)
        self.word_proj = nn.Linear(word_dim, hidden_dim, bias=False)
        self.fc_z = nn.Linear(hidden_dim, hidden_dim)
        self.fc_a = nn.Linear(hidden_dim, 1)

    def forward(self, feature_map: torch.Tensor, word_embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:return: ``(features (B, C, D), attention (B, C, h, w))``.

        ``fc_a(fc_z(z)) = (w_a W_z) z + (w_a·b_z + b_a)``: with no activation between them the two
        layers are one vector, formed once per batch (an ``H x H`` product) instead of ``fc_z``
        running on all ``B·C·hw`` joint vectors -- the same function and gradients, with the
        sums in another order (floats move by rounding only; :meth:`literal_forward` is the
        layer-by-layer form, pinned against this one by tests/test_fused_forms.py).
        """
        b, d, h, w = feature_map.shape
        flat = feature_map.flatten(2).transpose(1, 2)  # (B, hw, D)
        img = self.img_proj(flat)  # (B, hw, H)
        word = self.word_proj(word_embeddings)  # (C, H)
        joint = torch.tanh(img.unsqueeze(1) * word[None, :, None, :])  # (B, C, hw, H)
        vector = (self.fc_a.weight @ self.fc_z.weight).squeeze(0)  # (H,): w_a W_z
        offset = torch.addmv(self.fc_a.bias, self.fc_z.bias.unsqueeze(0), self.fc_a.weight.squeeze(0))  # (1,)
        logits = torch.matmul(joint, vector) + offset  # (B, C, hw)
        attention = logits.softmax(dim=-1)
        features = attention @ flat  # (B, C, D)
        return features, attention.view(b, self.num_classes, h, w)

    def literal_forward(self, feature_map: torch.Tensor, word_embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` layer by layer, ``fc_z`` on every joint vector (the official code's form;
        the reference of the equivalence test and of perf/bench_sarl_cost.py)."""
        b, d, h, w = feature_map.shape
        flat = feature_map.flatten(2).transpose(1, 2)  # (B, hw, D)
        img = self.img_proj(flat)  # (B, hw, H)
        word = self.word_proj(word_embeddings)  # (C, H)
        joint = torch.tanh(img.unsqueeze(1) * word[None, :, None, :])  # (B, C, hw, H)
        logits = self.fc_a(self.fc_z(joint)).squeeze(-1)  # (B, C, hw)
        attention = logits.softmax(dim=-1)
        features = attention @ flat  # (B, C, D)
        return features, attention.view(b, self.num_classes, h, w)


class SemanticAttention(nn.Module):
    """Semantic attention (ADD-GCN's SAM, Ye et al. ECCV 2020): class activation maps as attention.

    A 1x1 convolution gives one activation map per class; its spatial maximum is a class score
    (``cam_logits``, to be supervised like the main logits so the maps stay class-specific). The
    sigmoid of the maps weights a 1x1-transformed feature map; the category feature is the mean
    over locations of that weighted map (the mean, not ADD-GCN's sum, so that its scale does not
    grow with the image size).

    :param in_channels: D.
    :param num_classes: C.
    """

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.cam = nn.Conv2d(in_channels, num_classes, kernel_size=1)
        self.transform = nn.Conv2d(in_channels, in_channels, kernel_size=1, bias=False)

    def forward(self, feature_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:return: ``(features (B, C, D), attention (B, C, h, w), cam_logits (B, C))``."""
        maps = self.cam(feature_map)  # (B, C, h, w)
        cam_logits = maps.flatten(2).amax(dim=-1)
        attention = torch.sigmoid(maps)
        values = self.transform(feature_map).flatten(2)  # (B, D, hw)
        features = attention.flatten(2) @ values.transpose(1, 2) / values.shape[-1]
        return features, attention, cam_logits


class GatedGNN(nn.Module):
    """Gated graph neural network (Li et al. 2016) as used in SSGRL.

    Node states ``h`` (B, C, D); at each of ``steps`` steps a node aggregates its neighbours
    along the graph and against it, ``a = [A h ; Aᵀ h]`` (the official in-matrix ``A`` and
    out-matrix ``Aᵀ``), and updates its state with a GRU cell whose gates are each two biased
    Linears, one on the message and one on the state (SSGRL eq. 3-5 and both official codes)::

        z = σ(W_z a + U_z h),  r = σ(W_r a + U_r h),  ĥ = tanh(W_h a + U_h (r ⊙ h)),
        h ← (1 − z) h + z ĥ

    :param dim: D.
    :param steps: propagation steps (3 in the papers).
    :param adjacency: ``(C, C)`` array/tensor, e.g. :func:`build_label_graph`; stored as a buffer.
    """

    def __init__(self, dim: int, steps: int, adjacency):
        super().__init__()
        adj = torch.as_tensor(np.asarray(adjacency, dtype=np.float32))
        if adj.ndim != 2 or adj.shape[0] != adj.shape[1]:
            raise BenchError(f"GatedGNN: adjacency must be square (C, C), got {tuple(adj.shape)}")
        if not torch.isfinite(adj).all():
            raise BenchError("GatedGNN: adjacency contains NaN or inf; build it with build_label_graph")
        self.steps = steps
        self.register_buffer("adjacency", adj)
        self.update_w, self.update_u = nn.Linear(2 * dim, dim), nn.Linear(dim, dim)
        self.reset_w, self.reset_u = nn.Linear(2 * dim, dim), nn.Linear(dim, dim)
        self.candidate_w, self.candidate_u = nn.Linear(2 * dim, dim), nn.Linear(dim, dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """The steps above with the Linears that share an input run as one: ``W_z, W_r, W_h`` on
        ``a`` as one ``2D -> 3D`` product and ``U_z, U_r`` on ``h`` as one ``D -> 2D`` (weights
        concatenated per call, so parameters and checkpoints are the per-gate Linears'); both
        graph products as one. Each output is the same dot product; fewer, larger kernels and
        one backward per fused product (:meth:`literal_forward` is the gate-by-gate form)."""
        adj = self.adjacency.to(h.dtype)
        b, c, d = h.shape
        both = torch.cat([adj, adj.t()])  # (2C, C): in- and out-matrix, one product
        w_a = torch.cat([self.update_w.weight, self.reset_w.weight, self.candidate_w.weight])  # (3D, 2D)
        b_a = torch.cat([self.update_w.bias, self.reset_w.bias, self.candidate_w.bias])
        w_h = torch.cat([self.update_u.weight, self.reset_u.weight])  # (2D, D)
        b_h = torch.cat([self.update_u.bias, self.reset_u.bias])
        for _ in range(self.steps):
            a = (both @ h).view(b, 2, c, d).transpose(1, 2).reshape(b, c, 2 * d)  # [A h ; Aᵀ h]
            z_a, r_a, c_a = nn.functional.linear(a, w_a, b_a).split(d, dim=-1)
            z_h, r_h = nn.functional.linear(h, w_h, b_h).split(d, dim=-1)
            z = torch.sigmoid(z_a + z_h)
            r = torch.sigmoid(r_a + r_h)
            candidate = torch.tanh(c_a + self.candidate_u(r * h))
            h = torch.lerp(h, candidate, z)
        return h

    def literal_forward(self, h: torch.Tensor) -> torch.Tensor:
        """The GGNN gate by gate, six Linears per step (reference of the equivalence test and the benchmark)."""
        adj = self.adjacency.to(h.dtype)
        for _ in range(self.steps):
            a = torch.cat([adj @ h, adj.t() @ h], dim=-1)  # (B, C, 2D)
            z = torch.sigmoid(self.update_w(a) + self.update_u(h))
            r = torch.sigmoid(self.reset_w(a) + self.reset_u(h))
            candidate = torch.tanh(self.candidate_w(a) + self.candidate_u(r * h))
            h = (1 - z) * h + z * candidate
        return h


class ElementWiseClassifier(nn.Module):
    """One linear classifier per class on that class's own vector: ``logit_c = w_c·o_c + b_c``."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, dim))
        self.bias = nn.Parameter(torch.zeros(num_classes))
        bound = 1.0 / dim**0.5
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.weight).sum(dim=-1) + self.bias


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------


class SARLOutput(NamedTuple):
    """Everything :class:`SARLModel` computes for a batch.

    :ivar logits: ``(B, C)`` class scores before the sigmoid.
    :ivar features: ``(B, C, D)`` category-specific features from SD/SA (the ``f_c^n`` of the
        SST/HST papers: input of the IST head and of the CST similarities).
    :ivar graph_features: ``(B, C, D)`` the GGNN's final node states.
    :ivar outputs: ``(B, C, output_dim)`` the vectors the classifier reads.
    :ivar attention: ``(B, C, h, w)`` the spatial attention / activation maps.
    :ivar cam_logits: ``(B, C)`` class scores of the activation maps (SA only, else ``None``).
    """

    logits: torch.Tensor
    features: torch.Tensor
    graph_features: torch.Tensor
    outputs: torch.Tensor
    attention: torch.Tensor
    cam_logits: torch.Tensor | None


def default_feature_dim(backbone_channels: int) -> int:
    """The documented automatic ``feature_dim``: half the backbone's channels, the official
    code's reduction ratio (ResNet 2048 -> 1024; the built-in small CNN 128 -> 64)."""
    return max(1, backbone_channels // 2)


class SARLModel(nn.Module):
    """The SSGRL-style model: backbone, channel reduction, SD or SA, GGNN, per-class classifier.

    ``model(x)`` returns logits ``(B, C)`` (so the default ``Method.predict`` works);
    ``model(x, return_all=True)`` returns a :class:`SARLOutput`. Methods that need more than
    the logits in training should call it this way (it goes through DDP's forward).

    :param backbone: images -> ``(B, backbone.out_channels, h, w)``; kept as ``self.backbone``.
    :param num_classes: C.
    :param word_embeddings: ``(C, W)`` category word vectors (used by SD; stored as a buffer).
    :param adjacency: ``(C, C)`` label graph for the GGNN (:func:`build_label_graph`).
    :param sarl: ``"sd"`` semantic decoupling (paper default) or ``"sa"`` semantic attention.
    :param feature_dim: D after the channel reduction; 0 = :func:`default_feature_dim`. No
        reduction layer is built when D equals the backbone's channels.
    :param sd_hidden: SD joint-embedding size; 0 = D/2 (512 for D=1024, as in the paper).
    :param output_dim: size of ``tanh(fc([h_T; h_0]))``; 0 = D (1024 in the paper).
    :param gnn_steps: GGNN steps (3).
    :param reduction: ``"auto"`` builds the 1x1 conv + BN only when D differs from the backbone's
        channels; ``"always"`` builds it in any case (the papers' architecture always has it; it
        also makes the category features signed after a ReLU-ending backbone).
    """

    def __init__(self, backbone: nn.Module, num_classes: int, word_embeddings, adjacency, *, sarl: str = "sd",
                 feature_dim: int = 0, sd_hidden: int = 0, output_dim: int = 0, gnn_steps: int = 3,
                 reduction: str = "auto"):
        super().__init__()
        if sarl not in SARL_KINDS:
            raise BenchError(f"SARL model: sarl={sarl!r} is not one of {', '.join(SARL_KINDS)} (sd = semantic decoupling, sa = semantic attention)")
        words = torch.as_tensor(np.asarray(word_embeddings, dtype=np.float32))
        if words.ndim != 2 or words.shape[0] != num_classes:
            raise BenchError(f"SARL model: word embeddings must be (C={num_classes}, dim), got {tuple(words.shape)}")
        in_channels = int(getattr(backbone, "out_channels"))
        dim = feature_dim or default_feature_dim(in_channels)
        self.backbone = backbone
        self.num_classes = num_classes
        self.sarl = sarl
        self.feature_dim = dim
        self.output_dim = output_dim or dim
        if reduction not in ("auto", "always"):
            raise BenchError(f"SARL model: reduction={reduction!r} is not one of auto, always")
        self.reduce = ChannelReduction(in_channels, dim) if (dim != in_channels or reduction == "always") else nn.Identity()
        self.register_buffer("word_embeddings", words)
        if sarl == "sd":
            self.semantic = SemanticDecoupling(dim, num_classes, words.shape[1], sd_hidden or max(1, dim // 2))
        else:
            self.semantic = SemanticAttention(dim, num_classes)
        self.gnn = GatedGNN(dim, gnn_steps, adjacency)
        self.fc = nn.Linear(2 * dim, self.output_dim)
        self.classifier = ElementWiseClassifier(num_classes, self.output_dim)

    def category_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Images -> ``(features (B, C, D), attention, cam_logits or None)``."""
        maps = self.reduce(self.backbone(x))
        if self.sarl == "sd":
            features, attention = self.semantic(maps, self.word_embeddings)
            return features, attention, None
        return self.semantic(maps)

    def category_maps(self, x: torch.Tensor):
        """Images -> ``(maps (B, C, D, h, w), features (B, C, D), attention, cam_logits)``: the
        category feature maps ``F_c`` before their pooling (DSRB eq. 1-2; what blending mixes).

        SD: ``F_c = a_c ⊙ f`` (attention times the reduced feature map), pooled by a sum;
        SA: ``F_c = sigmoid(CAM_c) ⊙ T(f)``, pooled by a mean — so ``pool(maps) == features``.
        """
        fmap = self.reduce(self.backbone(x))
        if self.sarl == "sd":
            features, attention = self.semantic(fmap, self.word_embeddings)
            cam_logits = None
            values = fmap
        else:
            features, attention, cam_logits = self.semantic(fmap)
            values = self.semantic.transform(fmap)
        maps = attention.unsqueeze(2) * values.unsqueeze(1)
        return maps, features, attention, cam_logits

    def pool(self, maps: torch.Tensor) -> torch.Tensor:
        """The pooling σ of DSRB eq. 2, ``(B, C, D, h, w) -> (B, C, D)``, that gives the category features."""
        return maps.sum(dim=(-2, -1)) if self.sarl == "sd" else maps.mean(dim=(-2, -1))

    def head(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Category features -> ``(graph_features, outputs, logits)``: GGNN, ``tanh(fc([h_T; h_0]))``
        and the per-class classifier."""
        graph = self.gnn(features)
        outputs = torch.tanh(self.fc(torch.cat([graph, features], dim=-1)))
        return graph, outputs, self.classifier(outputs)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Category features ``(B, C, D)`` -> logits ``(B, C)`` (e.g. of blended features)."""
        return self.head(features)[2]

    def forward(self, x: torch.Tensor, return_all: bool = False):
        features, attention, cam_logits = self.category_features(x)
        graph, outputs, logits = self.head(features)
        if not return_all:
            return logits
        return SARLOutput(logits, features, graph, outputs, attention, cam_logits)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel/DataParallel wrapper (or the module itself)."""
    return getattr(model, "module", model)


def cam_loss(output: SARLOutput, labels: torch.Tensor) -> torch.Tensor:
    """Partial BCE on the activation-map scores of SA (zero for SD): keeps SA's maps class-specific."""
    if output.cam_logits is None:
        return output.logits.new_zeros(())
    from ..losses import partial_bce

    return partial_bce(output.cam_logits, labels)


__all__ = [
    "SARL_KINDS", "SARLModel", "SARLOutput", "SemanticDecoupling", "SemanticAttention", "GatedGNN",
    "ElementWiseClassifier", "ChannelReduction", "build_label_graph", "cooccurrence_counts",
    "default_feature_dim", "unwrap", "cam_loss",
]
