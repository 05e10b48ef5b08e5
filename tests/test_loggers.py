"""The built-in experiment-tracker loggers (``--log``), each read back offline, and the harness's
promise that a failing logger never loses a record."""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY_SCENES
from mlrpl_bench import plugin_manager as P
from mlrpl_bench.hookspecs import hookimpl
from mlrpl_bench.results import read_record

RUN_ID = "bce__digit-scenes__pal__0.5__seed0"


def _run_args(out: Path, *extra: str) -> list[str]:
    return ["run", "--plugin", "bce", "--known", "0.5", "--epochs", "2", "--output", str(out), *TINY_SCENES, *extra]


def _subprocess_run(out: Path, env_extra: dict, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **env_extra}
    return subprocess.run([sys.executable, "-m", "mlrpl_bench", *_run_args(out, *extra)], env=env, capture_output=True,
                          text=True, timeout=600)


def test_tensorboard_events_hold_epochs_final_metrics_and_hparams(cli, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    res = cli(*_run_args(tmp_path, "--log", "tensorboard"))
    assert res.exit_code == 0, res.stderr
    record = read_record(tmp_path / RUN_ID / "record.json")
    events = tmp_path / RUN_ID / "tensorboard"
    acc = EventAccumulator(str(events), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "val/mAP", "lr", "test/mAP", "test/CF1", "best_val/mAP"} <= tags, tags
    assert [e.step for e in acc.Scalars("val/mAP")] == [0, 1]
    epoch_log = [json.loads(line) for line in (tmp_path / RUN_ID / "epochs.jsonl").read_text().splitlines()]
    assert [e.value for e in acc.Scalars("val/mAP")] == pytest.approx([e["val/mAP"] for e in epoch_log], abs=1e-4)
    assert [e.value for e in acc.Scalars("train/loss")] == pytest.approx([e["train/loss"] for e in epoch_log], rel=1e-5)
    (final,) = acc.Scalars("test/mAP")
    assert final.value == pytest.approx(record["metrics"]["test"]["mAP"], abs=1e-4)
    assert final.step == record["selection"]["best_epoch"]
    content = acc.PluginTagToContent("hparams")
    assert "_hparams_/session_start_info" in content
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["method"].string_value == "bce"
    assert start.hparams["known"].number_value == 0.5
    assert start.hparams["train/epochs"].number_value == 2


def test_tensorboard_is_off_unless_asked(cli, tmp_path):
    res = cli(*_run_args(tmp_path, "--epochs", "1"))
    assert res.exit_code == 0, res.stderr
    assert not (tmp_path / RUN_ID / "tensorboard").exists()


def test_unknown_logger_is_one_line_naming_the_choices(cli, tmp_path):
    res = cli(*_run_args(tmp_path, "--log", "tensorboard,neptune"))
    assert res.exit_code == 2
    assert res.stderr.count("\n") == 1 and "neptune" in res.stderr and "'tensorboard', 'wandb' or 'mlflow'" in res.stderr
    assert not (tmp_path / RUN_ID).exists()


def test_config_file_log_key(cli, tmp_path):
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"log": ["tensorboard"]}))
    res = cli(*_run_args(tmp_path / "out", "--epochs", "1", "--config", str(config)))
    assert res.exit_code == 0, res.stderr
    assert list((tmp_path / "out" / RUN_ID / "tensorboard").glob("events.out.tfevents.*"))


