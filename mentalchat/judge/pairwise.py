"""Pairwise judging (MT-Bench style): which pairs are compared, how verdicts combine, position bias.

Single grading asks a judge for scores on one answer; pairwise grading shows it two answers to the
same question and asks which is the better counselling response, or a tie. Judges are known to
favour a position (usually the first), so each pair is asked in both orders, (A, B) and (B, A):

* the *combined verdict* of a pair is its winner when both orders name the same winner, and
  ``tie`` when both say tie **or when they disagree** — a verdict that flips with the order is
  counted as a tie, the convention of the MT-Bench paper (Zheng et al. 2023), so a judge's
  position preference cannot hand a model wins;
* the *flip rate* (``reliability`` check ``position_bias``) is the share of pairs, both orders
  read, whose two winners differ; ``rate`` is the share of decisive order-specific verdicts that
  chose whichever reply was shown first (0.5: no preference for a position).

Which pairs: ``pairs: base`` compares each fine-tuned model with the untuned model of its
``base_model`` (``data_config: base``, the same pairing as the gains table), shown base first in
the canonical pair; ``pairs: all`` compares every two models that answered a question, the
canonical pair sorted by name. With ``both_orders: false`` each pair is asked once, in an order
drawn from a seeded hash (so "first" is not always the base model), and the flip rate is null.

:func:`pairwise_items` is called by :mod:`.plan`, :func:`pairwise_row` and
:func:`position_bias_rows` by :mod:`.publish`; :func:`pairwise_outcomes` reads a ``pairwise``
table back into one combined verdict per pair, for the stats stage as well.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import jsonschema
import pandas as pd

from mentalchat.core.judge_reply import parse_pairwise_verdict
from mentalchat.judge.config import JudgeConfig, JudgeSpec
from mentalchat.judge.items import WorkItem
from mentalchat.judge.prompts import PAIRWISE_SCHEMA

if TYPE_CHECKING:
    from mentalchat.judge.plan import AnswerRow

__all__ = [
    "ORDERS",
    "TIE",
    "pair_verdict",
    "pairwise_items",
    "pairwise_outcomes",
    "pairwise_row",
    "position_bias_rows",
]

log = logging.getLogger(__name__)

TIE = "tie"
#: ab: model_a shown first (Reply A); ba: model_b shown first.
ORDERS = ("ab", "ba")
_POSITION = {"A": "first", "B": "second", TIE: TIE}
_KEYS = ["question_id", "judge", "prompt_version", "model_a", "model_b"]
_VALIDATOR = jsonschema.Draft202012Validator(PAIRWISE_SCHEMA)


# --- which pairs ---------------------------------------------------------------------------------
def _pairs_for_question(answers: Sequence[AnswerRow], mode: str) -> list[tuple[AnswerRow, AnswerRow]]:
    """Canonical (model_a, model_b) pairs among one question's answers."""
    if mode == "all":
        ordered = sorted(answers, key=lambda a: a.model)
        return list(itertools.combinations(ordered, 2))
    bases: dict[str, AnswerRow] = {}
    for a in sorted(answers, key=lambda a: a.model):
        if a.data_config == "base" and a.base_model is not None:
            bases.setdefault(a.base_model, a)  # two untuned models of one base: the first by name
    out = []
    for a in sorted(answers, key=lambda a: a.model):
        if a.data_config in ("base", "baseline") or a.base_model is None:
            continue
        base = bases.get(a.base_model)
        if base is not None and base.model != a.model:
            out.append((base, a))
    return out


def _one_order(seed: int, judge: str, question_id: str, model_a: str, model_b: str) -> str:
    """The order asked when only one is (seeded, so a rerun asks the same one)."""
    digest = hashlib.sha256(f"{seed}\x1f{judge}\x1f{question_id}\x1f{model_a}\x1f{model_b}".encode()).digest()
    return ORDERS[digest[0] % 2]


