"""Stage 1 benchmark: de-identification quality and throughput, and Ray Data + vLLM vs bare vLLM.

On N generated transcripts with planted identifiers (mentalchat.dataset.transcripts), in one run:

1. de-identification alone (one process): recall (planted identifiers that no longer appear),
   precision (replaced spans that cover a planted value) and pages/s, per identifier kind;
2. the whole interview path (``build_dataset``: read → de-identify in Ray actors → paraphrase with
   vLLM in Ray actors → parse, de-identify again, filter → tables), with the de-identified pages
   kept in ``pages.parquet`` so the leak check sees everything the model saw: wall time, pages/s,
   and the leak count over every string in the published folder (goal: 0);
3. steady-state ratio of the paraphrase step through Ray Data (``run_on_dataset``) to a bare
   ``vllm.LLM.chat`` on the same model, engine settings, de-identified pages, batch size and
   guided-JSON sampling, interleaved ``--rounds`` times; Ray's steady state starts at the first
   output batch, bare's after a warm-up call (goal: >= 0.90). Pages/s and output tokens/s.

    python benchmarks/dataset_throughput.py [--transcripts 200 --ratio-pages 256 --rounds 3 --out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "TQDM_DISABLE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_key, _value)


def _engine(args):
    from mentalchat.engine import EngineConfig, SamplingConfig, VLLMOptions

    return EngineConfig(
        backend="vllm", model=args.model, name="bench-paraphraser",
        sampling=SamplingConfig(temperature=0.0, max_tokens=args.max_tokens),
        vllm=VLLMOptions(batch_size=args.batch_size, kv_cache_memory_bytes=args.kv_cache_mib * 2**20,
                         max_model_len=args.max_model_len),
    )


def output_texts(folder: Path) -> list[str]:
    import pyarrow.parquet as pq

    texts = []
    for f in folder.rglob("*"):
        if f.suffix == ".parquet":
            t = pq.read_table(f)
            texts += [str(v) for col in t.columns for v in col.to_pylist() if v is not None]
        elif f.suffix in (".md", ".json"):
            texts.append(f.read_text(encoding="utf-8"))
    return texts


def bare_round(llm, requests, batch_size: int, chat_api: bool = False) -> tuple[float, int, list[str]]:
    """Seconds for ``LLM.chat`` over every conversation in chunks of ``batch_size`` (what an
    engine actor does per batch; one call with everything overflows the same KV cache and makes
    vLLM preempt), after a warm-up call; output tokens and texts. Prompts are rendered with the
    tokenizer's chat template and passed as token ids, like the engine backend (``--bare-chat``:
    ``LLM.chat`` instead, which is far slower per request on a tiny model)."""
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    def params(r):
        s = r.sampling
        return SamplingParams(temperature=s.temperature, max_tokens=s.max_tokens,
                              structured_outputs=StructuredOutputsParams(json=r.json_schema))

    tok = llm.get_tokenizer()

    def prompts(rs):  # the chat template applied once, as the engine backend does
        return [{"prompt_token_ids": tok(tok.apply_chat_template([m.model_dump() for m in r.messages],
                                                                  tokenize=False, add_generation_prompt=True),
                                         add_special_tokens=False)["input_ids"]} for r in rs]

    if chat_api:
        convs = [[m.model_dump() for m in r.messages] for r in requests]
        run = lambda rs, i: llm.chat(convs[i:i + len(rs)], [params(r) for r in rs], use_tqdm=False)  # noqa: E731
    else:
        run = lambda rs, i: llm.generate(prompts(rs), [params(r) for r in rs], use_tqdm=False)  # noqa: E731
    run(requests[:8], 0)
    start = time.perf_counter()
    outs = []
    for i in range(0, len(requests), batch_size):
        outs += run(requests[i:i + batch_size], i)
    elapsed = time.perf_counter() - start
    return elapsed, sum(len(o.outputs[0].token_ids) for o in outs), [o.outputs[0].text for o in outs]


def ray_round(cfg, requests) -> tuple[float, int, int, dict[str, str]]:
    """Steady state through Ray Data: seconds from the first output batch to the last, rows and
    output tokens after it, and every text by request id."""
    import ray.data

    from mentalchat.engine import ChatResult
    from mentalchat.engine.runner import run_on_dataset

    ds = ray.data.from_items([{"request": r.model_dump_json()} for r in requests])
    first = last = None
    rows = tokens = 0
    texts: dict[str, str] = {}
    for batch in run_on_dataset(ds, cfg).iter_batches(batch_size=None, batch_format="numpy"):
        now = time.perf_counter()
        results = [ChatResult.model_validate_json(x) for x in batch["result"]]
        texts.update({r.id: r.text or "" for r in results})
        if first is None:
            first = now
            continue
        rows += len(results)
        tokens += sum(r.tokens_out for r in results)
        last = now
    if first is None or last is None or rows == 0:
        raise SystemExit("fewer than two output batches: raise --ratio-pages or lower --batch-size")
    return last - first, rows, tokens, texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--transcripts", type=int, default=200)
    ap.add_argument("--seed", type=int, default=20261126)
    ap.add_argument("--model", default="local:tiny-llama?max_position_embeddings=4096")
    ap.add_argument("--max-model-len", type=int, default=4096)
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--kv-cache-mib", type=int, default=256)
    ap.add_argument("--ratio-pages", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bare-chat", action="store_true", help="bare side through LLM.chat")
    ap.add_argument("--only", choices=["deid", "build", "ratio"], action="append",
                    help="run only these parts (repeatable); default: all three")
    ap.add_argument("--out", help="write the report JSON here too")
    args = ap.parse_args()

    from mentalchat.dataset.config import DatasetConfig, DeidConfig
    from mentalchat.dataset.deid import get_deidentifier
    from mentalchat.dataset.deid_eval import evaluate_deid
    from mentalchat.dataset.paraphrase import build_request
    from mentalchat.dataset.transcripts import find_leaks, generate_transcripts, write_transcripts

    report: dict = {"transcripts": args.transcripts, "seed": args.seed, "model": args.model,
                    "cpus": os.cpu_count()}
    gen = generate_transcripts(args.transcripts, seed=args.seed)
    planted = [p for t in gen for p in t.planted]
    n_pages = sum(len(t.pages) for t in gen)
    report["pages"] = n_pages
    report["planted_identifiers"] = len(set(planted))

    parts = set(args.only or ["deid", "build", "ratio"])
    deid = get_deidentifier(DeidConfig())
    # 1. de-identification alone
    if "deid" in parts:
        scores = evaluate_deid(deid, gen)
        report["deid"] = scores.as_dict()
        report["deid"]["leak_examples"] = scores.examples[:10]
        print(json.dumps({"deid": {k: v for k, v in report["deid"].items() if k != "by_kind"}}), flush=True)

    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, configure_logging=False)
    cfg_engine = _engine(args)
    try:
        # 2. the whole interview path, leak check over the published folder
        with tempfile.TemporaryDirectory(prefix="mc-bench-") as tmp:
            folder = Path(tmp) / "transcripts"
            write_transcripts(gen, folder, formats=("txt", "jsonl", "docx"))
            if "build" in parts:
                from mentalchat.dataset.build import build_dataset

                cfg = DatasetConfig(
                    engines={"p": cfg_engine}, synthetic={"enabled": False},
                    interview={"paraphrase_engine": "p", "min_words": 1, "keep_page_text": True,
                               "max_tokens": args.max_tokens, "max_answer_chars": 60},
                )
                start = time.perf_counter()
                stats = build_dataset(cfg, Path(tmp) / "ds", transcripts=folder, echo=lambda m: None)
                wall = time.perf_counter() - start
                leaks = find_leaks(output_texts(Path(tmp) / "ds"), planted)
                report["build"] = {
                    "wall_s": round(wall, 1), "pages": stats["interview"]["pages"],
                    "pages_per_s_end_to_end": round(stats["interview"]["pages"] / wall, 2),
                    "pairs": stats["pairs"], "rejected": stats["rejected"],
                    "leaks_in_output": len(leaks), "leak_examples": [(p.kind, p.value) for p, _ in leaks[:10]],
                    "goal_leaks": 0,
                }
                print(json.dumps({"build": report["build"]}), flush=True)

        # 3. paraphrase step: Ray Data + vLLM vs bare vLLM, same pages and sampling
        if "ratio" not in parts:
            return finish(report, args)
        texts = []
        for t in gen:
            texts += [r.text for r in deid.deidentify_pages(t.page_texts())]
            if len(texts) >= args.ratio_pages:
                break
        texts = (texts * (args.ratio_pages // max(1, len(texts)) + 1))[: args.ratio_pages]
        requests = [build_request(f"r{i}", t, min_words=1, json_schema=True, max_chars=60,
                                  max_tokens=args.max_tokens, base_sampling=cfg_engine.sampling)
                    for i, t in enumerate(texts)]
        from vllm import LLM

        from mentalchat.engine.vllm_backend import vllm_engine_kwargs
        from mentalchat.models.kit import resolve_model

        # Steady state needs several output batches: small runs get smaller batches (both sides).
        batch = min(args.batch_size, max(1, len(requests) // 4))
        cfg_engine = cfg_engine.model_copy(update={"vllm": cfg_engine.vllm.model_copy(update={"batch_size": batch})})
        llm = LLM(**vllm_engine_kwargs(cfg_engine, resolve_model(cfg_engine.model)))
        rounds = []
        for _ in range(args.rounds):
            b, b_tokens, b_texts = bare_round(llm, requests, batch, args.bare_chat)
            r_s, r_rows, r_tokens, r_texts = ray_round(cfg_engine, requests)
            same = sum(b_texts[i] == r_texts.get(r.id) for i, r in enumerate(requests))
            rounds.append({"bare_pages_per_s": len(requests) / b, "ray_pages_per_s": r_rows / r_s,
                           "bare_tokens_per_s": b_tokens / b, "ray_tokens_per_s": r_tokens / r_s,
                           "identical_outputs": same / len(requests)})
            rounds[-1]["ratio"] = rounds[-1]["ray_pages_per_s"] / rounds[-1]["bare_pages_per_s"]
            rounds[-1]["ratio_tokens"] = rounds[-1]["ray_tokens_per_s"] / rounds[-1]["bare_tokens_per_s"]
            print(json.dumps({k: round(v, 3) for k, v in rounds[-1].items()}), flush=True)
        report["paraphrase_ratio"] = {
            "pages": len(requests), "rounds": len(rounds), "max_tokens": args.max_tokens, "batch_size": batch,
            "bare_pages_per_s": round(statistics.median(r["bare_pages_per_s"] for r in rounds), 2),
            "ray_pages_per_s": round(statistics.median(r["ray_pages_per_s"] for r in rounds), 2),
            "bare_tokens_per_s": round(statistics.median(r["bare_tokens_per_s"] for r in rounds), 1),
            "ray_tokens_per_s": round(statistics.median(r["ray_tokens_per_s"] for r in rounds), 1),
            "identical_outputs": min(r["identical_outputs"] for r in rounds),
            "ratio": round(statistics.median(r["ratio"] for r in rounds), 3),
            "ratio_tokens": round(statistics.median(r["ratio_tokens"] for r in rounds), 3),
            "goal": 0.90,
        }
    finally:
        ray.shutdown()
    finish(report, args)


def finish(report: dict, args) -> None:
    print(json.dumps(report, indent=2, default=str))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
