"""The whole stage on the shared local Ray cluster: grid, manifest, vLLM-loadable adapters, resume.

One module-scoped run of 2 tiny models × 3 data configurations (6 concurrent trials) feeds the
manifest, vLLM, rerun and failure tests: during it, one trial's training worker is killed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from mentalchat.config import load_stage_config
from mentalchat.core.prompt_format import INSTRUCTION_FORMAT_ID, PromptFormatter
from mentalchat.finetune.config import FinetuneConfig
from mentalchat.finetune.data import DataError
from mentalchat.finetune.models import ModelPathError
from mentalchat.finetune.tune import plan_experiment, run_finetune
from mentalchat.io import read_done_marker
from mentalchat.schemas import SchemaError, read_table
from mentalchat.testing.finetune_data import INSTRUCTION, write_qa_pairs

pytestmark = pytest.mark.slow

STEPS = {"synthetic": 12, "interview": 4, "combined": 4}
KILLED_TRIAL = "tiny-chat__synthetic"


def _smoke(repo_root: Path, *overrides: str) -> FinetuneConfig:
    return load_stage_config(FinetuneConfig, repo_root / "configs/smoke.yaml", list(overrides), section="finetune")


def _models(a: Path, b: Path) -> str:
    return f"models=[{{path: '{a}', name: tiny-chat}}, {{path: '{b}', name: tiny-base}}]"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_qa_pairs(tmp_path_factory.mktemp("ft-data") / "qa_pairs.parquet")


@pytest.fixture(scope="module")
def base_model_without_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny Llama (other weights) whose tokenizer has no chat template, like Llama-2-7b-hf."""
    from mentalchat.models.kit import build_tiny_llama

    built = build_tiny_llama(tmp_path_factory.mktemp("ft-models") / "tiny-seed1", seed=1)
    plain = built.parent / "tiny-base"
    shutil.copytree(built, plain)
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    tok_cfg = json.loads((plain / "tokenizer_config.json").read_text())
    tok_cfg.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(tok_cfg))
    return plain


def _kill_after_first_checkpoint(storage: Path, stop: threading.Event, killed: list[int]) -> None:
    """Once Ray Train has registered a checkpoint, SIGKILL the training worker that wrote it."""
    snapshot = storage / "checkpoint_manager_snapshot.json"
    while not stop.is_set():
        try:
            registered = [r["checkpoint_dir_name"] for r in json.loads(snapshot.read_text())["checkpoint_results"]]
        except (OSError, ValueError, KeyError):
            registered = []
        if registered:
            pid = json.loads((storage / registered[0] / "mentalchat_progress.json").read_text())["pid"]
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
            return
        time.sleep(0.05)


@pytest.fixture(scope="module")
def grid(ray_cluster, repo_root: Path, tiny_model: Path, base_model_without_template: Path, dataset: Path,
         tmp_path_factory: pytest.TempPathFactory) -> dict:
    """6 trials at once; the synthetic ones train longer, and one of them has its worker killed."""
    out = tmp_path_factory.mktemp("ft-grid") / "out"
    track = out.parent / "tracking"
    cfg = _smoke(repo_root, _models(tiny_model, base_model_without_template),
                 f"train.max_steps={{synthetic: {STEPS['synthetic']}, interview: 4, combined: 4}}",
                 "logging.mlflow=true", f"logging.mlflow_tracking_uri=file:{track}/mlruns",
                 "logging.wandb=true", f"logging.wandb_dir={track}")
    plan = plan_experiment(cfg, dataset, out)
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_after_first_checkpoint,
                              args=(Path(plan.train_storage) / KILLED_TRIAL, stop, killed), daemon=True)
    killer.start()
    started = time.monotonic()
    try:
        manifest = run_finetune(cfg, dataset, out)
    finally:
        stop.set()
        killer.join(timeout=5)
    return {"cfg": cfg, "out": out, "manifest": manifest, "seconds": time.monotonic() - started,
            "plan": plan, "killed": killed, "tracking": track, "dataset": dataset}


