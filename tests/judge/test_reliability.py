"""Reliability controls: sampled control items and the summary rows."""

from __future__ import annotations

import json

from mentalchat.core.rubric import METRICS, OVERALL
from mentalchat.judge.items import WorkItem
from mentalchat.judge.reliability import EMPTY_MODEL, FILLER_PARAGRAPHS, control_items, pad_answer, reliability_rows


def _main(n: int) -> list[WorkItem]:
    return [WorkItem(kind="main", judge="j", engine="e", prompt_version="v", question_id=str(i), question=f"q{i}",
                     model=m, answer="" if (i, m) == (0, "a") else f"answer {i}{m}")
            for i in range(n) for m in ("a", "b")]


def test_control_items_are_seeded_and_well_formed() -> None:
    main = _main(10)
    questions = {it.question_id: it.question for it in main}
    kw = dict(empty_n=3, padded_n=4, repeat_n=2, filler_paragraphs=2)
    items = control_items(main, questions, seed=0, **kw)
    assert items == control_items(main, questions, seed=0, **kw)
    assert items != control_items(main, questions, seed=1, **kw)
    kinds = [it.kind for it in items]
    assert kinds.count("empty") == 3 and kinds.count("padded") == 4 and kinds.count("repeat") == 2
    ids = {it.id for it in main}
    for it in items:
        if it.kind == "empty":
            assert it.answer == "" and it.model == EMPTY_MODEL
        else:
            assert it.extra["original_id"] in ids and it.answer  # never pads or repeats an empty answer
        if it.kind == "padded":
            assert it.answer.endswith(FILLER_PARAGRAPHS[1])
    assert len({it.id for it in items}) == len(items) and not ({it.id for it in items} & ids)
    assert pad_answer("x ", 5).count("\n\n") == 5


def _scores(v: float) -> dict:
    return {m: v for m in (*METRICS, OVERALL)}


def test_reliability_rows() -> None:
    main = _main(3)
    originals = {it.id: _scores(5.0) for it in main}
    def ctl(kind: str, it: WorkItem) -> WorkItem:
        return WorkItem(**{**it.to_dict(), "kind": kind, "extra": {"original_id": it.id}})
    controls = [
        (WorkItem(**{**main[0].to_dict(), "kind": "empty"}), _scores(1.0), None),
        (WorkItem(**{**main[1].to_dict(), "kind": "empty"}), _scores(6.0), None),
        (WorkItem(**{**main[2].to_dict(), "kind": "empty"}), None, "HTTP 500"),
        (ctl("padded", main[1]), _scores(7.0), None),
        (ctl("padded", main[2]), _scores(5.0), None),
        (ctl("repeat", main[3]), _scores(4.0), None),
        (ctl("repeat", main[4]), _scores(5.0), None),
    ]
    rows = {(r["check"], r["metric"]): r for r in reliability_rows(controls, originals, empty_flag_above=1.0)}
    empty = rows[("empty_answer", OVERALL)]
    assert empty["n"] == 2 and empty["n_failed"] == 1 and empty["value"] == 3.5 and empty["rate"] == 0.5 and empty["flagged"]
    assert json.loads(empty["detail"])["max"] == 6.0
    bias = rows[("length_bias", "Empathy & Validation")]
    assert bias["value"] == 1.0 and bias["rate"] == 0.5 and bias["flagged"]
    cons = rows[("self_consistency", OVERALL)]
    assert cons["value"] == 0.5 and cons["rate"] == 0.5 and not cons["flagged"]
    assert len(rows) == 3 * (len(METRICS) + 1)
