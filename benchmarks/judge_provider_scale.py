"""The paper's judge sweep at full size against provider-like limits: mentalchat vs a FastChat-style loop.

The paper judged 31 answer sets x 200 questions with two judges (GPT-4 Turbo, Gemini Pro): 12,400
calls. Here each judge is its own provider: a fault server (a separate process) with a
requests-per-minute limit, a tokens-per-minute limit counted at admission as OpenAI does (prompt
~chars/4 + max_tokens; 429 with Retry-After beyond it) and heavy-tailed lognormal latency. Time
is compressed (limits per minute are those of a small account, latencies a few hundred ms), the
shape is not: the binding limit is tokens, and one call in a hundred takes several times the median.

Per provider the ceiling is ``min(rpm / 60, tpm / 60 / tokens_per_call, concurrency / mean_latency)``
judgments per second; the sweep's ceiling is the sum over both providers. Printed: each client's
judgments per second as a share of that ceiling, and items lost (not scored).

* mentalchat: ``run_judge`` with both judges (each engine told its provider's rpm and tpm);
* baseline: FastChat's ``gen_judgment.py`` way: per judge a pool of ``--concurrency`` threads calling
  the openai SDK, sleeping a fixed 10 s after any error.

Goals: mentalchat >= 0.97 of the ceiling with 0 lost.

    python benchmarks/judge_provider_scale.py [--models 31 --questions 200 --rpm 2400 --tpm 1500000]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from judge_throughput import BASELINE_MAX_RETRY, BASELINE_RETRY_SLEEP_S  # noqa: E402

MAX_TOKENS = 300
JUDGES = ("gpt-judge", "gemini-judge")


def _start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mentalchat.testing.fault_server", "--port", "0", "--rpm", str(args.rpm),
         "--burst", str(max(1.0, args.rpm / 60)), "--tpm", str(args.tpm), "--latency-ms", str(args.latency_ms),
         "--latency-sigma", str(args.latency_sigma), "--seed", str(len(JUDGES))],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        m = re.search(r"OpenAI base URL (\S+?)\)", proc.stdout.readline())
        if m:
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep its pipe drained
            return proc, m.group(1)
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("fault server did not start")


def _inputs(folder: Path, n_models: int, n_questions: int) -> tuple[Path, Path, list[tuple[str, str]]]:
    from mentalchat.schemas import get_table, write_table

    qpath = folder / "question.jsonl"
    with qpath.open("w") as fh:
        for i in range(1, n_questions + 1):
            fh.write(json.dumps({"question_id": i, "turns": [
                f"Question {i}: for months I have been waking at four and worrying about work, money and my "
                "family, and I am starting to dread the evenings. What can I do?"]}) + "\n")
    rows = [{"question_id": str(i), "model_id": f"model-{m:02d}",
             "answer": f"Answer {i} of model {m}: that sounds exhausting. Many people wake early when they are "
                       "under strain; a wind-down hour, a fixed rising time and writing worries down earlier in "
                       "the day can help, and a GP or counsellor can look at it with you if it goes on."}
            for i in range(1, n_questions + 1) for m in range(n_models)]
    apath = folder / "answers.parquet"
    write_table(get_table("answers").from_rows(rows), apath, "answers")
    return qpath, apath, [(r["question_id"], r["model_id"]) for r in rows]


def _tokens_per_call(qpath: Path, apath: Path) -> int:
    """What the server counts for one judge call at admission (prompt ~chars/4 + max_tokens)."""
    from mentalchat.core.questions import load_questions
    from mentalchat.judge.plan import load_answers
    from mentalchat.judge.prompts import render_prompt

    q = load_questions(qpath)[0]
    a = next(a for a in load_answers([apath]) if a.question_id == q.question_id)
    msgs = render_prompt("mentalchat-v1", q.text, a.answer, structured=True)
    return math.ceil(sum(len(m.content) for m in msgs) / 4) + MAX_TOKENS


def _ceiling(args: argparse.Namespace, tokens: int) -> tuple[float, str]:
    mean_latency = args.latency_ms / 1000 * math.exp(args.latency_sigma**2 / 2)
    bounds = {"requests/min": args.rpm / 60, "tokens/min": args.tpm / 60 / tokens,
              "concurrency/latency": args.concurrency / mean_latency}
    which = min(bounds, key=bounds.__getitem__)
    return bounds[which], which


def run_mentalchat(urls: dict[str, str], qpath: Path, apath: Path, out: Path, args: argparse.Namespace) -> tuple[float, int, int]:
    import mentalchat.engine.openai_backend  # noqa: F401 - imports paid before the clock starts
    from mentalchat.judge.config import JudgeConfig
    from mentalchat.judge.run import run_judge

    engines = {
        name: {"backend": "openai", "model": f"bench-{name}", "base_url": url,
               "sampling": {"temperature": 0.0, "max_tokens": MAX_TOKENS},
               "http": {"max_concurrency": args.concurrency, "requests_per_minute": args.rpm,
                        "tokens_per_minute": args.tpm, "max_retries": 10, "timeout_s": 60}}
        for name, url in urls.items()
    }
    cfg = JudgeConfig.model_validate({"judges": [{"engine": n} for n in urls], "engines": engines})
    t0 = time.perf_counter()
    summary = run_judge(cfg, qpath, [apath], out, progress=False, echo=lambda s: None)
    return time.perf_counter() - t0, summary.scored, summary.planned - summary.scored


def run_baseline(urls: dict[str, str], qpath: Path, apath: Path, pairs: list[tuple[str, str]],
                 args: argparse.Namespace) -> tuple[float, int, int]:
    import openai

    from mentalchat.core.questions import load_questions
    from mentalchat.core.rubric import judgment_json_schema
    from mentalchat.judge.plan import load_answers
    from mentalchat.judge.prompts import render_prompt

    questions = {q.question_id: q.text for q in load_questions(qpath)}
    answers = {(a.question_id, a.model): a.answer for a in load_answers([apath])}
    schema = judgment_json_schema()

    def sweep(name: str, url: str) -> list[bool]:
        client = openai.OpenAI(base_url=url, api_key="bench", max_retries=0, timeout=60)

        def judge(pair: tuple[str, str]) -> bool:
            msgs = [m.model_dump() for m in render_prompt("mentalchat-v1", questions[pair[0]], answers[pair], structured=True)]
            for _ in range(BASELINE_MAX_RETRY):
                try:
                    resp = client.chat.completions.create(
                        model=f"bench-{name}", messages=msgs, temperature=0.0, max_tokens=MAX_TOKENS,
                        response_format={"type": "json_schema",
                                         "json_schema": {"name": "j", "schema": schema, "strict": True}},
                    )
                    json.loads(resp.choices[0].message.content or "")
                    return True
                except Exception:  # noqa: BLE001 - FastChat catches every API error the same way
                    time.sleep(BASELINE_RETRY_SLEEP_S)
            return False

        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            return list(pool.map(judge, pairs))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(urls)) as outer:
        results = [ok for oks in outer.map(lambda kv: sweep(*kv), urls.items()) for ok in oks]
    return time.perf_counter() - t0, sum(results), len(results) - sum(results)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=31, help="answer sets (the paper: 31)")
    ap.add_argument("--questions", type=int, default=200, help="benchmark questions (the paper: 200)")
    ap.add_argument("--rpm", type=float, default=2400.0, help="each provider's requests per minute")
    ap.add_argument("--tpm", type=float, default=1_500_000.0, help="each provider's tokens per minute")
    ap.add_argument("--latency-ms", type=float, default=400.0, help="median latency")
    ap.add_argument("--latency-sigma", type=float, default=0.8, help="lognormal sigma (0.8: p99 ~6x the median)")
    ap.add_argument("--concurrency", type=int, default=32, help="calls in flight per provider, both clients")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")

    servers = [_start_server(args) for _ in JUDGES]
    urls = {name: url for name, (_, url) in zip(JUDGES, servers, strict=True)}
    result: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="judge-scale-") as tmp:
            qpath, apath, pairs = _inputs(Path(tmp), args.models, args.questions)
            tokens = _tokens_per_call(qpath, apath)
            per_provider, binding = _ceiling(args, tokens)
            ceiling = per_provider * len(JUDGES)
            calls = len(pairs) * len(JUDGES)
            print(f"{calls} judge calls ({args.models} answer sets x {args.questions} questions x {len(JUDGES)} judges); "
                  f"per provider {args.rpm:g} rpm, {args.tpm:g} tpm, {tokens} tokens a call, latency median "
                  f"{args.latency_ms:g} ms sigma {args.latency_sigma:g}, concurrency {args.concurrency}; ceiling "
                  f"{ceiling:.1f} judgments/s ({binding} binds)")
            wall, scored, lost = run_mentalchat(urls, qpath, apath, Path(tmp) / "out", args)
            ours = scored / wall / ceiling
            print(f"mentalchat: {scored} scored, {lost} lost in {wall:.1f} s = {scored / wall:.1f}/s -> {ours:.3f} of the ceiling")
            result.update(calls=calls, ceiling_per_s=ceiling, binding=binding, tokens_per_call=tokens,
                          mentalchat_of_ceiling=round(ours, 4), mentalchat_lost=lost, mentalchat_wall_s=round(wall, 1))
            base = None
            if not args.skip_baseline:
                time.sleep(3.0)  # let the servers' buckets refill
                wall_b, scored_b, lost_b = run_baseline(urls, qpath, apath, pairs, args)
                base = scored_b / wall_b / ceiling
                print(f"baseline (FastChat-style threads, 10 s sleep on error): {scored_b} scored, {lost_b} lost in "
                      f"{wall_b:.1f} s = {scored_b / wall_b:.1f}/s -> {base:.3f} of the ceiling")
                result.update(baseline_of_ceiling=round(base, 4), baseline_lost=lost_b, baseline_wall_s=round(wall_b, 1))
            print(f"RATIO mentalchat={ours:.3f}" + ("" if base is None else f" baseline={base:.3f}"))
    finally:
        for proc, _ in servers:
            proc.terminate()
            proc.wait(10)
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2))
    return 0 if result.get("mentalchat_of_ceiling", 0) >= 0.97 and result.get("mentalchat_lost", 1) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