def pairwise_items(
    cfg: JudgeConfig,
    question_order: Sequence[str],
    questions: dict[str, str],
    answers: Sequence[AnswerRow],
    structured_for: Any,
) -> list[WorkItem]:
    """The pairwise calls of a sweep: per judge, question and pair, one item per order asked.

    ``question_order``: the benchmark's question ids in order (``max_questions`` keeps the first
    N that have answers); ``structured_for(judge)`` says whether a judge is asked for JSON.
    """
    pc = cfg.pairwise
    by_q: dict[str, list[AnswerRow]] = defaultdict(list)
    for a in answers:
        by_q[a.question_id].append(a)
    qids = [q for q in question_order if q in by_q]
    if pc.max_questions:
        qids = qids[: pc.max_questions]
    pairs = [(q, pair) for q in qids for pair in _pairs_for_question(by_q[q], pc.pairs)]
    if not pairs:
        log.warning("judge.pairwise is enabled but no pairs were found (pairs=%s: %s)", pc.pairs,
                    "no fine-tuned model has an untuned base model among the answers" if pc.pairs == "base"
                    else "fewer than two models answer any question")
    items: list[WorkItem] = []
    for judge in cfg.judges:
        items.extend(_judge_items(cfg, judge, pairs, questions, structured_for(judge)))
    return items


def _judge_items(
    cfg: JudgeConfig, judge: JudgeSpec, pairs: Sequence[tuple[str, tuple[AnswerRow, AnswerRow]]],
    questions: dict[str, str], structured: bool,
) -> Iterable[WorkItem]:
    pc = cfg.pairwise
    label = cfg.judge_label(judge)
    for qid, (a, b) in pairs:
        if pc.pairs == "base":  # the fine-tuned side says which configuration is compared
            base_model, data_config = b.base_model, b.data_config
        else:
            base_model = a.base_model if a.base_model == b.base_model else None
            data_config = None
        orders = ORDERS if pc.both_orders else (_one_order(cfg.seed, label, qid, a.model, b.model),)
        for order in orders:
            first, second = (a, b) if order == "ab" else (b, a)
            yield WorkItem(
                kind="pairwise", judge=label, engine=judge.engine, prompt_version=pc.prompt_version,
                question_id=qid, question=questions[qid], model=first.model, answer=first.answer,
                model_b=second.model, answer_b=second.answer, base_model=base_model, data_config=data_config,
                structured=structured, explanation_max_chars=judge.explanation_max_chars,
                extra={"model_a": a.model, "model_b": b.model, "order": order},
            )


# --- one reply -> one row --------------------------------------------------------------------------
def pair_verdict(item: WorkItem, text: str) -> tuple[str | None, str | None]:
    """(A | B | tie | None, reason) of one reply: schema-valid JSON directly, else the tolerant parser."""
    if item.structured:
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            obj = None
        if obj is not None and _VALIDATOR.is_valid(obj):
            return obj["verdict"], obj["reason"]
    return parse_pairwise_verdict(text)


def pairwise_row(item: WorkItem, rec: dict[str, Any] | None, skip_reason: str | None) -> dict[str, Any]:
    """The ``pairwise`` row of one item; ``verdict_position``/``winner`` null (with ``error``) on failure."""
    rec = rec or {}
    text = rec.get("text")
    verdict: str | None = None
    reason: str | None = None
    if rec.get("error") or text is None:
        error = rec.get("error") or skip_reason or "no text returned"
    else:
        verdict, reason = pair_verdict(item, text)
        error = None if verdict is not None else "unparsed: no verdict (A, B or tie) in the judge's reply"
    winner = None
    if verdict is not None:
        winner = TIE if verdict == TIE else (item.model if verdict == "A" else item.model_b)
    return {
        "question_id": item.question_id, "judge": item.judge, "prompt_version": item.prompt_version,
        "model_a": item.extra["model_a"], "model_b": item.extra["model_b"], "base_model": item.base_model,
        "data_config": item.data_config, "order": item.extra["order"],
        "verdict_position": _POSITION.get(verdict) if verdict is not None else None,
        "winner": winner, "reason": reason, "raw_text": text, "error": error,
    }


