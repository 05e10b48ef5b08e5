"""HST: prototype CST (K-means, eq. 7-8), DTL (eq. 12-15), ablations, resume and lifecycle."""

import io
import json
import math

import numpy as np
import pytest
import torch

from mlrpl_bench.method import Batch, MethodContext, TrainConfig
from mlrpl_bench.models.backbones import SmallCNN
from mlrpl_bench.plugins._sarl.kmeans import kmeans_centres
from mlrpl_bench.plugins._semantic_transfer.equations import (dtl_loss, prototype_contrastive_loss, prototype_scores,
                                                              pseudo_positives, soft_labels)
from mlrpl_bench.plugins.hst import HST


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def setup(overrides=None, epochs=1, n=12, c=4, seed=0, labels=None):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if labels is None:
        labels = rng.choice([-1, 0, 1], size=(n, c), p=[0.4, 0.3, 0.3]).astype(np.int8)
        labels[:, 0] = 1
    labels = np.asarray(labels, dtype=np.int8)
    n, c = labels.shape
    inputs = torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
    batches = [Batch(inputs[i:i + 4], torch.tensor(labels[i:i + 4]).float(), torch.arange(i, min(i + 4, n)))
               for i in range(0, n, 4)]
    ctx = MethodContext(num_classes=c, class_names=[f"c{i}" for i in range(c)], train_labels=labels,
                        word_embeddings=rng.random((c, 5)).astype(np.float32), epochs=epochs, steps_per_epoch=len(batches),
                        setting="pal", known=0.5, seed=0, feature_batches=lambda: iter(batches),
                        generator=torch.Generator().manual_seed(0))
    method = HST(HST.make_options(overrides or {}), ctx)
    model = method.build_model(SmallCNN(width=4, out_channels=8))
    full = Batch(inputs, torch.tensor(labels).float(), torch.arange(n))
    return method, model, full


# ---------------------------------------------------------------------------------------------
# equations
# ---------------------------------------------------------------------------------------------


