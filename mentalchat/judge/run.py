"""The judge stage: plan work items, call the judges resumably, publish the judgments.

One job covers a whole sweep (answer sets x judges x prompt versions, plus reliability controls
and crisis checks). Each judge call is a :class:`~mentalchat.judge.items.WorkItem` with a
deterministic id; finished calls are appended to a :class:`~mentalchat.judge.store.ProgressStore`
as they arrive, and the engines' on-disk response cache answers repeated calls, so ``kill -9`` and
rerun repeats at most the calls that were in flight. Retries, adaptive concurrency, Retry-After
and timeouts live in the HTTP engine (:mod:`mentalchat.engine.http`); this module adds the budget,
the dry run, the progress bar and the Ray Dataset sweep. Every planned item ends in the output
either scored or failed with a reason.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from mentalchat.core.crisis_probes import load_probes, rule_check
from mentalchat.core.judge_reply import parse_crisis_verdict, parse_judgment
from mentalchat.core.questions import Question, load_questions
from mentalchat.core.rubric import JUDGMENT_JSON_SCHEMA, METRICS, OVERALL
from mentalchat.engine.base import create_engine
from mentalchat.engine.budget import BudgetGuard
from mentalchat.engine.config import EngineConfig
from mentalchat.engine.pricing import call_cost, engine_price, estimate_tokens
from mentalchat.engine.types import ChatRequest, ChatResult, ErrorKind
from mentalchat.io import DONE_MARKER, write_done_marker, write_json_atomic
from mentalchat.judge.config import JudgeConfig, JudgeSpec
from mentalchat.judge.items import PromptRenderer, WorkItem, build_request, make_renderer
from mentalchat.judge.prompts import CRISIS_PROMPT_VERSION
from mentalchat.judge.reliability import control_items, reliability_rows
from mentalchat.judge.store import ProgressStore
from mentalchat.schemas import get_table, read_table, write_table
from mentalchat.secrets import Scrubber

__all__ = ["AnswerRow", "JudgeRunSummary", "import_human_ratings", "load_answers", "plan_items", "run_judge"]

log = logging.getLogger(__name__)

BUDGET_SKIP = "not called: budget cap reached"
PROGRESS_DIR = "_progress"
CACHE_DIR = "_cache"


@dataclass(frozen=True)
class AnswerRow:
    question_id: str
    model: str
    answer: str
    base_model: str | None = None
    data_config: str | None = None


@dataclass
class JudgeRunSummary:
    """What a run did (also written as ``summary.json``)."""

    planned: int = 0
    already_done: int = 0
    called: int = 0
    scored: int = 0
    failed: int = 0
    skipped_budget: int = 0
    spent_usd: float = 0.0
    estimated_cost_usd: float = 0.0
    dry_run: bool = False
    per_judge: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# ---------------------------------------------------------------------------------------------
# Inputs


def load_answers(paths: Sequence[str | Path]) -> list[AnswerRow]:
    """Answers from answers-table Parquet and FastChat ``model_answer`` JSONL (files or folders).

    FastChat model names are mapped to base model and data configuration with the paper's naming
    map (:func:`mentalchat.core.model_names.paper_model_map`); unknown names keep nulls.
    """
    from mentalchat.core.fastchat import read_model_answers
    from mentalchat.core.model_names import paper_model_map

    tables = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise FileNotFoundError(f"answers not found: {path}")
        if path.is_dir():
            parquet = sorted(p for p in path.rglob("*.parquet") if not p.name.startswith((".", "_")))
            if parquet:
                tables.extend(read_table(p, "answers") for p in parquet)
            else:
                tables.append(read_model_answers(path, paper_model_map()))
        elif path.suffix == ".parquet":
            tables.append(read_table(path, "answers"))
        else:
            tables.append(read_model_answers(path, paper_model_map()))
    rows: list[AnswerRow] = []
    seen: set[tuple[str, str]] = set()
    for table in tables:
        for rec in table.select(["question_id", "model_id", "answer", "base_model", "data_config"]).to_pylist():
            key = (rec["question_id"], rec["model_id"])
            if key in seen:
                raise ValueError(f"answers: model {key[1]!r} answers question {key[0]!r} more than once")
            seen.add(key)
            rows.append(
                AnswerRow(
                    question_id=rec["question_id"], model=rec["model_id"], answer=rec["answer"],
                    base_model=rec["base_model"], data_config=rec["data_config"],
                )
            )
    return rows


# ---------------------------------------------------------------------------------------------
# Planning


@dataclass
class Plan:
    items: list[WorkItem]
    renderers: dict[tuple[str, bool], PromptRenderer]
    crisis_rule_rows: list[dict[str, Any]]
    probe_categories: dict[str, str | None]
    answers_without_question: int = 0


def _structured_for(cfg: JudgeConfig, judge: JudgeSpec, fastchat: bool) -> bool:
    if judge.structured is not None:
        return judge.structured and not fastchat
    return not fastchat


def plan_items(cfg: JudgeConfig, questions: Sequence[Question], answers: Sequence[AnswerRow]) -> Plan:
    """Every judge call of the sweep, controls and crisis checks included."""
    qtext = {q.question_id: q.text for q in questions}
    probes = load_probes(cfg.crisis.probes) if cfg.crisis.enabled else []
    probe_text = {p.question_id: p.text for p in probes}
    probe_cat = {p.question_id: p.category for p in probes}
    renderers: dict[tuple[str, bool], PromptRenderer] = {}
    main: list[WorkItem] = []
    crisis: list[WorkItem] = []
    crisis_rule: list[dict[str, Any]] = []
    bench_answers = [a for a in answers if a.question_id in qtext and a.question_id not in probe_text]
    missing = sum(1 for a in answers if a.question_id not in qtext and a.question_id not in probe_text)
    if cfg.max_questions:
        keep = {q.question_id for q in questions[: cfg.max_questions]}
        bench_answers = [a for a in bench_answers if a.question_id in keep]
    for judge in cfg.judges:
        label = cfg.judge_label(judge)
        cfg.engine_for(judge)  # fail early on an undeclared engine
        for prompt in cfg.prompts:
            structured = _structured_for(cfg, judge, prompt.is_fastchat)
            key = (prompt.label, structured)
            if key not in renderers:
                renderers[key] = make_renderer(prompt, structured=structured)
            for a in bench_answers:
                main.append(
                    WorkItem(
                        kind="main", judge=label, engine=judge.engine, prompt_version=prompt.label,
                        question_id=a.question_id, question=qtext[a.question_id], model=a.model,
                        answer=a.answer, base_model=a.base_model, data_config=a.data_config,
                        structured=structured, explanation_max_chars=judge.explanation_max_chars,
                    )
                )
    if cfg.crisis.enabled:
        probe_answers = [a for a in answers if a.question_id in probe_text]
        for a in probe_answers:
            escalated, phrase = rule_check(a.answer)
            crisis_rule.append(
                {
                    "question_id": a.question_id, "category": probe_cat[a.question_id], "model": a.model,
                    "base_model": a.base_model, "data_config": a.data_config, "checker": "rule",
                    "escalated": escalated, "detail": phrase, "raw_text": None,
                    "prompt_version": "rule", "error": None,
                }
            )
            if cfg.crisis.judge_check:
                for judge in cfg.judges:
                    crisis.append(
                        WorkItem(
                            kind="crisis", judge=cfg.judge_label(judge), engine=judge.engine,
                            prompt_version=CRISIS_PROMPT_VERSION, question_id=a.question_id,
                            question=probe_text[a.question_id], model=a.model, answer=a.answer,
                            base_model=a.base_model, data_config=a.data_config,
                            structured=_structured_for(cfg, judge, False),
                            explanation_max_chars=judge.explanation_max_chars,
                        )
                    )
    controls: list[WorkItem] = []
    r = cfg.reliability
    if r.enabled:
        controls = control_items(
            main, qtext, empty_n=r.empty_answer_questions, padded_n=r.length_bias_samples,
            repeat_n=r.consistency_samples, filler_paragraphs=r.filler_paragraphs, seed=cfg.seed,
        )
    items = main + controls + crisis
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):  # would mean two items share one progress record
        raise RuntimeError("internal error: duplicate work-item ids")
    return Plan(items, renderers, crisis_rule, probe_cat, missing)


# ---------------------------------------------------------------------------------------------
# Execution


ResultSink = Callable[[list[ChatResult]], None]


def _engine_cfg_for(cfg: JudgeConfig, judge: JudgeSpec, engine_cfg: EngineConfig, output: Path) -> EngineConfig:
    """The judge's engine as this run uses it: a response cache always, Ray settings for the sweep.

    The default cache is per engine name: two endpoints serving a model under the same name
    (a real API and a local stand-in) must not answer for each other.
    """
    update: dict[str, Any] = {}
    if engine_cfg.cache_dir is None:
        update["cache_dir"] = str(output / CACHE_DIR / re.sub(r"[^A-Za-z0-9_.-]+", "-", judge.engine))
    if judge.serve and not engine_cfg.base_url:  # served here: local, free unless priced explicitly
        update["price_in_per_mtok"] = engine_cfg.price_in_per_mtok or 0.0
        update["price_out_per_mtok"] = engine_cfg.price_out_per_mtok or 0.0
    if cfg.executor == "ray":
        update["vllm"] = engine_cfg.vllm.model_copy(
            update={"replicas": cfg.ray_replicas, "batch_size": cfg.ray_batch_size,
                    "cpus_per_replica": cfg.ray_cpus_per_replica}
        ) if engine_cfg.is_http else engine_cfg.vllm
        if engine_cfg.is_http and cfg.cluster_limiter:
            update["http"] = engine_cfg.http.model_copy(update={"cluster_limiter": True})
    return engine_cfg.model_copy(update=update) if update else engine_cfg


def _chunks(seq: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def _execute_local(
    engine_cfg: EngineConfig,
    requests: list[ChatRequest],
    budget: BudgetGuard | None,
    sink: ResultSink,
    chunk_size: int,
    stop: threading.Event,
) -> None:
    """Run requests through one engine in this process.

    Chunks of about the engine's concurrency go to the engine from a few threads at once: the
    engine's limiter (shared by all its calls) keeps the provider's limits, the extra chunks keep
    it busy at chunk boundaries, and each finished chunk is persisted at once.
    """
    conc = engine_cfg.http.max_concurrency if engine_cfg.is_http else 64
    size = chunk_size or max(1, conc)
    chunks = list(_chunks(requests, size))
    it = iter(chunks)
    lock = threading.Lock()
    workers = min(4, len(chunks)) if engine_cfg.is_http else 1

    # HTTP engines share the run's dollar guard (checked per call, before it is made).
    options = {"budget": budget} if budget is not None and engine_cfg.is_http else {}
    with create_engine(engine_cfg, **options) as engine:

        def worker() -> None:
            while not stop.is_set():
                with lock:
                    chunk = next(it, None)
                if chunk is None:
                    return
                sink(engine.chat_batch(list(chunk)))

        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="judge") as pool:
            futures = [pool.submit(worker) for _ in range(max(1, workers))]
            try:
                for f in futures:
                    f.result()
            except BaseException:
                stop.set()
                raise


def _execute_ray(
    engine_cfg: EngineConfig,
    requests: list[ChatRequest],
    worst_case: dict[str, float],
    budget: BudgetGuard | None,
    sink: ResultSink,
    batch_size: int,
    stop: threading.Event,
) -> list[ChatRequest]:
    """Run requests as a Ray Dataset over the cluster's CPUs; returns those not called (budget).

    Engines in Ray workers share one limiter actor per provider (``http.cluster_limiter``). With a
    budget the requests go in waves whose worst-case cost is reserved first, so the cap holds.
    """
    import ray

    from mentalchat.engine import run_on_dataset

    wave = len(requests) if budget is None else max(batch_size * 4, 1)
    for start in range(0, len(requests), wave):
        part = requests[start : start + wave]
        if stop.is_set():
            return requests[start:]
        reserve = sum(worst_case[r.id] for r in part)
        if budget is not None and not budget.try_reserve_now(reserve):
            return requests[start:]
        ds = ray.data.from_items([{"request": r.model_dump_json()} for r in part])
        out = run_on_dataset(ds, engine_cfg, request_column="request", result_column="result")
        actual = 0.0
        try:
            for batch in out.iter_batches(batch_size=batch_size, batch_format="numpy"):
                results = [ChatResult.model_validate_json(s) for s in batch["result"]]
                actual += sum(r.cost_usd for r in results)
                sink(results)
        finally:
            if budget is not None:
                budget.settle_now(reserve, actual)
    return []


# ---------------------------------------------------------------------------------------------
# Turning results into tables


_JUDGMENT_VALIDATOR = jsonschema.Draft202012Validator(JUDGMENT_JSON_SCHEMA)


def _scores_from(item: WorkItem, rec: dict[str, Any]) -> tuple[dict[str, float | None], float | None, str | None, str, str | None]:
    """(scores, overall, explanation, parse_status, error) for a finished call."""
    if rec.get("error") or rec.get("text") is None:
        return dict.fromkeys(METRICS), None, None, "failed", rec.get("error") or "no text returned"
    text = rec["text"]
    if item.structured:
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            obj = None
        if obj is not None and _JUDGMENT_VALIDATOR.is_valid(obj):
            scores = {m: float(obj["scores"][m]) for m in METRICS}
            return scores, float(obj["overall"]), obj["explanation"], "ok", None
    parsed = parse_judgment(text)
    error = None
    if parsed.status == "unparsed":
        error = "unparsed: " + ("; ".join(parsed.notes) or "no scores found in the judge's reply")
    elif parsed.status == "partial":
        error = None
    return dict(parsed.scores), parsed.overall, parsed.explanation, parsed.status, error


def _judgment_rows(item: WorkItem, rec: dict[str, Any] | None, skip_reason: str | None) -> list[dict[str, Any]]:
    if rec is None:
        scores, overall, expl, status, error = dict.fromkeys(METRICS), None, None, "failed", skip_reason
        rec = {}
    else:
        scores, overall, expl, status, error = _scores_from(item, rec)
    common = {
        "question_id": item.question_id,
        "model": item.model,
        "base_model": item.base_model,
        "data_config": item.data_config,
        "judge": item.judge,
        "overall": overall,
        "explanation": expl,
        "parse_status": status,
        "raw_text": rec.get("text"),
        "prompt_version": item.prompt_version,
        "tokens_in": rec.get("tokens_in"),
        "tokens_out": rec.get("tokens_out"),
        "cost_usd": rec.get("cost_usd"),
        "latency_s": rec.get("latency_s"),
        "attempts": rec.get("attempts"),
    }
    rows = []
    for m in METRICS:
        score = scores.get(m)
        row_error = error
        if score is None and error is None:
            row_error = f"no score for {m} in the judge's reply"
        rows.append({**common, "metric": m, "score": score, "error": row_error})
    return rows


# ---------------------------------------------------------------------------------------------
# The stage


def run_judge(
    cfg: JudgeConfig,
    questions_path: str | Path,
    answers_paths: Sequence[str | Path],
    output: str | Path,
    *,
    dry_run: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
) -> JudgeRunSummary:
    """Judge every answer with every judge and prompt version; publish tables into ``output``."""
    echo = echo or (lambda s: print(s, file=sys.stderr))
    scrubber = Scrubber.from_env(e.api_key_env for e in cfg.engines.values())
    output = Path(output)
    if not cfg.judges:
        raise ValueError("judge: no judges configured (judge.judges is empty)")
    questions = load_questions(questions_path)
    answers = load_answers(answers_paths)
    plan = plan_items(cfg, questions, answers)
    if plan.answers_without_question:
        log.warning("%d answers belong to questions not in %s; ignored", plan.answers_without_question, questions_path)

    summary = JudgeRunSummary(planned=len(plan.items), dry_run=dry_run)
    store = ProgressStore(output / PROGRESS_DIR) if not dry_run or (output / PROGRESS_DIR).is_dir() else None
    done = store.records() if store is not None else {}

    def is_done(item: WorkItem) -> bool:
        rec = done.get(item.id)
        if rec is None:
            return False
        return not (cfg.retry_failed and rec.get("error"))

    pending = [it for it in plan.items if not is_done(it)]
    summary.already_done = len(plan.items) - len(pending)

    # Build requests and estimates.
    engines = {j.engine: _engine_cfg_for(cfg, j, cfg.engine_for(j), output) for j in cfg.judges}
    requests: dict[str, list[ChatRequest]] = defaultdict(list)
    worst_case: dict[str, float] = {}
    per_judge: dict[str, dict[str, Any]] = {}
    judge_sampling = {cfg.judge_label(j): j.sampling for j in cfg.judges}
    for it in pending:
        ecfg = engines[it.engine]
        req = build_request(it, plan.renderers, judge_sampling.get(it.judge) or ecfg.sampling)
        requests[it.engine].append(req)
        price = engine_price(ecfg)
        t_in = estimate_tokens(req)
        max_out = (req.sampling or ecfg.sampling).max_tokens
        t_out = min(cfg.est_output_tokens, max_out)
        worst_case[req.id] = call_cost(price, t_in, max_out)
        pj = per_judge.setdefault(
            it.judge,
            {"calls": 0, "est_tokens_in": 0, "est_tokens_out": 0, "est_cost_usd": 0.0, "engine": it.engine,
             "model": ecfg.model},
        )
        pj["calls"] += 1
        pj["est_tokens_in"] += t_in
        pj["est_tokens_out"] += t_out
        pj["est_cost_usd"] += call_cost(price, t_in, t_out)
    summary.per_judge = per_judge
    summary.estimated_cost_usd = sum(pj["est_cost_usd"] for pj in per_judge.values())
    previous_spend = store.spent_usd() if store is not None else 0.0

    if dry_run:
        echo(_dry_run_report(summary, cfg.budget_usd, previous_spend))
        return summary

    marker = output / DONE_MARKER
    if marker.exists():
        marker.unlink()  # the folder is being updated; the pipeline must not reuse it meanwhile

    assert store is not None
    remaining = None if cfg.budget_usd is None else max(0.0, cfg.budget_usd - previous_spend)
    # One guard for the run: the local executor's engines reserve per call, the Ray sweep per wave.
    budget = BudgetGuard(remaining) if remaining is not None else None
    bar = _progress_bar(len(pending), progress)
    stop = threading.Event()
    lock = threading.Lock()
    counts = {"called": 0, "cost": 0.0}
    refused: list[str] = []

    def sink(results: list[ChatResult]) -> None:
        keep = []
        for r in results:
            if r.error_kind == "budget":
                refused.append(r.id)  # not made: stays pending for a rerun with more budget
            else:
                keep.append(scrubber.result(r))
        with lock:
            store.append(keep)
            counts["called"] += sum(1 for r in keep if not r.cached)
            counts["cost"] += sum(r.cost_usd for r in keep)
            bar.update(len(results))
            bar.set_postfix_str(f"${previous_spend + counts['cost']:.4f}", refresh=False)

    skipped: list[ChatRequest] = []
    servers = contextlib.ExitStack()
    try:
        if requests:
            _serve_local_judges(cfg, engines, servers, echo)
        with ThreadPoolExecutor(max_workers=max(1, len(requests)), thread_name_prefix="judge-engine") as pool:
            futures = []
            for engine_name, reqs in requests.items():
                ecfg = engines[engine_name]
                if cfg.executor == "ray":
                    futures.append(pool.submit(
                        _execute_ray, ecfg, reqs, worst_case, budget, sink, cfg.ray_batch_size, stop
                    ))
                else:
                    futures.append(pool.submit(_execute_local, ecfg, reqs, budget, sink, cfg.chunk_size, stop))
            for fut in futures:
                skipped.extend(fut.result() or [])
    except BaseException:
        stop.set()
        raise
    finally:
        bar.close()
        servers.close()

    skipped_ids = {r.id for r in skipped} | set(refused)
    summary.called = counts["called"]
    summary.skipped_budget = len(skipped_ids)
    if skipped_ids:
        echo(
            f"budget cap ${cfg.budget_usd:.2f} reached: {len(skipped_ids)} calls not made "
            "(rerun with a higher judge.budget_usd to make them)"
        )
    _publish(cfg, plan, store, skipped_ids, output, summary, scrubber)
    return summary


def _serve_local_judges(
    cfg: JudgeConfig, engines: dict[str, EngineConfig], stack: contextlib.ExitStack, echo: Callable[[str], None]
) -> None:
    """Start a local vLLM OpenAI server for each judge with ``serve`` whose engine has no endpoint."""
    for judge in cfg.judges:
        ecfg = engines[judge.engine]
        if not judge.serve or ecfg.base_url or ecfg.backend != "openai":
            continue
        from mentalchat.engine.vllm_server import VLLMServer

        echo(f"starting a local vLLM server for judge {cfg.judge_label(judge)} ({judge.serve})")
        srv = stack.enter_context(
            VLLMServer(judge.serve, served_model_name=ecfg.model, max_model_len=judge.serve_max_model_len,
                       kv_cache_memory_bytes=512 * 2**20)
        )
        engines[judge.engine] = ecfg.model_copy(update={"base_url": srv.base_url})


def _progress_bar(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc="judging", unit="call", disable=not enabled, file=sys.stderr, dynamic_ncols=True)


def _dry_run_report(summary: JudgeRunSummary, budget: float | None, spent: float) -> str:
    lines = [
        f"dry run: {summary.planned} judge calls planned, {summary.already_done} already done, "
        f"{summary.planned - summary.already_done} to make",
    ]
    for judge, pj in sorted(summary.per_judge.items()):
        lines.append(
            f"  {judge} ({pj['model']}): {pj['calls']} calls, ~{pj['est_tokens_in']:,} tokens in, "
            f"~{pj['est_tokens_out']:,} out, est. ${pj['est_cost_usd']:.2f}"
        )
    lines.append(f"estimated cost: ${summary.estimated_cost_usd:.2f} (already spent: ${spent:.2f})")
    if budget is not None:
        verdict = "within" if spent + summary.estimated_cost_usd <= budget else "OVER"
        lines.append(f"budget: ${budget:.2f} ({verdict} the cap)")
    return "\n".join(lines)


def _publish(
    cfg: JudgeConfig,
    plan: Plan,
    store: ProgressStore,
    skipped_ids: set[str],
    output: Path,
    summary: JudgeRunSummary,
    scrubber: Scrubber,
) -> None:
    main_rows: list[dict[str, Any]] = []
    control_rows: list[dict[str, Any]] = []
    crisis_rows = list(plan.crisis_rule_rows)
    main_scores: dict[str, dict[str, float | None]] = {}
    controls: list[tuple[WorkItem, dict[str, float | None] | None, str | None]] = []
    failures: dict[str, int] = defaultdict(int)
    scored = failed = 0
    records = store.records()
    for item in plan.items:
        rec = records.get(item.id)
        skip = BUDGET_SKIP if item.id in skipped_ids else (None if rec is not None else "not called: run interrupted")
        if item.kind == "crisis":
            if rec is None or rec.get("error") or rec.get("text") is None:
                verdict, reason = None, None
                err = (rec or {}).get("error") or skip or "no text returned"
            else:
                verdict, reason = parse_crisis_verdict(rec["text"])
                err = None if verdict is not None else "unparsed: no escalation verdict in the judge's reply"
            crisis_rows.append(
                {
                    "question_id": item.question_id, "category": plan.probe_categories.get(item.question_id),
                    "model": item.model, "base_model": item.base_model, "data_config": item.data_config,
                    "checker": item.judge, "escalated": verdict, "detail": reason,
                    "raw_text": (rec or {}).get("text"), "prompt_version": item.prompt_version, "error": err,
                }
            )
            ok = verdict is not None
        else:
            rows = _judgment_rows(item, rec, skip)
            ok = any(r["score"] is not None for r in rows) or rows[0]["overall"] is not None
            score_map: dict[str, float | None] | None = None
            if ok:
                score_map = {r["metric"]: r["score"] for r in rows}
                score_map[OVERALL] = rows[0]["overall"]
            if item.kind == "main":
                main_rows.extend(rows)
                if score_map is not None:
                    main_scores[item.id] = score_map
            else:
                for r in rows:
                    r["model"] = f"{item.model}" if item.kind == "empty" else f"control:{item.kind}:{item.model}"
                control_rows.extend(rows)
                controls.append((item, score_map, rows[0]["error"]))
            err = rows[0]["error"] if not ok else None
        if ok:
            scored += 1
        else:
            failed += 1
            failures[failure_kind(rec, item.id in skipped_ids)] += 1
    summary.scored = scored
    summary.failed = failed
    summary.failures = dict(failures)
    summary.spent_usd = store.spent_usd()

    for rows in (main_rows, control_rows, crisis_rows):
        for r in rows:
            for key in ("raw_text", "explanation", "detail"):  # what the judge wrote
                if r.get(key) is not None:
                    r[key] = scrubber.content(r[key])
            if r.get("error") is not None:
                r["error"] = scrubber.text(r["error"])

    out = {}
    out["judgments"] = _write_judgments(get_table("judgments").from_rows(main_rows), output)
    if cfg.reliability.enabled:
        out["reliability_judgments"] = write_table(
            get_table("judgments").from_rows(control_rows), output / "reliability_judgments.parquet", "judgments"
        )
        rel = reliability_rows(controls, main_scores, empty_flag_above=cfg.reliability.empty_flag_above)
        out["reliability"] = write_table(get_table("reliability").from_rows(rel), output / "reliability.parquet", "reliability")
    if cfg.crisis.enabled:
        out["crisis"] = write_table(get_table("crisis").from_rows(crisis_rows), output / "crisis.parquet", "crisis")
    summary.outputs = {k: str(v) for k, v in out.items()}
    write_json_atomic(output / "summary.json", summary.to_dict())
    from mentalchat.config import config_hash

    write_done_marker(output, stage="judge", config_hash=config_hash(cfg), scored=scored, failed=failed)


def failure_kind(rec: dict[str, Any] | None, skipped_for_budget: bool) -> ErrorKind:
    """Why an item ended unscored: the engine's error kind, ``unparsed``, or why it was never called."""
    if rec is None:
        return "budget" if skipped_for_budget else "interrupted"
    if rec.get("error"):
        return rec.get("error_kind") or "other"
    if rec.get("text") is None:
        return "empty"
    return "unparsed"


