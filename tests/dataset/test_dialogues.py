"""Dialogues without a model: parsing, alternation, filters, the per-turn crisis audit, the split,
the table as HF ``datasets`` and SmolLM2's chat template read it, and placeholders across turns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mentalchat.dataset.config import DeidConfig, DialoguesConfig
from mentalchat.dataset.dialogues import (
    DialogueParseError,
    audit_dialogues,
    benchmark_records,
    check_dialogue,
    dialogue_id,
    normalise_turns,
    parse_turns,
    process_window_result,
    keep_one_training,
    split_for,
    window_fingerprints,
    windows,
    write_dialogue_outputs,
)
from mentalchat.engine.types import ChatResult
from mentalchat.safety.config import CrisisDetectorConfig
from mentalchat.safety.detector import CrisisDetector

LONG = "I keep going over it every evening and I do not know how to stop the worry from growing"


def _msgs(*texts: str) -> list[dict[str, str]]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(texts)]


# ---------------------------------------------------------------------------------------------
# Parsing: what a small model writes, JSON or not
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    json.dumps({"turns": [{"role": "client", "content": "a"}, {"role": "counsellor", "content": "b"}]}),
    'Sure! Here it is:\n```json\n{"turns": [{"role": "Client", "content": "a"}, '
    '{"role": "Counselor", "content": "b"},]}\n```',
    'The dialogue: {"messages": [{"speaker": "caregiver", "text": "a"}, {"speaker": "coach", "text": "b"}]} '
    'Hope it helps.',
    json.dumps(["a", "b"]),
    json.dumps({"conversation": [{"client": "a"}, {"counsellor": "b"}]}),
    json.dumps({"turns": [{"client": "a", "counsellor": "b"}]}),  # the guided schema's shape: one item per exchange
    "**Client:** a\n\n**Counsellor:** b",
    "Caregiver - a\nCoach: b",
])
def test_parse_turns_reads_json_in_many_shapes_and_labelled_text(text: str) -> None:
    assert parse_turns(text) == [("user", "a"), ("assistant", "b")]


@pytest.mark.parametrize("text", ["", "   ", "I am a helpful assistant and I like dialogues.", '{"turns": []}'])
def test_parse_turns_refuses_text_without_turns(text: str) -> None:
    with pytest.raises(DialogueParseError):
        parse_turns(text)


def test_normalise_alternates_first_user_last_assistant() -> None:
    turns = [("assistant", "hello, how can I help"), ("user", "u1"), ("user", "more"), ("assistant", "a1"),
             ("user", "  "), ("assistant", "a1b"), ("user", "u2"), ("assistant", "a2"), ("user", "dangling")]
    assert normalise_turns(turns) == [
        {"role": "user", "content": "u1\n\nmore"}, {"role": "assistant", "content": "a1\n\na1b"},
        {"role": "user", "content": "u2"}, {"role": "assistant", "content": "a2"}]


def test_check_cuts_at_the_first_bad_exchange_and_at_max_turns() -> None:
    cfg = DialoguesConfig(min_turns=2, max_turns=3, min_words=5, max_words=40)
    good = _msgs(*[LONG] * 8)
    kept, flt, _ = check_dialogue(good, cfg)
    assert flt is None and len(kept) == 6  # cut at max_turns
    kept, flt, _ = check_dialogue(_msgs(LONG, LONG, LONG, LONG, "too short", LONG), cfg)
    assert flt is None and len(kept) == 4  # the third exchange dropped, two left
    kept, flt, why = check_dialogue(_msgs(LONG, LONG, LONG, "As an AI language model I cannot feel " + LONG), cfg)
    assert flt == "refusal" and "counsellor turn" in why and len(kept) == 2
    _, flt, why = check_dialogue(_msgs(LONG, " ".join([LONG] * 3)), cfg)
    assert flt == "too_long" and "> 40" in why
    _, flt, why = check_dialogue(_msgs(LONG, LONG), cfg)
    assert flt == "turn_count" and "(< 2)" in why
    with pytest.raises(ValueError, match="max_turns"):
        DialoguesConfig(min_turns=3, max_turns=2)


def test_windows_are_consecutive_and_do_not_overlap() -> None:
    pages = [(3, "c"), (1, "a"), (2, "b")]
    assert windows(pages, 2) == [[(1, "a"), (2, "b")], [(3, "c")]]
    assert windows(pages, 5) == [[(1, "a"), (2, "b"), (3, "c")]]


def test_window_fingerprints_join_the_pages_of_the_window() -> None:
    fps = {"t-1:1": ["k1"], "t-1:2": ["k2", "k1"], "t-1:3": ["k3"]}
    rows = [{"source": "interview", "page_ref": "t-1:1-2", "messages": []},
            {"source": "synthetic", "page_ref": None, "messages": []}]
    assert window_fingerprints(fps, rows) == {"t-1:1-2": ["k1", "k2"]}


# ---------------------------------------------------------------------------------------------
# Split and crisis audit
# ---------------------------------------------------------------------------------------------
def test_split_is_a_stable_share_of_ids() -> None:
    ids = [dialogue_id(_msgs(f"client {i}", "counsellor")) for i in range(2000)]
    share = sum(split_for(i, 0.2) == "benchmark" for i in ids) / len(ids)
    assert 0.17 < share < 0.23
    assert [split_for(i, 0.2) for i in ids] == [split_for(i, 0.2) for i in ids]
    assert {split_for(i, 0.0) for i in ids} == {"train"} and {split_for(i, 1.0) for i in ids} == {"benchmark"}
    assert len(set(ids)) == len(ids) and dialogue_id(_msgs("a", "b")) != dialogue_id(_msgs("a", "c"))


def test_a_split_that_holds_out_everything_keeps_one_to_train() -> None:
    # Seen in the quickstart: 1 dialogue kept, hashed to 'benchmark', and 'multiturn' had nothing to train on.
    ids = [dialogue_id(_msgs(f"client {i}", "counsellor")) for i in range(3)]
    rows = [{"id": i, "split": "benchmark"} for i in ids]
    keep_one_training(rows)
    assert [r["split"] for r in rows].count("train") == 1
    rows2 = [{"id": i, "split": "benchmark"} for i in reversed(ids)]
    keep_one_training(rows2)  # the same one, whatever the order
    assert {r["id"] for r in rows if r["split"] == "train"} == {r["id"] for r in rows2 if r["split"] == "train"}
    mixed = [{"id": ids[0], "split": "train"}, {"id": ids[1], "split": "benchmark"}]
    keep_one_training(mixed)
    assert [r["split"] for r in mixed] == ["train", "benchmark"]
    keep_one_training([])


def test_finalize_keeps_one_to_train_when_every_dialogue_is_held_out() -> None:
    from mentalchat.dataset.dialogues import finalize_dialogues

    found = [{"messages": _msgs(f"I worry about exam {i}.", "That sounds stressful."), "source": "interview",
              "generator_model": "g", "prompt_version": "v"} for i in range(3)]
    rows, _ = finalize_dialogues(found, instruction="x", cfg=DialoguesConfig(benchmark_share=1.0),
                                 detector=CrisisDetector(CrisisDetectorConfig(layers=["rules"])))
    assert sorted(r["split"] for r in rows) == ["benchmark", "benchmark", "train"]


def test_audit_flags_client_turns_and_checks_only_later_counsellor_turns() -> None:
    det = CrisisDetector(CrisisDetectorConfig(layers=["rules"]))
    crisis = "Lately I have had thoughts of ending my life when it gets bad."
    escalate = "Please call or text 988 or emergency services right now; you do not have to face this alone."
    calm = "That sounds hard; a short walk each evening might help you unwind."
    dialogues = [
        _msgs("I cannot sleep before exams.", calm, crisis, escalate),          # escalates after the flag
        _msgs("I cannot sleep before exams.", escalate, crisis, calm),          # only before the flag: no
        _msgs("My garden is a mess.", calm),                                    # nothing flagged
    ]
    a, b, c = audit_dialogues(det, dialogues)
    assert a == {"crisis_flag": True, "crisis_turns": "2", "crisis_categories": "suicidal_ideation",
                 "crisis_escalated": True}
    assert b["crisis_flag"] is True and b["crisis_turns"] == "2" and b["crisis_escalated"] is False
    assert c == {"crisis_flag": False, "crisis_turns": None, "crisis_categories": None, "crisis_escalated": None}


# ---------------------------------------------------------------------------------------------
# The table, as outside readers see it
# ---------------------------------------------------------------------------------------------
def _row(i: int, split: str) -> dict:
    msgs = _msgs(f"client one {i}", f"counsellor one {i}", f"client two {i}", f"counsellor two {i}")
    return {"id": dialogue_id(msgs), "instruction": "You are a counsellor.", "messages": msgs, "n_turns": 2,
            "source": "synthetic", "topic": "Anxiety" if i else None, "page_ref": None, "split": split,
            "generator_model": "m", "prompt_version": "v", "crisis_flag": False, "crisis_turns": None,
            "crisis_categories": None, "crisis_escalated": None}


def test_table_loads_in_datasets_messages_format_and_smollm2_template(tmp_path: Path) -> None:
    import datasets

    rows = [_row(0, "benchmark"), _row(1, "train"), _row(2, "benchmark")]
    paths = write_dialogue_outputs(tmp_path, rows)
    ds = datasets.load_dataset("parquet", data_files=str(paths["table"]), split="train",
                               cache_dir=str(tmp_path / "hf"))
    assert ds.column_names[:3] == ["id", "instruction", "messages"]
    assert ds[1]["messages"] == rows[1]["messages"]  # a list of {role, content}
    inner = ds.features["messages"].feature  # datasets' List of a {role, content} struct
    assert {k: v.dtype for k, v in inner.items()} == {"role": "string", "content": "string"}

    bench = [json.loads(line) for line in paths["benchmark"].read_text().splitlines()]
    assert bench == benchmark_records(rows) == [
        {"question_id": f"mt-{rows[0]['id'][:10]}", "category": "interview", "turns": ["client one 0", "client two 0"]},
        {"question_id": f"mt-{rows[2]['id'][:10]}", "category": "Anxiety", "turns": ["client one 2", "client two 2"]},
    ]
    from mentalchat.core.questions import load_questions

    qs = load_questions(paths["benchmark"])
    assert [q.turns for q in qs] == [tuple(b["turns"]) for b in bench] and all(q.is_multi_turn for q in qs)

    from transformers import AutoTokenizer

    from mentalchat.models.kit import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("local:smollm2-135m-instruct"))
    text = tok.apply_chat_template([{"role": "system", "content": ds[0]["instruction"]}, *ds[0]["messages"]],
                                   tokenize=False)
    assert text.count("<|im_start|>user\n") == 2 and text.count("<|im_start|>assistant\n") == 2
    assert text.endswith("counsellor two 0<|im_end|>\n")


def test_no_benchmark_file_without_held_out_dialogues(tmp_path: Path) -> None:
    paths = write_dialogue_outputs(tmp_path, [_row(1, "train")])
    assert "benchmark" not in paths and not (tmp_path / "multiturn_benchmark.jsonl").exists()


# ---------------------------------------------------------------------------------------------
# The second de-identification pass: one placeholder per person in every turn
# ---------------------------------------------------------------------------------------------
def test_a_name_the_model_adds_gets_the_same_placeholder_in_every_turn() -> None:
    from mentalchat.dataset.deid import get_deidentifier

    deid = get_deidentifier(DeidConfig())
    cfg = DialoguesConfig(min_turns=2, min_words=3)
    turns = [
        {"role": "client", "content": "My mother [NAME_1] forgets my name. Rosalind Featherstonehaugh from the "
                                      "clinic says it will get worse."},
        {"role": "counsellor", "content": "It is painful when [NAME_1] forgets you and [NAME_2] is away. Did "
                                          "Rosalind suggest support?"},
        {"role": "client", "content": "Rosalind Featherstonehaugh gave me a leaflet about [NAME_1]'s care."},
        {"role": "counsellor", "content": "Reading it with Rosalind could help you plan for [NAME_1] together."},
    ]
    res = ChatResult(id="t:1-2", text=json.dumps({"turns": turns}), finish_reason="stop", model="m", provider="test")
    got = process_window_result(res, deid, cfg)
    assert got.filter is None and len(got.messages) == 4
    texts = [m["content"] for m in got.messages]
    assert not any("Rosalind" in t or "Featherstonehaugh" in t for t in texts)
    import re

    # Rosalind: one placeholder in every turn, and not one that names another person in another turn
    new = [set(re.findall(r"\[NAME_\d+\]", t)) - {"[NAME_1]", "[NAME_2]"} for t in texts]
    assert all(len(n) >= 1 for n in new)
    assert len(set.union(*new)) == len(new[0]) and all(n <= new[0] for n in new)  # one number, every turn
    assert "[NAME_2]" not in texts[0] and "[NAME_2]" in texts[1]
    assert all("[NAME_1]" in t for t in texts)  # the page's placeholder is kept as it was
    assert got.output_counts.get("NAME", 0) >= 4


def test_the_guided_schema_holds_whole_exchanges_within_the_turn_limits() -> None:
    """Alternation and the turn count are the schema's, not the model's: an exchange without a
    reply, a speaker twice or too few exchanges are invalid JSON for guided decoding."""
    import jsonschema

    from mentalchat.dataset.config import DialoguesConfig
    from mentalchat.dataset.dialogues import dialogue_schema

    schema = dialogue_schema(DialoguesConfig(min_turns=2, max_turns=3, min_words=1))
    ok = {"turns": [{"client": "client one", "counsellor": "reply one"},
                    {"client": "client two", "counsellor": "reply two"}]}
    with pytest.raises(jsonschema.ValidationError):  # shorter than min_words words can be
        jsonschema.validate(ok, dialogue_schema(DialoguesConfig(min_turns=2, max_turns=3, min_words=3)))
    jsonschema.validate(ok, schema)
    assert [m["role"] for m in normalise_turns(parse_turns(json.dumps(ok)))] == ["user", "assistant"] * 2
    for bad in ({"turns": ok["turns"][:1]}, {"turns": ok["turns"] * 2},
                {"turns": [{"client": "client one"}, {"client": "client two", "counsellor": "reply two"}]},
                {"turns": [{"client": "client one", "counsellor": "reply one", "client2": "again"}] * 2}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
