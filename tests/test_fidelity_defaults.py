"""Pins of docs/fidelity.md rows whose default is a number or a choice (issue 21 point 4): each
builds the plugin with its *default* options and measures the behaviour that the value decides on
small hand-checkable tensors -- never a copy of the constant -- so the test fails if the default
changes. (The training rows -- track, pool, precision, interpolation, batch per profile -- are
pinned in tests/test_paper_profile.py.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from mlrpl_bench.method import Batch
from mlrpl_bench.plugins.dsrb import DSRB
from mlrpl_bench.plugins.hst import HST
from mlrpl_bench.plugins.sst import SST
from mlrpl_bench.models.sarl import SARLOutput
from test_fidelity import batch_of, ctx_for, method_of
from mlrpl_bench.plugins._semantic_transfer.model import TransferOutput

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Fixed(nn.Module):
    """Stands in for the SST/HST model: fixed logits, category features, co-occurrence logits."""

    def __init__(self, logits, features, cooc=None, thresholds=None):
        super().__init__()
        self.logits = nn.Parameter(torch.as_tensor(logits, dtype=torch.float32))
        self.features = nn.Parameter(torch.as_tensor(features, dtype=torch.float32))
        self.cooc = None if cooc is None else nn.Parameter(torch.as_tensor(cooc, dtype=torch.float32))
        self.thresholds = None if thresholds is None else nn.Parameter(torch.as_tensor(thresholds, dtype=torch.float32))
        self.feature_dim = self.features.shape[-1]

    def forward(self, x, return_all=False, blend=None):
        b, c = self.logits.shape
        sarl = SARLOutput(self.logits, self.features, self.features, self.features, torch.zeros(b, c, 1, 1), None)
        return TransferOutput(sarl, self.cooc, None)


# -- IST: pairs, γ1, γ2, m, λ1 -------------------------------------------------------------------


@pytest.mark.parametrize("cls", [SST, HST])
def test_ist_loss_scores_every_pair_with_gamma1_1_gamma2_2_margin_005_and_weight_10(cls):
    labels = [[1, 1, 0]]  # pair {0, 1} co-occurs (both known positive); {0, 2} and {1, 2} do not
    cooc = torch.full((1, 3, 3), math.log(3.0))  # p = 0.75 for every pair
    method = method_of(cls, labels, {"modules": "ist"})
    out = method.training_step(Fixed([[0.0, 0.0, 0.0]], torch.ones(1, 3, 2), cooc, thresholds=[1.0, 1.0]),
                               batch_of(labels), 0)
    positive = -(1 - 0.75) ** 1 * math.log(0.75)  # γ1 = 1: -(1 - p)^γ1 log p
    negative = -(0.75 - 0.05) ** 2 * math.log(1 - 0.70)  # m = 0.05, γ2 = 2: -p_m^γ2 log(1 - p_m)
    # ist_pairs=all: the pairs with an unknown label count as negatives, mean over C(C-1)/2 = 3 pairs
    assert out["ist"].item() == pytest.approx((positive + 2 * negative) / 3, rel=1e-5)
    # λ1 = 10 (a 1-epoch run has no ramp step: the weight is full)
    assert (out["loss"] - out["cls"] - 0.1 * out["dtl"]).item() == pytest.approx(10 * out["ist"].item(), rel=1e-5)
    known = method_of(cls, labels, {"modules": "ist", "ist_pairs": "known"})
    out_known = known.training_step(Fixed([[0.0, 0.0, 0.0]], torch.ones(1, 3, 2), cooc, thresholds=[1.0, 1.0]),
                                    batch_of(labels), 0)
    assert out_known["ist"].item() == pytest.approx(positive, rel=1e-5)  # only the pair with both labels known


# -- SST's bank: size 100, official order ------------------------------------------------------------


def test_sst_bank_keeps_100_features_per_class_new_batch_first_in_batch_order():
    method = method_of(SST, [[1]])
    values = torch.arange(1.0, 121.0)  # 120 images, all positive for the one class
    feats = values.view(120, 1, 1)
    method.update_bank(feats[:90], torch.ones(90, 1))
    assert method.bank.shape == (1, 100, 1)  # bank_size = 100 (interExampleNumber=100, scripts/SST.sh)
    assert method.bank[0, :90, 0].tolist() == values[:90].tolist() and method.bank[0, 90:, 0].eq(0).all()
    method.update_bank(feats[90:], torch.ones(30, 1))
    # model/SST.py updateFeature: cat((batch positives in batch order, old bank))[:100]
    assert method.bank[0, :, 0].tolist() == values[90:].tolist() + values[:70].tolist()


def test_sst_bank_keeps_the_first_images_of_a_batch_with_more_positives_than_slots():
    method = method_of(SST, [[1]], {"bank_size": 3})
    method.update_bank(torch.arange(1.0, 6.0).view(5, 1, 1), torch.ones(5, 1))
    assert method.bank[0, :, 0].tolist() == [1.0, 2.0, 3.0]


# -- SST's threshold schedule ----------------------------------------------------------------------


def test_sst_thresholds_start_at_095_fall_by_0025_per_epoch_to_075():
    method = method_of(SST, [[1, 0]], epochs=20)
    got = [method.thresholds(nn.Module(), epoch) for epoch in range(20)]
    assert all(intra == cross for intra, cross in got)
    intra = [t for t, _ in got]
    assert intra[:5] == [1.0] * 5  # no pseudo labels for 5 epochs (generateLabelEpoch=5)
    # SST.py:105: max(0.75, margin - 0.025) after each epoch from the fifth on, margins 0.95 in SST.sh
    assert intra[5:] == pytest.approx([0.95 - 0.025 * k for k in range(8)] + [0.75] * 7)


# -- HST's prototype contrastive weight ----------------------------------------------------------------


def test_hst_prototype_contrastive_term_weighs_005():
    labels = [[1, -1]]
    feats = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])
    losses = {}
    for loss in ("official", "none"):
        method = method_of(HST, labels, {"modules": "cst", "prototype_loss": loss} if loss == "none" else {"modules": "cst"})
        method.prototypes = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
        method.prototype_valid = torch.ones(2, 1, dtype=torch.bool)
        out = method.training_step(Fixed([[0.0, 0.0]], feats, thresholds=[1.0, 1.0]), batch_of(labels), 0)
        losses[loss] = out
    proto = losses["official"]["proto"].item()
    assert proto == pytest.approx((2 + (1 - 1 / math.sqrt(2))) / 2, rel=1e-5)
    # HST.sh interPrototypeDistanceWeight=0.05: the term adds 0.05 × proto to the loss
    assert (losses["official"]["loss"] - losses["none"]["loss"]).item() == pytest.approx(0.05 * proto, rel=1e-5)


# -- DSRB's map prototypes: at most 100 maps per class and quadrant ------------------------------------


class MapsFromInputs(nn.Module):
    """Stands in for DSRB's model: the category maps are the inputs (one class, one channel)."""

    def category_maps(self, x):
        return (x.unsqueeze(1),)  # (B, C=1, D=1, h, w)


