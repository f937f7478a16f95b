"""The sample: sizes, overlap, strata balance, per-rater order, blinding, and the errors."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from mentalchat.core.questions import load_questions
from mentalchat.core.rubric import METRIC_TO_KEY, METRICS
from mentalchat.errors import UsageError
from mentalchat.human_study import design_study, export_study, labeling_config
from mentalchat.human_study.design import _allocate
from mentalchat.schemas import ANSWERS, read_table

from .conftest import MODELS, make_answers


def _design(study_inputs, raters=("r1", "r2", "r3"), per_rater=8, overlap=0.25, seed=0):
    answers, questions = study_inputs
    return design_study(read_table(answers, "answers"), load_questions(questions), list(raters), per_rater,
                        overlap, seed)


def test_sizes_and_overlap(study_inputs) -> None:
    d = _design(study_inputs)
    assert d.n_shared == 2
    assert len(d.items) == 2 + 3 * 6
    seen = Counter(i for ids in d.assignments.values() for i in ids)
    assert all(len(ids) == 8 == len(set(ids)) for ids in d.assignments.values())
    shared = {i for i, n in seen.items() if n == 3}
    assert shared == {i for i, it in d.items.items() if it.shared}
    assert len(shared) == 2 and all(n in (1, 3) for n in seen.values())


def test_strata_are_balanced_in_the_sample_and_in_the_shared_part(study_inputs) -> None:
    d = _design(study_inputs, per_rater=10, overlap=0.4)
    by_model = Counter(it.model for it in d.items.values())
    assert set(by_model) == {m for m, _, _ in MODELS}
    assert max(by_model.values()) - min(by_model.values()) <= 1
    shared = Counter(it.model for it in d.items.values() if it.shared)
    assert len(shared) == 4 and max(shared.values()) - min(shared.values()) <= 1
    for ids in d.assignments.values():  # each rater sees every model
        assert {d.items[i].model for i in ids} == set(by_model)
    assert sum(d.strata.values()) == len(d.items) and "llama · synthetic" in d.strata


def test_multi_turn_and_empty_answers_are_not_drawn(study_inputs) -> None:
    d = _design(study_inputs, raters=("a", "b"), per_rater=24, overlap=0.0)
    assert len(d.items) == 48  # every single-turn answer, none of mt1's turns
    assert d.left_out == {"multi-turn": 8}
    assert all(it.question_id != "mt1" for it in d.items.values())


def test_order_is_shuffled_per_rater_and_the_draw_reproducible(study_inputs) -> None:
    d1, d2 = _design(study_inputs, seed=7), _design(study_inputs, seed=7)

    def unblinded(d):
        return {r: [(d.items[i].question_id, d.items[i].model) for i in ids] for r, ids in d.assignments.items()}

    assert unblinded(d1) == unblinded(d2)
    assert set(d1.items).isdisjoint(d2.items), "item ids must not follow from the seed"
    shared1 = [[(d1.items[i].question_id, d1.items[i].model) for i in ids if d1.items[i].shared]
               for ids in d1.assignments.values()]
    assert len({tuple(s) for s in shared1}) > 1, "the shared items come in the same order for every rater"
    assert unblinded(_design(study_inputs, seed=8)) != unblinded(d1)


def test_allocation_passes_a_small_stratum_share_on() -> None:
    assert _allocate(10, {"a": 1, "b": 20, "c": 20}) == {"a": 1, "b": 5, "c": 4} or \
        _allocate(10, {"a": 1, "b": 20, "c": 20}) == {"a": 1, "b": 4, "c": 5}
    assert sum(_allocate(7, {"a": 3, "b": 3, "c": 3}).values()) == 7


def test_too_few_answers_names_the_shortfall(study_inputs) -> None:
    with pytest.raises(UsageError, match=r"needs 62 distinct answers .* hold 48"):
        _design(study_inputs, per_rater=22, overlap=0.1)


def test_answers_to_other_questions_are_left_out_and_counted(tmp_path: Path, study_inputs) -> None:
    # The pipeline's answers hold the crisis probes' beside the benchmark's.
    answers = ANSWERS.from_rows(make_answers(2) + [{"question_id": "crisis-01", "model_id": "m", "answer": "x"},
                                                   {"question_id": "1", "model_id": "m2", "answer": " "}])
    d = design_study(answers, load_questions(study_inputs[1]), ["a"], 8, 0.0)
    assert {it.question_id for it in d.items.values()} == {"1", "2"}
    assert d.left_out == {"question not in the questions file": 1, "empty answer": 1}
    only_other = ANSWERS.from_rows([{"question_id": "zz", "model_id": "m", "answer": "x"}])
    with pytest.raises(UsageError, match="none of the answers .*'zz'"):
        design_study(only_other, load_questions(study_inputs[1]), ["a"], 1, 0.0)


@pytest.mark.parametrize(("raters", "per_rater", "overlap", "match"), [
    ([], 2, 0.0, "at least one rater"), (["a", "a"], 2, 0.0, "repeat"),
    (["a"], 0, 0.0, "at least 1"), (["a", "b"], 2, 1.5, "between 0 and 1"),
])
def test_bad_parameters(study_inputs, raters, per_rater, overlap, match) -> None:
    with pytest.raises(UsageError, match=match):
        _design(study_inputs, raters=raters, per_rater=per_rater, overlap=overlap)


def test_export_writes_blinded_tasks_and_a_separate_key(study_inputs, tmp_path: Path) -> None:
    answers, questions = study_inputs
    out = tmp_path / "study"
    d = export_study(answers, questions, out, raters=["r1", "r2"], per_rater=6, overlap=0.5)
    assert sorted(p.name for p in (out / "tasks").iterdir()) == ["r1.json", "r2.json"]
    key = json.loads((out / "key" / "unblinding_key.json").read_text())
    for rater in ("r1", "r2"):
        text = (out / "tasks" / f"{rater}.json").read_text()
        tasks = json.loads(text)
        assert [t["data"]["item"] for t in tasks] == d.assignments[rater]
        for model, base, cfg in MODELS:  # nothing in a rater's file tells the model
            assert model not in text and cfg not in text
        for t in tasks:
            item = key["items"][t["data"]["item"]]
            assert t["data"]["answer"] == d.items[t["data"]["item"]].answer
            assert t["data"]["question"] == f"client message {item['question_id']}"
    assert (out / "labeling_config.xml").read_text() == labeling_config()
    study = json.loads((out / "study.json").read_text())
    assert study["shared_items"] == 3 and study["distinct_items"] == 9


def test_export_key_elsewhere_and_nothing_partial_on_error(study_inputs, tmp_path: Path) -> None:
    answers, questions = study_inputs
    out, key = tmp_path / "study", tmp_path / "vault" / "key.json"
    export_study(answers, questions, out, raters=["r1"], per_rater=3, overlap=0.0, key=key)
    assert key.is_file() and not (out / "key").exists()
    with pytest.raises(UsageError):
        export_study(answers, questions, tmp_path / "bad", raters=["r1"], per_rater=999, overlap=0.0)
    assert not (tmp_path / "bad").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_metric_controls_are_the_rubric_keys() -> None:
    cfg = labeling_config()
    for metric in METRICS:
        assert f'<Rating name="{METRIC_TO_KEY[metric]}"' in cfg and metric.replace("&", "&amp;") in cfg