def test_prototype_similarity_eq7_8_by_hand():
    feats = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # 1 image, 2 categories
    protos = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]],
                           [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    valid = torch.tensor([[True, True, False], [False, False, False]])
    scores, has = prototype_scores(feats, protos, valid)
    # category 0: mean(cos([1,0],[1,0]), cos([1,0],[0,1])) = 0.5; the invalid third is ignored
    assert scores[0, 0].item() == pytest.approx(0.5)
    # category 1 has no prototype: no score and never a pseudo label, whatever θ
    assert has.tolist() == [True, False] and scores[0, 1].item() == 0.0
    assert pseudo_positives(scores, torch.zeros(1, 2), -5.0, has.unsqueeze(0)).tolist() == [[1.0, 0.0]]


def test_dtl_loss_eq12_15_value_and_threshold_gradient():
    scores = torch.tensor([[0.8, 0.3, 0.9]])
    labels = torch.tensor([[1.0, -1.0, 0.0]])  # the unknown entry has no threshold difference
    theta = torch.tensor(0.5, requires_grad=True)
    loss = dtl_loss(scores, theta, labels, form="paper", temperature=1.0)
    # d = [0.3, -0.2]: partial BCE with d as a logit, normalised by the 2 known labels
    expected = (math.log1p(math.exp(-0.3)) + math.log1p(math.exp(-0.2))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert theta.grad.item() == pytest.approx(-((sig(0.3) - 1) + sig(-0.2)) / 2, rel=1e-5)
    # a known positive scoring above θ pulls θ down (positive gradient), a negative pushes it up
    t1 = torch.tensor(0.5, requires_grad=True)
    dtl_loss(torch.tensor([[0.8]]), t1, torch.tensor([[1.0]]), form="paper").backward()
    t2 = torch.tensor(0.5, requires_grad=True)
    dtl_loss(torch.tensor([[0.8]]), t2, torch.tensor([[-1.0]]), form="paper").backward()
    assert t1.grad.item() > 0 > t2.grad.item()


def test_dtl_temperature_scales_the_surrogate_and_keeps_theta_in_range():
    scores, labels = torch.tensor([[0.8, 0.3]]), torch.tensor([[1.0, -1.0]])
    theta = torch.tensor(0.5, requires_grad=True)
    loss = dtl_loss(scores, theta, labels, form="paper", temperature=0.1)
    assert loss.item() == pytest.approx((math.log1p(math.exp(-3.0)) + math.log1p(math.exp(-2.0))) / 2, rel=1e-5)
    # imbalanced known labels (10% positive): τ = 1 drives θ above every score, τ = 0.1 does not
    g = torch.Generator().manual_seed(0)
    lab = torch.where(torch.rand(1, 4000, generator=g) < 0.1, 1.0, -1.0)
    s = torch.where(lab > 0, 0.7, 0.3) + 0.15 * torch.randn(1, 4000, generator=g)
    learned = {}
    for tau in (1.0, 0.1):
        th = torch.tensor(1.0, requires_grad=True)
        opt = torch.optim.SGD([th], lr=0.5 * tau)
        for _ in range(400):
            opt.zero_grad()
            dtl_loss(s, th, lab, form="paper", temperature=tau).backward()
            opt.step()
        learned[tau] = th.item()
    assert learned[1.0] > s.max().item()
    assert 0.55 < learned[0.1] < 0.75
    with pytest.raises(Exception, match="dtl_temperature"):
        setup({"dtl_temperature": 0.0})


def test_dtl_official_form_clamps():
    theta = torch.tensor(0.5, requires_grad=True)
    dtl_loss(torch.tensor([[0.3]]), theta, torch.tensor([[1.0]]), form="official").backward()
    assert theta.grad.item() == 0.0  # d < 0 is clamped: no gradient (official soft label)
    theta2 = torch.tensor(0.5, requires_grad=True)
    dtl_loss(torch.tensor([[0.8]]), theta2, torch.tensor([[1.0]]), form="official").backward()
    assert theta2.grad.item() > 0
    # soft label clamp(score − θ, 0, 1); the loss is the BCE with it as a logit over the known entries
    scores, labels = torch.tensor([[0.8, 0.3, 0.9], [0.2, 0.6, 0.7]]), torch.tensor([[1.0, -1.0, 0.0], [0.0, 0.0, 1.0]])
    assert torch.allclose(soft_labels(scores, 0.5), torch.tensor([[0.3, 0.0, 0.4], [0.0, 0.1, 0.2]]))
    sp = lambda x: math.log1p(math.exp(-x))  # noqa: E731 - -log σ(x)
    expected = (sp(0.3) + sp(-0.0) + sp(0.2)) / 3  # three known entries, the batch's mean
    assert dtl_loss(scores, torch.tensor(0.5), labels).item() == pytest.approx(expected, rel=1e-5)


def test_prototype_contrastive_loss_official_sign():
    scores = torch.tensor([[0.5, -0.25, 0.9]])
    labels = torch.tensor([[1.0, -1.0, 0.0]])
    # official: 1 + s·y over every entry: (1.5 + 1.25 + 1) / 3 -- a known positive close to its
    # prototypes costs *more* (the code's sign)
    assert prototype_contrastive_loss(scores, labels).item() == pytest.approx(3.75 / 3)
    assert prototype_contrastive_loss(scores, labels, "pull").item() == pytest.approx((0.5 + 0.75 + 1) / 3)


def test_kmeans_recovers_clusters_and_handles_small_sets():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(30, 2, generator=g) * 0.05 + torch.tensor([5.0, 0.0])
    b = torch.randn(30, 2, generator=g) * 0.05 + torch.tensor([-5.0, 0.0])
    centres = kmeans_centres(torch.cat([a, b]), 2, seed=1)
    got = sorted(centres[:, 0].tolist())
    assert got[0] == pytest.approx(-5.0, abs=0.1) and got[1] == pytest.approx(5.0, abs=0.1)
    three = torch.randn(3, 4)
    assert torch.equal(kmeans_centres(three, 10, seed=0), three)
    assert kmeans_centres(torch.zeros(0, 4), 10, seed=0).shape == (0, 4)
    again = kmeans_centres(torch.cat([a, b]), 2, seed=1)
    assert torch.equal(again, centres)  # deterministic given the seed


# ---------------------------------------------------------------------------------------------
# method
# ---------------------------------------------------------------------------------------------


def test_prototypes_from_known_positives_only():
    labels = np.array([[1, 0, 1], [1, -1, 0], [1, 0, -1], [1, 0, 0]], dtype=np.int8)
    method, model, _ = setup(labels=labels, overrides={"num_prototypes": 3})
    method.on_epoch_start(model, 0)  # 1-epoch run: prototypes at epoch 0
    assert method.prototypes.shape == (3, 3, model.feature_dim)
    # class 0: 4 known positives -> 3 prototypes; class 1: none (no NaN, nothing valid); class 2: 1
    assert method.prototype_valid.sum(dim=1).tolist() == [3, 0, 1]
    assert torch.isfinite(method.prototypes).all()
    model.eval()
    with torch.no_grad():
        feats, _, _ = model.category_features(torch.cat([b.inputs for b in method.ctx.feature_batches()]))
    assert torch.allclose(method.prototypes[2, 0], feats[0, 2], atol=1e-5)  # the single positive itself


def test_prototype_schedule_in_lifecycle():
    method, model, _ = setup(epochs=20)
    for epoch in range(20):
        method.on_epoch_start(model, epoch)
        if epoch < 5:
            assert method.prototypes is None
    assert method.prototype_epoch == 15


def test_thresholds_share_the_weights_adam_group_and_decay():
    method, model, batch = setup()
    assert model.thresholds.tolist() == [1.0, 1.0]  # start at 1.0
    opt, _ = method.configure_optimizers(model, TrainConfig(lr=1e-2, weight_decay=5e-4))
    assert len(opt.param_groups) == 1 and any(p is model.thresholds for p in opt.param_groups[0]["params"])
    method.on_epoch_start(model, 0)
    out = method.training_step(model, batch, 0)
    out["loss"].backward()
    # official DTL at θ = 1: every score is <= 1, the clamped soft label passes no gradient, but
    # θ is in the graph (zero gradient, not none), so Adam applies the weight decay: θ moves down
    assert model.thresholds.grad is not None and (model.thresholds.grad == 0).all()
    opt.step()
    assert (model.thresholds.detach() < 1.0).all()


def test_dtl_gradients_reach_thresholds_in_training_step():
    method, model, batch = setup({"dtl_form": "paper", "threshold_optimizer": "separate"})
    assert model.thresholds.tolist() == [1.0, 1.0]  # start at 1.0
    opt, _ = method.configure_optimizers(model, TrainConfig(lr=1e-2))
    assert any(g.get("weight_decay") == 0.0 and g["params"][0] is model.thresholds for g in opt.param_groups)
    method.on_epoch_start(model, 0)
    out = method.training_step(model, batch, 0)
    out["loss"].backward()
    assert model.thresholds.grad is not None and (model.thresholds.grad != 0).all()
    assert out["dtl"].item() > 0
    before = model.thresholds.detach().clone()
    opt.step()
    assert not torch.equal(before, model.thresholds.detach())
    # before pseudo labels start, DTL is off: no gradient for the thresholds
    late, late_model, late_batch = setup(epochs=20)
    late.training_step(late_model, late_batch, 0)["loss"].backward()
    assert late_model.thresholds.grad is None


def test_hst_pseudo_labels_use_learned_thresholds_and_spare_known_entries():
    method, model, batch = setup()
    method.on_epoch_start(model, 0)
    with torch.no_grad():
        model.thresholds.fill_(-10.0)  # everything passes
    intra, cross = method.pseudo_labels(model, batch.inputs, batch.labels, 0)
    unknown = batch.labels == 0
    assert torch.equal(intra, unknown.float())  # every image has a known positive (column 0)
    assert cross[~unknown].sum() == 0 and cross[unknown].sum() > 0
    with torch.no_grad():
        model.thresholds.fill_(10.0)
    intra, cross = method.pseudo_labels(model, batch.inputs, batch.labels, 0)
    assert intra.sum() == 0 and cross.sum() == 0


@pytest.mark.parametrize("ablation", ["fixed-threshold", "cst-instance", "cst-only", "ist-only", "ist-stat", "baseline", "sa"])
def test_hst_ablations_train(ablation):
    method, model, batch = setup({"ablation": ablation})
    assert (model.thresholds is None) == (ablation in ("fixed-threshold", "baseline"))
    method.on_epoch_start(model, 0)
    out = method.training_step(model, batch, 0)
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    if ablation == "cst-instance":
        assert method.prototypes is None  # instance-level similarities need no prototypes
    if ablation == "fixed-threshold":
        assert out["theta_intra"].item() == pytest.approx(0.7)


def test_resume_restores_prototypes_and_thresholds():
    method, model, batch = setup({"num_prototypes": 2})
    opt, _ = method.configure_optimizers(model, TrainConfig(lr=5e-2))
    method.on_epoch_start(model, 0)
    for _ in range(3):
        out = method.training_step(model, batch, 0)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert model.thresholds.detach().ne(1.0).all()
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "method": method.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    fresh, fresh_model, _ = setup({"num_prototypes": 2}, seed=0)
    assert fresh.prototypes is None
    fresh_model.load_state_dict(state["model"])
    fresh.load_state_dict(state["method"])
    assert torch.equal(fresh_model.thresholds, model.thresholds)
    assert torch.equal(fresh.prototypes, method.prototypes)
    assert torch.equal(fresh.prototype_valid, method.prototype_valid)
    model.eval()
    fresh_model.eval()
    assert torch.equal(fresh.predict(fresh_model, batch.inputs), method.predict(model, batch.inputs))
    for a, b in zip(fresh.pseudo_labels(fresh_model, batch.inputs, batch.labels, 0),
                    method.pseudo_labels(model, batch.inputs, batch.labels, 0)):
        assert torch.equal(a, b)


def test_hst_lifecycle_loss_decreases_and_predict_in_unit_interval():
    method, model, batch = setup()
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
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    method.on_epoch_end(model, 0)
    model.eval()
    probs = method.predict(model, batch.inputs)
    assert probs.shape == (12, 4) and ((probs >= 0) & (probs <= 1)).all()


def test_profiles():
    assert HST.profiles["paper"]["batch_size"] == 32 and HST.profiles["paper"]["backbone"] == "resnet101-pool2"
    assert HST.profiles["paper-literal"]["dtl_form"] == "paper" and HST.make_options({}).dtl_form == "official"
    opts = HST.make_options({})
    assert (opts.thresholds, opts.cst_similarity, opts.num_prototypes, opts.dtl_init) == ("dtl", "prototype", 10, 1.0)
    assert (opts.lambda_ist, opts.lambda_cst, opts.lambda_dtl) == (10.0, 0.05, 0.1)


# ---------------------------------------------------------------------------------------------
# through the engine and the CLI
# ---------------------------------------------------------------------------------------------


class _Rows(torch.utils.data.Dataset):
    def __init__(self, images, labels):
        self.images, self.labels = images, torch.as_tensor(labels, dtype=torch.float32)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.labels[i], i


def _engine(tmp_path, epochs, resume=False, on_epoch_end=None):
    from mlrpl_bench.engine import Engine, EngineConfig
    from mlrpl_bench.metrics import compute_metrics

    c = 3
    g = np.random.default_rng(0)

    def data(n, seed):
        full = np.where(np.random.default_rng(seed).random((n, c)) < 0.5, 1, -1).astype(np.int8)
        full[:, 0] = 1
        x = torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 0.3
        for k in range(c):
            x[torch.as_tensor(full[:, k] == 1), k, 4 * k:4 * k + 4] += 1.5
        return x, full

    (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = data(24, 1), data(8, 2), data(8, 3)
    partial = tr_y.copy()
    partial[g.random(partial.shape) < 0.5] = 0
    torch.manual_seed(0)
    ctx = MethodContext(num_classes=c, class_names=["a", "b", "c"], train_labels=partial,
                        word_embeddings=np.eye(c, 4, dtype=np.float32), epochs=epochs, steps_per_epoch=3,
                        setting="pal", known=0.5, seed=0)
    method = HST(HST.make_options({"prototype_every": 0, "num_prototypes": 2}), ctx)
    model = method.build_model(SmallCNN(width=4, out_channels=8))
    opt, sched = method.configure_optimizers(model, TrainConfig(lr=3e-3))
    cfg = EngineConfig(epochs=epochs, batch_size=8, seed=0, device=torch.device("cpu"), progress=False,
                       checkpoint_path=tmp_path / "ckpt.pt")
    engine = Engine(method, model, opt, sched, train_rows=_Rows(tr_x, partial), val_rows=_Rows(va_x, va_y),
                    test_rows=_Rows(te_x, te_y), val_targets=va_y, test_targets=te_y, metric_fn=compute_metrics,
                    config=cfg, on_epoch_end=on_epoch_end)
    from mlrpl_bench.checkpoint import load_checkpoint
    from mlrpl_bench.data.loading import FeatureBatches

    ctx.feature_batches = FeatureBatches(_Rows(tr_x, partial), batch_size=8, device=torch.device("cpu"))
    engine.resume_state = load_checkpoint(tmp_path / "ckpt.pt") if resume else None
    return engine, method


def test_engine_resume_restores_prototypes_and_thresholds(tmp_path):
    # 4 epochs: pseudo labels from epoch 1, prototypes computed once there (prototype_every=0).
    full_engine, _ = _engine(tmp_path / "a", 4)
    full = full_engine.fit()
    from mlrpl_bench.checkpoint import load_checkpoint

    last = load_checkpoint(tmp_path / "a" / "ckpt.pt")["method"]  # after the last epoch
    assert last["prototype_epoch"] == 1 and last["prototypes"].shape == (3, 2, 4)  # D = half the backbone's 8

    class Killed(Exception):
        pass

    def die(epoch, logs):
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        _engine(tmp_path / "b", 4, on_epoch_end=die)[0].fit()
    # the checkpoint holds epoch 1: its prototypes and learned thresholds come back on resume,
    # and nothing is recomputed from the resumed model (which would change the result).
    engine, _ = _engine(tmp_path / "b", 4, resume=True)
    resumed = engine.fit(engine.resume_state)
    assert resumed.resumed_from_epoch == 2
    assert load_checkpoint(tmp_path / "b" / "ckpt.pt")["method"]["prototype_epoch"] == 1
    np.testing.assert_array_equal(resumed.test_scores, full.test_scores)
    assert [e["train/theta_intra"] for e in resumed.epoch_logs] == [e["train/theta_intra"] for e in full.epoch_logs]


@pytest.mark.parametrize("blending", [False, True])
def test_hst_end_to_end_cli(cli, tmp_path, blending):
    from conftest import TINY_SCENES
    from mlrpl_bench.results import read_record

    extra = ["--option", "feature_blending=true"] if blending else []
    res = cli("run", "--plugin", "hst", "--known", "0.5", "--epochs", "1", "--output", tmp_path,
              "--option", "num_prototypes=2", *extra, *TINY_SCENES)
    assert res.exit_code == 0, res.stderr
    # Non-default options name the run's directory, so an ablation never meets the default run.
    variant = "feature_blending-True_num_prototypes-2" if blending else "num_prototypes-2"
    run_dir = tmp_path / f"hst__digit-scenes__pal__0.5__seed0__{variant}"
    rec = read_record(run_dir / "record.json")
    assert rec["method"]["name"] == "hst" and rec["method"]["options"]["num_prototypes"] == 2
    assert rec["method"]["options"]["feature_blending"] is blending
    assert 0 <= rec["metrics"]["test"]["mAP"] <= 100
    # One epoch: blending starts at epoch 0 (a quarter of the epochs, rounded) and is logged.
    first_epoch = json.loads((run_dir / rec["epoch_log"]).read_text().splitlines()[0])
    assert ("train/iprb_blended" in first_epoch) is blending


# ---------------------------------------------------------------------------------------------
# HST w/ FB (Table 8): DSRB's feature blending added to HST
# ---------------------------------------------------------------------------------------------


def test_feature_blending_parameters_exist_only_when_asked():
    _, plain, _ = setup()
    assert "alpha" not in plain.state_dict() and "beta" not in plain.state_dict()  # old checkpoints still load
    method, model, _ = setup({"feature_blending": True})
    assert model.alpha.tolist() == 0.5 and model.beta.tolist() == 0.5  # dsrb's default: one scalar each
    opt, _ = method.configure_optimizers(model, TrainConfig(weight_decay=5e-4))
    assert len(opt.param_groups) == 1  # official: α, β and θ in the weights' group
    assert sum(1 for g in opt.param_groups for p in g["params"] if p is model.alpha) == 1
    method, model, _ = setup({"feature_blending": True, "threshold_optimizer": "separate"})
    method.blender.settings.coefficient_decay = "separate"
    opt, _ = method.configure_optimizers(model, TrainConfig(weight_decay=5e-4))
    no_decay = [g for g in opt.param_groups if g["weight_decay"] == 0.0]
    assert {id(p) for g in no_decay for p in g["params"]} == {id(model.alpha), id(model.beta), id(model.thresholds)}


def test_feature_blending_adds_the_blended_partial_bce_from_the_blend_epoch():
    from mlrpl_bench.plugins._blending.functions import soft_partial_bce

    method, model, batch = setup({"feature_blending": True}, epochs=4)
    assert method.blender.start_epoch == 1  # a quarter of the epochs, as in dsrb
    method.on_epoch_start(model, 0)
    before = method.training_step(model, batch, 0)
    assert "blend" in before and before["blend"].item() == 0.0 and "iprb_blended" not in before
    method.on_epoch_start(model, 1)
    assert method.blender.prototype_epoch == 1 and bool(method.blender.prototype_valid.any())
    generator_state = method.ctx.generator.get_state()
    out = method.training_step(model, batch, 1)
    assert out["iprb_blended"].item() > 0 and out["pprb_blended"].item() > 0
    # Recompute eq. 14's blended terms with the same random draws: the logged "blend" is their
    # batch mean, and it is part of the classification loss.
    method.ctx.generator.set_state(generator_state)
    labels = batch.labels
    again = model(batch.inputs, return_all=True, blend=method.blender.blend_fn(labels))
    expected = sum(soft_partial_bce(logits, soft, reduction="entries") for logits, soft, _ in again.blended.values())
    assert out["blend"].item() == pytest.approx(expected.item(), rel=1e-5)
    iprb_logits, iprb_labels, iprb_mask = again.blended["iprb"]
    assert torch.allclose(iprb_labels[iprb_mask], torch.full_like(iprb_labels[iprb_mask], 0.5))  # 1 - α, α = 0.5
    model.zero_grad()
    out["loss"].backward()
    assert model.alpha.grad is not None and model.alpha.grad.abs().sum() > 0  # α learns through the blended loss
    assert torch.isfinite(out["loss"])


def test_feature_blending_state_round_trip_and_mismatch_error():
    method, model, batch = setup({"feature_blending": True}, epochs=4)
    method.on_epoch_start(model, 1)
    method.training_step(model, batch, 1)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "method": method.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    fresh, fresh_model, _ = setup({"feature_blending": True}, epochs=4)
    fresh_model.load_state_dict(state["model"])
    fresh.load_state_dict(state["method"])
    assert torch.equal(fresh.blender.prototypes, method.blender.prototypes)
    assert fresh.blender.prototype_epoch == 1 and not fresh.blender.prototypes_due(1)
    plain, _, _ = setup(epochs=4)
    plain_state = plain.state_dict()
    with pytest.raises(Exception, match="feature_blending=true"):
        fresh.load_state_dict(plain_state)


def test_feature_blending_joins_the_published_hst_w_fb_row():
    from mlrpl_bench.leaderboard.reference import ReferenceIndex, load_reference

    index = ReferenceIndex(load_reference())
    variant = index.resolve_variant("hst", {"feature_blending": True})
    assert variant == "feature_blending=true"
    assert index.value("hst", "coco2014", "pal", "ave", variant=variant) == 78.7
    assert index.resolve_variant("hst", {"feature_blending": False}) == ""
