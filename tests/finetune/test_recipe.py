"""The QLoRA recipe objects without Ray: 4-bit base, LoRA, answer-only loss, token accounting."""

from __future__ import annotations

from pathlib import Path

import pytest

from mentalchat.core.prompt_format import PromptFormatter
from mentalchat.finetune.config import FinetuneConfig
from mentalchat.finetune.data import encode_rows, select_config
from mentalchat.finetune.recipe import build_trainer, load_tokenizer
from mentalchat.schemas import get_table
from mentalchat.testing.finetune_data import qa_rows


def _cfg(**train: object) -> FinetuneConfig:
    return FinetuneConfig(
        models=["unused/x"],
        quantization={"compute_dtype": "float32"},
        lora={"r": 4, "alpha": 8},
        train={"source_max_len": 48, "target_max_len": 32, "effective_batch_size": 4, "micro_batch_size": 4,
               "gradient_checkpointing": False, "logging_steps": 1, "max_steps": 2, **train},
    )


@pytest.fixture(scope="module")
def rows(tiny_model: Path) -> list[dict[str, list[int]]]:
    tok = load_tokenizer(str(tiny_model))
    table = select_config(get_table("qa_pairs").from_rows(qa_rows(8, 0)), "synthetic")
    return encode_rows(PromptFormatter(tok), table, source_max_len=48, target_max_len=32)


def test_qlora_trains_only_the_adapter_on_answer_tokens(tiny_model: Path, rows, tmp_path: Path) -> None:
    import bitsandbytes as bnb

    cfg = _cfg(packing=False, sampling="group_by_length")
    trainer = build_trainer(cfg, model_path=str(tiny_model), train_rows=rows, eval_rows=rows[:2],
                            output_dir=tmp_path / "hf", max_steps=2)
    model = trainer.model
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    base = model.get_base_model()
    q = base.model.layers[0].self_attn.q_proj.base_layer
    assert q.weight.quant_state.quant_type == "nf4" and q.weight.quant_state.nested  # double quantisation
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert {n.split(".")[-4] for n in trainable} >= {"q_proj", "k_proj", "v_proj", "o_proj", "up_proj",
                                                    "down_proj", "gate_proj"}
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    trainer.train()
    assert trainer.state.global_step == 2
    assert any(not (p.detach() == before[n]).all() for n, p in model.named_parameters() if n in before)
    # one epoch of 8 rows in 2 steps of 4: the counters see every token exactly once
    counts = trainer.global_token_counts()
    assert counts["tokens_trained"] == sum(len(r["input_ids"]) for r in rows)
    assert counts["tokens_in_loss"] == sum(sum(r["completion_mask"]) for r in rows)
    assert counts["tokens_processed"] >= counts["tokens_trained"]
    assert trainer.evaluate()["eval_loss"] > 0
    # the evaluation left the base in its training format (no CPU inference repacking)
    assert not getattr(q.weight.quant_state, "packing_format_for_cpu", False)
    assert not any(getattr(m, "support_avx512bf16_for_cpu", False) for m in model.modules())


def test_packing_is_padding_free(tiny_model: Path, rows, tmp_path: Path) -> None:
    cfg = _cfg(packing=True, max_steps=1)
    trainer = build_trainer(cfg, model_path=str(tiny_model), train_rows=rows, eval_rows=None,
                            output_dir=tmp_path / "hf", max_steps=1)
    batch = next(iter(trainer.get_train_dataloader()))
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1  # flattened, no padding
    # sequence starts reset the positions; their first label never leaks across a boundary
    starts = (batch["position_ids"][0] == 0).nonzero().flatten()
    assert len(starts) > 1 and (batch["labels"][0, starts] == -100).all()
    trainer.train()
    counts = trainer.global_token_counts()
    assert counts["tokens_processed"] == counts["tokens_trained"] > 0


