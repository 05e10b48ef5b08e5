"""The engine's GPU path, checked on the CPU: no per-step host reads, the first non-finite step still
named, autocast precisions, channels_last, torch.compile and persistent workers that change
nothing but speed."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from conftest import TINY_SCENES
from mlrpl_bench.engine import Engine, NonFiniteLossError, resolve_precision
from mlrpl_bench.results import read_record
from test_engine import TensorRows, build_engine

RUN_ID = "partial-bce__digit-scenes__pal__0.5__seed0"


def _engine(**config) -> Engine:
    engine = build_engine(epochs=2)
    for key, value in config.items():
        setattr(engine.cfg, key, value)
    return Engine(engine.method, engine.model, engine.optimizer, engine.scheduler, train_rows=engine.train_rows,
                  val_rows=engine.val_rows, test_rows=engine.test_rows, val_targets=engine.val_targets,
                  test_targets=engine.test_targets, metric_fn=engine.metric_fn, config=engine.cfg)


def test_a_training_epoch_reads_the_device_a_fixed_number_of_times_not_once_per_step(monkeypatch):
    engine = _engine(batch_size=4, sync_every=1000)  # 40 rows: 10 steps
    engine.last_finite_loss = None
    reads = []
    for name in ("item", "tolist", "__float__", "cpu"):
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, _name=name, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if caller.endswith("engine.py"):
                reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    logs = engine._train_epoch(0)
    monkeypatch.undo()
    assert len(engine.train_rows) // engine.local_batch == 10
    # one read of the flags and running loss at the epoch end, one of the epoch means
    assert len(reads) <= 3, reads
    assert np.isfinite(logs["train/loss"])


@pytest.mark.parametrize("sync_every", [1, 2, 4, 50])
def test_the_first_non_finite_step_is_named_whenever_the_flags_are_read(sync_every):
    engine = _engine(sync_every=sync_every)
    original = engine.method.training_step
    calls = {"n": 0}

    def spiking(model, batch, epoch):
        calls["n"] += 1
        out = original(model, batch, epoch)
        if calls["n"] == 3:  # step 2 only: later steps are finite again (or NaN, from NaN weights)
            out["loss"] = out["loss"] * float("inf")
        return out

    engine.method.training_step = spiking
    with pytest.raises(NonFiniteLossError, match=r"'partial-bce'.*inf at epoch 0, step 2 \(last finite loss: [0-9.]+\)"):
        engine.fit()


def test_epoch_means_are_what_per_step_python_sums_gave():
    engine = _engine()
    seen = []
    original = engine.method.training_step

    def recording(model, batch, epoch):
        out = original(model, batch, epoch)
        seen.append(float(out["loss"].detach()))
        out["constant"] = 0.1  # a Python number is logged as float32, as before
        return out

    engine.method.training_step = recording
    engine.last_finite_loss = None
    logs = engine._train_epoch(0)
    assert logs["train/loss"] == sum(seen) / len(seen)  # exactly: float64 sums of the float32 values
    assert logs["train/constant"] == pytest.approx(float(np.float32(0.1)), rel=0, abs=1e-12)
    assert logs["data_wait"] >= 0 and logs["train_time"] >= logs["data_wait"]


def test_auto_precision_is_fp32_on_cpu_and_explicit_choices_are_kept():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16" and resolve_precision("fp16", cpu) == "fp16"
    assert _engine(precision="fp16").scaler is not None  # fp16 scales its loss
    assert _engine(precision="bf16").scaler is None  # bf16 has fp32's range: no scaler


def _run(cli, out, *extra):
    res = cli("run", "--plugin", "partial-bce", "--known", "0.5", "--epochs", "2", "--output", out, *TINY_SCENES, *extra)
    assert res.exit_code == 0, res.stderr
    record = read_record(out / RUN_ID / "record.json")
    return record, np.load(out / RUN_ID / "test_scores.npz")["scores"]


def test_fp32_channels_last_gives_the_same_metrics_within_float_tolerance(cli, tmp_path):
    base, base_scores = _run(cli, tmp_path / "default")
    nhwc, nhwc_scores = _run(cli, tmp_path / "nhwc", "--precision", "fp32", "--channels-last")
    assert nhwc["train"]["channels_last"] is True and nhwc["train"]["precision_used"] == "fp32"
    assert base["train"]["precision_used"] == "fp32"  # auto on a CPU
    np.testing.assert_allclose(nhwc_scores, base_scores, atol=1e-3)  # scores are stored as float16: 2 ulps
    for name in ("mAP", "OF1", "CF1"):
        assert nhwc["metrics"]["test"][name] == pytest.approx(base["metrics"]["test"][name], abs=0.05), name


def test_bf16_autocast_runs_on_cpu_and_stays_close_to_fp32(cli, tmp_path):
    base, base_scores = _run(cli, tmp_path / "fp32")
    bf16, bf16_scores = _run(cli, tmp_path / "bf16", "--precision", "bf16")
    assert bf16["train"]["precision_used"] == "bf16"
    assert not np.array_equal(bf16_scores, base_scores)  # autocast really ran in bf16
    assert np.abs(bf16_scores - base_scores).max() < 0.1


def test_fp16_with_loss_scaling_trains_on_cpu(cli, tmp_path):
    record, scores = _run(cli, tmp_path, "--precision", "fp16")
    assert record["train"]["precision_used"] == "fp16" and np.isfinite(scores).all()


@pytest.mark.slow
def test_compile_matches_eager_on_a_tiny_model():
    eager = _engine().fit()
    compiled_engine = _engine(compile=True)
    assert hasattr(compiled_engine.model.backbone, "_compiled_call_impl")
    compiled = compiled_engine.fit()
    np.testing.assert_allclose(compiled.test_scores, eager.test_scores, atol=1e-4)
    # parameter names (and so checkpoints) are the plain model's
    assert set(compiled_engine.model.state_dict()) == set(build_engine(epochs=1).model.state_dict())


class NoisyRows(TensorRows):
    """Rows whose item draws from torch's RNG, as a random augmentation does (in a loader worker)."""

    def __getitem__(self, i):
        image, label, index = super().__getitem__(i)
        return image + 0.5 * torch.rand(image.shape), label, index


