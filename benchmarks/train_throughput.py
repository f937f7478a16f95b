"""QLoRA training throughput on CPU: mentalchat's Ray Train worker against plain TRL ``SFTTrainer``.

Both sides train the same 4-bit model with the same LoRA, ``SFTConfig``, encoded rows and
checkpoint cadence, with the same number of torch threads; only the plumbing differs:

* plain: ``trl.SFTTrainer`` (not mentalchat's subclass) in this process, checkpoints to a local folder;
* ray: :func:`mentalchat.finetune.train_loop.train_worker` in a one-worker ``TorchTrainer``, with its
  checkpoint reporting to Ray Train storage, token counting and metric streaming.

Throughput is trained (non-padding) tokens per second in steady state: TRL's cumulative
``num_tokens`` differenced between the first logged step after ``--warmup`` steps and the last
step, over the wall time between them (model loading, Ray start-up, the first steps excluded).
The pair runs ``--rounds`` times, interleaved, so load from other processes falls on both; it prints
each round and the medians, and ratio = ray / plain (goal ≥ 0.90). On a shared machine the wall-clock
ratio swings with other users' load (a round's 1-minute load average is recorded), so tokens per
CPU second of the training process (Ray's own daemons excluded: on a cluster they sit on other
cores) is printed beside it as the load-robust figure.

Padding share = padded positions / processed positions, from the Ray run's counters (goal ≤ 5%),
and, for contrast, of the paper's unpacked ``group_by_length`` batches over one epoch of the same rows.

Data: the authors' synthetic pairs in ../shared/mentalchat16k when present (their real length
spread), else the project's fictional sample rows.

    python benchmarks/train_throughput.py [--model 'local:tiny-llama?hidden_size=256&num_layers=4'
        --steps 20 --warmup 4 --micro-batch 4 --rounds 3 --threads 1 --out benchmarks/results/train_throughput.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "TQDM_DISABLE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_key, _value)

REPO = Path(__file__).resolve().parents[1]
SHARED_SYNTHETIC = REPO.parent / "shared" / "mentalchat16k" / "synthetic" / "instructions_with_topics.jsonl"
INSTRUCTION = "You are a counsellor. Answer the client's message with care."


def _rows(n: int) -> tuple[list[dict[str, Any]], str]:
    from mentalchat.testing.finetune_data import qa_rows

    if SHARED_SYNTHETIC.is_file():
        rows = []
        with SHARED_SYNTHETIC.open(encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                if len(rows) >= n:
                    break
                rec = json.loads(line)
                rows.append({"id": f"s{i}", "instruction": INSTRUCTION, "input": rec["instruction"],
                             "output": rec["response"]})
        return rows, str(SHARED_SYNTHETIC)
    base = qa_rows(n_synthetic=n, n_interview=0)
    return base, "mentalchat.testing.finetune_data (fictional)"


PADDING_MODEL = "local:smollm2-135m-instruct"  # a real tokenizer for the padding contrast


def _config(args: argparse.Namespace, *, packing: bool) -> Any:
    from mentalchat.finetune.config import FinetuneConfig

    return FinetuneConfig(
        models=[args.model],
        quantization={"compute_dtype": "float32"},
        lora={"r": 16, "alpha": 16, "dropout": 0.1},
        train={"source_max_len": args.source_len, "target_max_len": args.target_len,
               "micro_batch_size": args.micro_batch, "effective_batch_size": args.micro_batch,
               "max_steps": args.steps, "packing": packing, "gradient_checkpointing": False,
               "logging_steps": 1, "save_steps": args.save_steps, "eval_max_rows": 8},
        scaling={"num_workers": 1, "cpus_per_worker": args.threads},
    )


def _steady(records: list[tuple[float, int, float, float]], warmup: int) -> dict[str, float]:
    """Tokens per wall second and per CPU second of the training process, from the first logged
    step after ``warmup`` to the last step."""
    after = [r for r in records if r[1] > warmup]
    if len(after) < 2:
        raise RuntimeError(f"too few logged steps after warm-up ({len(after)}); raise --steps")
    (t0, s0, n0, c0), (t1, s1, n1, c1) = after[0], after[-1]
    gaps = [b[0] - a[0] for a, b in zip(after, after[1:])]
    return {"tokens_per_s": (n1 - n0) / (t1 - t0), "tokens_per_cpu_s": (n1 - n0) / (c1 - c0),
            "steps": s1 - s0, "median_step_s": statistics.median(gaps), "max_step_s": max(gaps)}


def run_plain(args: argparse.Namespace, model_path: str, train_rows: list, eval_rows: list) -> dict[str, float]:
    """Vanilla TRL SFTTrainer on the same SFTConfig, model, LoRA and rows."""
    import torch
    from datasets import Dataset
    from trl import SFTTrainer

    from mentalchat.finetune.recipe import (
        StepTimer,
        _with_labels,
        build_lora_config,
        build_sft_config,
        load_base_model,
        load_tokenizer,
    )

    torch.set_num_threads(args.threads)
    cfg = _config(args, packing=args.packing)
    with tempfile.TemporaryDirectory(prefix="bench-plain-") as tmp:
        timer = StepTimer()
        # Same order as mentalchat's build_trainer: SFTConfig first, then the model.
        sft_args = build_sft_config(cfg, output_dir=tmp, max_steps=args.steps, world_size=1, on_gpu=False)
        model = load_base_model(model_path, cfg, on_gpu=False, device_index=None, use_deepspeed=False)
        trainer = SFTTrainer(
            model=model,
            args=sft_args,
            train_dataset=Dataset.from_list([_with_labels(r) for r in train_rows]),
            eval_dataset=Dataset.from_list([_with_labels(r) for r in eval_rows]),
            processing_class=load_tokenizer(model_path),
            peft_config=build_lora_config(cfg),
            callbacks=[timer],
        )
        trainer.train()
    return _steady(timer.records, args.warmup)


def run_ray(args: argparse.Namespace, model_path: str, table: Any, eval_table: Any) -> dict[str, float]:
    """mentalchat's worker function in a one-worker TorchTrainer (checkpoints to Ray storage)."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from mentalchat.finetune.train_loop import train_worker, worker_env

    cfg = _config(args, packing=args.packing)
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        trainer = TorchTrainer(
            train_worker,
            train_loop_config={
                "finetune": cfg.model_dump(mode="json"), "trial_id": "bench", "base_model": "bench",
                "model_path": model_path, "prompt_format": "auto", "data_config": "synthetic",
                "max_steps": args.steps, "train": table, "eval": eval_table, "record_steps": True,
            },
            scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": args.threads}),
            run_config=RunConfig(name="bench", storage_path=tmp, worker_runtime_env={"env_vars": worker_env()}),
        )
        result = trainer.fit()
    out = result.return_value
    steady = _steady(out["step_records"], args.warmup)
    m = out["metrics"]
    steady["padding_share"] = 1.0 - m["tokens_trained"] / m["tokens_processed"]
    return steady


