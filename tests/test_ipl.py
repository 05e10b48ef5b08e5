"""Tests of the ``ipl`` plugin: each equation of Zhang et al. pinned on a crafted batch."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from mlrpl_bench.errors import BenchError
from mlrpl_bench.method import Batch, MethodContext, TrainConfig
from mlrpl_bench.models.backbones import SmallCNN
from mlrpl_bench.plugins import ipl
from mlrpl_bench.plugins.ipl import (ImbalancePseudoLabeling, all_negative_penalty, batch_alpha_beta,
                                     epoch_weight_d, ipl_loss, prior_logit_shift, prior_matching_shift,
                                     sample_non_existing)

LABELS = torch.tensor([[1, -1, 0, 0, 0],
                       [0, 1, 1, -1, 0]], dtype=torch.float32)


def logit(p):
    p = torch.as_tensor(p, dtype=torch.float32)
    return torch.log(p / (1 - p))


# -- eq. 8: α, β from the batch statistics ------------------------------------------------------


def test_alpha_beta_from_positive_ratio_of_all_entries():
    # 3 positives among 2 x 5 = 10 entries: P/T = 0.3 > γ.
    alpha, beta = batch_alpha_beta(LABELS, gamma=0.05)
    assert beta == pytest.approx(0.3) and alpha == pytest.approx(0.7)


def test_alpha_beta_known_denominator():
    # 3 positives among 5 known entries.
    alpha, beta = batch_alpha_beta(LABELS, gamma=0.05, denominator="known")
    assert beta == pytest.approx(0.6) and alpha == pytest.approx(0.4)


def test_gamma_floors_beta():
    labels = torch.tensor([[1, 0, 0, 0, 0], [0, 0, 0, 0, -1]], dtype=torch.float32)  # P/T = 0.1
    assert batch_alpha_beta(labels, gamma=0.2) == pytest.approx((0.8, 0.2))
    assert batch_alpha_beta(labels, gamma=0.05) == pytest.approx((0.9, 0.1))
    no_positive = torch.tensor([[-1, 0], [0, 0]], dtype=torch.float32)
    assert batch_alpha_beta(no_positive, gamma=0.05) == pytest.approx((0.95, 0.05))


# -- eq. 9: the epoch schedule d ------------------------------------------------------------------


def test_d_prose_is_one_at_epoch_total_minus_m():
    assert epoch_weight_d(7, 10, m=3) == pytest.approx(1.0)
    assert epoch_weight_d(0, 10, m=3) == pytest.approx(math.exp(-0.7))
    assert epoch_weight_d(9, 10, m=3) == pytest.approx(math.exp(0.2))
    assert epoch_weight_d(2, 10, m=3) < 1.0 < epoch_weight_d(8, 10, m=3)


def test_d_printed_formula():
    assert epoch_weight_d(7, 10, m=3, form="printed") == pytest.approx(math.e)
    assert epoch_weight_d(0, 20, m=3, form="printed") == pytest.approx(math.exp(0.15))


# -- eq. 10: the all-negative penalty p -----------------------------------------------------------


def test_p_doubles_only_all_negative_images():
    probs = torch.tensor([[0.05, 0.09, 0.01],   # every prediction < 0.1 -> 2
                          [0.05, 0.50, 0.01],   # one above -> 1
                          [0.10, 0.10, 0.10]])  # max(ŷ - 0.1, 0) sums to 0 -> 2
    assert all_negative_penalty(probs).tolist() == [2.0, 1.0, 2.0]
    assert all_negative_penalty(probs, form="printed").tolist() == [1.0, 2.0, 1.0]
    assert all_negative_penalty(probs, threshold=0.04).tolist() == [1.0, 1.0, 1.0]


# -- eq. 12: sampling q of the non-existing part ----------------------------------------------------


def test_sampling_takes_round_q_of_each_rows_unknowns():
    unknown = torch.tensor([[1, 1, 1, 1, 0, 0, 0, 0, 0, 0],
                            [1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                            [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    g = torch.Generator().manual_seed(0)
    picked = sample_non_existing(unknown, 0.5, g)
    assert picked.sum(1).tolist() == [2, 1, 0, 5]
    assert not (picked & ~unknown).any()
    picked = sample_non_existing(unknown, 0.3, torch.Generator().manual_seed(0))
    assert picked.sum(1).tolist() == [1, 1, 0, 3]  # round(1.2)=1, at least 1, 0, round(3.0)=3
    assert torch.equal(sample_non_existing(unknown, 1.0), unknown)


def test_sampling_is_random_and_seeded():
    unknown = torch.ones(1, 40, dtype=torch.bool)
    a = sample_non_existing(unknown, 0.25, torch.Generator().manual_seed(1))
    b = sample_non_existing(unknown, 0.25, torch.Generator().manual_seed(1))
    c = sample_non_existing(unknown, 0.25, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # Over many draws every entry gets picked: the sample is not a fixed prefix.
    g = torch.Generator().manual_seed(3)
    hits = sum(sample_non_existing(unknown, 0.25, g).long() for _ in range(50))
    assert (hits > 0).all()


# -- eq. 12: the loss ---------------------------------------------------------------------------


def test_loss_matches_hand_computation():
    labels = torch.tensor([[1, -1, 0, 0, 0]], dtype=torch.float32)
    probs = [0.8, 0.3, 0.6, 0.1, 0.7]
    pseudo = torch.tensor([[0.9, 0.9, 0.5, 0.2, 0.4]])  # known entries' pseudo values are never read
    sampled = torch.tensor([[False, False, True, True, False]])  # entry 4 is unknown but not sampled
    alpha, beta, d = 0.7, 0.3, 2.0
    p = torch.tensor([2.0])
    got = ipl_loss(logit([probs]), labels, pseudo, sampled, alpha, beta, d, p)
    pos_e = math.log(0.8) / 2
    neg_e = math.log(1 - 0.3) / 2
    pos_s = (0.5 * math.log(0.6) + 0.2 * math.log(0.1)) / 2
    neg_s = (0.5 * math.log(0.4) + 0.8 * math.log(0.9)) / 2
    want = -2 * 0.7 * (pos_e + 2 * pos_s) - 2 * 0.3 * (neg_e + 2 * neg_s)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_loss_without_existing_or_sampled_parts():
    # No known label: only the sampled part counts; nothing sampled: only the known part.
    labels = torch.tensor([[0, 0], [1, 0]], dtype=torch.float32)
    pseudo = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    sampled = torch.tensor([[True, False], [False, False]])
    logits = logit([[0.6, 0.2], [0.9, 0.2]])
    got = ipl_loss(logits, labels, pseudo, sampled, 0.9, 0.1, 1.0, torch.ones(2))
    assert got[0].item() == pytest.approx(-0.9 * 0.5 * math.log(0.6) - 0.1 * 0.5 * math.log(0.4), rel=1e-5)
    assert got[1].item() == pytest.approx(-0.9 * math.log(0.9), rel=1e-5)


def test_alpha_beta_scope_existing_leaves_pseudo_terms_unweighted():
    labels = torch.tensor([[1, -1, 0, 0]], dtype=torch.float32)
    probs = [0.8, 0.3, 0.6, 0.1]
    pseudo = torch.tensor([[0.0, 0.0, 0.5, 0.2]])
    sampled = torch.tensor([[False, False, True, True]])
    got = ipl_loss(logit([probs]), labels, pseudo, sampled, 0.7, 0.3, 2.0, torch.tensor([1.0]), 1.0, 1.0)
    pos_s = (0.5 * math.log(0.6) + 0.2 * math.log(0.1)) / 2
    neg_s = (0.5 * math.log(0.4) + 0.8 * math.log(0.9)) / 2
    want = -0.7 * math.log(0.8) / 2 - 0.3 * math.log(0.7) / 2 - 2 * (pos_s + neg_s)
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_literal_weights_push_a_matching_prediction_above_its_pseudo_label():
    # The documented drift: with α > β, an entry predicted exactly at its pseudo label (0.5)
    # still has a gradient that raises the prediction (the optimum is αỹ/(αỹ + β(1-ỹ)) = 0.95).
    z = logit([[0.5]]).requires_grad_()
    unknown = torch.zeros(1, 1)
    ipl_loss(z, unknown, torch.tensor([[0.5]]), torch.ones(1, 1, dtype=torch.bool), 0.95, 0.05, 1.0, torch.ones(1)).sum().backward()
    assert z.grad.item() < 0
    z.grad = None
    ipl_loss(z, unknown, torch.tensor([[0.5]]), torch.ones(1, 1, dtype=torch.bool), 0.95, 0.05, 1.0, torch.ones(1),
             1.0, 1.0).sum().backward()
    assert z.grad.item() == pytest.approx(0.0, abs=1e-7)
    optimum = logit([[0.95]]).requires_grad_()
    ipl_loss(optimum, unknown, torch.tensor([[0.5]]), torch.ones(1, 1, dtype=torch.bool), 0.95, 0.05, 1.0, torch.ones(1)).sum().backward()
    assert optimum.grad.item() == pytest.approx(0.0, abs=1e-6)


# -- scores: the calibration shifts ------------------------------------------------------------------


def test_prior_logit_shift_is_where_the_weighted_bce_is_minimal():
    assert prior_logit_shift(0.95, 0.05) == pytest.approx(math.log(19))
    assert prior_logit_shift(0.5, 0.5) == 0.0
    # -απ log ŷ − β(1 − π) log(1 − ŷ) is flat at logit(π) + log(α/β): π = 0.2, α/β = 0.8/0.2.
    z = (logit(0.2) + math.log(4.0)).requires_grad_()
    loss = -(0.8 * 0.2 * torch.nn.functional.logsigmoid(z) + 0.2 * 0.8 * torch.nn.functional.logsigmoid(-z))
    loss.backward()
    assert z.grad.item() == pytest.approx(0.0, abs=1e-6)
    assert torch.sigmoid(z).item() == pytest.approx(0.5)  # απ / (απ + β(1 − π)) = 0.16 / 0.32
    with pytest.raises(ValueError):
        prior_logit_shift(0.0, 1.0)


def test_prior_matching_shift_mean_and_count():
    # mean: five predictions of 0.5 must average 0.2 -> s = logit(0.5) - logit(0.2) = log 4
    assert prior_matching_shift(torch.full((5,), 0.5), 0.2) == pytest.approx(math.log(4.0), abs=1e-9)
    # count: logits of [0.1, 0.2, 0.5, 0.8, 0.9] are ±2.197, ±1.386, 0; the 0.6 quantile lies
    # 40 % of the way from 0 to 1.386 = 0.5545, above which 2 of 5 logits (a share of 0.4) remain
    probs = torch.tensor([0.1, 0.2, 0.5, 0.8, 0.9])
    shift = prior_matching_shift(probs, 0.4, match="count")
    assert shift == pytest.approx(0.4 * math.log(4.0), rel=1e-6)
    assert (torch.logit(probs.double()) - shift > 0).float().mean().item() == pytest.approx(0.4)
    for bad in ({"rate": 0.0}, {"rate": 1.0}, {"rate": 0.5, "match": "median"}):
        with pytest.raises(ValueError):
            prior_matching_shift(probs, **bad)


# -- the method -------------------------------------------------------------------------------------


def make_ctx(n=12, c=5, epochs=4, seed=0, setting="pal"):
    rng = np.random.default_rng(seed)
    labels = rng.choice([-1, 0, 1], size=(n, c), p=[0.4, 0.4, 0.2]).astype(np.int8)
    return MethodContext(num_classes=c, class_names=[f"c{i}" for i in range(c)], train_labels=labels,
                         word_embeddings=np.zeros((c, 4), np.float32), epochs=epochs, steps_per_epoch=2,
                         setting=setting, known=0.6, seed=seed, generator=torch.Generator().manual_seed(seed))


def make_method(**overrides):
    ctx = make_ctx()
    method = ImbalancePseudoLabeling(ImbalancePseudoLabeling.make_options(overrides), ctx)
    torch.manual_seed(0)
    model = method.build_model(SmallCNN(width=4, out_channels=8))
    return method, model, ctx


def batch_of(ctx, rows):
    rows = torch.tensor(rows)
    g = torch.Generator().manual_seed(int(rows.sum()))
    inputs = torch.randn(len(rows), 3, 16, 16, generator=g)
    return Batch(inputs, torch.from_numpy(ctx.train_labels[rows.numpy()]).float(), rows)


def test_coefficients_and_ablations():
    method, _, _ = make_method()
    probs = torch.tensor([[0.05, 0.05, 0.05, 0.05, 0.05], [0.2, 0.05, 0.05, 0.05, 0.05]])
    alpha, beta, d, p = method.coefficients(LABELS, probs, epoch=1)
    assert (alpha, beta) == pytest.approx((0.7, 0.3))
    assert d == pytest.approx(math.exp((1 + 3) / 4 - 1))
    assert p.tolist() == [2.0, 1.0]
    ablated, _, _ = make_method(without_alpha_beta=True, without_d=True, without_p=True)
    alpha, beta, d, p = ablated.coefficients(LABELS, probs, epoch=1)
    assert (alpha, beta, d) == (1.0, 1.0, 1.0) and p.tolist() == [1.0, 1.0]


def test_pseudo_labels_initialised_then_updated_from_predictions():
    method, model, ctx = make_method(without_q=True)
    assert torch.all(method.pseudo_labels == 0.5) and method.pseudo_labels.shape == (12, 5)
    batch = batch_of(ctx, [3, 7, 1])
    model.train()
    with torch.no_grad():
        probs = torch.sigmoid(model(batch.inputs))  # BN in train mode: same batch, same output
    method.training_step(model, batch, epoch=0)
    table = method.pseudo_labels
    unknown = batch.labels == 0
    assert torch.allclose(table[[3, 7, 1]][unknown], probs[unknown], atol=1e-6)
    assert torch.all(table[[3, 7, 1]][~unknown] == 0.5)
    others = [i for i in range(12) if i not in (3, 7, 1)]
    assert torch.all(table[others] == 0.5)


def test_training_step_uses_stored_pseudo_labels_as_targets():
    method, model, ctx = make_method(without_q=True)
    batch = batch_of(ctx, [0, 2, 4, 5])
    method.pseudo_labels[[0, 2, 4, 5]] = torch.linspace(0.05, 0.95, 20).reshape(4, 5)
    stored = method.pseudo_labels[[0, 2, 4, 5]].clone()
    model.train()
    with torch.no_grad():
        logits = model(batch.inputs)
    out = method.training_step(model, batch, epoch=2)
    alpha, beta, d, p = method.coefficients(batch.labels, torch.sigmoid(logits), 2)
    # default alpha_beta_scope=existing: the pseudo-labelled terms are unweighted (α_ne = β_ne = 1)
    want = ipl_loss(logits, batch.labels, stored, batch.labels == 0, alpha, beta, d, p, 1.0, 1.0).mean()
    assert out["loss"].item() == pytest.approx(want.item(), rel=1e-5)
    literal, _, _ = make_method(without_q=True, alpha_beta_scope="all")
    literal.pseudo_labels[[0, 2, 4, 5]] = stored
    out = literal.training_step(model, batch, epoch=2)
    want = ipl_loss(logits, batch.labels, stored, batch.labels == 0, alpha, beta, d, p).mean()
    assert out["loss"].item() == pytest.approx(want.item(), rel=1e-5)
    out["loss"].backward()
    assert model.classifier.weight.grad is not None and torch.isfinite(model.classifier.weight.grad).all()


def test_epoch_log_entries_by_hand():
    method, model, ctx = make_method()
    batch = batch_of(ctx, [0, 1, 2, 3])
    model.train()
    with torch.no_grad():
        probs = torch.sigmoid(model(batch.inputs))
    out = method.training_step(model, batch, epoch=0)
    unknown = batch.labels == 0
    alpha, beta = batch_alpha_beta(batch.labels)
    assert out["alpha"].item() == pytest.approx(alpha) and out["beta"].item() == pytest.approx(beta)
    assert out["d"].item() == pytest.approx(math.exp(3 / 4 - 1))
    assert out["pseudo_pos"].item() == ((probs >= 0.5) & unknown).sum().item()
    assert out["pseudo_pos_rate"].item() == pytest.approx(((probs >= 0.5) & unknown).sum().item() / unknown.sum().item())
    want_sampled = sum(max(1, math.floor(int(n) * 0.5 + 0.5)) if n else 0 for n in unknown.sum(1))
    assert out["sampled"].item() == want_sampled
    assert out["penalised"].item() == pytest.approx((all_negative_penalty(probs) > 1).float().mean().item())


def test_predict_subtracts_the_score_shift():
    # prior-shift: log(α/β) of the whole training table (β = max(P/T, γ), α = 1 − β)
    method, model, ctx = make_method(calibration="prior-shift")
    alpha, beta = batch_alpha_beta(torch.as_tensor(ctx.train_labels))
    assert method.score_shift == pytest.approx(math.log(alpha / beta))
    model.eval()
    inputs = batch_of(ctx, [0, 1]).inputs
    with torch.no_grad():
        want = torch.sigmoid(model(inputs) - math.log(alpha / beta))
        assert torch.allclose(method.predict(model, inputs), want)
    none, _, _ = make_method(calibration="none")
    assert none.score_shift == 0.0
    ablated, _, _ = make_method(without_alpha_beta=True)  # α = β = 1: nothing to undo
    assert ablated.score_shift == 0.0


def test_prior_count_refits_the_shift_on_the_pseudo_labels_each_epoch():
    method, model, ctx = make_method()  # default calibration=prior-count
    labels = torch.as_tensor(ctx.train_labels)
    unknown = labels == 0
    alpha, beta = batch_alpha_beta(labels)
    assert method.score_shift == pytest.approx(math.log(alpha / beta))  # before the first epoch end
    method.pseudo_labels = torch.rand(method.pseudo_labels.shape, generator=torch.Generator().manual_seed(5))
    method.on_epoch_end(model, 0)
    rate = (labels > 0).sum().item() / (labels != 0).sum().item()
    assert method.score_shift == pytest.approx(prior_matching_shift(method.pseudo_labels[unknown], rate, "count"))
    above = (torch.logit(method.pseudo_labels[unknown].double()) > method.score_shift).double().mean().item()
    assert above == pytest.approx(rate, abs=1 / unknown.sum().item())
    match, _, _ = make_method(calibration="prior-match")
    match.pseudo_labels = method.pseudo_labels.clone()
    match.on_epoch_end(model, 0)
    shifted = torch.sigmoid(torch.logit(match.pseudo_labels[unknown].double()) - match.score_shift)
    assert shifted.mean().item() == pytest.approx(rate, abs=1e-6)


def test_prior_count_keeps_the_alpha_beta_shift_without_known_negatives():
    # PPL: the known entries are all positive, their rate says nothing about the unknown ones
    ctx = make_ctx()
    ctx.train_labels = np.where(ctx.train_labels < 0, 0, ctx.train_labels).astype(np.int8)
    method = ImbalancePseudoLabeling(ImbalancePseudoLabeling.make_options({}), ctx)
    before = method.score_shift
    method.pseudo_labels.uniform_(0, 1)
    method.on_epoch_end(None, 0)
    assert method.score_shift == before == pytest.approx(prior_logit_shift(*batch_alpha_beta(torch.as_tensor(ctx.train_labels))))
    # T = the known entries makes β = 1, α = 0 under PPL: no finite shift, one clear line
    with pytest.raises(BenchError, match="calibration=none"):
        ImbalancePseudoLabeling(ImbalancePseudoLabeling.make_options({"ratio_denominator": "known"}), ctx)
    ImbalancePseudoLabeling(ImbalancePseudoLabeling.make_options({"ratio_denominator": "known", "calibration": "none"}), ctx)


def test_paper_literal_profile_is_the_printed_paper():
    literal = ImbalancePseudoLabeling.make_options(ImbalancePseudoLabeling.profiles["paper-literal"])
    assert (literal.alpha_beta_scope, literal.d_form, literal.p_form, literal.calibration) == ("all", "printed", "printed", "none")
    default = ImbalancePseudoLabeling.make_options({})
    assert (default.alpha_beta_scope, default.ratio_denominator, default.d_form, default.p_form, default.calibration,
            default.q, default.gamma, default.m) == ("existing", "all", "prose", "prose", "prior-count", 0.5, 0.05, 3.0)


def test_lifecycle_state_round_trip_and_predictions():
    method, model, ctx = make_method()
    train = TrainConfig(lr=1e-2)
    opt, sched = method.configure_optimizers(model, train)
    method.on_train_start(model)
    for epoch in range(2):
        method.on_epoch_start(model, epoch)
        for rows in ([0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]):
            out = method.training_step(model, batch_of(ctx, rows), epoch)
            assert torch.isfinite(out["loss"])
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
        method.on_epoch_end(model, epoch)
        sched.step()
    model.eval()
    scores = method.predict(model, batch_of(ctx, [0, 1]).inputs)
    assert scores.shape == (2, 5) and torch.all((scores >= 0) & (scores <= 1))
    assert not torch.all(method.pseudo_labels == 0.5)
    buf = io.BytesIO()
    torch.save(method.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    fresh, _, _ = make_method()
    fresh.load_state_dict(state)
    assert torch.equal(fresh.pseudo_labels, method.pseudo_labels)
    assert fresh.score_shift == method.score_shift != make_method()[0].score_shift  # re-fitted at each epoch end
    with pytest.raises(BenchError, match="pseudo_labels"):
        fresh.load_state_dict({"pseudo_labels": torch.zeros(3, 3)})


def test_bad_options_are_one_line_errors():
    for bad in ({"q": 0.0}, {"q": 1.5}, {"d_form": "x"}, {"p_form": "y"}, {"ratio_denominator": "z"},
                {"alpha_beta_scope": "w"}, {"calibration": "v"}):
        with pytest.raises(BenchError, match="method 'ipl': option"):
            make_method(**bad)


def test_registration_and_settings():
    assert ipl.mlrpl_methods() == [ImbalancePseudoLabeling]
    assert ImbalancePseudoLabeling.name == "ipl"
    assert {"pal", "ppl", "spl"} <= set(ImbalancePseudoLabeling.settings)
    assert set(ImbalancePseudoLabeling.profiles["paper"]) <= TrainConfig.field_names()