def test_grid_writes_a_complete_manifest(grid: dict) -> None:
    out, plan = grid["out"], grid["plan"]
    table = read_table(out / "manifest.parquet", "manifest")
    rows = table.to_pylist()
    assert len(rows) == 6
    assert {(r["base_model"], r["data_config"]) for r in rows} == {
        (m, d) for m in ("tiny-chat", "tiny-base") for d in ("synthetic", "interview", "combined")
    }
    n_train = {p.spec.data_config: p.n_train for p in plan.trials}
    assert n_train["synthetic"] + n_train["interview"] == n_train["combined"]
    for r in rows:
        assert r["trial_id"] == r["model_id"] == f"{r['base_model']}__{r['data_config']}"
        assert r["steps"] == r["max_steps"] == STEPS[r["data_config"]]
        assert math.isfinite(r["train_loss"]) and math.isfinite(r["eval_loss"]) and r["best_eval_loss"] <= r["eval_loss"]
        assert r["prompt_format"] == ("chat_template" if r["base_model"] == "tiny-chat" else INSTRUCTION_FORMAT_ID)
        assert r["tokens_trained"] > 0 and r["tokens_in_loss"] > 0 and r["tokens_processed"] == r["tokens_trained"]
        assert r["wall_time_s"] > r["train_seconds"] > 0
        assert r["n_train"] == n_train[r["data_config"]] and r["n_eval"] >= 1
        if r["trial_id"] != KILLED_TRIAL:
            assert r["restarts"] == 0
        assert json.loads(r["hyperparameters"])["lora"]["r"] == 8
        adapter = Path(r["adapter_path"])
        assert adapter == out / "adapters" / r["trial_id"]
        assert {"adapter_config.json", "adapter_model.safetensors", "mentalchat_adapter.json"} <= {
            p.name for p in adapter.iterdir()}
        meta = json.loads((adapter / "mentalchat_adapter.json").read_text())
        assert meta["data_config"] == r["data_config"] and meta["prompt_format"] == r["prompt_format"]
        # checkpoints live in the run's storage, best k kept (the latest always)
        ckpts = [p for p in Path(r["checkpoint_path"]).parent.iterdir() if p.name.startswith("checkpoint-")]
        assert 1 <= len(ckpts) <= grid["cfg"].checkpoint.num_to_keep + 1
    marker = read_done_marker(out)
    assert marker and marker["stage"] == "finetune" and marker["trials"] == 6
    print(f"\n6-trial grid: {grid['seconds']:.0f} s")


