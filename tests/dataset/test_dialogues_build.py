"""The dataset stage with dialogues on: the bundled sample transcripts through de-identification,
a scripted local OpenAI-compatible server (real openai client over HTTP) as paraphraser and as
synthetic engine, then the ``dialogues`` table, the multi-turn benchmark, the card and the leak
gate; and the tiny real SmolLM2, whose dialogues the tolerant parser and filters must survive."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from mentalchat.dataset.build import build_dataset, bundled_transcripts
from mentalchat.dataset.config import DatasetConfig
from mentalchat.dataset.leak_gate import LeakGateError
from mentalchat.dataset.transcripts import find_leaks
from mentalchat.testing.fault_server import FaultServer

TOPICS = {"Anxiety": 0.5, "Grief and Loss": 0.25, "Sleep Improvement": 0.25}
CRISIS = "Some nights I have had thoughts of ending my life when the exhaustion gets really bad."
FILLER = "while the laundry piles up and the garden waits for me on the weekend"
VOCAB = ("kettle window garden letters mornings evenings radio kitchen hallway sofa blanket shopping bus "
         "market library bakery pharmacy laundry porch stairs").split()
PLANTED = json.loads((bundled_transcripts().parent / "planted_identifiers.json").read_text())["files"]
LEAK: dict[str, str | None] = {"name": None}  # a raw value the scripted paraphraser "knows" (leak gate test)


def _window_reply(user: str) -> str:
    """Two exchanges that name the page's first person by its placeholder in every turn and add a
    name of their own (which the second pass must replace by one placeholder, every time)."""
    who = (re.findall(r"\[NAME_\d+\]", user) or ["my mother"])[0]
    crisis = "ending my life" in user
    h = int(hashlib.sha256(user.encode()).hexdigest(), 16)
    about = " ".join(VOCAB[(h >> (5 * i)) % len(VOCAB)] for i in range(4))  # each window its own words
    extra = f" {LEAK['name']} said so too." if LEAK["name"] else ""
    turns = [
        {"role": "client", "content": f"Caring for {who} wears me down, Rosalind Featherstonehaugh says I look tired, "
                                      f"{FILLER}; I think of the {about}.{extra}"},
        {"role": "counsellor", "content": f"It sounds exhausting to look after {who} day after day; Rosalind "
                                          "noticed it too. Could you ask for a few hours of respite each week?"},
        {"role": "client", "content": (CRISIS if crisis else f"I tried respite once but {who} was upset, {FILLER}.")
                                      + " Rosalind Featherstonehaugh does not know."},
        {"role": "counsellor", "content": ("I am glad you told me. Please call or text 988 tonight or emergency "
                                           "services if you are in danger; you do not have to carry this alone, "
                                           "and Rosalind can sit with you."
                                           if crisis else f"Upsets pass; {who} may settle after a few visits, "
                                           "and you deserve the rest. Tell Rosalind how you feel.")},
    ]
    return json.dumps({"turns": turns})


def _follow_up(conversation: str) -> str:
    n = conversation.count("Counsellor:")
    return f"Thank you, that helps a little. After {n} replies I still worry at night, {FILLER}; what next?"


def responder(messages: list[dict], params: dict) -> str:
    system, user = messages[0]["content"], messages[-1]["content"]
    schema = params.get("json_schema") or {}
    props = schema.get("properties", {})
    if "turns" in props:  # an interview window
        return _window_reply(user)
    if "question" in props:  # the single-turn QA paraphrase
        return json.dumps({"question": "How do I cope with caring every day?", "answer": "Take small breaks."})
    if "messages" in props:  # synthetic openings, one per listed topic
        topics = re.findall(r"^\d+\. (.+)$", user, re.M)
        out = []
        for i, t in enumerate(topics):
            if t == "Grief and Loss":
                msg = f"Since my father died the house feels empty and I cannot stop crying, {FILLER}."
            else:  # distinct openings (near-duplicates would rightly be dropped)
                h = int(hashlib.sha256(f"{user}{i}".encode()).hexdigest(), 16)
                about = " ".join(VOCAB[(h >> (5 * j)) % len(VOCAB)] for j in range(12))
                msg = f"Opening: I worry about {t.lower()} every single day, {about}, {FILLER}."
            out.append({"topic": t, "message": msg})
        return json.dumps({"messages": out})
    if system.startswith("You are an experienced, warm counsellor"):
        if "sleep improvement" in messages[1]["content"]:
            return "As an AI language model I cannot really help, but " + FILLER
        return f"I hear how heavy this is; reply {len(messages) // 2}: try writing the worry down, {FILLER}."
    if system.startswith("You write the next message"):
        return _follow_up(user)
    raise AssertionError(f"unexpected request: {system[:80]!r}")


def _cfg(srv: FaultServer, **dialogues: Any) -> DatasetConfig:
    eng = srv.engine_config(model="scripted", http={"max_concurrency": 4})
    dlg = {"enabled": True, "window_pages": 2, "min_turns": 2, "max_turns": 3, "min_words": 5,
           "synthetic_count": 8, "synthetic_engine": "srv", "benchmark_share": 0.5, **dialogues}
    return DatasetConfig(engines={"srv": eng}, run={"seed": 3},
                         interview={"transcripts": "bundled", "paraphrase_engine": "srv", "executor": "local",
                                    "min_words": 1},
                         synthetic={"enabled": False, "topics": TOPICS, "messages_per_call": 4},
                         crisis_detector={"layers": ["rules"]},  # deterministic for the audit checks
                         dialogues=dlg)


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-secret")
    LEAK["name"] = None


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("dlg") / "ds"
    mp = pytest.MonkeyPatch()
    mp.setenv("OPENAI_API_KEY", "sk-test-not-a-secret")
    try:
        with FaultServer(responder=responder) as srv:
            stats = build_dataset(_cfg(srv), out, echo=lambda m: None)
            bodies = [r.body for r in srv.requests if r.protocol == "openai"]
    finally:
        mp.undo()
    return out, stats, bodies


def _table(out: Path) -> list[dict]:
    return pq.read_table(out / "dialogues.parquet").to_pylist()


def test_dialogues_table_loads_in_chat_format_with_provenance(built) -> None:
    import datasets

    out, stats, _ = built
    ds = datasets.load_dataset("parquet", data_files=str(out / "dialogues.parquet"), split="train",
                               cache_dir=str(out.parent / "hf"))
    # the folder's card names the table too: load_dataset(folder, "dialogues")
    named = datasets.load_dataset(str(out), "dialogues", split="train", cache_dir=str(out.parent / "hf"))
    assert named.num_rows == ds.num_rows and "dialogues" in datasets.get_dataset_config_names(str(out))
    rows = _table(out)
    assert len(ds) == len(rows) == stats["dialogues"]["dialogues"] > 0
    for r in ds:
        roles = [m["role"] for m in r["messages"]]
        assert roles == ["user", "assistant"] * r["n_turns"] and 2 <= r["n_turns"] <= 3
        assert set(r["messages"][0]) == {"role", "content"}
        assert r["split"] in ("train", "benchmark")
    inter = [r for r in rows if r["source"] == "interview"]
    # 5 transcripts of 2-3 pages: windows 1-2 and, for the two 3-page ones, 3-3
    assert sorted(r["page_ref"].split(":")[1] for r in inter) == ["1-2"] * 5 + ["3-3"] * 2
    assert {r["prompt_version"] for r in inter} == {"interview-dialogue-v2"}
    assert {r["generator_model"] for r in rows} == {"scripted"}
    assert all(r["instruction"] and len(r["id"]) == 16 for r in rows)


def test_windows_share_placeholders_and_the_second_pass_numbers_new_names_once(built) -> None:
    out, _, bodies = built
    windows = [b for b in bodies if "turns" in json.dumps(b.get("response_format") or {})]
    assert len(windows) == 7  # guided JSON was asked for (the backend supports it)
    for r in (r for r in _table(out) if r["source"] == "interview"):
        texts = [m["content"] for m in r["messages"]]
        assert not any("Rosalind" in t or "Featherstonehaugh" in t for t in texts)
        # the page's person: one placeholder, the same in all four turns
        page_ph = {re.search(r"(?:Caring for|look after|once but|Upsets pass;) (\[NAME_\d+\])", t).group(1)
                   for t in texts if re.search(r"(?:Caring for|look after|once but|Upsets pass;) \[NAME_", t)}
        assert len(page_ph) <= 1
        # the model's own name: one new placeholder across every turn it appears in
        added = [set(re.findall(r"\[NAME_\d+\]", t)) - page_ph for t in texts]
        assert all(added) and len(set.intersection(*added)) >= 1
    # the pages the model saw were de-identified together (one placeholder per person across the
    # window), not one by one (numbering restarts: page 2's [NAME_1] could be someone else)
    from mentalchat.dataset.deid import get_deidentifier
    from mentalchat.dataset.readers import read_transcripts

    deid = get_deidentifier(DatasetConfig().deid)
    sent = {b["messages"][-1]["content"] for b in windows}
    differs = 0
    for t in read_transcripts(bundled_transcripts(), page_words=400, max_file_bytes=10**7).transcripts:
        pages = t.pages[:2]
        joint = [r.text for r in deid.deidentify_pages([p.text for p in pages])]
        alone = [deid.deidentify(p.text).text for p in pages]
        body = "\n\n".join(f"--- page {p.number} ---\n{x}" for p, x in zip(pages, joint, strict=True))
        assert any(body in s for s in sent), t.transcript_id
        differs += joint != alone
    assert differs  # the check can tell the two apart on these transcripts


def test_no_planted_identifier_in_dialogues_or_benchmark(built) -> None:
    out, _, bodies = built
    from mentalchat.dataset.transcripts import Planted

    planted = [Planted(p["kind"], p["value"]) for items in PLANTED.values() for p in items]
    texts = [m["content"] for r in _table(out) for m in r["messages"]]
    texts.append((out / "multiturn_benchmark.jsonl").read_text())
    assert find_leaks(texts, planted) == []
    sent = [m["content"] for b in bodies for m in b["messages"]]
    assert find_leaks(sent, planted) == []


def test_crisis_audit_per_client_turn(built) -> None:
    out, stats, _ = built
    flagged = [r for r in _table(out) if r["crisis_flag"]]
    assert flagged and all(r["source"] == "interview" for r in flagged)
    for r in flagged:
        assert r["crisis_turns"] == "2" and "suicidal_ideation" in r["crisis_categories"]
        assert r["crisis_escalated"] is True  # the counsellor's second turn names 988
    assert stats["dialogues"]["crisis_flagged"] == len(flagged)
    assert all(r["crisis_escalated"] is None for r in _table(out) if not r["crisis_flag"])


def test_synthetic_dialogues_filters_dedup_and_topics(built) -> None:
    out, stats, bodies = built
    st = stats["dialogues"]
    syn = [r for r in _table(out) if r["source"] == "synthetic"]
    rejects = st["by_filter"]
    grief = sum(1 for r in syn if r["topic"] == "Grief and Loss")
    assert set(r["topic"] for r in syn) <= {"Anxiety", "Grief and Loss"}
    assert grief <= 1 and rejects.get("synthetic:near_duplicate", 0) >= 1
    assert rejects.get("synthetic:refusal", 0) >= 1  # sleep: the counsellor disclaims at turn 1
    assert len(syn) + sum(v for k, v in rejects.items() if k.startswith("synthetic:")) == 8
    for r in syn:
        msgs = r["messages"]
        assert msgs[0]["content"].startswith(("Opening", "Since my father"))
        assert all(m["content"].startswith("Thank you, that helps") for m in msgs[2::2])
        assert r["prompt_version"] == "synthetic-dialogue-v1" and r["page_ref"] is None
    # the counsellor saw the whole conversation so far: turn k's request holds 2k-1 messages + system
    counsellor = [b for b in bodies if b["messages"][0]["content"].startswith("You are an experienced, warm")]
    assert Counter(len(b["messages"]) for b in counsellor).keys() <= {2, 4, 6}
    assert st["synthetic"]["calls"]["openings_requests"] == 2


def test_benchmark_file_holds_the_held_out_dialogues_client_turns(built) -> None:
    from mentalchat.core.questions import load_questions

    out, stats, _ = built
    rows = _table(out)
    held = [r for r in rows if r["split"] == "benchmark"]
    assert 0 < len(held) < len(rows) and stats["dialogues"]["benchmark"] == len(held)
    qs = load_questions(out / "multiturn_benchmark.jsonl")
    assert [q.question_id for q in qs] == [f"mt-{r['id'][:10]}" for r in held]
    assert [list(q.turns) for q in qs] == [[m["content"] for m in r["messages"] if m["role"] == "user"] for r in held]
    assert [q.category for q in qs] == [r["topic"] or "interview" for r in held]


def test_card_mentions_the_dialogues(built) -> None:
    out, stats, _ = built
    card = (out / "README.md").read_text()
    assert "## Dialogues (multi-turn)" in card and "dialogues.parquet" in card
    assert f"- dialogues: {stats['dialogues']['dialogues']} (" in card


def test_the_leak_gate_scans_dialogue_turns_against_their_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A raw name in a dialogue turn (the second de-identification pass switched off here) stops
    the build: the dialogue is checked against the raw pages of its window."""
    from mentalchat.dataset import dialogues

    real = dialogues.process_window_result

    class NoDeid:
        def redact_output(self, *texts: str) -> list[Any]:
            from mentalchat.dataset.deid import DeidResult

            return [DeidResult(t, {}) for t in texts]

    monkeypatch.setattr(dialogues, "process_window_result", lambda res, deid, cfg: real(res, NoDeid(), cfg))
    LEAK["name"] = "Wendell"  # planted in sample-01.txt
    with FaultServer(responder=responder) as srv:
        with pytest.raises(LeakGateError, match="values from the raw transcripts"):
            build_dataset(_cfg(srv, synthetic_count=0), tmp_path / "ds", echo=lambda m: None)
    assert not (tmp_path / "ds").exists()
    review = (tmp_path / ".ds.work" / "leak_review.jsonl").read_text()
    assert "dialogue user turn 1" in review and "Wendell" in review