def test_dsrb_map_prototypes_use_at_most_100_maps_per_class_and_quadrant():
    n = 130  # more known positives in one quadrant than the cap
    maps = torch.tensor([[2.0, 1.0], [1.0, 1.0]]).expand(n, 1, 2, 2).contiguous()  # maximum in the top-left quadrant
    labels = np.ones((n, 1), dtype=np.int8)
    batches = [Batch(maps[i:i + 50], torch.ones(len(maps[i:i + 50]), 1), torch.arange(i, min(i + 50, n)))
               for i in range(0, n, 50)]
    prototypes = {}
    for cap in (None, 200):
        method = DSRB(DSRB.make_options({} if cap is None else {"prototype_cap": cap}),
                      ctx_for(labels, epochs=4, batches=lambda: iter(batches)))
        method.blender.compute_prototypes(MapsFromInputs(), epoch=1)
        prototypes[cap] = method.blender.prototypes[0, 0]
    # DSRB model computePrototype_featuremap: a zero map, then maps while the list holds <= 100;
    # the mean over the list is sum / (kept + 1). Every map is the same here, so kept = 100 gives
    # 100/101 of it (the cap is reached), and a cap above n keeps all 130: 130/131.
    assert torch.allclose(prototypes[None], maps[0] * 100 / 101, atol=1e-6)
    assert torch.allclose(prototypes[200], maps[0] * n / (n + 1), atol=1e-6)


# -- the table itself ------------------------------------------------------------------------------

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


def fidelity_rows() -> list[str]:
    lines = (ROOT / "docs" / "fidelity.md").read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.startswith("|") and not line.startswith("|---") and "| test |" not in line]


def test_every_fidelity_row_names_a_test_that_exists():
    import re

    missing = []
    for row in fidelity_rows():
        names = re.findall(r"`(?:(tests/test_\w+\.py)::)?(test_\w+)`", row)
        files = re.findall(r"`(tests/test_\w+\.py)`", row)  # a whole test file
        if not names and not files and re.search(r"\| same tests? \|\s*$", row):
            continue  # the row above's test covers it
        if not names and not files:
            missing.append(f"no test named in: {row[:70]}")
        missing += [path for path in files if not (ROOT / path).is_file()]
        for path, name in names:
            path = path or "tests/test_fidelity.py"  # the table's convention for a bare name
            if not re.search(rf"^def {name}\(", (ROOT / path).read_text(encoding="utf-8"), flags=re.M):
                missing.append(f"{path}::{name}")
    assert not missing, f"docs/fidelity.md names tests that do not exist: {missing}"
