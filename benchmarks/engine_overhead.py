"""Overhead of running vLLM inside Ray Data actors, against a bare ``vllm.LLM`` on the same work.

Both sides use the same model, engine settings and greedy prompts, so they generate identical
tokens; only the plumbing differs. In one run, one after the other:

* bare: ``vllm.LLM.chat`` on every conversation in one call, after a warm-up call (steady state:
  engine start-up excluded), in this process;
* ray: ``run_on_dataset`` (a ``map_batches`` pool of :class:`~mentalchat.engine.runner.EngineActor`
  holding the "vllm" backend; a subclass stamps each batch's start and end). Steady state runs
  from the end of the actor's first batch to the end of its last, over the rows of the later
  batches: Ray start-up, the engine start and the first batch are left out, Ray Data's work
  between batches is in.

Both engines compute with one thread (``OMP_NUM_THREADS=1``, what Ray gives a 1-CPU actor).

The pair is repeated ``--rounds`` times, interleaved, so that load from other processes on a shared
machine falls on both sides; it prints each round and the medians of both throughputs (requests/s,
output tokens/s) and of ratio = ray / bare. Goal: >= 0.90. Diagnostics: bare throughput when fed
in calls of ``--batch-size`` (the cost of batching alone, no Ray), ratio_same_batching = ray / that
(Ray Data's own cost), and the share of Ray's window spent between actor calls. Small batches of
short generations (e.g. 16 x 16 tokens) lose mostly to batching, not to Ray: raise
``vllm.batch_size`` so each actor call holds a few seconds of work.

    python benchmarks/engine_overhead.py [--model local:tiny-llama?hidden_size=256&num_layers=4
                                          --requests 320 --batch-size 64 --max-tokens 64 --rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "TQDM_DISABLE": "1",
    # Ray starts the actor with OMP_NUM_THREADS = its CPUs (1); the bare engine gets the same, so
    # both sides compute with equal threads and only the plumbing differs.
    "OMP_NUM_THREADS": "1",
}.items():
    os.environ.setdefault(_key, _value)

TOPICS = ["sleep", "grief", "exams", "loneliness", "work stress", "panic attacks", "a breakup", "anger"]


def _requests(n: int, max_tokens: int) -> list:
    from mentalchat.engine import ChatRequest, SamplingConfig

    sampling = SamplingConfig(temperature=0.0, max_tokens=max_tokens)
    return [
        ChatRequest.from_prompt(
            f"r{i}", f"Question {i}: I have been struggling with {TOPICS[i % len(TOPICS)]}. What could help?",
            system="You are a supportive counsellor.", sampling=sampling,
        )
        for i in range(n)
    ]


def start_bare(cfg):
    from vllm import LLM

    from mentalchat.engine.vllm_backend import vllm_engine_kwargs
    from mentalchat.models.kit import resolve_model

    return LLM(**vllm_engine_kwargs(cfg, resolve_model(cfg.model)))


def bare(llm, requests, batch_size: int) -> tuple[float, int, float, float]:
    """Seconds for one ``LLM.chat`` call on all conversations, output tokens generated,
    seconds for the same work in calls of ``batch_size`` (what one actor call gets; diagnostic),
    and this process's CPU seconds during the one call."""
    from vllm import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=requests[0].sampling.max_tokens)
    convs = [[m.model_dump() for m in r.messages] for r in requests]
    llm.chat(convs[:batch_size], params, use_tqdm=False)  # warm-up
    start, cpu = time.perf_counter(), time.process_time()
    outs = llm.chat(convs, params, use_tqdm=False)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    start = time.perf_counter()
    for i in range(0, len(convs), batch_size):
        llm.chat(convs[i : i + batch_size], params, use_tqdm=False)
    batched = time.perf_counter() - start
    return elapsed, sum(len(o.outputs[0].token_ids) for o in outs), batched, cpu


def _timed_actor():
    import numpy as np

    from mentalchat.engine.runner import EngineActor

    class TimedEngineActor(EngineActor):
        """Stamps each batch with when the actor started and finished it (wall clock)."""

        def __call__(self, batch):
            started, cpu = time.time(), time.process_time()
            out = super().__call__(batch)
            n = len(out[self.result_column])
            out["_cpu"] = np.full(n, time.process_time() - cpu)  # the actor process's CPU seconds
            out["_started"] = np.full(n, started)
            out["_finished"] = np.full(n, time.time())
            return out

    return TimedEngineActor