def test_varlen_attention_matches_block_masked_sdpa(tiny_model: Path, rows) -> None:
    """mentalchat_varlen (per-document attention) gives the loss of sdpa's block-diagonal mask."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from mentalchat.finetune.attention import register_varlen_attention
    from mentalchat.finetune.recipe import _with_labels

    collate = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)
    batch = collate([_with_labels(r) for r in rows[:4]])
    assert len(batch["cu_seq_lens_q"]) == 5
    losses = {}
    for impl in ("sdpa", register_varlen_attention()):
        model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32, attn_implementation=impl)
        with torch.no_grad():
            losses[impl] = model(**batch, use_cache=False).loss.item()  # as in training: no KV cache
    assert losses["mentalchat_varlen"] == pytest.approx(losses["sdpa"], rel=1e-5)
    # and it really is per-document: one long causal sequence gives another loss
    with torch.no_grad():
        whole = model(input_ids=batch["input_ids"], labels=batch["labels"], use_cache=False).loss.item()
    assert whole != pytest.approx(losses["sdpa"], rel=1e-4)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_resumed_run_continues_bit_for_bit(tiny_model: Path, rows, tmp_path: Path, dtype: str) -> None:
    """Stop after the checkpoint at step 2, resume: steps 3-4 equal an uninterrupted run's exactly.

    It used not to: TRL casts a 4-bit model's LoRA weights to bf16 whatever the compute dtype (so
    float32 runs trained bf16 adapters), and PEFT's reload at a resume upcast them to float32, so a
    resumed run changed precision (and numbers) at the restart.
    """
    import torch
    from transformers import TrainerCallback

    class StopAt(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            control.should_training_stop = state.global_step == 2

    cfg = _cfg(packing=True, max_steps=4, save_steps=2, effective_batch_size=2, micro_batch_size=1)
    cfg = cfg.with_overrides({"lora.dropout": 0.0, "quantization.compute_dtype": dtype})
    want = getattr(torch, dtype)
    runs = {}
    for name, resume, stop in (("full", None, False), ("stopped", None, True),
                               ("resumed", tmp_path / "stopped" / "checkpoint-2", False)):
        trainer = build_trainer(cfg, model_path=str(tiny_model), train_rows=rows, eval_rows=None,
                                output_dir=tmp_path / name, max_steps=4, callbacks=[StopAt()] if stop else None)
        assert {p.dtype for p in trainer.model.parameters() if p.requires_grad} == {want}
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        assert {p.dtype for p in trainer.model.parameters() if p.requires_grad} == {want}
        runs[name] = [(e["step"], e["loss"], e["grad_norm"]) for e in trainer.state.log_history if "loss" in e]
    assert [s for s, *_ in runs["resumed"]] == [1, 2, 3, 4]
    assert runs["resumed"] == runs["full"]


def test_length_grouping_gives_every_worker_count_the_same_global_batches(
        tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """group_by_length (the unpacked default) orders by the global batch of a step, not a rank's share.

    Accelerate gives rank r the r-th micro-batch of each step from one order, so 2 ranks x micro 2
    train on the same 4 sequences as 1 rank x micro 2 x accumulation 2 only if both orders agree.
    Transformers groups by micro x accumulation (4 vs 2 here), whose mega-batches differ in size
    once the data has more than a few batches (40 rows: 8 vs 10).
    """
    import torch

    tok = load_tokenizer(str(tiny_model))
    table = select_config(get_table("qa_pairs").from_rows(qa_rows(40, 0)), "synthetic")
    rows40 = encode_rows(PromptFormatter(tok), table, source_max_len=256, target_max_len=256)
    assert len({len(r["input_ids"]) for r in rows40}) > 10  # untruncated: lengths vary
    cfg = _cfg(packing=False, sampling="group_by_length", effective_batch_size=4, micro_batch_size=2,
               source_max_len=256, target_max_len=256)
    orders = []
    for world in (1, 2):
        trainer = build_trainer(cfg, model_path=str(tiny_model), train_rows=rows40, eval_rows=None,
                                output_dir=tmp_path / f"w{world}", max_steps=2, world_size=world, tokenizer=tok)
        assert trainer.args.gradient_accumulation_steps == 2 // world
        monkeypatch.setattr(type(trainer.args), "world_size", property(lambda self, w=world: w))
        sampler = trainer._get_train_sampler()
        torch.manual_seed(0)  # every rank seeds the same way; the sampler draws from it
        orders.append(list(sampler))
    assert sorted(orders[0]) == list(range(len(rows40)))
    assert orders[0] == orders[1]
