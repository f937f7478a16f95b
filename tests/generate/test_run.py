"""The answer stage: base model and LoRA adapter answered in one pass through vLLM inside Ray Data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mentalchat.config import load_stage_config
from mentalchat.core.fastchat import read_model_answers
from mentalchat.generate.config import GenerateConfig
from mentalchat.generate.run import answer_models, read_adapters, run_generate
from mentalchat.schemas import get_table, read_table, write_table


def _manifest(folder: Path, tiny_model: Path, adapter: Path, **over: Any) -> Path:
    row = dict(trial_id="tiny-synthetic", model_id="tiny-synthetic", experiment="ft", base_model="tiny",
               base_model_path=str(tiny_model), data_config="synthetic", overrides="{}", hyperparameters="{}",
               prompt_format="chat_template", prompt_format_setting="auto", steps=1, max_steps=1,
               adapter_path=str(adapter), wall_time_s=1.0, tokens_trained=1, n_train=1, n_eval=1,
               num_workers=1, config_hash="x")
    row.update(over)
    write_table(get_table("manifest").from_rows([row]), folder / "manifest.parquet", "manifest")
    return folder


def _cfg(**extra: Any) -> GenerateConfig:
    doc = {
        "engine": "tiny",
        "engines": {"tiny": {"backend": "vllm", "model": "replaced-per-base-model",
                             "sampling": {"temperature": 0.0, "max_tokens": 12},
                             "vllm": {"max_model_len": 512, "kv_cache_memory_bytes": 64 * 2**20, "batch_size": 8}}},
        "sampling": {"temperature": 0.0, "top_p": 0.5, "max_tokens": 12},
        "max_questions": 3,
    }
    doc.update(extra)
    return GenerateConfig.model_validate(doc)


def test_base_and_adapter_answers_in_one_pass(tmp_path: Path, ray_cluster, tiny_model: Path, tiny_lora: Path) -> None:
    adapters = _manifest(tmp_path / "ft", tiny_model, tiny_lora)
    qpath = tmp_path / "question.jsonl"
    texts = ["I can't sleep before exams.", "My friend stopped talking to me.", "I feel flat most days.",
             "too long " * 400]  # over the engine's context: must fail alone, with a reason
    qpath.write_text("".join(json.dumps({"question_id": i + 1, "turns": [t]}) + "\n" for i, t in enumerate(texts)))
    out = tmp_path / "answers"
    summary = run_generate(_cfg(max_questions=4), qpath, out, adapters=adapters)
    assert summary.models == ["tiny", "tiny-synthetic"]
    assert summary.failed == 2 and {f["question_id"] for f in summary.failures} == {"4"}
    assert all("max_model_len" in f["error"] for f in summary.failures)
    df = read_table(out / "answers.parquet", "answers").to_pandas()
    assert len(df) == 6 and set(df.question_id) == {"1", "2", "3"}
    base = df[df.model_id == "tiny"].set_index("question_id")
    tuned = df[df.model_id == "tiny-synthetic"].set_index("question_id")
    assert set(base.data_config) == {"base"} and set(tuned.data_config) == {"synthetic"}
    assert set(df.base_model) == {"tiny"}
    assert (base.answer != tuned.answer).any()  # the adapter was applied per row
    params = json.loads(df.params.iloc[0])
    assert params["temperature"] == 0.0 and params["top_p"] == 0.5 and params["max_tokens"] == 12
    assert set(df.prompt_format) == {"chat_template"} and df.tokens_out.le(12).all()
    assert df.finish_reason.isin(["stop", "length"]).all()
    # The FastChat export holds the same answers.
    exported = read_model_answers(out / "model_answer").to_pandas()
    merged = exported.merge(df, on=["question_id", "model_id"], suffixes=("_fc", ""))
    assert len(merged) == 6 and (merged.answer_fc == merged.answer).all()
    assert json.loads((out / "_MENTALCHAT_DONE.json").read_text())["stage"] == "generate"
    assert not list(tmp_path.glob(".answers*"))  # no work or temp folders left behind


def test_manifest_errors_and_model_list(tmp_path: Path, tiny_model: Path, tiny_lora: Path) -> None:
    folder = _manifest(tmp_path / "ft", tiny_model, tiny_lora)
    (adapter,) = read_adapters(folder)
    assert adapter.model_id == "tiny-synthetic" and adapter.adapter == str(tiny_lora)
    assert adapter.prompt_format == "chat_template"
    models = answer_models(_cfg(base_models=[{"path": "local:other", "name": "other"}]), [adapter])
    assert [(m.model_id, m.data_config) for m in models] == [("other", "base"), ("tiny", "base"),
                                                             ("tiny-synthetic", "synthetic")]
    with pytest.raises(ValueError, match="repeated"):
        answer_models(_cfg(base_models=[{"path": "x", "name": "tiny-synthetic"}]), [adapter])
    _manifest(tmp_path / "bad", tiny_model, tmp_path / "missing")
    with pytest.raises(ValueError, match=r"manifest.parquet: row 0: adapter folder .* has no adapter_config.json"):
        read_adapters(tmp_path / "bad")
    with pytest.raises(FileNotFoundError):
        read_adapters(tmp_path / "nowhere")
    # A folder of bare adapters (no manifest) works too.
    (scanned,) = read_adapters(tiny_lora.parent)
    assert scanned.adapter == str(tiny_lora) and scanned.base_path == str(Path(tiny_model).resolve())


@pytest.mark.parametrize("name", ["smoke", "quickstart", "paper"])
def test_config_sections_load(repo_root: Path, name: str) -> None:
    cfg = load_stage_config(GenerateConfig, repo_root / "configs" / f"{name}.yaml", section="generate")
    cfg.engine_template()
    if name == "paper":
        assert cfg.sampling is not None
        assert (cfg.sampling.temperature, cfg.sampling.top_p, cfg.sampling.max_tokens) == (0.7, 0.5, 512)
