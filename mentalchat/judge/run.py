"""The judge stage, read top to bottom: plan, skip what is done, estimate, call, publish.

One job covers a whole sweep (answer sets x judges x prompt versions, plus reliability controls
and crisis checks): :mod:`.plan` makes every judge call a work item with a deterministic id;
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
from mentalchat.engine.types import ChatResult
from mentalchat.io import DONE_MARKER, write_done_marker, write_json_atomic
from mentalchat.judge.config import JudgeConfig
from mentalchat.judge.execute import BATCH_DIR, engine_config_for_run, execute, serve_local_judges
from mentalchat.judge.items import WorkItem
from mentalchat.judge.plan import build_requests, load_answers, plan_items
from mentalchat.judge.publish import publish
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
    with contextlib.ExitStack() as servers:
        try:
            if work.requests:
                serve_local_judges(cfg, engines, servers, echo)
            skipped = execute(cfg, engines, work, budget, sink, stop, batch_dir=output / BATCH_DIR,
                              on_batch=lambda p: bar.set_description_str(f"judging ({p.line()})", refresh=False))
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
    write_json_atomic(output / "summary.json", summary.to_dict())
    write_done_marker(output, stage="judge", config_hash=config_hash(cfg), scored=summary.scored, failed=summary.failed)
    return summary


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
