"""Judge throughput against a rate-limited, slow local endpoint: mentalchat's judge stage vs a FastChat-style loop.

The fault server (run as a separate process, so it does not share the GIL with the clients) answers
OpenAI chat completions after ``--latency-ms`` and admits ``--rps`` requests per second (429 with
Retry-After beyond that). The ceiling for a client allowed ``--concurrency`` calls at once is
``min(rps, concurrency / latency)`` judgments per second. Two clients run in this one process, one
after the other, on the same items:

* mentalchat: ``run_judge`` end to end (planning, calls through the HTTP engine with its limiter
  paced at the configured rate, parsing, progress store, tables), wall time of the whole call;
* baseline: what FastChat's ``gen_judgment.py`` does: a thread pool of ``--concurrency`` workers
  calling the openai SDK, sleeping a fixed 10 s after any error and trying again.

Both print judgments/s as a ratio of the ceiling and how many items were lost (not scored).
Goal: mentalchat >= 0.95 of the ceiling with 0 lost.

Then the same items go through the judge stage once more with ``batch: true`` (the OpenAI Batch
API of the same server: its batch jobs take ``--batch-process-s`` seconds and fail
``--batch-item-fault`` of their lines, which the driver retries in follow-up batches). Both judge
runs are priced at GPT-4 Turbo's list price; printed: cost per judgment batch / online
(goal <= 0.55), whether every score equals the online run's (goal: identical) and items lost (0).

    python benchmarks/judge_throughput.py [--items 1000 --rps 20 --latency-ms 500 --concurrency 16]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

BASELINE_RETRY_SLEEP_S = 10.0  # FastChat llm_judge: API_RETRY_SLEEP
BASELINE_MAX_RETRY = 16  # FastChat llm_judge: API_MAX_RETRY


PRICE = {"price_in_per_mtok": 10.0, "price_out_per_mtok": 30.0}  # GPT-4 Turbo list price, both runs
BATCH_GOAL = 0.55  # batch cost per judgment / online cost per judgment


def _start_server(rps: float, latency_ms: float, batch_process_s: float = 2.0,
                  batch_item_fault: float = 0.05) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mentalchat.testing.fault_server", "--port", "0", "--rps", str(rps),
         "--latency-ms", str(latency_ms), "--batch-validate-s", "0.2", "--batch-process-s", str(batch_process_s),
         "--batch-finalize-s", "0.2", "--batch-item-fault", f"500={batch_item_fault}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        m = re.search(r"OpenAI base URL (\S+?)\)", line)
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError("fault server did not start")


def _inputs(folder: Path, n_items: int) -> tuple[Path, Path, list[tuple[str, str]]]:
    from mentalchat.schemas import get_table, write_table

    n_models = 4
    n_questions = -(-n_items // n_models)
    qpath = folder / "question.jsonl"
    with qpath.open("w") as fh:
        for i in range(1, n_questions + 1):
            fh.write(json.dumps({"question_id": i, "turns": [f"Question {i}: I keep worrying about everything."]}) + "\n")
    rows = []
    for i in range(1, n_questions + 1):
        for m in range(n_models):
            if len(rows) < n_items:
                rows.append({"question_id": str(i), "model_id": f"model-{m}",
                             "answer": f"Answer {i} of model {m}: that sounds exhausting; let us look at it together."})
    apath = folder / "answers.parquet"
    write_table(get_table("answers").from_rows(rows), apath, "answers")
    pairs = [(r["question_id"], r["model_id"]) for r in rows]
    return qpath, apath, pairs


def _judge_config(base_url: str, rps: float, concurrency: int, batch: dict | None = None) -> Any:
    """The benchmark's judge (priced as GPT-4 Turbo); ``batch``: its batch options."""
    from mentalchat.judge.config import JudgeConfig

    engine = {
        "backend": "openai", "model": "bench-judge", "base_url": base_url,
        "sampling": {"temperature": 0.0, "max_tokens": 300}, **PRICE,
        "http": {"max_concurrency": concurrency, "requests_per_minute": rps * 60, "max_retries": 8,
                 "timeout_s": 30},
    }
    if batch is not None:
        engine["batch"] = batch
    return JudgeConfig.model_validate({"judges": [{"engine": "judge"}], "engines": {"judge": engine}})


def run_mentalchat(base_url: str, qpath: Path, apath: Path, out: Path, rps: float, concurrency: int,
                   batch: dict | None = None) -> tuple[float, int, int, float]:
    """(wall s, scored, lost, USD spent) of one judge run (online, or ``batch`` options)."""
    import mentalchat.core.fastchat  # noqa: F401
    import mentalchat.engine.openai_backend  # noqa: F401 - import cost is paid once per process, not per run
    from mentalchat.judge.run import run_judge

    cfg = _judge_config(base_url, rps, concurrency, batch)
    t0 = time.perf_counter()
    summary = run_judge(cfg, qpath, [apath], out, progress=False, echo=lambda s: None)
    wall = time.perf_counter() - t0
    return wall, summary.scored, summary.planned - summary.scored, summary.spent_usd


