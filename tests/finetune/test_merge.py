"""Merging an adapter into a full-precision base gives the adapted model's outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from mentalchat.finetune.merge import merge_adapter


def test_merged_model_matches_base_plus_adapter(tiny_model: Path, tiny_lora: Path, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged_dir = merge_adapter(str(tiny_model), tiny_lora, tmp_path / "merged", dtype="float32")
    assert (merged_dir / "model.safetensors").is_file() and (merged_dir / "tokenizer.json").is_file()
    assert not (merged_dir / "adapter_config.json").exists()
    ids = torch.tensor([[1, 17, 42, 99, 7, 300]])
    with torch.no_grad():
        base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
        plain = base(ids).logits
        adapted = PeftModel.from_pretrained(base, str(tiny_lora))(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)(ids).logits
    assert not torch.allclose(adapted, plain, atol=1e-4)  # the adapter does something
    torch.testing.assert_close(merged, adapted, atol=1e-4, rtol=1e-4)


def test_merging_into_a_quantised_base_is_refused(tiny_model: Path, tiny_lora: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="quantised base"):
        merge_adapter(str(tiny_model), tiny_lora, tmp_path / "m", dtype="nf4")
    assert not (tmp_path / "m").exists()
