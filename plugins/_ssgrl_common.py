"""The SSGRL model as the baselines use it (private module, registers nothing).

SSGRL (Chen, Xu, Hui, Wu, Lin, ICCV 2019) = semantic decoupling guided by category word vectors
+ a gated graph neural network over the label co-occurrence graph; the seed papers adapt it to
partial labels by training it with partial BCE. The model itself is the shared
:class:`mlrpl_bench.models.sarl.SARLModel`, with the label graph built from the co-occurrence of
the *known* positives of the partial training labels.
"""

from __future__ import annotations

from dataclasses import field
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import nn

from mlrpl_bench.models.sarl import SARL_KINDS, SARLModel, build_label_graph, unwrap


SSGRL_CITATION = ("Chen, Xu, Hui, Wu, Lin. Learning Semantic-Specific Graph Representation for Multi-Label "
                  "Image Recognition. ICCV 2019; partial-BCE adaptation as in Chen, Pu et al., SST (AAAI 2022)")


def sarl_field():
    return field(default="sd", metadata={"help": "category features: sd = semantic decoupling (SSGRL), sa = semantic attention"})


def gnn_steps_field():
    return field(default=3, metadata={"help": "GGNN propagation steps (SSGRL: 3)"})


#: The types of the ``sarl`` and ``gnn_steps`` options (declared once, validated by the schema layer).
SarlKind = Literal[SARL_KINDS]
GnnSteps = Annotated[int, Field(ge=1, le=100)]


def build_ssgrl(method, backbone: nn.Module) -> SARLModel:
    """The SSGRL model for ``method``'s context (word vectors, label graph from known positives)."""
    ctx = method.ctx
    graph = build_label_graph(ctx.train_labels)
    return SARLModel(backbone, ctx.num_classes, ctx.word_embeddings, graph, sarl=method.options.sarl,
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