def unpacked_padding_share(split_train: Any, *, model: str = PADDING_MODEL, source_len: int = 256,
                           target_len: int = 512, micro_batch: int = 16) -> float:
    """Padding share of the paper's setting (no packing, ``group_by_length``) over one epoch of batches.

    Measured with a real tokenizer (SmolLM2's, Llama-style BPE) at the paper's limits (256 prompt +
    512 answer tokens, micro-batch 16): the tiny benchmark model's toy tokenizer cuts nearly every
    row to the same length, which would make any padding figure zero.
    """
    from mentalchat.core.prompt_format import PromptFormatter
    from mentalchat.finetune.data import encode_rows
    from mentalchat.finetune.recipe import load_tokenizer
    from mentalchat.models.kit import resolve_model

    model_path = resolve_model(model)
    rows = encode_rows(PromptFormatter(load_tokenizer(model_path)), split_train,
                       source_max_len=source_len, target_max_len=target_len)
    ns = argparse.Namespace(model=model, source_len=source_len, target_len=target_len, micro_batch=micro_batch,
                            steps=1, save_steps=1, threads=1)
    return batch_padding_share(_config(ns, packing=False), model_path, rows)


def batch_padding_share(cfg: Any, model_path: str, rows: list[dict[str, list[int]]], **trainer_kw: Any) -> float:
    """Padded share of the positions in one epoch of the trainer's own batches (its collator and sampler)."""
    from mentalchat.finetune.recipe import build_trainer

    with tempfile.TemporaryDirectory(prefix="bench-pad-") as tmp:
        trainer = build_trainer(cfg, model_path=model_path, train_rows=rows, eval_rows=None,
                                output_dir=tmp, max_steps=1, **trainer_kw)
        real = padded = 0
        for batch in trainer.get_train_dataloader():
            real += int(batch["attention_mask"].sum())
            padded += batch["input_ids"].numel()
    return 1.0 - real / padded


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="local:tiny-llama?hidden_size=256&num_layers=4")
    ap.add_argument("--rows", type=int, default=320)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--save-steps", type=int, default=8)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--source-len", type=int, default=128)
    ap.add_argument("--target-len", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads on each side; 1 avoids OpenMP barriers stalling when other processes "
                         "hold the cores (2 threads on a busy 2-core machine swing 10x run to run)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-packing", dest="packing", action="store_false")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "train_throughput.json"))
    args = ap.parse_args()

    import ray

    from mentalchat.core.prompt_format import PromptFormatter
    from mentalchat.finetune.data import encode_rows, split_table
    from mentalchat.finetune.recipe import load_tokenizer
    from mentalchat.models.kit import resolve_model
    from mentalchat.schemas import get_table

    model_path = resolve_model(args.model)
    raw, source = _rows(args.rows)
    full = [{"source": "synthetic", "generator_model": "bench", "prompt_version": "bench", "crisis_flag": False,
             "topic": None, "page_ref": None, "crisis_escalated": None, **r} for r in raw]
    split = split_table(get_table("qa_pairs").from_rows(full), eval_fraction=0.03, eval_max_rows=8, seed=0)
    fmt = PromptFormatter(load_tokenizer(model_path))
    enc = {"source_max_len": args.source_len, "target_max_len": args.target_len}
    train_rows, eval_rows = encode_rows(fmt, split.train, **enc), encode_rows(fmt, split.eval, **enc)
    print(f"data: {len(train_rows)} train rows from {source}; model {args.model}; "
          f"micro-batch {args.micro_batch}, packing={args.packing}, {args.threads} threads")

    rounds = []
    for i in range(args.rounds):
        plain = run_plain(args, model_path, train_rows, eval_rows)  # no Ray running in this process
        # A fresh local cluster per round, started outside the measured window and stopped after,
        # so the plain side never shares the machine (or its process's CPU time) with Ray.
        ray.init(num_cpus=args.threads, include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            via_ray = run_ray(args, model_path, split.train, split.eval)
        finally:
            ray.shutdown()
        ratio = via_ray["tokens_per_s"] / plain["tokens_per_s"]
        cpu_ratio = via_ray["tokens_per_cpu_s"] / plain["tokens_per_cpu_s"]
        rounds.append({"plain": plain, "ray": via_ray, "ratio": ratio, "cpu_ratio": cpu_ratio,
                       "load_avg_1m": os.getloadavg()[0]})
        print(f"round {i + 1}: plain {plain['tokens_per_s']:.0f} tok/s, ray {via_ray['tokens_per_s']:.0f} tok/s, "
              f"ratio {ratio:.3f}; per CPU second ratio {cpu_ratio:.3f}; ray padding share "
              f"{via_ray['padding_share']:.2%}; load average {os.getloadavg()[0]:.1f}", flush=True)
    unpacked = unpacked_padding_share(split.train)

    summary = {
        "model": args.model, "data": source, "packing": args.packing, "threads": args.threads,
        "steps": args.steps, "warmup": args.warmup, "micro_batch": args.micro_batch,
        "plain_tokens_per_s": statistics.median(r["plain"]["tokens_per_s"] for r in rounds),
        "ray_tokens_per_s": statistics.median(r["ray"]["tokens_per_s"] for r in rounds),
        "ratio": statistics.median(r["ratio"] for r in rounds),
        "cpu_ratio": statistics.median(r["cpu_ratio"] for r in rounds),
        "padding_share": statistics.median(r["ray"]["padding_share"] for r in rounds),
        "unpacked_group_by_length_padding_share": unpacked,
        "rounds": rounds,
    }
    print(f"median: plain {summary['plain_tokens_per_s']:.0f} tok/s, ray {summary['ray_tokens_per_s']:.0f} tok/s, "
          f"ratio {summary['ratio']:.3f} (goal >= 0.90: {'met' if summary['ratio'] >= 0.90 else 'NOT met'}); "
          f"per CPU second of the training process: ratio {summary['cpu_ratio']:.3f}")
    print(f"padding share: {summary['padding_share']:.2%} (goal <= 5%: "
          f"{'met' if summary['padding_share'] <= 0.05 else 'NOT met'}); paper's unpacked group_by_length "
          f"batches (SmolLM2 tokenizer, 256 + 512 tokens, micro-batch 16): {unpacked:.2%}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