def test_a_raising_logger_loses_no_record_and_warns_once(cli, tmp_path):
    calls = []

    class Broken:
        @hookimpl
        def mlrpl_run_start(self, run):
            calls.append("start")
            raise ConnectionError("tracker unreachable")

        @hookimpl
        def mlrpl_epoch_end(self, run, epoch, logs):
            calls.append("epoch")
            raise ConnectionError("tracker unreachable")

        @hookimpl
        def mlrpl_run_end(self, run, record, path):
            calls.append("end")
            raise RuntimeError("boom")

    pm = P.get_plugin_manager()
    broken = Broken()
    pm.register(broken, name="broken-logger-test")
    try:
        res = cli(*_run_args(tmp_path, "--log", "tensorboard"))
    finally:
        pm.unregister(broken)
    assert res.exit_code == 0, res.stderr
    assert calls == ["start", "epoch", "epoch", "end"]  # called every time, the run went on
    record = read_record(tmp_path / RUN_ID / "record.json")
    assert record["selection"]["epochs_run"] == 2
    warnings = [line for line in res.stderr.splitlines() if "broken-logger-test" in line]
    assert len(warnings) == 1, res.stderr
    assert "mlrpl_run_start" in warnings[0] and "ConnectionError: tracker unreachable" in warnings[0]
    # the other loggers of the same run were not disturbed by the broken one
    assert list((tmp_path / RUN_ID / "tensorboard").glob("events.out.tfevents.*"))


# -- W&B, offline ------------------------------------------------------------------------------


def _wandb_records(path: Path):
    """The protobuf records of an offline W&B run file (a LevelDB-style log: 7-byte header
    ``:W&B`` + magic + version, then 32 KiB blocks of checksum/length/type-framed chunks)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a W&B run file"
    block, pos, pending = 32768, 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None,
                    reason="the W&B extra is not installed (pip install 'mlrpl-bench[wandb]'; the test extra has it)")
def test_wandb_offline_run_holds_config_history_and_summary(tmp_path):
    proc = _subprocess_run(tmp_path, {"WANDB_MODE": "offline", "WANDB_PROJECT": "mlrpl-test", "WANDB_SILENT": "true"},
                           "--log", "wandb")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = read_record(tmp_path / RUN_ID / "record.json")
    (run_file,) = (tmp_path / RUN_ID / "wandb").glob("offline-run-*/run-*.wandb")
    history, summary, config, names = [], {}, {}, []
    for rec in _wandb_records(run_file):
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            history.append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in rec.history.item})
        elif kind == "summary":
            summary.update({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in rec.summary.update})
        elif kind == "run":
            names.append((rec.run.display_name, rec.run.project))
            config.update({item.key: json.loads(item.value_json) for item in rec.run.config.update})
    assert (RUN_ID, "mlrpl-test") in names
    assert config["method"] == "bce" and config["train/epochs"] == 2
    epochs = [h for h in history if "val/mAP" in h]
    assert [h["_step"] for h in epochs] == [0, 1]
    assert summary["test/mAP"] == pytest.approx(record["metrics"]["test"]["mAP"])


# -- MLflow, local file store ------------------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None,
                    reason="the MLflow extra is not installed (pip install 'mlrpl-bench[mlflow]'; the test extra has it)")
def test_mlflow_file_store_holds_params_epoch_metrics_and_final_metrics(tmp_path):
    store = f"file:{tmp_path / 'mlruns'}"
    env = {"MLFLOW_TRACKING_URI": store, "MLFLOW_ALLOW_FILE_STORE": "true", "MLFLOW_EXPERIMENT_NAME": "mlrpl-test"}
    proc = _subprocess_run(tmp_path / "out", env, "--log", "mlflow,tensorboard")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = read_record(tmp_path / "out" / RUN_ID / "record.json")
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # reading it back goes through the same store
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("mlrpl-test")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == RUN_ID and run.info.status == "FINISHED"
    assert run.data.params["method"] == "bce" and run.data.params["train/epochs"] == "2"
    assert run.data.tags["run_id"] == RUN_ID
    assert run.data.metrics["test/mAP"] == pytest.approx(record["metrics"]["test"]["mAP"])
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/mAP")]
    assert sorted(steps) == [0, 1]
    assert (tmp_path / "out" / RUN_ID / "mlflow_run_id").read_text().strip() == run.info.run_id