def _scores(out: Path) -> list[tuple]:
    from mentalchat.schemas import read_table

    df = read_table(out / "judgments.parquet", "judgments").to_pandas()
    return sorted(df[["judge", "question_id", "model", "metric", "score"]].itertuples(index=False, name=None))


def run_baseline(base_url: str, qpath: Path, apath: Path, pairs: list[tuple[str, str]], concurrency: int) -> tuple[float, int, int]:
    """FastChat-style: one thread per parallel call, fixed 10 s sleep after any API error."""
    import openai

    from mentalchat.core.questions import load_questions
    from mentalchat.core.rubric import judgment_json_schema
    from mentalchat.judge.plan import load_answers
    from mentalchat.judge.prompts import render_prompt

    questions = {q.question_id: q.text for q in load_questions(qpath)}
    answers = {(a.question_id, a.model): a.answer for a in load_answers([apath])}
    client = openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=30)
    schema = judgment_json_schema()

    def judge(pair: tuple[str, str]) -> bool:
        msgs = [m.model_dump() for m in render_prompt("mentalchat-v1", questions[pair[0]], answers[pair], structured=True)]
        for _ in range(BASELINE_MAX_RETRY):
            try:
                resp = client.chat.completions.create(
                    model="bench-judge", messages=msgs, temperature=0.0, max_tokens=300,
                    response_format={"type": "json_schema", "json_schema": {"name": "j", "schema": schema, "strict": True}},
                )
                json.loads(resp.choices[0].message.content or "")
                return True
            except Exception:  # noqa: BLE001 - FastChat catches every API error the same way
                time.sleep(BASELINE_RETRY_SLEEP_S)
        return False

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        ok = list(pool.map(judge, pairs))
    wall = time.perf_counter() - t0
    return wall, sum(ok), len(ok) - sum(ok)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--rps", type=float, default=20.0)
    ap.add_argument("--latency-ms", type=float, default=500.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--skip-batch", action="store_true", help="no batch-mode run")
    ap.add_argument("--batch-process-s", type=float, default=2.0, help="seconds a batch job runs on the server")
    ap.add_argument("--batch-item-fault", type=float, default=0.05, help="share of batch lines that fail (500)")
    args = ap.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")

    ceiling = min(args.rps, args.concurrency / (args.latency_ms / 1000))
    print(f"{args.items} judgments; server: {args.rps:g} req/s, {args.latency_ms:g} ms latency; "
          f"client concurrency {args.concurrency}; ceiling {ceiling:.1f} judgments/s")
    proc, base_url = _start_server(args.rps, args.latency_ms, args.batch_process_s, args.batch_item_fault)
    try:
        with tempfile.TemporaryDirectory(prefix="judge-bench-") as tmp:
            qpath, apath, pairs = _inputs(Path(tmp), args.items)
            wall, scored, lost, spent = run_mentalchat(base_url, qpath, apath, Path(tmp) / "out", args.rps,
                                                       args.concurrency)
            ours = scored / wall / ceiling
            print(f"mentalchat: {scored} scored, {lost} lost in {wall:.2f} s = {scored / wall:.1f}/s "
                  f"-> {ours:.3f} of the ceiling")
            batch_ok = True
            if not args.skip_batch:
                batch_opts = {"poll_interval_s": 0.2, "max_wait_s": 120, "max_rounds": 4}
                wall_x, scored_x, lost_x, spent_x = run_mentalchat(
                    base_url, qpath, apath, Path(tmp) / "out-batch", args.rps, args.concurrency, batch_opts)
                identical = _scores(Path(tmp) / "out-batch") == _scores(Path(tmp) / "out")
                per_online = spent / max(scored, 1)
                per_batch = spent_x / max(scored_x, 1)
                cost_ratio = per_batch / per_online if per_online > 0 else float("nan")
                print(f"batch mode: {scored_x} scored, {lost_x} lost in {wall_x:.2f} s; cost per judgment "
                      f"${per_batch:.6f} vs ${per_online:.6f} online -> {cost_ratio:.3f} of online; "
                      f"scores identical to the online run: {'yes' if identical else 'NO'}")
                print(f"BATCH cost_ratio={cost_ratio:.3f} identical={int(identical)} lost={lost_x}")
                batch_ok = cost_ratio <= BATCH_GOAL and identical and lost_x == 0
            if not args.skip_baseline:
                time.sleep(2.0)  # let the server's rate bucket refill
                wall_b, scored_b, lost_b = run_baseline(base_url, qpath, apath, pairs, args.concurrency)
                base = scored_b / wall_b / ceiling
                print(f"baseline (FastChat-style threads, 10 s sleep on error): {scored_b} scored, {lost_b} lost "
                      f"in {wall_b:.2f} s = {scored_b / wall_b:.1f}/s -> {base:.3f} of the ceiling")
            print(f"RATIO mentalchat={ours:.3f}" + ("" if args.skip_baseline else f" baseline={base:.3f}"))
            return 0 if ours >= 0.95 and lost == 0 and batch_ok else 1
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    sys.exit(main())