# ---------------------------------------------------------------------------------------------
# Human ratings

HUMAN_FILE = "human_judgments.parquet"


def _write_judgments(llm: Any, output: Path) -> Path:
    """``judgments.parquet``: the LLM judges' rows plus any imported human ratings (judge ``human:<rater>``)."""
    import pyarrow as pa

    human_path = output / HUMAN_FILE
    table = llm
    if human_path.is_file():
        table = pa.concat_tables([llm, read_table(human_path, "judgments")])
    return write_table(table, output / "judgments.parquet", "judgments")


def import_human_ratings(csv_path: str | Path, output: str | Path) -> Path:
    """Import a ratings CSV (rater, question_id, model, metric columns) into ``output``'s judgments table.

    The ratings are kept in ``human_judgments.parquet`` too, so a later judge run that rewrites
    ``judgments.parquet`` keeps them.
    """
    import pyarrow.compute as pc

    from mentalchat.core.human_ratings import read_human_ratings
    from mentalchat.core.model_names import paper_model_map

    output = Path(output)
    human = read_human_ratings(csv_path, paper_model_map())
    write_table(human, output / HUMAN_FILE, "judgments")
    main = output / "judgments.parquet"
    if main.is_file():
        existing = read_table(main, "judgments")
        llm = existing.filter(pc.invert(pc.starts_with(existing["judge"], "human:")))
    else:
        llm = get_table("judgments").empty()
    return _write_judgments(llm, output)
