"""Which answers each rater sees: a stratified, overlapping, per-rater shuffled and blinded sample.

Why this shape: agreement between raters needs items every rater scores (the overlap), model
comparisons need every (base model, data configuration) equally represented (the strata), and
ratings are only evidence when the rater cannot tell which model wrote an answer (opaque item ids,
per-rater order; the key that maps ids back lives in its own file).

The sample is reproducible from ``seed`` (which answers, who sees what, in which order); the item
ids are not (drawn from :mod:`secrets`), so knowing the seed and the answers does not unblind a
study: only the key does.
"""

from __future__ import annotations

import random
import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from mentalchat.core.questions import Question
from mentalchat.errors import UsageError

__all__ = ["StudyDesign", "StudyItem", "design_study", "stratum_of"]


@dataclass(frozen=True)
class StudyItem:
    """One answer chosen for rating: its opaque id and what the key maps that id back to."""

    item: str
    question_id: str
    model: str
    base_model: str | None
    data_config: str | None
    question: str
    answer: str
    shared: bool

    def key_entry(self) -> dict[str, Any]:
        return {"question_id": self.question_id, "model": self.model, "base_model": self.base_model,
                "data_config": self.data_config, "shared": self.shared}


@dataclass
class StudyDesign:
    """The sample: items by id and each rater's ordered list of item ids."""

    raters: list[str]
    per_rater: int
    n_shared: int
    seed: int
    items: dict[str, StudyItem]
    assignments: dict[str, list[str]]
    strata: dict[str, int] = field(default_factory=dict)  # stratum -> distinct items drawn
    left_out: dict[str, int] = field(default_factory=dict)  # why answers were not eligible -> count

    def key(self) -> dict[str, Any]:
        """The unblinding key: item id -> (question, model, base model, data configuration)."""
        return {"items": {i: it.key_entry() for i, it in sorted(self.items.items())},
                "raters": {r: list(ids) for r, ids in self.assignments.items()}}


def stratum_of(base_model: str | None, data_config: str | None, model: str) -> str:
    """The stratum of an answer: its base model and data configuration (the model id when unknown)."""
    if base_model and data_config:
        return f"{base_model} · {data_config}"
    return model


def _allocate(total: int, sizes: dict[str, int]) -> dict[str, int]:
    """Split ``total`` draws across strata as evenly as their sizes allow (a full stratum passes its share on)."""
    share = dict.fromkeys(sizes, 0)
    left = total
    open_ = sorted(s for s in sizes if sizes[s] > 0)
    while left > 0 and open_:
        each, extra = divmod(left, len(open_))
        for i, s in enumerate(open_):
            share[s] += min(each + (1 if i < extra else 0), sizes[s] - share[s])
        left = total - sum(share.values())
        open_ = [s for s in open_ if share[s] < sizes[s]]
    return share


def _new_ids(n: int) -> list[str]:
    ids: set[str] = set()
    while len(ids) < n:  # random and distinct: their order carries nothing either
        ids.add(f"i{secrets.token_hex(5)}")
    return list(ids)


def design_study(
    answers: pa.Table,
    questions: list[Question],
    raters: list[str],
    per_rater: int,
    overlap: float,
    seed: int = 0,
) -> StudyDesign:
    """Draw the study: ``per_rater`` answers per rater, a share ``overlap`` of them rated by every rater.

    Single-turn answers to the questions given only (a multi-turn conversation needs a different
    rating page; answers to other questions, such as the crisis probes', are left out and counted). Every
    rater gets the same ``round(overlap * per_rater)`` shared items plus their own; shared and own
    items are each drawn round-robin over the strata, so both halves are balanced by model.
    """
    if not raters:
        raise UsageError("a study needs at least one rater")
    if len(set(raters)) != len(raters):
        raise UsageError(f"rater names repeat: {raters}")
    if per_rater < 1:
        raise UsageError(f"--per-rater must be at least 1, got {per_rater}")
    if not 0.0 <= overlap <= 1.0:
        raise UsageError(f"--overlap must be between 0 and 1, got {overlap}")
    n_shared = round(overlap * per_rater) if len(raters) > 1 else 0
    n_distinct = n_shared + len(raters) * (per_rater - n_shared)
    texts = {q.question_id: q for q in questions}

    rows = answers.to_pylist()
    by_stratum: dict[str, list[dict[str, Any]]] = defaultdict(list)
    unknown: list[str] = []
    multi = empty = 0
    for rec in rows:
        if rec.get("turn") is not None:
            multi += 1
            continue
        if not (rec.get("answer") or "").strip():
            empty += 1
            continue
        q = texts.get(rec["question_id"])
        if q is None:  # e.g. the crisis probes' answers beside the benchmark's: not part of this study
            unknown.append(rec["question_id"])
            continue
        if q.is_multi_turn:
            multi += 1
            continue
        by_stratum[stratum_of(rec.get("base_model"), rec.get("data_config"), rec["model_id"])].append(rec)
    if unknown and not by_stratum:
        raise UsageError(
            f"none of the answers is to a question of the questions file (e.g. question_id {min(unknown)!r}); "
            f"pass the questions the answers were made for"
        )
    available = sum(len(v) for v in by_stratum.values())
    if available < n_distinct:
        raise UsageError(
            f"the study needs {n_distinct} distinct answers ({n_shared} shared + {len(raters)} raters x "
            f"{per_rater - n_shared} own) but the answers hold {available} rateable single-turn ones; "
            f"lower --per-rater or raise --overlap"
        )

    rng = random.Random(seed)
    strata = sorted(by_stratum)
    pools = {s: sorted(by_stratum[s], key=lambda r: (r["question_id"], r["model_id"])) for s in strata}
    for s in strata:
        rng.shuffle(pools[s])
    share = _allocate(n_distinct, {s: len(pools[s]) for s in strata})
    drawn = {s: pools[s][: share[s]] for s in strata}
    # Round-robin over the strata (in a shuffled stratum order): any prefix is balanced by model.
    order = list(strata)
    rng.shuffle(order)
    dealt: list[tuple[str, dict[str, Any]]] = []
    depth = 0
    while len(dealt) < n_distinct:
        for s in order:
            if depth < len(drawn[s]):
                dealt.append((s, drawn[s][depth]))
        depth += 1

    ids = _new_ids(n_distinct)
    items: dict[str, StudyItem] = {}
    for pos, ((_, rec), item_id) in enumerate(zip(dealt, ids, strict=True)):
        items[item_id] = StudyItem(
            item=item_id, question_id=rec["question_id"], model=rec["model_id"],
            base_model=rec.get("base_model"), data_config=rec.get("data_config"),
            question=texts[rec["question_id"]].text, answer=rec["answer"], shared=pos < n_shared,
        )
    shared_ids = ids[:n_shared]
    own: dict[str, list[str]] = {r: [] for r in raters}
    for k, item_id in enumerate(ids[n_shared:]):
        own[raters[k % len(raters)]].append(item_id)
    assignments = {}
    for r in raters:
        seq = [*shared_ids, *own[r]]
        random.Random(f"{seed}:{r}").shuffle(seq)
        assignments[r] = seq
    counts = {s: len(drawn[s]) for s in strata if drawn[s]}
    left_out = {k: v for k, v in {"question not in the questions file": len(unknown), "multi-turn": multi,
                                  "empty answer": empty}.items() if v}
    return StudyDesign(raters=list(raters), per_rater=per_rater, n_shared=n_shared, seed=seed,
                       items=items, assignments=assignments, strata=counts, left_out=left_out)