def through_ray(cfg, requests) -> tuple[float, int, int, int, float, float, float]:
    """Steady-state seconds, rows and output tokens after the first batch; total output tokens;
    seconds of that window spent between actor calls (Ray Data's share); the actor's CPU seconds
    and wall seconds inside those later calls (diagnostic: a share under 1 means it waited for a
    core other processes held).

    The window runs from the end of the actor's first batch (engine warm) to the end of its last
    one, so it holds every later batch plus Ray Data's work between batches (moving blocks,
    serialising, scheduling the next call), and leaves out Ray and engine start-up.
    """
    import ray.data

    from mentalchat.engine import ChatResult
    from mentalchat.engine.runner import run_on_dataset

    ds = ray.data.from_items([{"request": r.model_dump_json()} for r in requests])
    rows = run_on_dataset(ds, cfg, actor_cls=_timed_actor()).take_all()
    batches: dict[float, list[dict]] = {}
    starts: dict[float, float] = {}
    cpus: dict[float, float] = {}
    for row in rows:
        batches.setdefault(float(row["_finished"]), []).append(row)
        starts[float(row["_finished"])] = float(row["_started"])
        cpus[float(row["_finished"])] = float(row["_cpu"])
    ends = sorted(batches)
    if len(ends) < 2:
        raise SystemExit("fewer than two batches: raise --requests or lower --batch-size")
    later = [row for end in ends[1:] for row in batches[end]]
    tokens = [ChatResult.model_validate_json(r["result"]).tokens_out for r in rows]
    tokens_after = sum(ChatResult.model_validate_json(r["result"]).tokens_out for r in later)
    gaps = sum(starts[end] - prev for prev, end in zip(ends, ends[1:], strict=False))
    cpu = sum(cpus[end] for end in ends[1:])
    busy = sum(end - starts[end] for end in ends[1:])
    return ends[-1] - ends[0], len(later), tokens_after, sum(tokens), gaps, cpu, busy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="local:tiny-llama?hidden_size=256&num_layers=4")
    parser.add_argument("--requests", type=int, default=320)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="bare/ray pairs, interleaved; medians reported")
    parser.add_argument("--kv-cache-mib", type=int, default=256, help="CPU only (GPU: gpu_memory_utilization)")
    parser.add_argument("--gpus", type=float, default=0.0, help="GPUs per replica (GPU check)")
    parser.add_argument("--engine-kwargs", default="{}", help='extra vllm.LLM arguments, JSON ({"load_format": "dummy"})')
    args = parser.parse_args()

    import ray

    from mentalchat.engine import EngineConfig, VLLMOptions

    cfg = EngineConfig(
        backend="vllm",
        model=args.model,
        vllm=VLLMOptions(batch_size=args.batch_size, max_model_len=512, gpus_per_replica=args.gpus,
                         kv_cache_memory_bytes=None if args.gpus else args.kv_cache_mib * 2**20,
                         # the bare engine and the Ray replica share the GPU
                         gpu_memory_utilization=0.4, engine_kwargs=json.loads(args.engine_kwargs)),
    )
    requests = _requests(args.requests, args.max_tokens)
    llm = start_bare(cfg)
    ray.init(num_cpus=os.cpu_count(), num_gpus=1 if args.gpus else 0, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    rounds = []
    try:
        # Interleaved so that load from anything else on the machine hits both sides alike.
        for _ in range(args.rounds):
            bare_s, bare_tokens, bare_batched_s, bare_cpu = bare(llm, requests, args.batch_size)
            ray_s, ray_rows, ray_tokens, ray_tokens_total, gaps, ray_cpu, ray_busy = through_ray(cfg, requests)
            rounds.append({
                "bare_requests_per_s": len(requests) / bare_s,
                "bare_in_batches_requests_per_s": len(requests) / bare_batched_s,
                "bare_output_tokens_per_s": bare_tokens / bare_s,
                "ray_requests_per_s": ray_rows / ray_s,
                "ray_output_tokens_per_s": ray_tokens / ray_s,
                "ray_share_between_calls": gaps / ray_s,
                # CPU seconds per request, bare / Ray: below 1 = the actor's calls cost more CPU
                "cpu_per_request_bare_over_ray": (bare_cpu / len(requests)) / (ray_cpu / ray_rows),
                "bare_cpu_share": bare_cpu / bare_s,  # CPU seconds per wall second of the process
                "ray_actor_cpu_share": ray_cpu / ray_busy,
                "same_output_tokens": bare_tokens == ray_tokens_total,
            })
            rounds[-1]["ratio"] = rounds[-1]["ray_requests_per_s"] / rounds[-1]["bare_requests_per_s"]
            rounds[-1]["ratio_same_batching"] = (
                rounds[-1]["ray_requests_per_s"] / rounds[-1]["bare_in_batches_requests_per_s"]
            )
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in rounds[-1].items()}),
                  flush=True)
    finally:
        ray.shutdown()

    def med(key: str) -> float:
        return round(statistics.median(r[key] for r in rounds), 3)

    report = {
        "model": args.model,
        "requests": len(requests),
        "batch_size": args.batch_size,
        "max_tokens": args.max_tokens,
        "rounds": len(rounds),
        "bare_requests_per_s": med("bare_requests_per_s"),
        "bare_output_tokens_per_s": med("bare_output_tokens_per_s"),
        "bare_in_batches_requests_per_s": med("bare_in_batches_requests_per_s"),
        "ray_requests_per_s": med("ray_requests_per_s"),
        "ray_output_tokens_per_s": med("ray_output_tokens_per_s"),
        "ray_share_between_calls": med("ray_share_between_calls"),
        "cpu_per_request_bare_over_ray": med("cpu_per_request_bare_over_ray"),
        "bare_cpu_share": med("bare_cpu_share"),
        "ray_actor_cpu_share": med("ray_actor_cpu_share"),
        "same_output_tokens": all(r["same_output_tokens"] for r in rounds),
        "ratio": med("ratio"),
        "ratio_same_batching": med("ratio_same_batching"),
        "goal": 0.90,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
