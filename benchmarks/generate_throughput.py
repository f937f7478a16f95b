"""Answer generation: one multi-LoRA engine against one engine per adapter, and Ray Data against bare vLLM.

Part 1 (multi-LoRA). The answer stage serves a base model and all its adapters from one vLLM engine
(``enable_lora``; each request names its adapter). The alternative a user has without that is one
engine per model, started in turn. Every side answers the same prompts for the base and three
random LoRA adapters (all attention projections) with greedy decoding, in one process, after one
warm-up engine (the first engine of a process pays one-time set-up):

* ``multi_lora``: one engine with ``enable_lora``, every request of the four models in one call;
* ``per_engine_lora`` (CPU): per model, a fresh engine (``enable_lora`` for the adapters)
  answering that model's requests, then closed: the same weights and greedy tokens as multi_lora;
* ``per_engine_merged``: per model, a fresh plain engine over the adapter merged into the base
  (``finetune.merge``; merging is done beforehand and not timed): the strongest per-model
  baseline (no LoRA kernels); its tokens may differ slightly (merged weights round differently).

Each side is timed end to end (engines started and closed included: what a job pays) and over
generation alone. Ratios: per-engine seconds / multi_lora seconds end to end (goal >= 2 on CPU),
and multi_lora's output tokens/s over generation alone / each side's. ``same_output_tokens``: did
multi_lora and per_engine_lora produce the same token counts.

Part 2 (Ray Data overhead). ``engine_overhead.py`` in its own process (steady state of Ray Data
actors holding the vLLM backend against a bare ``vllm.LLM`` on the same greedy prompts, both with
one thread, interleaved rounds, medians) at the answer stage's shape: batches large enough that
each actor call holds seconds of work. Goal: ratio >= 0.95.

``--dummy-7b`` (the GPU check, ``benchmarks/gpu_check.sh``): a Mistral-7B shape with random
weights drawn by vLLM (``load_format=dummy``), rank-16 adapters written directly, 200 questions per
model and 256 tokens; only multi_lora and per_engine_merged (a merged 7B costs what the base
costs), and part 2 with one GPU per replica.

    python benchmarks/generate_throughput.py [--model local:tiny-llama?... --questions 32 --max-tokens 64]
                                             [--rounds 1 --overhead-rounds 3 --skip-overhead]
                                             [--dummy-7b] [--out results.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "TQDM_DISABLE": "1",
}.items():
    os.environ.setdefault(_key, _value)

HERE = Path(__file__).resolve().parent
TOPICS = ["sleep", "grief", "exam stress", "loneliness", "a new job", "panic", "a breakup", "anger"]


def _requests(models: list[tuple[str, str | None]], questions: int, max_tokens: int) -> list:
    from mentalchat.engine import ChatRequest, SamplingConfig

    sampling = SamplingConfig(temperature=0.0, max_tokens=max_tokens)
    out = []
    for name, lora in models:
        for q in range(questions):
            out.append(ChatRequest.from_prompt(
                f"{name}-q{q}", f"Question {q}: lately I keep thinking about {TOPICS[q % len(TOPICS)]}. "
                "How can I cope?", system="You are a supportive counsellor.", sampling=sampling, lora=lora,
            ))
    return out


def _engine_cfg(model: str, *, lora: bool, args: argparse.Namespace, batch: int):
    from mentalchat.engine import EngineConfig, VLLMOptions

    gpu = args.dummy_7b
    return EngineConfig(backend="vllm", model=model, vllm=VLLMOptions(
        enable_lora=lora, max_loras=4, max_lora_rank=args.lora_rank, batch_size=batch, max_model_len=512,
        kv_cache_memory_bytes=None if gpu else args.kv_cache_mib * 2**20,
        # several engines in turn in one process: each leaves room for what the last one may still hold
        gpu_memory_utilization=0.35, engine_kwargs={"load_format": "dummy"} if gpu else {},
    ))


def dummy_mistral_7b(work: Path, overrides: dict[str, Any] | None = None) -> Path:
    """A Mistral-7B-shaped model folder without weights (vLLM draws them: ``load_format=dummy``),
    with the tiny model's tokenizer and chat template (its ids are all below 32000)."""
    import shutil

    from transformers import MistralConfig

    from mentalchat.models.kit import resolve_model

    folder = work / "mistral-7b-dummy"
    config = MistralConfig(**(overrides or {}))  # the defaults are Mistral-7B-v0.1's shape
    config.torch_dtype = "bfloat16"
    config.save_pretrained(folder)
    tokenizer = Path(resolve_model("local:tiny-llama"))
    for f in tokenizer.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copy(f, folder / f.name)
    return folder


