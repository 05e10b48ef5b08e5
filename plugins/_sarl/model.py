"""The SSGRL model for a method's context, and the option types of the SARL-based methods.

SSGRL (Chen, Xu, Hui, Wu, Lin, ICCV 2019) = semantic decoupling guided by category word vectors
+ a gated graph neural network over the label co-occurrence graph; the seed papers adapt it to
partial labels by training it with partial BCE. The model itself is the shared
:class:`mlrpl_bench.models.sarl.SARLModel`, with the label graph built from the co-occurrence of
the *known* positives of the partial training labels.

The option types below are declared once and used by every plugin on this model (``ssgrl``,
``ssgrl-pl``, the mixups, ``sst``, ``hst``, ``dsrb``); the schema layer validates them.
"""

from __future__ import annotations

from dataclasses import field
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from mlrpl_bench.models.sarl import SARLModel, build_label_graph, unwrap

SSGRL_CITATION = ("Chen, Xu, Hui, Wu, Lin. Learning Semantic-Specific Graph Representation for Multi-Label "
                  "Image Recognition. ICCV 2019; partial-BCE adaptation as in Chen, Pu et al., SST (AAAI 2022)")

#: Category-specific representation: semantic decoupling (SSGRL) or semantic attention.
SarlKind = Literal["sd", "sa"]
#: GGNN propagation steps.
GnnSteps = Annotated[int, Field(ge=1, le=100)]
#: How the partial BCE of a batch is reduced: ``entries`` = the mean over all known entries of the
#: batch (the official code's ``BCELoss``), ``image`` = per image by its known labels, then the
#: mean over images (the papers' eq. 9 / 16 / 14).
BceReduction = Literal["entries", "image"]
#: Label-graph diagonal: ``one`` keeps P(i|i) = 1 (official ``get_graph_file``), ``zero`` removes it.
GraphDiagonal = Literal["one", "zero"]

BCE_REDUCTION_HELP = ("partial BCE reduction: entries = mean over all known entries of the batch (official code); "
                      "image = per image by its known labels, then over images (paper eq. 9/16)")
GRAPH_DIAGONAL_HELP = "label graph diagonal: one = P(i|i) = 1 (official get_graph_file), zero = no self loops"


def sarl_field():
    return field(default="sd", metadata={"help": "category features: sd = semantic decoupling (SSGRL), sa = semantic attention"})


def gnn_steps_field():
    return field(default=3, metadata={"help": "GGNN propagation steps (SSGRL: 3)"})


def bce_reduction_field():
    return field(default="entries", metadata={"help": BCE_REDUCTION_HELP})


def graph_diagonal_field():
    return field(default="one", metadata={"help": GRAPH_DIAGONAL_HELP})


def partial_bce_reduction(option: str) -> str:
    """The :func:`mlrpl_bench.losses.partial_bce` ``reduction`` of a ``BceReduction`` option value."""
    return {"entries": "entries", "image": "mean"}[option]


def label_graph(method) -> np.ndarray:
    """The label graph of ``method``'s context, with the diagonal its ``graph_diagonal`` option asks
    for (``one`` when the method has no such option)."""
    diagonal = getattr(method.options, "graph_diagonal", "one")
    return build_label_graph(method.ctx.train_labels, self_loops=diagonal == "one")


def build_ssgrl(method, backbone: nn.Module) -> SARLModel:
    """The SSGRL model for ``method``'s context (word vectors, label graph from known positives)."""
    ctx = method.ctx
    return SARLModel(backbone, ctx.num_classes, ctx.word_embeddings, label_graph(method), sarl=method.options.sarl,
                     gnn_steps=method.options.gnn_steps)


def ssgrl_logits_from_backbone_maps(model: nn.Module, maps: torch.Tensor) -> torch.Tensor:
    """Run an SSGRL model from its backbone's output onwards (for mixing global feature maps)."""
    net = unwrap(model)
    reduced = net.reduce(maps)
    if net.sarl == "sd":
        features, _ = net.semantic(reduced, net.word_embeddings)
    else:
        features, _, _ = net.semantic(reduced)
    return net.classify(features)