def test_every_trial_is_tracked_in_mlflow_and_wandb(grid: dict) -> None:
    """Read back through MLflow's client: one run per trial with its config, every step's loss and
    learning rate (the killed trial's too: the history survives the restart), the adapter, the dataset hash."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from mentalchat.finetune.tracking import file_sha256

    client = MlflowClient(tracking_uri=f"file:{grid['tracking']}/mlruns")
    exp = client.get_experiment_by_name("mentalchat-finetune")
    runs = {r.data.tags["trial"]: r for r in client.search_runs([exp.experiment_id])}
    manifest = {r["trial_id"]: r for r in grid["manifest"].to_pylist()}
    assert set(runs) == set(manifest)
    sha = file_sha256(grid["dataset"])
    for key, run in runs.items():
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
        assert steps == list(range(1, manifest[key]["steps"] + 1)), key  # logging_steps: 1 in smoke.yaml
        assert len(client.get_metric_history(run.info.run_id, "learning_rate")) == len(steps)
        assert client.get_metric_history(run.info.run_id, "eval_loss")
        assert run.data.tags["dataset_sha256"] == sha and run.data.params["data_config"] == manifest[key]["data_config"]
        assert run.data.params["lora.r"] == str(grid["cfg"].lora.r)
        assert "adapter/adapter_config.json" in {a.path for a in client.list_artifacts(run.info.run_id, "adapter")}
        assert run.data.metrics["final_eval_loss"] == pytest.approx(manifest[key]["eval_loss"])
    assert len(list((grid["tracking"] / "wandb").glob("offline-run-*"))) == len(manifest)


def test_every_adapter_loads_in_vllm_and_changes_the_output(grid: dict, tiny_model: Path,
                                                            base_model_without_template: Path) -> None:
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    rows = grid["manifest"].to_pylist()
    params = SamplingParams(temperature=0.0, max_tokens=12, logprobs=1)
    question = "Lately I cannot sleep before exams. What can I do?"
    for label, base in (("tiny-chat", tiny_model), ("tiny-base", base_model_without_template)):
        prompt = PromptFormatter(AutoTokenizer.from_pretrained(base)).prompt_text(INSTRUCTION, question)
        llm = LLM(model=str(base), enable_lora=True, max_lora_rank=8, max_loras=3, max_model_len=256,
                  kv_cache_memory_bytes=32 * 2**20, enforce_eager=True, dtype="float32", seed=0)
        try:
            plain = llm.generate([prompt], params, use_tqdm=False)[0].outputs[0]
            mine = [r for r in rows if r["base_model"] == label]
            assert len(mine) == 3
            for i, r in enumerate(mine, start=1):
                tuned = llm.generate([prompt], params, use_tqdm=False,
                                     lora_request=LoRARequest(r["trial_id"], i, r["adapter_path"]))[0].outputs[0]
                assert tuned.token_ids, r["trial_id"]
                changed_tokens = list(tuned.token_ids) != list(plain.token_ids)
                changed_logprob = abs(tuned.cumulative_logprob - plain.cumulative_logprob) > 1e-3
                assert changed_tokens or changed_logprob, f"{r['trial_id']}: adapter had no effect"
        finally:
            del llm


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_rerun_resumes_the_finished_experiment(grid: dict, dataset: Path) -> None:
    out = grid["out"]
    before = {r["trial_id"]: _digest(Path(r["adapter_path"])) for r in grid["manifest"].to_pylist()}
    ckpts_before = sorted(p.name for p in Path(grid["plan"].train_storage).rglob("checkpoint-*"))
    again = run_finetune(grid["cfg"], dataset, out)
    assert sorted(again.column("trial_id").to_pylist()) == sorted(before)
    assert {r["trial_id"]: _digest(Path(r["adapter_path"])) for r in again.to_pylist()} == before
    assert sorted(p.name for p in Path(grid["plan"].train_storage).rglob("checkpoint-*")) == ckpts_before


def test_bad_input_fails_before_any_worker_starts(ray_cluster, repo_root: Path, tiny_model: Path,
                                                  tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path / "out"
    only_synthetic = write_qa_pairs(tmp_path / "syn.parquet", n_synthetic=12, n_interview=0)
    models = f"models=[{{path: '{tiny_model}', name: tiny}}]"
    with pytest.raises(DataError, match=r"syn\.parquet: data configuration 'interview' is empty"):
        run_finetune(_smoke(repo_root, models), only_synthetic, out)
    with pytest.raises(ModelPathError, match=r"no such folder .*does-not-exist"):
        run_finetune(_smoke(repo_root, f"models=[{tmp_path / 'does-not-exist'}]", "data_configs=[synthetic]"),
                     only_synthetic, out)
    wrong = tmp_path / "wrong.parquet"
    pq.write_table(pa.table({"prompt": ["hi"], "response": ["hello"], "source": ["synthetic"]}), wrong)
    with pytest.raises(SchemaError, match=r"wrong\.parquet: qa_pairs table lacks columns"):
        run_finetune(_smoke(repo_root, models), wrong, out)
    assert not out.exists()  # nothing written, no Ray run started


def test_an_accelerator_the_cluster_lacks_is_refused_in_seconds(ray_cluster, repo_root: Path, tiny_model: Path,
                                                               tmp_path: Path) -> None:
    """On the real (CPU) cluster: accelerator_type A100 used to leave Tune waiting forever."""
    from mentalchat.core.resources import ResourceFitError

    data = write_qa_pairs(tmp_path / "qa.parquet", n_synthetic=12, n_interview=0)
    cfg = _smoke(repo_root, f"models=[{{path: '{tiny_model}', name: tiny}}]", "data_configs=[synthetic]",
                 "scaling.accelerator_type=A100")
    start = time.monotonic()
    with pytest.raises(ResourceFitError, match=r"accelerator_type 'A100'.*finetune\.scaling\.accelerator_type"):
        run_finetune(cfg, data, tmp_path / "out")
    assert time.monotonic() - start < 30
    assert not list((tmp_path / "out").glob("ray_results/*/trial*"))  # no trial was started


def test_killed_worker_resumes_from_its_checkpoint(grid: dict) -> None:
    """The grid's longer trial lost its training worker after its first checkpoint (see ``grid``)."""
    assert grid["killed"], "the training worker finished before it could be killed"
    row = next(r for r in grid["manifest"].to_pylist() if r["trial_id"] == KILLED_TRIAL)
    assert row["steps"] == row["max_steps"] == STEPS["synthetic"]
    assert row["restarts"] >= 1  # the new worker group restored a checkpoint rather than starting over
    assert (Path(row["adapter_path"]) / "adapter_model.safetensors").is_file()
