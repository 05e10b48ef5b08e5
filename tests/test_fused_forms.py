"""The fused forms of the SARL head (issue 23) against the layer-by-layer forms they replace.

Each fused form computes the same function by exact algebra -- two Linears with no activation
between them folded into one vector, Linears that share an input run as one product, a 1x1
convolution as a matrix product -- so values and gradients agree to float rounding (the sums
run in another order; they are not bit-identical, unlike tests/test_fast_paths.py). The small
hand-checked cases pin the algebra itself; the random ones the whole forward and backward.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mlrpl_bench.engine import _LossMonitor
from mlrpl_bench.distributed import DistInfo
from mlrpl_bench.models.sarl import ChannelReduction, GatedGNN, SemanticDecoupling
from mlrpl_bench.plugins._semantic_transfer.model import OfficialCooccurrenceHead

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _grads(loss, params):
    return torch.autograd.grad(loss, params, retain_graph=True)


def _close(fast, literal, params, rtol=1e-5, atol=1e-6):
    """Values and gradients of a ``sin``-weighted sum (so every output gets its own weight) agree;
    a gradient's tolerance is relative to the largest gradient entry of all ``params`` (some are
    zero in exact arithmetic, e.g. the attention biases under the softmax, and only rounding remains)."""
    assert torch.allclose(fast, literal, rtol=rtol, atol=atol)
    grads_fast, grads_literal = _grads(fast.sin().sum(), params), _grads(literal.sin().sum(), params)
    scale = max(float(g.abs().max()) for g in grads_literal)
    for a, b in zip(grads_fast, grads_literal):
        assert torch.allclose(a, b, rtol=10 * rtol, atol=10 * rtol * scale)


def test_semantic_decoupling_folds_fc_z_and_fc_a_into_one_vector_hand_checked():
    sd = SemanticDecoupling(2, 1, 2, hidden_dim=2)
    with torch.no_grad():
        sd.img_proj.weight.copy_(torch.eye(2))
        sd.word_proj.weight.copy_(torch.eye(2))
        sd.fc_z.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        sd.fc_z.bias.copy_(torch.tensor([0.5, -0.5]))
        sd.fc_a.weight.copy_(torch.tensor([[1.0, -1.0]]))
        sd.fc_a.bias.fill_(0.25)
    fmap = torch.tensor([[[[1.0, 0.0]], [[0.0, 2.0]]]])  # (1, D=2, 1, 2): location 0 f = (1, 0), location 1 f = (0, 2)
    words = torch.ones(1, 2)
    # fc_a(fc_z(z)) = (w_a W_z) z + (w_a·b_z + b_a) = (-2, -2)·z + 1.25, z = tanh(f ⊙ 1)
    a0, a1 = -2 * math.tanh(1.0) + 1.25, -2 * math.tanh(2.0) + 1.25
    want = torch.tensor([math.exp(a0), math.exp(a1)]) / (math.exp(a0) + math.exp(a1))
    _, att = sd(fmap, words)
    assert torch.allclose(att.flatten(), want, atol=1e-6)
    _, literal = sd.literal_forward(fmap, words)
    assert torch.allclose(att, literal, atol=1e-7)


@pytest.mark.parametrize("b,c,d,hw", [(1, 1, 2, 1), (4, 5, 8, 9), (32, 20, 64, 16)])
def test_semantic_decoupling_fused_equals_literal(b, c, d, hw):
    torch.manual_seed(c)
    sd = SemanticDecoupling(d, c, 7, hidden_dim=max(1, d // 2))
    fmap = torch.randn(b, d, hw, 1, requires_grad=True)
    words = torch.randn(c, 7)
    params = [fmap, *sd.parameters()]
    (f_fast, a_fast), (f_lit, a_lit) = sd(fmap, words), sd.literal_forward(fmap, words)
    _close(a_fast, a_lit, params)
    _close(f_fast, f_lit, params)


def test_ggnn_fused_gates_hand_checked_one_step():
    # 1-d node states on a 2-node graph: every weight 1, bias 0; h = [1, 0], A = [[1, 1], [0, 1]]
    gnn = GatedGNN(1, 1, np.array([[1.0, 1.0], [0.0, 1.0]]))
    with torch.no_grad():
        for p in gnn.parameters():
            p.fill_(1.0) if p.ndim == 2 else p.zero_()
    h = torch.tensor([[[1.0], [0.0]]])
    # node 0: A h = 1, Aᵀ h = 1 -> a = 2; z = r = σ(2 + 1), ĥ = tanh(2 + r·1), h' = (1 − z) + z ĥ
    # node 1: A h = 0, Aᵀ h = 1 -> a = 1; z = r = σ(1 + 0), ĥ = tanh(1 + 0),  h' = z ĥ
    s3, s1 = 1 / (1 + math.exp(-3)), 1 / (1 + math.exp(-1))
    want = [(1 - s3) + s3 * math.tanh(2 + s3), s1 * math.tanh(1.0)]
    assert gnn(h).flatten().tolist() == pytest.approx(want, rel=1e-6)
    assert torch.allclose(gnn(h), gnn.literal_forward(h), atol=1e-7)


@pytest.mark.parametrize("steps", [1, 3])
def test_ggnn_fused_equals_literal(steps):
    torch.manual_seed(steps)
    c, d = 6, 8
    adj = np.random.default_rng(steps).random((c, c)).astype(np.float32)
    gnn = GatedGNN(d, steps, adj)
    h = torch.randn(5, c, d, requires_grad=True)
    _close(gnn(h), gnn.literal_forward(h), [h, *gnn.parameters()])


def test_channel_reduction_as_matrix_product_equals_the_convolution():
    torch.manual_seed(0)
    red = ChannelReduction(12, 5)
    x = torch.randn(3, 12, 4, 2, requires_grad=True)
    _close(red(x), red.literal_forward(x), [x, *red.parameters()])


def test_official_ist_head_folds_fc3_into_the_pair_classifier():
    torch.manual_seed(0)
    head = OfficialCooccurrenceHead(6, 5, (4, 7))
    feats = torch.randn(3, 5, 6, requires_grad=True)
    fast, literal, naive = head.pair_logits(feats), head.literal_pair_logits(feats), head.naive_pair_logits(feats)
    assert fast.shape == (3, 10)
    _close(fast, literal, [feats, *head.parameters()])
    _close(fast, naive, [feats, *head.parameters()])
    # the fold by hand for one pair row x: w·(W3 x + b3) + b = (w W3)·x + (w·b3 + b)
    with torch.no_grad():
        x = torch.randn(7)
        w, b = head.classifier.weight[0], head.classifier.bias[0]
        by_layers = w @ (head.fc3.weight @ x + head.fc3.bias) + b
        folded = (w @ head.fc3.weight) @ x + (w @ head.fc3.bias + b)
    assert folded.item() == pytest.approx(by_layers.item(), rel=1e-6)


# ---------------------------------------------------------------------------------------------
# The engine's loss monitor: one stacked row per step, summed on the host at a read
# ---------------------------------------------------------------------------------------------


def test_official_ist_head_symmetric_matrix_by_one_index_select_is_bit_identical():
    """forward builds the (B, C, C) matrix by one index_select from [0 ; pairs]: the values of the
    two indexed writes and the same gradient bits (each pair's gradient is the sum of its two sides)."""
    torch.manual_seed(1)
    head = OfficialCooccurrenceHead(6, 5, (4, 7))
    feats = torch.randn(3, 5, 6, requires_grad=True)
    fast = head(feats)
    pairs = head.pair_logits(feats)
    written = pairs.new_zeros(3, 5, 5)
    written[:, head.pair_first, head.pair_second] = pairs
    written[:, head.pair_second, head.pair_first] = pairs
    assert torch.equal(fast, written)
    assert torch.equal(fast, fast.transpose(1, 2)) and not fast.diagonal(dim1=1, dim2=2).any()
    assert fast[1, 3, 1] == pairs[1, 5]  # pair (1, 3) is the 6th of (0,1) (0,2) (0,3) (0,4) (1,2) (1,3)
    weight = torch.randn(3, 5, 5)
    for a, b in zip(_grads((fast * weight).sum(), [feats, *head.parameters()]),
                    _grads((written * weight).sum(), [feats, *head.parameters()])):
        assert torch.equal(a, b)
    _close(fast, head.literal_forward(feats), [feats, *head.parameters()])


def test_loss_monitor_sums_float32_values_in_float64_in_step_order():
    monitor = _LossMonitor(torch.device("cpu"), None)
    losses = [0.1, 1e8, 0.3, -1e8, 0.7]
    for step, v in enumerate(losses):
        monitor.add(step, {"loss": torch.tensor(v), "cls": torch.tensor([v / 2]), "lr": 0.5, "flag": True})
    want = 0.0
    for v in losses:
        want += float(np.float32(v))  # float32 values, float64 sum, step order
    first_bad, _, last_good, mean = monitor.read(DistInfo())
    assert first_bad == -1 and last_good == float(np.float32(0.7)) and mean == want / 5
    means = monitor.means()
    assert list(means) == ["train/loss", "train/cls", "train/lr"]  # tensors first, in the order logged
    assert means["train/loss"] == want / 5 and means["train/lr"] == 0.5


def test_loss_monitor_finds_the_first_non_finite_step_across_reads_and_varying_keys():
    monitor = _LossMonitor(torch.device("cpu"), 2.5)
    monitor.add(0, {"loss": torch.tensor(1.5)})
    assert monitor.read(DistInfo())[:3] == (-1, 0.0, 1.5)
    monitor.add(1, {"loss": torch.tensor(2.0), "extra": torch.tensor(1.0)})  # a key of its own
    monitor.add(2, {"loss": torch.tensor(float("inf"))})
    monitor.add(3, {"loss": torch.tensor(float("nan"))})
    first_bad, bad, last_good, mean = monitor.read(DistInfo())
    assert (first_bad, bad, last_good, mean) == (2, float("inf"), 2.0, None)
    assert monitor.means()["train/extra"] == 0.25


def test_adam_is_multi_tensor_from_eight_parameter_tensors_and_gives_the_loops_floats():
    from mlrpl_bench.method import FOREACH_MIN_TENSORS, adam
    from mlrpl_bench.train_config import TrainConfig

    train = TrainConfig()
    head = torch.nn.Linear(4, 3)  # 2 tensors: torch's own choice (the loop on a CPU)
    assert adam(head.parameters(), train).defaults["foreach"] is None
    torch.manual_seed(0)
    many = [torch.nn.Parameter(torch.randn(3)) for _ in range(FOREACH_MIN_TENSORS)]
    twins = [torch.nn.Parameter(p.detach().clone()) for p in many]
    fast = adam([{"params": many}], train)
    assert fast.defaults["foreach"] is True
    loop = torch.optim.Adam(twins, lr=train.lr, weight_decay=train.weight_decay, foreach=False)
    for _ in range(3):
        for p, q in zip(many, twins):
            p.grad = torch.sin(p.detach() * 3)
            q.grad = torch.sin(q.detach() * 3)
        fast.step()
        loop.step()
    assert all(torch.equal(p, q) for p, q in zip(many, twins))
