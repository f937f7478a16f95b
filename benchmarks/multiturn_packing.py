"""Multi-turn packing: trained tokens/s and padding share of conversations against single-turn pairs.

Three training sets hold the same counselling exchanges, encoded by mentalchat's own recipe
(``PromptFormatter.encode`` / ``encode_conversation``, the token-counting ``SFTTrainer``, packing on):

* single: every exchange as one prompt-answer pair (the ``synthetic`` / ``combined`` configurations);
* multi: the exchanges chained into conversations of 2-4 turns (the dialogues table's shape);
* mixed: half the exchanges as pairs, the other half as conversations (the ``multiturn`` configuration).

Per arm, in one run and one process (interleaved over ``--rounds``): steady-state trained
(non-padding) tokens per second from TRL's ``num_tokens`` after ``--warmup`` steps, the padding share
(padded / processed positions, from the trainer's counters), the share of trained tokens in the loss
(counsellor turns only for conversations), and, for contrast, each arm's padding share unpacked
(``group_by_length`` batches over one epoch). Ratios are multi / single and mixed / single.

Data: the authors' synthetic pairs (../shared/mentalchat16k) grouped by topic into conversations
when present, else the project's fictional dialogues. The authors published no multi-turn data, so
chained single-turn pairs stand in for real dialogues: their turns are longer and less related
than a real conversation's; the figures measure the encoding and packing, not the data.

    python benchmarks/multiturn_packing.py [--model local:smollm2-135m-instruct --exchanges 160
        --steps 8 --warmup 2 --rounds 1 --out benchmarks/results/multiturn_packing.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

for _key, _value in {"HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_key, _value)

from train_throughput import _config, _steady, batch_padding_share  # noqa: E402 - same SFT settings, maths, padding

REPO = Path(__file__).resolve().parents[1]
SHARED_SYNTHETIC = REPO.parent / "shared" / "mentalchat16k" / "synthetic" / "instructions_with_topics.jsonl"
INSTRUCTION = "You are a counsellor. Answer the client's message with care."


def _exchanges(n: int) -> tuple[list[tuple[str, str, str]], str]:
    """(topic, client message, counsellor answer) triples."""
    if SHARED_SYNTHETIC.is_file():
        out = []
        with SHARED_SYNTHETIC.open(encoding="utf-8") as fh:
            for line in fh:
                if len(out) >= n:
                    break
                rec = json.loads(line)
                out.append((rec.get("topic") or "none", rec["instruction"], rec["response"]))
        return out, str(SHARED_SYNTHETIC)
    from mentalchat.testing.finetune_data import dialogue_rows

    out = []
    for row in dialogue_rows(n_train=n, n_benchmark=0):
        msgs = row["messages"]
        out += [(row["topic"], msgs[i]["content"], msgs[i + 1]["content"]) for i in range(0, len(msgs), 2)]
    return out[:n], "mentalchat.testing.finetune_data (fictional dialogues)"


def _conversations(exchanges: list[tuple[str, str, str]]) -> list[list[dict[str, str]]]:
    """Same-topic exchanges chained 2, 3, 4, 2, ... at a time (a leftover single stays alone)."""
    by_topic: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for topic, client, answer in exchanges:
        by_topic[topic].append((client, answer))
    convos, size = [], 2
    for items in by_topic.values():
        i = 0
        while i < len(items):
            chunk = items[i: i + size]
            convos.append([m for c, a in chunk for m in ({"role": "user", "content": c},
                                                          {"role": "assistant", "content": a})])
            i += len(chunk)
            size = 2 + (size - 1) % 3
    return convos


def _table(pairs: list[tuple[str, str]], convos: list[list[dict[str, str]]]) -> Any:
    """A training table as ``finetune.data.with_dialogues`` builds it (pairs, then dialogue rows)."""
    from mentalchat.finetune.data import with_dialogues
    from mentalchat.schemas import get_table

    def rid(x: Any) -> str:
        return hashlib.sha256(json.dumps(x).encode()).hexdigest()[:16]

    qa = get_table("qa_pairs").from_rows([
        {"id": rid(p), "instruction": INSTRUCTION, "input": c, "output": a, "source": "synthetic",
         "generator_model": "bench", "prompt_version": "bench", "crisis_flag": False, "topic": None,
         "page_ref": None, "crisis_escalated": None} for p in pairs for c, a in [p]])
    if not convos:
        return qa
    dialogues = get_table("dialogues").from_rows([
        {"id": rid(m), "instruction": INSTRUCTION, "messages": m, "n_turns": len(m) // 2, "source": "synthetic",
         "topic": None, "page_ref": None, "split": "train", "generator_model": "bench", "prompt_version": "bench",
         "crisis_flag": False} for m in convos])
    return with_dialogues(qa, dialogues)


def _train(args: argparse.Namespace, model_path: str, rows: list[dict[str, list[int]]]) -> dict[str, float]:
    import torch

    from mentalchat.finetune.recipe import StepTimer, build_trainer

    torch.set_num_threads(args.threads)
    cfg = _config(args, packing=True)
    timer = StepTimer()
    with tempfile.TemporaryDirectory(prefix="bench-mt-") as tmp:
        trainer = build_trainer(cfg, model_path=model_path, train_rows=rows, eval_rows=None, output_dir=tmp,
                                max_steps=args.steps, callbacks=[timer], save=False)
        trainer.train()
        counts = trainer.global_token_counts()
    out = _steady(timer.records, args.warmup)
    out["padding_share"] = 1.0 - counts["tokens_trained"] / counts["tokens_processed"]
    out["loss_share"] = counts["tokens_in_loss"] / counts["tokens_trained"]
    return out


def _unpacked_padding(args: argparse.Namespace, model_path: str, rows: list[dict[str, list[int]]]) -> float:
    return batch_padding_share(_config(args, packing=False), model_path, rows, save=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="local:smollm2-135m-instruct")
    ap.add_argument("--exchanges", type=int, default=160)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--source-len", type=int, default=128)
    ap.add_argument("--target-len", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "multiturn_packing.json"))
    args = ap.parse_args()
    args.save_steps = args.steps + 1

    from mentalchat.core.prompt_format import PromptFormatter
    from mentalchat.finetune.data import encode_rows
    from mentalchat.finetune.recipe import load_tokenizer
    from mentalchat.models.kit import resolve_model

    model_path = resolve_model(args.model)
    exchanges, source = _exchanges(args.exchanges)
    pairs = [(c, a) for _, c, a in exchanges]
    half = len(exchanges) // 2
    tables = {
        "single": _table(pairs, []),
        "multi": _table([], _conversations(exchanges)),
        "mixed": _table(pairs[:half], _conversations(exchanges[half:])),
    }
    fmt = PromptFormatter(load_tokenizer(model_path))
    enc = {"source_max_len": args.source_len, "target_max_len": args.target_len}
    rows = {name: encode_rows(fmt, t, **enc) for name, t in tables.items()}
    for name, r in rows.items():
        print(f"{name}: {len(r)} rows, {sum(len(x['input_ids']) for x in r)} tokens", flush=True)
    print(f"data: {len(exchanges)} exchanges from {source}; model {args.model}; micro-batch {args.micro_batch}, "
          f"{args.source_len}+{args.target_len} tokens, {args.threads} threads", flush=True)

    rounds: list[dict[str, dict[str, float]]] = []
    for i in range(args.rounds):
        got = {name: _train(args, model_path, r) for name, r in rows.items()}
        rounds.append(got)
        print(f"round {i + 1}: " + "; ".join(
            f"{n} {g['tokens_per_s']:.0f} tok/s, padding {g['padding_share']:.2%}, in loss {g['loss_share']:.1%}"
            for n, g in got.items()), flush=True)

    def med(name: str, key: str) -> float:
        return statistics.median(r[name][key] for r in rounds)

    summary: dict[str, Any] = {"model": args.model, "data": source, "exchanges": len(exchanges),
                               "steps": args.steps, "warmup": args.warmup, "micro_batch": args.micro_batch,
                               "source_len": args.source_len, "target_len": args.target_len, "arms": {}}
    for name, r in rows.items():
        summary["arms"][name] = {
            "rows": len(r), "tokens_per_s": med(name, "tokens_per_s"), "padding_share": med(name, "padding_share"),
            "loss_share": med(name, "loss_share"), "unpacked_padding_share": _unpacked_padding(args, model_path, r)}
    single = summary["arms"]["single"]
    for name in ("multi", "mixed"):
        arm = summary["arms"][name]
        summary[f"{name}_over_single_tokens_per_s"] = arm["tokens_per_s"] / single["tokens_per_s"]
        print(f"{name} / single: trained tokens/s ratio {summary[f'{name}_over_single_tokens_per_s']:.3f}; "
              f"padding share {arm['padding_share']:.2%} vs {single['padding_share']:.2%} (packed), "
              f"{arm['unpacked_padding_share']:.2%} vs {single['unpacked_padding_share']:.2%} (unpacked); "
              f"tokens in the loss {arm['loss_share']:.1%} vs {single['loss_share']:.1%}")
    summary["rounds"] = rounds
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
