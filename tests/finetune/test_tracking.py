"""Tracking runs read back through each library's own API: MLflow's client, W&B's offline run files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mentalchat.finetune.tracking import TrialRecord, file_sha256, log_mlflow, log_wandb, read_history


def _record(tmp_path: Path) -> TrialRecord:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    history = [{"step": s, "loss": 2.0 - 0.1 * s, "learning_rate": 1e-4 * (1 - s / 10), "grad_norm": 1.5}
               for s in range(1, 6)] + [{"step": 5, "eval_loss": 1.7}]
    return TrialRecord(key="tiny__synthetic", experiment="exp-1", history=history, adapter=adapter,
                       params={"base_model": "tiny", "lora": {"r": 8, "alpha": 16}, "optim": {"lr": 1e-4}},
                       tags={"data_config": "synthetic", "dataset_sha256": "ab" * 32},
                       final={"train_loss": 1.6, "eval_loss": 1.7, "steps": 5})


def test_mlflow_run_holds_params_curves_artifact_and_dataset_hash(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"file:{tmp_path / 'mlruns'}"
    rec = _record(tmp_path)
    (rid,) = log_mlflow([rec], uri, "mentalchat-test")
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(rid)
    assert run.data.params["lora.r"] == "8" and run.data.params["optim.lr"] == "0.0001"
    assert run.data.tags["dataset_sha256"] == "ab" * 32 and run.data.tags["trial"] == "tiny__synthetic"
    loss = client.get_metric_history(rid, "loss")
    assert [(m.step, m.value) for m in loss] == [(s, pytest.approx(2.0 - 0.1 * s)) for s in range(1, 6)]
    assert len(client.get_metric_history(rid, "learning_rate")) == 5
    assert [m.value for m in client.get_metric_history(rid, "eval_loss")] == [1.7]
    assert run.data.metrics["final_train_loss"] == 1.6 and run.info.status == "FINISHED"
    assert sorted(a.path for a in client.list_artifacts(rid, "adapter")) == [
        "adapter/adapter_config.json", "adapter/adapter_model.safetensors"]
    # A resumed experiment logs nothing twice.
    assert log_mlflow([rec], uri, "mentalchat-test") == [rid]
    assert len(client.search_runs([run.info.experiment_id])) == 1


def wandb_records(path: Path) -> list:
    """The records of a W&B offline run file, decoded with W&B's own protobuf classes.

    wandb 0.31 dropped its Python reader (``wandb.sdk.internal.datastore``; wandb-core writes the
    file), so the framing is read here: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then
    LevelDB-log records in 32 KiB blocks: CRC-32 (4), length (2, little-endian), type (1: full,
    2-4: first/middle/last fragment); a block tail under 7 bytes is padding.
    """
    import struct
    import zlib

    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B" and struct.unpack("<H", data[4:6])[0] == 0xBEE1, "not a W&B run file"
    out, pos, buf, block = [], 7, b"", 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        if length == 0 and kind == 0:
            break
        assert crc == zlib.crc32(bytes([kind]) + chunk) & 0xFFFFFFFF, f"bad CRC at byte {pos}"
        pos += 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            out.append(rec)
    return out


def test_wandb_offline_run_holds_config_history_summary_and_artifact(tmp_path: Path) -> None:
    pytest.importorskip("wandb")

    (run_id,) = log_wandb([_record(tmp_path)], "mentalchat-test", "g1", mode="offline", directory=tmp_path)
    (run_dir,) = (tmp_path / "wandb").glob(f"offline-run-*-{run_id}")
    (data_file,) = run_dir.glob("*.wandb")
    history, config, summary, artifacts = [], {}, {}, []
    for rec in wandb_records(data_file):
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "config":
            config.update({i.key: json.loads(i.value_json) for i in rec.config.update})
        elif kind == "run":  # the config given to wandb.init travels in the run record
            config.update({i.key: json.loads(i.value_json) for i in rec.run.config.update})
        elif kind == "summary":
            summary.update({i.key: json.loads(i.value_json) for i in rec.summary.update})
        elif kind == "artifact":
            artifacts.append(rec.artifact)
    losses = [(h["_step"], h["loss"]) for h in history if "loss" in h]
    assert losses == [(s, pytest.approx(2.0 - 0.1 * s)) for s in range(1, 6)]
    assert any(h.get("eval_loss") == 1.7 for h in history)
    assert config["lora.r"] == 8 and config["tag.dataset_sha256"] == "ab" * 32
    assert summary["final_train_loss"] == 1.6
    assert [a.name for a in artifacts] == ["adapter-tiny__synthetic"] and artifacts[0].type == "model"
    files = {f.path for a in artifacts for f in a.manifest.contents}
    assert files == {"adapter_config.json", "adapter_model.safetensors"}


def test_history_and_hash_helpers(tmp_path: Path) -> None:
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": [{"step": 1, "loss": 2.0},
                                                                             {"train_runtime": 3.0}]}))
    assert read_history(tmp_path) == [{"step": 1, "loss": 2.0}] and read_history(tmp_path / "none") == []
    (tmp_path / "f").write_bytes(b"abc")
    assert file_sha256(tmp_path / "f") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
