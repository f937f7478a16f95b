"""Fold a LoRA adapter into its base model, for engines that cannot serve adapters.

The base is reloaded in bf16 (or another full-precision dtype), never in 4 bits: merging into
quantised weights would round the update away and dequantise-requantise the base. The
unmerged adapters stay the primary output (vLLM serves them with ``enable_lora``).
"""

from __future__ import annotations

import json
from pathlib import Path

from mentalchat.errors import UsageError
from mentalchat.io import atomic_dir

__all__ = ["merge_adapter"]


def merge_adapter(base_model: str, adapter_dir: str | Path, out_dir: str | Path, *, dtype: str = "bfloat16") -> Path:
    """Write ``base + adapter`` as a plain model folder (weights, config, tokenizer) at ``out_dir``."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mentalchat.finetune.models import materialize_model

    if dtype not in ("bfloat16", "float16", "float32"):
        raise UsageError(f"merge dtype {dtype!r}: merging into a quantised base is not supported")
    adapter_dir = Path(adapter_dir)
    base_path = materialize_model(base_model)
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=getattr(torch, dtype), device_map="cpu")
    model = PeftModel.from_pretrained(base, str(adapter_dir))
    merged = model.merge_and_unload()
    tok_src = adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else Path(base_path)
    tokenizer = AutoTokenizer.from_pretrained(tok_src)
    with atomic_dir(out_dir) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        meta = adapter_dir / "mentalchat_adapter.json"
        info = json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else {}
        info.update(merged_from=str(adapter_dir), merged_dtype=dtype)
        (tmp / "mentalchat_adapter.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    return Path(out_dir)