# --- combining both orders -------------------------------------------------------------------------
def pairwise_outcomes(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (question, judge, prompt version, pair) with the combined verdict.

    ``df``: a ``pairwise`` table (as pandas). Columns: the keys, ``base_model``, ``data_config``,
    ``n_orders`` (orders asked), ``n_read`` (orders with a verdict), ``winner_ab``, ``winner_ba``,
    ``winner`` (combined: the agreed winner; ``tie`` for two ties or a flip; the one verdict when
    one order was asked; null when an asked order has no verdict) and ``flipped`` (both orders read
    and their winners differ; null unless both were read).
    """
    cols = [*_KEYS, "base_model", "data_config", "n_orders", "n_read", "winner_ab", "winner_ba", "winner", "flipped"]
    if df.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in cols}).astype(
            {"n_orders": "int64", "n_read": "int64", "flipped": "boolean"})
    rows = []
    for key, group in df.groupby(_KEYS, sort=True, dropna=False):
        by_order = {o: w for o, w in zip(group["order"], group["winner"], strict=True)}
        ab, ba = _clean(by_order.get("ab")), _clean(by_order.get("ba"))
        asked = len(by_order)
        read = sum(w is not None for w in (ab, ba))
        flipped: bool | None = None
        if asked == 2 and read == 2:
            flipped = ab != ba
            winner = ab if ab == ba else TIE
        elif asked == 1 and read == 1:
            winner = ab if ab is not None else ba
        else:
            winner = None
        first = group.iloc[0]
        rows.append({**dict(zip(_KEYS, key, strict=True)), "base_model": _clean(first["base_model"]),
                     "data_config": _clean(first["data_config"]), "n_orders": asked, "n_read": read,
                     "winner_ab": ab, "winner_ba": ba, "winner": winner, "flipped": flipped})
    out = pd.DataFrame(rows, columns=cols)
    return out.astype({"n_orders": "int64", "n_read": "int64", "flipped": "boolean"})


def _clean(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and value != value) else value


def position_bias_rows(
    df: pd.DataFrame, judges: Sequence[str], prompt_version: str, *, flag_rate: float
) -> list[dict[str, Any]]:
    """``reliability`` rows, check ``position_bias``, metric ``overall``: one per judge, pairs or not.

    value: flip rate over pairs with both orders read (null when no pair was asked twice);
    rate: share of decisive verdicts (ties left out) that chose the first position; n: pairs with
    both orders read; n_failed: pairs with an asked order that has no verdict.
    """
    outcomes = pairwise_outcomes(df)
    rows = []
    for judge in judges:
        mine = df[(df["judge"] == judge) & (df["prompt_version"] == prompt_version)] if not df.empty else df
        pairs = outcomes[(outcomes["judge"] == judge) & (outcomes["prompt_version"] == prompt_version)]
        both = pairs[(pairs["n_orders"] == 2) & (pairs["n_read"] == 2)]
        n_pairs = len(both)
        n_flips = int(both["flipped"].sum()) if n_pairs else 0
        positions = mine["verdict_position"].dropna().tolist() if not mine.empty else []
        first, second, ties = (positions.count(p) for p in ("first", "second", TIE))
        measured = bool((pairs["n_orders"] == 2).any())
        value = n_flips / n_pairs if n_pairs else None
        detail: dict[str, Any] = {"n_pairs": n_pairs, "n_flips": n_flips, "first_wins": first,
                                  "second_wins": second, "ties": ties, "threshold": flag_rate}
        if not measured:
            detail["note"] = "flip rate not measured: no pair was asked in both orders (judge.pairwise.both_orders)"
        rows.append({
            "judge": judge, "prompt_version": prompt_version, "check": "position_bias", "metric": "overall",
            "n": n_pairs, "n_failed": int((pairs["n_read"] < pairs["n_orders"]).sum()),
            "value": value, "rate": first / (first + second) if first + second else None,
            "flagged": value is not None and value > flag_rate, "detail": json.dumps(detail, sort_keys=True),
        })
    return rows