def _noisy_engine(tmp_path=None, persistent=False, resume=False, on_epoch_end=None):
    engine = build_engine(tmp_path, epochs=3, resume=resume, on_epoch_end=on_epoch_end)
    engine.cfg.workers, engine.cfg.persistent_workers = 1, persistent
    rows = engine.train_rows
    noisy = Engine(engine.method, engine.model, engine.optimizer, engine.scheduler,
                   train_rows=NoisyRows(rows.images, rows.labels.numpy()), val_rows=engine.val_rows,
                   test_rows=engine.test_rows, val_targets=engine.val_targets, test_targets=engine.test_targets,
                   metric_fn=engine.metric_fn, config=engine.cfg, on_epoch_end=on_epoch_end)
    noisy.resume_state = engine.resume_state  # the checkpoint to continue from (resume=True)
    return noisy


@pytest.mark.slow
def test_persistent_workers_augment_exactly_like_fresh_workers_also_after_resume(tmp_path):
    fresh = _noisy_engine().fit()
    persistent_engine = _noisy_engine(persistent=True)
    assert persistent_engine.persistent
    persistent = persistent_engine.fit()
    np.testing.assert_array_equal(persistent.test_scores, fresh.test_scores)

    class Killed(Exception):
        pass

    def die(epoch, logs):
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        _noisy_engine(tmp_path, persistent=True, on_epoch_end=die).fit()
    resuming = _noisy_engine(tmp_path, persistent=True, resume=True)
    resumed = resuming.fit(resuming.resume_state)
    assert resumed.resumed_from_epoch == 1
    np.testing.assert_array_equal(resumed.test_scores, fresh.test_scores)
