"""Planning a judge sweep: the answers to grade, every judge call as a work item, and its requests.

A sweep is the product of answer sets, judges and prompt versions, plus the reliability controls,
crisis checks and pairwise comparisons (:mod:`.pairwise`). Each call is a :class:`~mentalchat.judge.items.WorkItem` with a deterministic
id, so a rerun finds finished items in the progress store. :func:`build_requests` turns the items
still to do into chat requests per engine, with the worst-case cost the budget reserves and the
per-judge estimates the dry run prints (both from the engine layer's one estimate and price).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mentalchat.core.crisis_probes import load_probes
from mentalchat.core.model_names import paper_model_map
from mentalchat.core.questions import Question, first_questions
from mentalchat.engine.config import EngineConfig
from mentalchat.engine.pricing import call_cost, engine_price, estimate_tokens
from mentalchat.engine.types import ChatRequest
from mentalchat.errors import InputError, InputNotFoundError
from mentalchat.judge.config import JudgeConfig, JudgeSpec
from mentalchat.judge.items import PromptRenderer, WorkItem, build_request, make_renderer
from mentalchat.judge.pairwise import pairwise_items
from mentalchat.judge.prompts import CRISIS_PROMPT_VERSION
from mentalchat.judge.reliability import control_items
from mentalchat.safety.detector import CrisisDetector
from mentalchat.schemas import read_table

__all__ = ["AnswerRow", "Plan", "RequestPlan", "build_requests", "load_answers", "plan_items"]


@dataclass(frozen=True)
class AnswerRow:
    question_id: str
    model: str
    answer: str
    base_model: str | None = None
    data_config: str | None = None
    #: 1..n: that turn of a multi-turn question; None: a single-turn question
    turn: int | None = None


def load_answers(paths: Sequence[str | Path]) -> list[AnswerRow]:
    """Answers from answers-table Parquet and FastChat ``model_answer`` JSONL (files or folders).

    FastChat model names are mapped to base model and data configuration with the paper's naming
    map (:func:`mentalchat.core.model_names.paper_model_map`); unknown names keep nulls.
    """
    from mentalchat.core.fastchat import read_model_answers

    tables = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InputNotFoundError(f"answers not found: {path}", path=path)
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
    seen: set[tuple[str, str, int | None]] = set()
    for table in tables:
        cols = ["question_id", "model_id", "answer", "base_model", "data_config"]
        if "turn" in table.column_names:
            cols.append("turn")
        for rec in table.select(cols).to_pylist():
            key = (rec["question_id"], rec["model_id"], rec.get("turn"))
            if key in seen:
                at = "" if key[2] is None else f" (turn {key[2]})"
                raise InputError(f"answers: model {key[1]!r} answers question {key[0]!r}{at} more than once")
            seen.add(key)
            rows.append(
                AnswerRow(
                    question_id=rec["question_id"], model=rec["model_id"], answer=rec["answer"],
                    base_model=rec["base_model"], data_config=rec["data_config"], turn=rec.get("turn"),
                )
            )
    return rows


@dataclass
class Plan:
    items: list[WorkItem]
    renderers: dict[tuple[str, bool], PromptRenderer]
    crisis_rule_rows: list[dict[str, Any]]
    probe_categories: dict[str, str | None]
    answers_without_question: int = 0


def structured_for(cfg: JudgeConfig, judge: JudgeSpec, fastchat: bool) -> bool:
    if judge.structured is not None:
        return judge.structured and not fastchat
    return not fastchat


def detector_rows(cfg: JudgeConfig, probe_answers: Sequence[AnswerRow], probe_text: dict[str, str],
                  probe_cat: dict[str, str]) -> list[dict[str, Any]]:
    """Crisis-table rows from the shared crisis detector: checker ``rule`` for the rules layer,
    ``model`` for the model layer and ``detector`` for their combination when both run."""
    detector = CrisisDetector(cfg.crisis_detector.resolve(cfg.engines))
    checks = detector.check_answers([a.answer for a in probe_answers], [probe_text[a.question_id] for a in probe_answers])
    rows: list[dict[str, Any]] = []
    for a, c in zip(probe_answers, checks, strict=True):
        verdicts: list[tuple[str, bool | None, str | None]] = []
        for layer, flag in c.layers.items():
            detail = c.evidence if layer == "rules" else None
            verdicts.append(("rule" if layer == "rules" else layer, flag, detail))
        if len(c.layers) > 1:
            verdicts.append(("detector", c.escalated, c.evidence))
        for checker, flag, detail in verdicts:
            err = "; ".join(c.errors) if checker == "model" and flag is None and c.errors else None
            rows.append({
                "question_id": a.question_id, "category": probe_cat[a.question_id], "model": a.model,
                "base_model": a.base_model, "data_config": a.data_config, "checker": checker,
                "escalated": flag, "detail": detail, "raw_text": None,
                "prompt_version": "rule" if checker == "rule" else "crisis-model-v1", "error": err,
            })
    return rows


def plan_items(cfg: JudgeConfig, questions: Sequence[Question], answers: Sequence[AnswerRow]) -> Plan:
    """Every judge call of the sweep, controls, crisis checks and pairwise comparisons included."""
    qtext = {q.question_id: q.text for q in questions}
    qturns = {q.question_id: q.turns for q in questions if q.is_multi_turn}
    probes = load_probes(cfg.crisis.probes) if cfg.crisis.enabled else []
    probe_text = {p.question_id: p.text for p in probes}
    probe_cat = {p.question_id: p.category for p in probes}
    renderers: dict[tuple[str, bool], PromptRenderer] = {}
    main: list[WorkItem] = []
    crisis: list[WorkItem] = []
    crisis_rule: list[dict[str, Any]] = []
    # Multi-turn rows are judged per turn and per conversation only; controls, crisis probes and
    # pairwise comparisons see single-turn rows (turn null) of single-turn questions.
    multi_answers = [a for a in answers if a.turn is not None and a.question_id in qturns]
    answers = [a for a in answers if a.turn is None and a.question_id not in qturns]
    bench_answers = [a for a in answers if a.question_id in qtext and a.question_id not in probe_text]
    missing = sum(1 for a in answers if a.question_id not in qtext and a.question_id not in probe_text)
    if cfg.max_questions:
        keep = {q.question_id for q in first_questions(list(questions), cfg.max_questions)}
        bench_answers = [a for a in bench_answers if a.question_id in keep]
        multi_answers = [a for a in multi_answers if a.question_id in keep]
    for judge in cfg.judges:
        label = cfg.judge_label(judge)
        cfg.engine_for(judge)  # fail early on an undeclared engine
        for prompt in cfg.prompts:
            structured = structured_for(cfg, judge, prompt.is_fastchat)
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
        crisis_rule = detector_rows(cfg, probe_answers, probe_text, probe_cat)
        for a in probe_answers:
            if cfg.crisis.judge_check:
                for judge in cfg.judges:
                    crisis.append(
                        WorkItem(
                            kind="crisis", judge=cfg.judge_label(judge), engine=judge.engine,
                            prompt_version=CRISIS_PROMPT_VERSION, question_id=a.question_id,
                            question=probe_text[a.question_id], model=a.model, answer=a.answer,
                            base_model=a.base_model, data_config=a.data_config,
                            structured=structured_for(cfg, judge, False),
                            explanation_max_chars=judge.explanation_max_chars,
                        )
                    )
    if multi_answers:
        main += multiturn_items(cfg, qturns, multi_answers, renderers)
    controls: list[WorkItem] = []
    r = cfg.reliability
    if r.enabled:
        controls = control_items(
            [it for it in main if it.turn is None], qtext, empty_n=r.empty_answer_questions, padded_n=r.length_bias_samples,
            repeat_n=r.consistency_samples, filler_paragraphs=r.filler_paragraphs, seed=cfg.seed,
        )
    pairwise: list[WorkItem] = []
    if cfg.pairwise.enabled:
        pairwise = pairwise_items(
            cfg, [q.question_id for q in questions], qtext, bench_answers,
            lambda judge: structured_for(cfg, judge, False),
        )
    items = main + controls + crisis + pairwise
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):  # would mean two items share one progress record
        raise RuntimeError("internal error: duplicate work-item ids")
    return Plan(items, renderers, crisis_rule, probe_cat, missing)


def multiturn_items(
    cfg: JudgeConfig, qturns: dict[str, tuple[str, ...]], answers: Sequence[AnswerRow],
    renderers: dict[tuple[str, bool], PromptRenderer],
) -> list[WorkItem]:
    """Per-turn items (turn k in its context, the 7 metrics) and one whole-conversation item (turn 0)
    per (question, model) whose answers cover every turn, for every judge (and prompt version)."""
    from mentalchat.judge.multiturn import CONVERSATION_PROMPT_VERSION, conversation_transcript, turn_context

    by_conv: dict[tuple[str, str], dict[int, AnswerRow]] = defaultdict(dict)
    for a in answers:
        if a.turn is not None and 1 <= a.turn <= len(qturns[a.question_id]):
            by_conv[(a.question_id, a.model)][a.turn] = a
    out: list[WorkItem] = []
    for judge in cfg.judges:
        label = cfg.judge_label(judge)
        for (qid, model), rows in by_conv.items():
            turns = qturns[qid]
            first = next(iter(rows.values()))
            common = {"judge": label, "engine": judge.engine, "question_id": qid, "model": model,
                      "base_model": first.base_model, "data_config": first.data_config,
                      "explanation_max_chars": judge.explanation_max_chars}
            for prompt in cfg.prompts:
                structured = structured_for(cfg, judge, prompt.is_fastchat)
                for k in sorted(rows):
                    before = [rows[j].answer for j in range(1, k) if j in rows]
                    if len(before) != k - 1:
                        continue  # an earlier turn is missing: no context to judge turn k in
                    out.append(WorkItem(kind="main", prompt_version=prompt.label, structured=structured,
                                        question=turn_context(turns[:k], before), answer=rows[k].answer,
                                        turn=k, **common))
            if set(rows) == set(range(1, len(turns) + 1)):
                answers_in_order = [rows[k].answer for k in range(1, len(turns) + 1)]
                out.append(WorkItem(
                    kind="conversation", prompt_version=CONVERSATION_PROMPT_VERSION,
                    structured=structured_for(cfg, judge, False),
                    question=conversation_transcript(turns, answers_in_order),
                    answer="\n\n".join(answers_in_order), turn=0, **common,
                ))
    return out


@dataclass
class RequestPlan:
    """The chat requests of the items still to do, per engine, with what they may cost."""

    requests: dict[str, list[ChatRequest]] = field(default_factory=lambda: defaultdict(list))
    #: request id -> USD at full ``max_tokens`` (what the budget reserves)
    worst_case: dict[str, float] = field(default_factory=dict)
    #: judge label -> calls, estimated tokens in/out, estimated USD, engine, model
    per_judge: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def estimated_cost_usd(self) -> float:
        return sum(pj["est_cost_usd"] for pj in self.per_judge.values())


def build_requests(
    cfg: JudgeConfig, plan: Plan, pending: Sequence[WorkItem], engines: dict[str, EngineConfig]
) -> RequestPlan:
    """Requests and estimates for ``pending`` items (typical output: ``cfg.est_output_tokens``)."""
    out = RequestPlan()
    judge_sampling = {cfg.judge_label(j): j.sampling for j in cfg.judges}
    prices = {name: engine_price(ecfg) for name, ecfg in engines.items()}  # once per engine, not per item
    for it in pending:
        ecfg = engines[it.engine]
        req = build_request(it, plan.renderers, judge_sampling.get(it.judge) or ecfg.sampling)
        out.requests[it.engine].append(req)
        price = prices[it.engine]
        t_in = estimate_tokens(req)
        max_out = (req.sampling or ecfg.sampling).max_tokens
        t_out = min(cfg.est_output_tokens, max_out)
        out.worst_case[req.id] = call_cost(price, t_in, max_out)
        pj = out.per_judge.setdefault(
            it.judge,
            {"calls": 0, "est_tokens_in": 0, "est_tokens_out": 0, "est_cost_usd": 0.0, "engine": it.engine,
             "model": ecfg.model},
        )
        pj["calls"] += 1
        pj["est_tokens_in"] += t_in
        pj["est_tokens_out"] += t_out
        pj["est_cost_usd"] += call_cost(price, t_in, t_out)
    return out