def dummy_adapter(base: Path, out: Path, *, r: int, seed: int) -> Path:
    """A rank-``r`` LoRA adapter on every attention projection of ``base``, random A and B, written
    directly (building a 7B model in PEFT just to draw the adapter would take minutes)."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(base)
    head = cfg.hidden_size // cfg.num_attention_heads
    outs = {"q_proj": cfg.num_attention_heads * head, "k_proj": cfg.num_key_value_heads * head,
            "v_proj": cfg.num_key_value_heads * head, "o_proj": cfg.hidden_size}
    ins = {"q_proj": cfg.hidden_size, "k_proj": cfg.hidden_size, "v_proj": cfg.hidden_size,
           "o_proj": cfg.num_attention_heads * head}
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(cfg.num_hidden_layers):
        for name in outs:
            key = f"base_model.model.model.layers.{layer}.self_attn.{name}"
            tensors[f"{key}.lora_A.weight"] = (torch.randn(r, ins[name], generator=g) * 0.01).to(torch.bfloat16)
            tensors[f"{key}.lora_B.weight"] = (torch.randn(outs[name], r, generator=g) * 0.01).to(torch.bfloat16)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, out / "adapter_model.safetensors")
    (out / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": 2 * r, "lora_dropout": 0.0,
        "bias": "none", "target_modules": list(outs), "base_model_name_or_path": str(base),
        "fan_in_fan_out": False, "modules_to_save": None,
    }))
    return out


def _answer(cfg, requests) -> dict[str, Any]:
    """Start an engine, answer every request in one call, close it; seconds and token counts."""
    from mentalchat.engine import create_engine

    t0 = time.perf_counter()
    engine = create_engine(cfg)
    t1 = time.perf_counter()
    results = engine.chat_batch(requests)
    t2 = time.perf_counter()
    engine.close()
    del engine
    gc.collect()
    t3 = time.perf_counter()
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise SystemExit(f"{len(failed)} requests failed; first: {failed[0]}")
    return {"start_s": t1 - t0, "generate_s": t2 - t1, "close_s": t3 - t2, "total_s": t3 - t0,
            "tokens": {r.id: r.tokens_out for r in results}}


def multi_lora_vs_per_engine(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from mentalchat.finetune.merge import merge_adapter
    from mentalchat.models.kit import build_random_lora, resolve_model

    if args.dummy_7b:  # GPU check: random weights; a merged model costs what the base costs
        base = str(dummy_mistral_7b(work, args.dummy_config))
        adapters = [str(dummy_adapter(Path(base), work / f"adapter{i}", r=args.lora_rank, seed=i + 1))
                    for i in range(3)]
        merged = [base] * 3
    else:
        base = str(resolve_model(args.model))
        adapters = [str(build_random_lora(base, work / f"adapter{i}", r=args.lora_rank, seed=i + 1))
                    for i in range(3)]
        merged = [str(merge_adapter(base, a, work / f"merged{i}", dtype="float32")) for i, a in enumerate(adapters)]
    models: list[tuple[str, str | None]] = [("base", None)] + [(f"adapter{i}", a) for i, a in enumerate(adapters)]
    everything = _requests(models, args.questions, args.max_tokens)
    per_model = {name: [r for r in everything if r.id.startswith(f"{name}-")] for name, _ in models}
    big = len(everything)

    def per_engine(lora: bool) -> dict[str, Any]:
        runs = []
        for i, (name, adapter) in enumerate(models):
            if lora or adapter is None:
                cfg = _engine_cfg(base, lora=lora and adapter is not None, args=args, batch=big)
                reqs = per_model[name]
            else:
                cfg = _engine_cfg(merged[i - 1], lora=False, args=args, batch=big)
                reqs = [r.model_copy(update={"lora": None}) for r in per_model[name]]
            runs.append(_answer(cfg, reqs))
        return {key: sum(r[key] for r in runs) for key in ("start_s", "generate_s", "close_s", "total_s")} | {
            "tokens": {k: v for r in runs for k, v in r["tokens"].items()}}

    # warm-up: the first engine of a process pays one-time imports and kernel set-up. Not on the
    # GPU check (no time for another 7B start): there multi-LoRA, first, pays torch.compile and
    # the per-engine side starts from its cache, a bias against multi-LoRA
    if not args.dummy_7b:
        _answer(_engine_cfg(base, lora=True, args=args, batch=big), everything[:: len(everything) // 8])
    rounds = []
    for _ in range(args.rounds):  # interleaved, so load from elsewhere falls on every side
        multi_cfg = _engine_cfg(base, lora=True, args=args, batch=big)
        sides = {"multi_lora": _answer(multi_cfg, everything)}
        if not args.dummy_7b:  # CPU diagnostics (each costs engine starts a GPU check has no time for)
            sides["per_engine_lora"] = per_engine(lora=True)
        sides["per_engine_merged"] = per_engine(lora=False)
        row: dict[str, Any] = {}
        for name, side in sides.items():
            tokens = sum(side["tokens"].values())
            row[name] = {k: round(side[k], 3) for k in ("start_s", "generate_s", "close_s", "total_s")} | {
                "output_tokens": tokens, "generate_tokens_per_s": round(tokens / side["generate_s"], 1)}
        for name in [n for n in sides if n != "multi_lora"]:
            row[f"ratio_total_{name}"] = round(sides[name]["total_s"] / sides["multi_lora"]["total_s"], 3)
            row[f"ratio_generate_tokens_per_s_{name}"] = round(
                row["multi_lora"]["generate_tokens_per_s"] / row[name]["generate_tokens_per_s"], 3)
        if "per_engine_lora" in sides:
            row["same_output_tokens"] = sides["multi_lora"]["tokens"] == sides["per_engine_lora"]["tokens"]
        print(json.dumps(row), flush=True)
        rounds.append(row)

    def med(key: str) -> float | None:
        values = [r[key] for r in rounds if key in r]
        return round(statistics.median(values), 3) if values else None

    report: dict[str, Any] = {
        "model": "random Mistral-7B shape (load_format=dummy)" if args.dummy_7b else args.model,
        "models": len(models), "questions_per_model": args.questions, "max_tokens": args.max_tokens,
        "lora_rank": args.lora_rank, "rounds": len(rounds), "per_round": rounds, "goal_ratio_total": 2.0,
    }
    for name in [n for n in rounds[0] if n.startswith("ratio_")]:
        report[name] = med(name)
    if "same_output_tokens" in rounds[0]:
        report["same_output_tokens"] = all(r["same_output_tokens"] for r in rounds)
    return report


def ray_data_vs_bare(args: argparse.Namespace) -> dict[str, Any]:
    """engine_overhead.py's interleaved rounds at the answer stage's batch shape, in its own process
    (it fixes both sides' threads before torch is imported)."""
    import subprocess

    cmd = [sys.executable, str(HERE / "engine_overhead.py"), "--model", args.model,
           "--requests", str(args.overhead_requests), "--batch-size", str(args.overhead_batch_size),
           "--max-tokens", str(args.max_tokens), "--rounds", str(args.overhead_rounds)]
    if args.dummy_7b:
        cmd[cmd.index("--model") + 1] = str(args.dummy_base)
        import torch

        cmd += ["--engine-kwargs", json.dumps({"load_format": "dummy"})]
        if torch.cuda.is_available():
            cmd += ["--gpus", "1"]
    # a clean thread environment: after this process ran engines, vLLM's and OpenMP's variables
    # here would give the bare engine every core while the Ray actor gets one
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "KMP_", "GOMP_"))}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    rounds = [line for line in proc.stdout.splitlines() if line.startswith('{"bare')]
    for line in rounds:
        print(line, flush=True)
    if proc.returncode != 0 or "\n{" not in proc.stdout:
        raise SystemExit(f"engine_overhead.py failed ({proc.returncode}): {proc.stderr[-2000:]}")
    report = json.loads(proc.stdout[proc.stdout.rindex("\n{") + 1:])
    report["per_round"] = [json.loads(line) for line in rounds]
    report["goal"] = 0.95
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="local:tiny-llama?hidden_size=256&num_layers=4")
    parser.add_argument("--questions", type=int, default=32, help="questions per model (4 models)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1, help="multi-LoRA / per-engine rounds (medians)")
    parser.add_argument("--kv-cache-mib", type=int, default=256)
    parser.add_argument("--overhead-requests", type=int, default=384)
    parser.add_argument("--overhead-batch-size", type=int, default=128)
    parser.add_argument("--overhead-rounds", type=int, default=3)
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--only-overhead", action="store_true", help="part 2 alone")
    parser.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument("--dummy-7b", action="store_true", help="GPU: a random Mistral-7B shape (load_format=dummy), "
                        "rank-16 adapters, 200 questions per model, 256 tokens (benchmarks/gpu_check.sh)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--dummy-config", type=json.loads, default=None,
                        help="with --dummy-7b: MistralConfig overrides, JSON; a CPU dry run of the GPU path "
                        "(small shape, 8 questions, 16 tokens)")
    args = parser.parse_args()
    if args.dummy_7b and args.dummy_config:
        args.questions, args.max_tokens, args.lora_rank = 8, 16, 16
        args.overhead_requests, args.overhead_batch_size, args.overhead_rounds = 64, 16, 1
    elif args.dummy_7b:
        args.questions, args.max_tokens, args.lora_rank = 200, 256, 16
        args.overhead_requests, args.overhead_batch_size, args.overhead_rounds = 1024, 256, 1

    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mc-genbench-") as tmp:
        if not args.only_overhead:
            report["multi_lora"] = multi_lora_vs_per_engine(args, Path(tmp))
        elif args.dummy_7b:
            dummy_mistral_7b(Path(tmp), args.dummy_config)
        if not args.skip_overhead:
            args.dummy_base = Path(tmp) / "mistral-7b-dummy"
            report["ray_data_vs_bare"] = ray_data_vs_bare(args)
    report["summary"] = {}
    if "multi_lora" in report:
        ml = report["multi_lora"]
        report["summary"] = {
            "multi_lora_ratio_total_vs_per_engine_merged": ml["ratio_total_per_engine_merged"],
            "multi_lora_ratio_total_vs_per_engine_lora": ml.get("ratio_total_per_engine_lora"),
            "multi_lora_generate_tokens_per_s": statistics.median(
                r["multi_lora"]["generate_tokens_per_s"] for r in ml["per_round"]),
            "multi_lora_same_output_tokens": ml.get("same_output_tokens"),
        }
    if "ray_data_vs_bare" in report:
        report["summary"]["ray_data_over_bare"] = report["ray_data_vs_bare"]["ratio"]
        report["summary"]["ray_data_over_bare_same_batching"] = report["ray_data_vs_bare"]["ratio_same_batching"]
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report["summary"], indent=2))


if __name__ == "__main__":
    main()