# ---------------------------------------------------------------------------------------------
# The tiny real model: its dialogues are poor; the parser and filters must cope
# ---------------------------------------------------------------------------------------------
def test_smollm2_windows_come_out_as_dialogues_or_counted_rejects() -> None:
    from mentalchat.dataset.deid import get_deidentifier
    from mentalchat.dataset.dialogues import run_interview_dialogues
    from mentalchat.dataset.readers import read_transcripts
    from mentalchat.engine.config import EngineConfig
    from mentalchat.models.kit import resolve_model

    report = read_transcripts(bundled_transcripts(), page_words=400, max_file_bytes=10**7)
    t = report.transcripts[0]
    deid = get_deidentifier(DatasetConfig().deid)
    pages = {t.transcript_id: {p.number: r.text
                               for p, r in zip(t.pages, deid.deidentify_pages([p.text for p in t.pages]), strict=True)}}
    eng = EngineConfig(backend="transformers", model=resolve_model("local:smollm2-135m-instruct"),
                       sampling={"temperature": 0.0, "max_tokens": 160})
    cfg = DatasetConfig(engines={"smol": eng}, interview={"paraphrase_engine": "smol"},
                        dialogues={"enabled": True, "window_pages": 1, "min_turns": 1, "min_words": 1})
    got = run_interview_dialogues(cfg, pages, eng)
    assert got.stats["windows"] == len(t.pages) == len(got.dialogues) + len(got.rejects)
    known = {"unparseable", "truncated", "turn_count", "too_short", "too_long", "refusal"}
    assert {r["filter"] for r in got.rejects} <= known
    for d in got.dialogues:
        roles = [m["role"] for m in d["messages"]]
        assert roles == ["user", "assistant"] * (len(roles) // 2) and roles
