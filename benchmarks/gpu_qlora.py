"""QLoRA on one GPU (H100/H200): the paper's recipe against mentalchat's best settings, one run.

The model is a randomly initialised Mistral-7B (``MistralConfig()``'s defaults are Mistral-7B-v0.1:
32 layers, hidden 4096, MLP 14336, 32 query / 8 key-value heads, vocabulary 32000), written once to
local disk in bf16 and loaded in 4-bit NF4 with double quantisation and bf16 compute through
mentalchat's own recipe code (:mod:`mentalchat.finetune.recipe`: the same ``SFTTrainer`` subclass,
LoRA r 64 / alpha 16 / dropout 0.1 on all linear layers, paged AdamW 32-bit as in a real trial).
Rows are random token ids with MentalChat16K's length profile (prompts ~150 ± 20 tokens, answers
~430 ± 55, cut at 256 / 512), so only the systems settings differ between the two variants:

* (a) recipe: no packing, ``group_by_length`` batches of 16 sequences, gradient checkpointing, SDPA;
* (b) best: best-fit packing into padding-free batches, documents kept apart by PyTorch's varlen
  flash kernel (``mentalchat_varlen``; SDPA with a block mask if that kernel is missing), no
  gradient checkpointing, and as many packed bins per micro-batch as the GPU's memory allows
  (halved, then checkpointing turned back on, if it runs out of memory).

Each runs ``--warmup`` + ``--steps`` (``--steps-b``) optimizer steps, one micro-batch each, and prints trained
(non-padding) tokens/s in steady state, model FLOPs utilisation, peak GPU memory and the padding
share; then the ratio b / a. MFU counts the work a frozen-base LoRA step needs, 4·N (forward and
input gradients through every linear layer) + LoRA's own + causal attention over each document,
recomputation excluded, against the chip's dense bf16 peak (989 TFLOP/s for H100/H200 SXM); the
6·N convention of full fine-tuning is printed beside it. Goals: b ≥ 3 × a, MFU(b) ≥ 30%.

Needs bitsandbytes, trl, datasets (+ dill, multiprocess) and pydantic on the GPU machine:
``bash benchmarks/gpu_wheels.sh`` fetches them here into ``.whl/``; see that script for the device
command. Sized for one 10-minute command (estimated 4-6 minutes on an H100; not yet measured).
``--dry-run`` runs the same code on CPU with a tiny Mistral-shaped model (1-4 minutes on 2 cores).

    python benchmarks/gpu_qlora.py [--steps 6 --warmup 2 --out results.json] [--dry-run]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TQDM_DISABLE": "1",
    "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
}.items():
    os.environ.setdefault(_key, _value)

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable from a bare checkout on the GPU machine
    sys.path.insert(0, str(REPO))

PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "H800": 989.4, "A100": 312.0, "L40S": 362.0}
T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# Model, tokenizer and rows
# ---------------------------------------------------------------------------------------------
def mistral_config(dry_run: bool) -> Any:
    from transformers import MistralConfig

    if dry_run:
        return MistralConfig(vocab_size=512, hidden_size=128, intermediate_size=448, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                             max_position_embeddings=2048)
    return MistralConfig()  # Mistral-7B-v0.1


def build_random_model(folder: Path, dry_run: bool) -> Path:
    """Random Mistral weights in bf16 (made on the GPU: seconds) plus a word-level tokenizer."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    if (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file():
        return folder
    config = mistral_config(dry_run)
    device = "cpu" if dry_run else "cuda"
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    n = sum(p.numel() for p in model.parameters())
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, max_shard_size="4GB")
    del model
    gc.collect()
    if not dry_run:
        torch.cuda.empty_cache()
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    vocab.update({f"t{i}": i for i in range(3, config.vocab_size)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                            pad_token="<unk>").save_pretrained(folder)
    log(f"random Mistral ({n / 1e9:.2f} B parameters) written to {folder}")
    return folder


def make_rows(n: int, vocab: int, seed: int, scale: float) -> list[dict[str, list[int]]]:
    """Random ids with MentalChat16K's prompt/answer length profile (see the module docstring)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        p = max(16, min(256, round(rng.gauss(150, 20) * scale)))
        c = max(16, min(512, round(rng.gauss(430, 55) * scale)))
        ids = [rng.randrange(3, vocab) for _ in range(p + c - 1)] + [2]
        rows.append({"input_ids": ids, "completion_mask": [0] * p + [1] * c})
    return rows


# ---------------------------------------------------------------------------------------------
# FLOPs
# ---------------------------------------------------------------------------------------------
def model_flops_per_token(config: Any, lora_r: int, rows: list[dict[str, list[int]]]) -> tuple[float, float]:
    """(frozen-base LoRA FLOPs per token, 6·N convention FLOPs per token), attention included."""
    h, i, L = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    d = getattr(config, "head_dim", None) or h // config.num_attention_heads
    q_out, kv_out = config.num_attention_heads * d, config.num_key_value_heads * d
    shapes = [(h, q_out), (h, kv_out), (h, kv_out), (q_out, h), (h, i), (h, i), (i, h)]
    n_linear = L * sum(a * b for a, b in shapes) + h * config.vocab_size  # lm_head included
    n_lora = L * sum(lora_r * (a + b) for a, b in shapes)
    lengths = [len(r["input_ids"]) for r in rows]
    eff_len = sum(x * x for x in lengths) / sum(lengths)  # causal attention cost per token ∝ doc length
    attn = 6 * L * q_out * eff_len  # fwd 2·L·l·d_q (QKᵀ and AV, causal half), bwd twice that
    lora = 6 * n_lora
    return 4 * n_linear + lora + attn, 6 * n_linear + attn


# ---------------------------------------------------------------------------------------------
# Variants
# ---------------------------------------------------------------------------------------------
def varlen_available() -> bool:
    """PyTorch's varlen flash kernel runs here (CUDA, bf16), causal, with GQA."""
    try:
        import torch

        from mentalchat.finetune.attention import _torch_varlen

        q = torch.randn(96, 4, 64, device="cuda", dtype=torch.bfloat16)
        kv = torch.randn(96, 2, 64, device="cuda", dtype=torch.bfloat16)
        cu = torch.tensor([0, 40, 96], device="cuda", dtype=torch.int32)
        out = _torch_varlen(q, kv, kv, cu, 56, None, 2)
        return tuple(out.shape) == (96, 4, 64)
    except Exception as exc:  # missing module, unsupported GPU/dtype
        log(f"varlen attention unavailable ({type(exc).__name__}: {exc}); using sdpa with a block mask")
        return False


def recipe_config(args: argparse.Namespace, *, packing: bool, micro: int, gc_on: bool, attn: str,
                  steps: int) -> Any:
    from mentalchat.finetune.config import FinetuneConfig

    return FinetuneConfig(
        models=["random-mistral-7b"],
        quantization={"compute_dtype": "float32" if args.dry_run else "bfloat16"},
        train={"micro_batch_size": micro, "effective_batch_size": micro, "max_steps": args.warmup + steps,
               "packing": packing, "sampling": "group_by_length", "gradient_checkpointing": gc_on,
               "attn_implementation": attn, "logging_steps": 1},
    )  # LoRA, optimizer, lengths: the paper's defaults


def run_variant(args: argparse.Namespace, name: str, model_dir: Path, rows: list, *, packing: bool,
                micro: int, gc_on: bool, attn: str, flops: tuple[float, float], peak: float | None,
                steps: int) -> dict:
    import torch

    from mentalchat.finetune.recipe import StepTimer, build_trainer

    on_gpu = not args.dry_run
    cfg = recipe_config(args, packing=packing, micro=micro, gc_on=gc_on, attn=attn, steps=steps)
    if on_gpu:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    timer = StepTimer()
    with tempfile.TemporaryDirectory(prefix=f"gpu-qlora-{name}-") as tmp:
        trainer = build_trainer(cfg, model_path=str(model_dir), train_rows=rows, eval_rows=None, output_dir=tmp,
                                max_steps=args.warmup + steps, on_gpu=on_gpu, device_index=0 if on_gpu else None,
                                callbacks=[timer], save=False)
        started = time.monotonic()
        try:
            trainer.train()
            counts = trainer.global_token_counts()
        finally:
            del trainer
            gc.collect()
            if on_gpu:
                torch.cuda.empty_cache()
    after = [r for r in timer.records if r[1] > args.warmup]
    (t0, s0, n0, _), (t1, s1, n1, _) = after[0], after[-1]
    tps = (n1 - n0) / (t1 - t0)
    res = {
        "variant": name, "packing": packing, "micro_batch": micro, "gradient_checkpointing": gc_on, "attn": attn,
        "tokens_per_s": tps, "seconds_per_step": (t1 - t0) / (s1 - s0), "tokens_per_step": (n1 - n0) / (s1 - s0),
        "padding_share": 1.0 - counts["tokens_trained"] / counts["tokens_processed"],
        "wall_s": time.monotonic() - started,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if on_gpu else None,
        "mfu": tps * flops[0] / (peak * 1e12) if peak else None,
        "mfu_6n": tps * flops[1] / (peak * 1e12) if peak else None,
    }
    mfu = f"MFU {res['mfu']:.1%} (6N convention {res['mfu_6n']:.1%})" if peak else "MFU n/a"
    mem = f"peak {res['peak_memory_gib']:.1f} GiB" if on_gpu else "peak n/a (CPU)"
    log(f"({name}) {tps:,.0f} tokens/s, {res['seconds_per_step']:.2f} s/step, {res['tokens_per_step']:,.0f} "
        f"tokens/step, {mfu}, {mem}, padding {res['padding_share']:.1%}")
    return res


def auto_micro_bins(config: Any, bin_len: int, budget_gib: float) -> int:
    """Packed bins per micro-batch that fit without checkpointing (activations ≈ 2.2·(14h + 5.5i) B/token/layer)."""
    per_token = 2.2 * (14 * config.hidden_size + 5.5 * config.intermediate_size) * config.num_hidden_layers
    return max(1, int(0.75 * budget_gib * 2**30 / (per_token * bin_len)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny Mistral-shaped model: exercises the code path")
    ap.add_argument("--steps", type=int, default=6, help="measured optimizer steps of (a)")
    ap.add_argument("--steps-b", type=int, default=12, help="measured optimizer steps of (b) (smaller steps)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rows", type=int, default=640)
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "mentalchat-gpu-qlora"))
    ap.add_argument("--best-micro", type=int, default=0, help="packed bins per micro-batch for (b); 0: from memory")
    ap.add_argument("--best-gc", choices=["off", "on"], default="off")
    ap.add_argument("--best-attn", default="auto", help="auto: mentalchat_varlen when it runs, else sdpa")
    ap.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak; default from the GPU name")
    ap.add_argument("--variants", default="a,b")
    ap.add_argument("--out", default=None, help="JSON results (default: $OUT/gpu_qlora.json or benchmarks/results)")
    args = ap.parse_args()

    import torch

    if args.dry_run:
        args.steps, args.steps_b = min(args.steps, 2), min(args.steps_b, 2)
        args.warmup, args.rows = min(args.warmup, 1), min(args.rows, 48)
        torch.set_num_threads(max(1, os.cpu_count() or 1))
        device_name, peak, mem_gib = "cpu", args.peak_tflops, 0.0
    else:
        if not torch.cuda.is_available():
            sys.exit("no CUDA device: use --dry-run on CPU")
        device_name = torch.cuda.get_device_name(0)
        peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in device_name), None)
        mem_gib = torch.cuda.get_device_properties(0).total_memory / 2**30
    import bitsandbytes
    import transformers
    import trl

    log(f"device {device_name} ({mem_gib:.0f} GiB), torch {torch.__version__}, transformers "
        f"{transformers.__version__}, trl {trl.__version__}, bitsandbytes {bitsandbytes.__version__}, peak "
        f"{peak or 'n/a'} TFLOP/s")

    model_dir = build_random_model(Path(args.workdir) / ("tiny-mistral" if args.dry_run else "mistral-7b-random"),
                                   args.dry_run)
    config = mistral_config(args.dry_run)
    rows = make_rows(args.rows, config.vocab_size, seed=0, scale=0.25 if args.dry_run else 1.0)
    flops = model_flops_per_token(config, 64, rows)
    log(f"{len(rows)} rows, mean {sum(len(r['input_ids']) for r in rows) / len(rows):.0f} tokens; model FLOPs "
        f"{flops[0] / 1e9:.1f} G/token (4N+LoRA+attention), {flops[1] / 1e9:.1f} G/token (6N convention)")

    results: dict[str, Any] = {"device": device_name, "peak_tflops": peak, "dry_run": args.dry_run,
                               "steps": args.steps, "steps_b": args.steps_b, "warmup": args.warmup, "variants": {}}
    wanted = set(args.variants.split(","))
    if "a" in wanted:
        results["variants"]["a"] = run_variant(args, "a", model_dir, rows, packing=False,
                                               micro=4 if args.dry_run else 16, gc_on=True, attn="sdpa",
                                               flops=flops, peak=peak, steps=args.steps)
    if "b" in wanted:
        attn = args.best_attn
        if attn == "auto":
            attn = "mentalchat_varlen" if args.dry_run or varlen_available() else "sdpa"
        bin_len = 256 + 512
        micro = args.best_micro or (2 if args.dry_run else auto_micro_bins(config, bin_len, mem_gib - 12))
        gc_on = args.best_gc == "on"
        while True:
            try:
                results["variants"]["b"] = run_variant(args, "b", model_dir, rows, packing=True, micro=micro,
                                                       gc_on=gc_on, attn=attn, flops=flops, peak=peak,
                                                       steps=args.steps_b)
                break
            except torch.cuda.OutOfMemoryError:
                log(f"(b) out of memory with {micro} bins, checkpointing {gc_on}")
                gc.collect()
                torch.cuda.empty_cache()
                if micro > 2:
                    micro //= 2
                elif not gc_on:
                    gc_on = True
                else:
                    raise
    a, b = results["variants"].get("a"), results["variants"].get("b")
    if a and b:
        results["ratio_b_over_a"] = b["tokens_per_s"] / a["tokens_per_s"]
        goal_mfu = f", MFU(b) {b['mfu']:.1%} (goal >= 30%)" if b["mfu"] is not None else ""
        log(f"ratio b/a {results['ratio_b_over_a']:.2f} (goal >= 3){goal_mfu}")
    out = Path(args.out) if args.out else (Path(os.environ["OUT"]) / "gpu_qlora.json" if os.environ.get("OUT")
                                           else REPO / "benchmarks" / "results" / "gpu_qlora.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    log(f"-> {out}")
    if not math.isfinite(results.get("ratio_b_over_a", 1.0)):
        sys.exit(1)


if __name__ == "__main__":
    main()
