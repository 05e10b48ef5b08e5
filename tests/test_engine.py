"""The training engine on synthetic tensors: selection on validation, determinism, resume,
NaN guard, and every test image scored exactly once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from mlrpl_bench.checkpoint import load_checkpoint
from mlrpl_bench.engine import Engine, EngineConfig, NonFiniteLossError
from mlrpl_bench.method import MethodContext, TrainConfig
from mlrpl_bench.metrics import compute_metrics
from mlrpl_bench.models.backbones import SmallCNN
from mlrpl_bench.plugin_manager import get_method

C = 4


class TensorRows(Dataset):
    """Rows of in-memory images; the class-c signal is a bright patch in quadrant-ish stripe c."""

    def __init__(self, images, labels):
        self.images, self.labels = images, torch.as_tensor(labels, dtype=torch.float32)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.labels[i], i


def make_data(n: int, seed: int):
    g = np.random.default_rng(seed)
    full = np.where(g.random((n, C)) < 0.4, 1, -1).astype(np.int8)
    full[np.arange(n), g.integers(0, C, n)] = 1
    images = torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 0.3
    for c in range(C):
        images[torch.as_tensor(full[:, c] == 1), c % 3, 4 * c:4 * c + 4, :] += 1.5
    return images, full


def build_engine(tmp_path=None, epochs=3, resume=False, method_name="partial-bce", on_epoch_end=None, lr=3e-3, seed=0):
    torch.manual_seed(seed)
    tr_x, tr_y = make_data(40, 1)
    va_x, va_y = make_data(13, 2)
    te_x, te_y = make_data(23, 3)  # 23 is not a multiple of the batch size
    partial = tr_y.copy()
    partial[np.random.default_rng(0).random(partial.shape) < 0.5] = 0
    method_cls = get_method(method_name)
    ctx = MethodContext(num_classes=C, class_names=[f"c{i}" for i in range(C)], train_labels=partial,
                        word_embeddings=np.eye(C, 8, dtype=np.float32), epochs=epochs, steps_per_epoch=5,
                        setting="pal", known=0.5, seed=seed)
    method = method_cls(method_cls.make_options(), ctx)
    model = method.build_model(SmallCNN(width=8, out_channels=16))
    opt, sched = method.configure_optimizers(model, TrainConfig(lr=lr))
    cfg = EngineConfig(epochs=epochs, batch_size=8, seed=seed, device=torch.device("cpu"), progress=False,
                       checkpoint_path=(tmp_path / "ckpt.pt") if tmp_path else None)
    engine = Engine(method, model, opt, sched, train_rows=TensorRows(tr_x, partial), val_rows=TensorRows(va_x, va_y),
                  test_rows=TensorRows(te_x, te_y), val_targets=va_y, test_targets=te_y, metric_fn=compute_metrics,
                  config=cfg, on_epoch_end=on_epoch_end)
    engine.resume_state = load_checkpoint(tmp_path / "ckpt.pt") if resume else None
    return engine


def fit(engine):
    return engine.fit(engine.resume_state)


def test_every_test_image_is_scored_once_and_best_epoch_is_chosen_on_validation():
    result = fit(build_engine(epochs=3))
    assert result.test_scores.shape == (23, C)
    assert np.isfinite(result.test_scores).all()
    val_maps = [log["val/mAP"] for log in result.epoch_logs]
    assert result.best_epoch == int(np.argmax(val_maps))
    assert result.val_metrics["mAP"] == pytest.approx(max(val_maps))
    assert result.epochs_run == 3
    assert {"train/loss", "lr", "time", "val/mAP", "val/OF1"} <= set(result.epoch_logs[0])


def test_same_seed_gives_identical_results():
    a = fit(build_engine(epochs=2))
    b = fit(build_engine(epochs=2))
    np.testing.assert_array_equal(a.test_scores, b.test_scores)
    assert a.test_metrics["mAP"] == b.test_metrics["mAP"]


def test_resume_after_interruption_equals_uninterrupted_run(tmp_path):
    full = fit(build_engine(epochs=3))

    class Killed(Exception):
        pass

    def die_after_second_epoch(epoch, logs):
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        fit(build_engine(tmp_path, epochs=3, on_epoch_end=die_after_second_epoch))
    # the checkpoint holds epoch 0 (epoch 1 died before its checkpoint): resume trains 1 and 2
    resumed = fit(build_engine(tmp_path, epochs=3, resume=True))
    assert resumed.resumed_from_epoch == 1
    np.testing.assert_array_equal(resumed.test_scores, full.test_scores)
    assert [log["val/mAP"] for log in resumed.epoch_logs] == [log["val/mAP"] for log in full.epoch_logs]


def test_non_finite_loss_stops_with_step_method_and_last_finite_loss():
    engine = build_engine(epochs=1)
    original = engine.method.training_step
    calls = {"n": 0}

    def exploding(model, batch, epoch):
        calls["n"] += 1
        out = original(model, batch, epoch)
        if calls["n"] == 3:
            out["loss"] = out["loss"] * float("nan")
        return out

    engine.method.training_step = exploding
    with pytest.raises(NonFiniteLossError, match=r"'partial-bce'.*nan at epoch 0, step 2 \(last finite loss: [0-9.]+\)"):
        engine.fit()


def test_after_optimizer_step_runs_after_every_update_with_the_updated_weights():
    """The hook an EMA teacher needs (issue 20.8): once per optimizer step, after the step."""
    engine = build_engine(epochs=2)
    calls, seen = [], []
    head = next(p for p in engine.model.parameters() if p.requires_grad)
    training_step = engine.method.training_step

    def recording_step(model, batch, epoch):
        seen.append(head.detach().clone())  # the weights before this step's update
        return training_step(model, batch, epoch)

    engine.method.training_step = recording_step

    def after(model, epoch, step_in_epoch):
        assert not torch.equal(head.detach(), seen[-1]), "called before the update"
        calls.append((epoch, step_in_epoch))

    engine.method.after_optimizer_step = after
    fit(engine)
    assert calls == [(e, s) for e in range(2) for s in range(5)]  # 40 training images, batch 8: 5 steps
