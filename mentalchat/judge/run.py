"""The judge stage, read top to bottom: plan, skip what is done, estimate, call, publish.

One job covers a whole sweep (answer sets x judges x prompt versions, plus reliability controls,
crisis checks and pairwise comparisons): :mod:`.plan` makes every judge call a work item with a deterministic id;
finished calls are appended to a :class:`~mentalchat.judge.store.ProgressStore` as they arrive
and the engines' on-disk response cache answers repeated calls, so ``kill -9`` and rerun repeats
at most the calls that were in flight; :mod:`.execute` runs the calls here or across Ray under
one dollar budget; :mod:`.publish` turns every planned item into rows, scored or failed with a
reason. Human ratings are imported by :mod:`.human`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mentalchat.config import ConfigError, config_hash
from mentalchat.core.questions import load_questions
from mentalchat.engine.budget import BudgetGuard
from mentalchat.engine.preflight import PreflightCheck, PreflightMode, run_preflight, should_preflight
from mentalchat.engine.pricing import engine_price_known
from mentalchat.engine.types import ChatResult
from mentalchat.io import DONE_MARKER, write_done_marker, write_json_atomic
from mentalchat.judge.config import JudgeConfig
from mentalchat.judge.execute import BATCH_DIR, engine_config_for_run, execute, serve_local_judges
from mentalchat.judge.items import WorkItem
from mentalchat.judge.plan import RequestPlan, build_requests, load_answers, plan_items
from mentalchat.judge.publish import publish, reply_unreadable
from mentalchat.judge.store import ProgressStore
from mentalchat.secrets import Scrubber

__all__ = ["PROGRESS_DIR", "JudgeRunSummary", "run_judge"]

log = logging.getLogger(__name__)

PROGRESS_DIR = "_progress"


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
    #: replies that could not be read and were asked again (each re-ask counts as a call)
    reasked: int = 0
    preflight: bool = False
    #: judge label -> {"response_format: json_schema -> json_object": calls sent that way}
    adaptations: dict[str, dict[str, int]] = field(default_factory=dict)
    #: judge label -> position bias of its pairwise verdicts (flip_rate, first_share, flagged, n_pairs)
    position_bias: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def run_judge(
    cfg: JudgeConfig,
    questions_path: str | Path,
    answers_paths: Sequence[str | Path],
    output: str | Path,
    *,
    dry_run: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
    preflight: PreflightMode | None = None,
) -> JudgeRunSummary:
    """Judge every answer with every judge and prompt version; publish tables into ``output``."""
    echo = echo or (lambda s: print(s, file=sys.stderr))
    scrubber = Scrubber.from_env(e.api_key_env for e in cfg.engines.values())
    output = Path(output)
    if not cfg.judges:
        raise ConfigError("judge: no judges configured (judge.judges is empty)")

    # 1. Plan every call of the sweep.
    questions = load_questions(questions_path)
    plan = plan_items(cfg, questions, load_answers(answers_paths))
    if plan.answers_without_question:
        log.warning("%d answers belong to questions not in %s; ignored", plan.answers_without_question, questions_path)
    summary = JudgeRunSummary(planned=len(plan.items), dry_run=dry_run)

    # 2. Skip what an earlier run finished (failures too, unless retry_failed).
    store = ProgressStore(output / PROGRESS_DIR) if not dry_run or (output / PROGRESS_DIR).is_dir() else None
    done = store.records() if store is not None else {}

    def is_done(item: WorkItem) -> bool:
        rec = done.get(item.id)
        return rec is not None and not (cfg.retry_failed and rec.get("error"))

    pending = [it for it in plan.items if not is_done(it)]
    summary.already_done = len(plan.items) - len(pending)

    # 3. Requests and estimates; a dry run stops here.
    engines = {j.engine: engine_config_for_run(cfg, j, cfg.engine_for(j), output) for j in cfg.judges}
    work = build_requests(cfg, plan, pending, engines)
    summary.per_judge = work.per_judge
    summary.estimated_cost_usd = work.estimated_cost_usd
    previous_spend = store.spent_usd() if store is not None else 0.0
    if dry_run:
        echo(_dry_run_report(summary, cfg.budget_usd, previous_spend))
        return summary

    if cfg.budget_usd is not None:
        for name in work.requests:
            if not engine_price_known(engines[name]):
                raise ConfigError(
                    f"judge engine {name!r} (model {engines[name].model!r}) has no known price and judge.budget_usd is "
                    f"set, so the cap could never stop it: set engines.{name}.price_in_per_mtok and "
                    f"engines.{name}.price_out_per_mtok (USD per 1M tokens)"
                )

    # 4. Call, persisting each finished chunk; one budget guard for the whole run.
    assert store is not None
    marker = output / DONE_MARKER
    if marker.exists():
        marker.unlink()  # the folder is being updated; the pipeline must not reuse it meanwhile
    remaining = None if cfg.budget_usd is None else max(0.0, cfg.budget_usd - previous_spend)
    budget = BudgetGuard(remaining) if remaining is not None else None
    bar = _progress_bar(len(pending), progress)
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

    stop = threading.Event()
    items = {it.id: it for it in pending}
    with contextlib.ExitStack() as servers:
        try:
            if work.requests:
                serve_local_judges(cfg, engines, servers, echo)
            mode = preflight or cfg.preflight
            if work.requests and should_preflight(mode, work.estimated_cost_usd, cfg.preflight_min_cost_usd):
                first = _preflight(cfg, engines, work, items, budget, echo)
                sink(first)
                summary.preflight = True
                done_ids = {r.id for r in first}
                work = _without(work, done_ids)
            batch_kw: dict[str, Any] = {
                "batch_dir": output / BATCH_DIR,
                "on_batch": lambda p: bar.set_description_str(f"judging ({p.line()})", refresh=False),
            }
            skipped = execute(cfg, engines, work, budget, sink, stop, **batch_kw)
            summary.reasked = _ask_again(cfg, plan, engines, store, items, budget, stop, sink, set(refused), **batch_kw)
        except BaseException:
            stop.set()
            raise
        finally:
            bar.close()

    skipped_ids = {r.id for r in skipped} | set(refused)
    summary.called = counts["called"]
    summary.skipped_budget = len(skipped_ids)
    if skipped_ids:
        echo(
            f"budget cap ${cfg.budget_usd:.2f} reached: {len(skipped_ids)} calls not made "
            "(rerun with a higher judge.budget_usd to make them)"
        )

    # 5. Publish every planned item, then the summary and the done marker.
    published = publish(cfg, plan, store, skipped_ids, output, scrubber)
    summary.scored, summary.failed = published.scored, published.failed
    summary.failures, summary.outputs = published.failures, published.outputs
    summary.spent_usd = store.spent_usd()
    summary.position_bias = {
        judge: {"flip_rate": row["value"], "first_share": row["rate"], "flagged": row["flagged"], "n_pairs": row["n"]}
        for judge, row in published.position_bias.items()
    }
    for judge, pb in summary.position_bias.items():
        flip = "not measured" if pb["flip_rate"] is None else f"{pb['flip_rate']:.2f}"
        echo(f"judge {judge}: pairwise verdicts flip on an order swap in {flip} of {pb['n_pairs']} pairs"
             + (" (flagged: above judge.pairwise.position_bias_flag_rate)" if pb["flagged"] else ""))
    summary.adaptations = _adaptations(plan.items, store)
    for judge, changes in summary.adaptations.items():
        echo(f"judge {judge}: the provider refused part of the request; sent instead: "
             + ", ".join(f"{c} ({n} calls)" for c, n in changes.items()))
    write_json_atomic(output / "summary.json", summary.to_dict())
    write_done_marker(output, stage="judge", config_hash=config_hash(cfg), scored=summary.scored, failed=summary.failed)
    return summary


def _preflight(
    cfg: JudgeConfig,
    engines: dict[str, Any],
    work: RequestPlan,
    items: dict[str, WorkItem],
    budget: BudgetGuard | None,
    echo: Callable[[str], None],
) -> list[ChatResult]:
    """One real call per (engine, prompt version) of the sweep; raises PreflightError on any failure."""
    checks: list[PreflightCheck] = []
    for name, reqs in work.requests.items():
        seen: set[tuple[str, str]] = set()
        for req in reqs:
            item = items[req.id]
            key = (item.prompt_version, item.kind if item.kind in ("crisis", "pairwise") else "judgment")
            if key in seen:
                continue
            seen.add(key)
            checks.append(PreflightCheck(
                name, engines[name], req, lambda text, it=item: not reply_unreadable(it, {"text": text}),
                label=f"prompt {item.prompt_version}" + {"crisis": " (crisis check)", "pairwise": " (pairwise)"}.get(item.kind, ""),
            ))
    echo(f"preflight: {len(checks)} check call(s) before ~${work.estimated_cost_usd:.2f} of judging")
    options = {"budget": budget} if budget is not None else {}
    return run_preflight(checks, section="judge.engines", echo=echo, **options)


def _without(work: RequestPlan, done: set[str]) -> RequestPlan:
    """``work`` less the requests already made (by the preflight)."""
    out = RequestPlan(worst_case=work.worst_case, per_judge=work.per_judge)
    for name, reqs in work.requests.items():
        keep = [r for r in reqs if r.id not in done]
        if keep:
            out.requests[name] = keep
    return out


def _ask_again(
    cfg: JudgeConfig,
    plan: Any,
    engines: dict[str, Any],
    store: ProgressStore,
    items: dict[str, WorkItem],
    budget: BudgetGuard | None,
    stop: threading.Event,
    sink: Callable[[list[ChatResult]], None],
    refused: set[str],
    **execute_kw: Any,
) -> int:
    """Call again (past the cache) for replies that could not be read, up to ``parse_retries`` times.

    The new record replaces the old one with their cost, tokens and attempts added up, so the
    spend and the attempt counts stay true.
    """
    total = 0
    for round_ in range(1, cfg.parse_retries + 1):
        again = [it for it in items.values() if it.id not in refused and reply_unreadable(it, store.get(it.id))]
        if not again or stop.is_set():
            break
        total += len(again)
        log.info("asking again for %d replies that could not be read (round %d)", len(again), round_)
        redo = build_requests(cfg, plan, again, engines)
        for reqs in redo.requests.values():
            reqs[:] = [r.model_copy(update={"cache_salt": f"reask-{round_}"}) for r in reqs]
        before = {it.id: store.get(it.id) or {} for it in again}

        def merged(results: list[ChatResult], before: dict[str, dict[str, Any]] = before) -> None:
            out = []
            for r in results:
                old = before.get(r.id, {})
                out.append(r.model_copy(update={
                    "cost_usd": r.cost_usd + float(old.get("cost_usd") or 0.0),
                    "attempts": r.attempts + int(old.get("attempts") or 0),
                    "tokens_in": r.tokens_in + int(old.get("tokens_in") or 0),
                    "tokens_out": r.tokens_out + int(old.get("tokens_out") or 0),
                }))
            sink(out)

        skipped = execute(cfg, engines, redo, budget, merged, stop, **execute_kw)
        refused |= {r.id for r in skipped}
    return total


def _adaptations(items: Sequence[WorkItem], store: ProgressStore) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for item in items:
        rec = store.get(item.id)
        for change in (rec or {}).get("adaptations") or []:
            per = out.setdefault(item.judge, {})
            per[change] = per.get(change, 0) + 1
    return out


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
