"""Multi-turn dialogues: the ``dialogues`` table and the held-out multi-turn benchmark.

Two sources, one set of filters:

* **interview** — windows of ``window_pages`` consecutive de-identified pages of one transcript
  (de-identified together, so a person has the same placeholder on every page of a window) go to
  the local paraphrase engine in one request each; the reply (guided JSON where the backend
  supports it, else read by a tolerant parser) becomes alternating client/counsellor turns, which
  are de-identified a second time in one call, so that a name the model adds gets one placeholder
  in every turn.
* **synthetic** — openings over the topic weights (the 33 CounselChat topics by default), then,
  round by round, a counsellor reply and the client's follow-up from the synthetic engine. Near-
  duplicate openings are dropped before any follow-up is asked for. Finished calls are
  checkpointed as on the synthetic QA path, so a rerun repeats none.

Every turn must have ``min_words``..``max_words`` words, counsellor turns must not refuse or
disclaim being an AI; a dialogue is cut at its first bad exchange and rejected with fewer than
``min_turns`` exchanges left. Each client turn goes through the build's crisis detector; a flagged
dialogue records whether a counsellor turn at or after the first flagged client turn escalates.
A stable hash of each id puts ``benchmark_share`` of the dialogues in split ``benchmark``: they
become ``multiturn_benchmark.jsonl`` (FastChat question format, client turns only) and are
never trained on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mentalchat.core.crisis_rules import CRISIS_CATEGORIES
from mentalchat.dataset.config import DialoguesConfig
from mentalchat.dataset.filters import refusal_or_disclaimer, truncated, word_count
from mentalchat.engine.config import EngineConfig
from mentalchat.engine.types import ChatMessage, ChatRequest, ChatResult, SamplingConfig
from mentalchat.errors import MentalchatError

__all__ = [
    "PROMPT_VERSION",
    "SYNTHETIC_PROMPT_VERSION",
    "DialogueOutput",
    "DialogueParseError",
    "audit_dialogues",
    "benchmark_records",
    "check_dialogue",
    "dialogue_id",
    "dialogue_schema",
    "finalize_dialogues",
    "gate_items",
    "normalise_turns",
    "parse_turns",
    "run_interview_dialogues",
    "run_synthetic_dialogues",
    "keep_one_training",
    "split_for",
    "window_requests",
    "windows",
    "write_dialogue_outputs",
]

log = logging.getLogger(__name__)

PROMPT_VERSION = "interview-dialogue-v2"
SYNTHETIC_PROMPT_VERSION = "synthetic-dialogue-v1"
BENCHMARK_FILE = "multiturn_benchmark.jsonl"
TABLE_FILE = "dialogues.parquet"

INTERVIEW_SYSTEM = """You help build training data for a counselling assistant that supports family \
caregivers. You will receive {n_pages} consecutive pages from an interview with a caregiver. Personal \
details on the pages were replaced by bracketed placeholders such as [NAME_1] or [DATE_2].

Rewrite what the caregiver talks about as a conversation between the caregiver (role "client") and a \
supportive counsellor (role "counsellor"). The client speaks first, the two alternate, and the \
counsellor speaks last: {min_turns} to {max_turns} client turns, each answered by the counsellor. Each \
client turn brings up a worry, feeling or circumstance from the pages in the caregiver's own \
first-person voice. Each counsellor turn acknowledges the feelings, remembers what the client said \
earlier in the conversation, and offers concrete, practical suggestions. If anyone may be in danger, \
the counsellor urges immediate help (emergency services or a crisis line). Every turn has \
{min_words} to {max_words} words.

Never use names, places, dates, numbers that identify anyone, or bracketed placeholders: refer to \
people by their role (my mother, the nurse). Do not copy sentences from the pages.
Reply with one JSON object {{"turns": [{{"client": ..., "counsellor": ...}}, ...]}}, one item per \
exchange (what the client says, then the counsellor's reply), and nothing else."""

INTERVIEW_USER = 'Interview pages {first}-{last}:\n"""\n{pages}\n"""'

OPENING_USER = """Write {k} messages, one for each topic below, in this order. Each is the first \
message a person sends when starting a conversation with a counsellor about that topic:
{topics}

Reply with a JSON object {{"messages": [{{"topic": ..., "message": ...}}, ...]}} holding exactly \
{k} items and nothing else."""

COUNSELLOR_SYSTEM = """You are an experienced, warm counsellor in a conversation with a person who \
contacted a counselling service. Reflect what the person said and how they feel, validate them \
without judging, remember what they told you in earlier messages, and offer clear, practical steps. \
If the person may be in danger or may harm someone, urge them to get immediate help from emergency \
services or a crisis line. Write in plain prose, {min_words} to {max_words} words."""

CLIENT_SYSTEM = """You write the next message of a person who contacted a counselling service about \
{topic}. Stay in their first-person voice: react to the counsellor's last reply, add a detail, \
feeling or new worry, and ask a follow-up question. Never include real names, addresses or contact \
details, and never say you are an AI. Write only the message, {min_words} to {max_words} words."""

CLIENT_USER = "The conversation so far:\n\n{conversation}\n\nWrite the person's next message."


class DialogueParseError(MentalchatError, ValueError):
    """The model's text holds no conversation."""


# --------------------------------------------------------------------------------------------
# Windows and requests (interview)
# --------------------------------------------------------------------------------------------
def windows(pages: Sequence[tuple[int, str]], size: int) -> list[list[tuple[int, str]]]:
    """Consecutive, non-overlapping windows of ``size`` pages (the last may be shorter).

    Non-overlapping: two dialogues from the same page would near-duplicate each other.
    """
    ordered = sorted(pages, key=lambda p: p[0])
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]


def dialogue_schema(cfg: DialoguesConfig) -> dict[str, Any]:
    """Guided-decoding schema: one item per exchange (client, then counsellor), so alternation and
    the turn count hold by construction; a small model asked for a flat list of role-tagged turns
    repeated a speaker or stopped after one exchange (4 of 7 quickstart windows)."""
    # minLength: about min_words words (SmolLM2 answered "Yes." in 5 of 7 windows with minLength 1)
    text = {"type": "string", "minLength": max(1, 5 * cfg.min_words), "maxLength": cfg.max_turn_chars}
    exchange = {
        "type": "object",
        "properties": {"client": text, "counsellor": text},
        "required": ["client", "counsellor"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"turns": {"type": "array", "items": exchange, "minItems": cfg.min_turns,
                                 "maxItems": cfg.max_turns}},
        "required": ["turns"],
        "additionalProperties": False,
    }


def _sampling(base: SamplingConfig | None, max_tokens: int | None) -> SamplingConfig | None:
    return (base or SamplingConfig()).model_copy(update={"max_tokens": max_tokens}) if max_tokens else None


def window_requests(
    page_texts: Mapping[str, Mapping[int, str]], cfg: DialoguesConfig, *, json_schema: bool,
    base_sampling: SamplingConfig | None = None,
) -> list[ChatRequest]:
    """One request per window; ``page_texts``: transcript id → page number → de-identified text."""
    reqs = []
    system = INTERVIEW_SYSTEM
    for tid in sorted(page_texts):
        for win in windows(list(page_texts[tid].items()), cfg.window_pages):
            first, last = win[0][0], win[-1][0]
            body = "\n\n".join(f"--- page {n} ---\n{text}" for n, text in win)
            reqs.append(ChatRequest(
                id=f"{tid}:{first}-{last}",
                messages=[
                    ChatMessage(role="system", content=system.format(
                        n_pages=len(win), min_turns=cfg.min_turns, max_turns=cfg.max_turns,
                        min_words=max(cfg.min_words, 1), max_words=cfg.max_words)),
                    ChatMessage(role="user", content=INTERVIEW_USER.format(first=first, last=last, pages=body)),
                ],
                sampling=_sampling(base_sampling, cfg.max_tokens),
                json_schema=dialogue_schema(cfg) if json_schema else None,
                metadata={"transcript_id": tid, "pages": [n for n, _ in win]},
            ))
    return reqs


# --------------------------------------------------------------------------------------------
# Parsing and filters
# --------------------------------------------------------------------------------------------
_USER = ("client", "caregiver", "user", "patient", "person", "human", "interviewee")
_ASSISTANT = ("counsellor", "counselor", "assistant", "coach", "therapist", "counselling", "counseling")
_LIST_KEYS = ("turns", "messages", "conversation", "dialogue", "dialog")
_TEXT_KEYS = ("content", "text", "message", "value", "utterance")
_ROLE_KEYS = ("role", "speaker", "from", "author")
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)
_LABEL = re.compile(
    r"(?im)^[\s>*#-]*(?:\*\*)?\s*(client|caregiver|user|patient|counsel+or|counselor|coach|therapist|assistant)"
    r"\s*(?:\*\*)?\s*[:\-]\s*(?:\*\*)?"
)


def _role(name: Any) -> str | None:
    low = str(name or "").strip().lower()
    if any(low.startswith(r) for r in _USER):
        return "user"
    if any(low.startswith(r) for r in _ASSISTANT):
        return "assistant"
    return None


def _turns_from_obj(obj: Any) -> list[tuple[str, str]] | None:
    if isinstance(obj, dict):
        low = {str(k).strip().lower(): v for k, v in obj.items()}
        obj = next((low[k] for k in _LIST_KEYS if isinstance(low.get(k), list)), None)
    if not isinstance(obj, list) or not obj:
        return None
    out: list[tuple[str, str]] = []
    for i, item in enumerate(obj):
        if isinstance(item, str):  # a bare list of strings alternates, client first
            role, text = ("user" if i % 2 == 0 else "assistant"), item
        elif isinstance(item, dict):
            low = {str(k).strip().lower(): v for k, v in item.items()}
            role = next((_role(low[k]) for k in _ROLE_KEYS if k in low), None)
            text = next((low[k] for k in _TEXT_KEYS if isinstance(low.get(k), str)), None)
            pair = [(_role(k), v) for k, v in low.items()]
            if role is None and len(pair) == 2 and [r for r, _ in pair] == ["user", "assistant"]:
                out += [(r, v.strip()) for r, v in pair if isinstance(v, str) and v.strip()]  # one exchange
                continue
            if role is None and len(low) == 1:  # {"client": "..."} style
                (key, text), = low.items()
                role = _role(key)
        else:
            continue
        if role is not None and isinstance(text, str) and text.strip():
            out.append((role, text.strip()))
    return out or None


def _candidates(text: str) -> list[str]:
    out = [text.strip()]
    out += [m.group(1).strip() for m in _FENCE.finditer(text)]
    for open_, close in (("{", "}"), ("[", "]")):
        a, b = text.find(open_), text.rfind(close)
        if 0 <= a < b:
            out.append(text[a:b + 1])
    return out


def parse_turns(text: str | None) -> list[tuple[str, str]]:
    """(role, content) turns from JSON (an object with ``turns``/``messages`` or a bare list,
    fenced or inside prose) or speaker-labelled lines (``Client: ...`` / ``Counsellor: ...``);
    roles are ``user`` (client) or ``assistant`` (counsellor)."""
    if not text or not text.strip():
        raise DialogueParseError("empty output")
    for cand in _candidates(text):
        for attempt in (cand, re.sub(r",\s*([}\]])", r"\1", cand)):  # tolerate trailing commas
            try:
                turns = _turns_from_obj(json.loads(attempt, strict=False))
            except (json.JSONDecodeError, ValueError):
                continue
            if turns:
                return turns
    labels = list(_LABEL.finditer(text.replace("\r", "")))
    clean = text.replace("\r", "")
    turns = []
    for i, m in enumerate(labels):
        end = labels[i + 1].start() if i + 1 < len(labels) else len(clean)
        body = clean[m.end():end].strip().strip('*"').strip()
        role = _role(m.group(1))
        if body and role:
            turns.append((role, body))
    if turns:
        return turns
    snippet = text.strip()[:60].replace("\n", " ")
    raise DialogueParseError(f"no client/counsellor turns in the output (starts {snippet!r})")


def normalise_turns(turns: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    """Chat messages that alternate user/assistant, first user, last assistant: consecutive turns
    of one speaker are joined, a leading counsellor turn and a trailing client turn are dropped."""
    merged: list[dict[str, str]] = []
    for role, content in turns:
        content = content.strip()
        if not content:
            continue
        if merged and merged[-1]["role"] == role:
            merged[-1]["content"] += "\n\n" + content
        else:
            merged.append({"role": role, "content": content})
    while merged and merged[0]["role"] != "user":
        merged.pop(0)
    if merged and merged[-1]["role"] != "assistant":
        merged.pop()
    return merged


def turn_problem(role: str, text: str, cfg: DialoguesConfig) -> tuple[str, str] | None:
    """(filter, reason) when one turn fails the length or refusal filters; None keeps it."""
    who = "client" if role == "user" else "counsellor"
    n = word_count(text)
    if n < cfg.min_words:
        return "too_short", f"{who} turn has {n} words (< {cfg.min_words})"
    if n > cfg.max_words:
        return "too_long", f"{who} turn has {n} words (> {cfg.max_words})"
    said = refusal_or_disclaimer(text)
    if said:
        return "refusal", f"{who} turn: {said}"
    return None


def check_dialogue(
    messages: Sequence[Mapping[str, str]], cfg: DialoguesConfig
) -> tuple[list[dict[str, str]], str | None, str | None]:
    """(messages kept, filter, reason): cut at the first exchange with a bad turn and at
    ``max_turns`` exchanges; rejected (filter set) with fewer than ``min_turns`` exchanges left."""
    kept: list[dict[str, str]] = []
    stop: tuple[str, str] | None = None
    for i in range(0, len(messages) - 1, 2):
        pair = [dict(messages[i]), dict(messages[i + 1])]
        stop = turn_problem(pair[0]["role"], pair[0]["content"], cfg) or \
            turn_problem(pair[1]["role"], pair[1]["content"], cfg)
        if stop:
            break
        kept += pair
        if len(kept) // 2 >= cfg.max_turns:
            break
    n = len(kept) // 2
    if n < cfg.min_turns:
        flt, why = stop or ("turn_count", f"{len(messages) // 2} exchanges (< {cfg.min_turns})")
        if stop:
            why = f"{why}; {n} good exchanges before it (< {cfg.min_turns})"
        return kept, flt, why
    return kept, None, None


@dataclass
class WindowResult:
    """What became of one interview window: messages, or a reject with the filter and reason."""

    messages: list[dict[str, str]]
    filter: str | None = None
    reason: str | None = None
    output_counts: Counter = field(default_factory=Counter)


def process_window_result(res: ChatResult, deid: Any, cfg: DialoguesConfig) -> WindowResult:
    """Parse, normalise, de-identify every turn again in one call (consistent new placeholders),
    then filter. ``deid`` is a :class:`~mentalchat.dataset.deid.Deidentifier`."""
    if not res.ok:
        return WindowResult([], "engine_error", (res.error or "no text")[:500])
    cut = truncated(res.finish_reason)
    try:
        turns = parse_turns(res.text)
    except DialogueParseError as exc:
        return WindowResult([], "truncated" if cut else "unparseable", f"{cut}; {exc}" if cut else str(exc))
    if cut:  # the last turn stops mid-sentence
        turns = turns[:-1]
    messages = normalise_turns(turns)
    counts: Counter = Counter()
    if messages:
        cleaned = deid.redact_output(*(m["content"] for m in messages))
        for m, r in zip(messages, cleaned, strict=True):
            m["content"] = r.text
            counts.update(r.counts)
    kept, flt, why = check_dialogue(messages, cfg)
    if flt and cut:
        flt, why = "truncated", f"{cut}; {why}"
    return WindowResult(kept, flt, why, counts)


# --------------------------------------------------------------------------------------------
# Ids, split, crisis audit, outputs
# --------------------------------------------------------------------------------------------
def dialogue_id(messages: Sequence[Mapping[str, str]]) -> str:
    """Content hash of the messages (the same conversation always gets the same id)."""
    blob = json.dumps([[m["role"], m["content"]] for m in messages], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _split_hash(did: str) -> float:
    return int(hashlib.sha256(f"split\0{did}".encode()).hexdigest()[:8], 16) / 0x1_0000_0000


def split_for(did: str, share: float) -> str:
    """``benchmark`` for ``share`` of ids (a stable hash, independent of order and run), else ``train``."""
    return "benchmark" if _split_hash(did) < share else "train"


def keep_one_training(rows: list[dict[str, Any]]) -> None:
    """When the hash sent every dialogue to ``benchmark``, the one nearest the boundary trains.

    Why: with a few dialogues (a small build kept 1 of 7) the hash can hold them all out, and the
    ``multiturn`` configuration then has nothing to train on; a benchmark of n-1 costs less.
    """
    if rows and all(r["split"] == "benchmark" for r in rows):
        max(rows, key=lambda r: _split_hash(r["id"]))["split"] = "train"


def audit_dialogues(detector: Any, dialogues: Sequence[Sequence[Mapping[str, str]]]) -> list[dict[str, Any]]:
    """The crisis columns per dialogue: every client turn through ``detector`` (a
    :class:`~mentalchat.safety.detector.CrisisDetector`); for a flagged dialogue, the counsellor
    turns from the first flagged client turn on are checked for escalation."""
    where: list[tuple[int, int]] = []
    texts: list[str] = []
    for d, msgs in enumerate(dialogues):
        for k, m in enumerate(m for m in msgs if m["role"] == "user"):
            where.append((d, k))
            texts.append(m["content"])
    dets = detector.detect(texts) if texts else []
    flagged: dict[int, list[int]] = {}
    cats: dict[int, set[str]] = {}
    for (d, k), det in zip(where, dets, strict=True):
        if det.flag:
            flagged.setdefault(d, []).append(k)
            cats.setdefault(d, set()).update(det.categories)
    answers, asked, owner = [], [], []
    for d, ks in flagged.items():
        msgs = dialogues[d]
        clients = [m["content"] for m in msgs if m["role"] == "user"]
        replies = [m["content"] for m in msgs if m["role"] == "assistant"]
        for k in range(ks[0], len(replies)):
            answers.append(replies[k])
            asked.append(clients[k])
            owner.append(d)
    checks = detector.check_answers(answers, asked) if answers else []
    escalated: dict[int, bool] = {}
    for d, chk in zip(owner, checks, strict=True):
        escalated[d] = escalated.get(d, False) or chk.escalated
    out = []
    for d in range(len(dialogues)):
        if d in flagged:
            out.append({"crisis_flag": True, "crisis_turns": ",".join(str(k + 1) for k in flagged[d]),
                        "crisis_categories": ",".join(c for c in CRISIS_CATEGORIES if c in cats[d]) or None,
                        "crisis_escalated": escalated.get(d, False)})
        else:
            out.append({"crisis_flag": False, "crisis_turns": None, "crisis_categories": None,
                        "crisis_escalated": None})
    return out


@dataclass
class DialogueOutput:
    """Kept dialogues (before ids and the audit), rejects and figures of one source."""

    dialogues: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


def finalize_dialogues(
    found: Sequence[Mapping[str, Any]], *, instruction: str, cfg: DialoguesConfig, detector: Any
) -> tuple[list[dict[str, Any]], int]:
    """Table rows: ids, exact duplicates dropped (returns their count), split, crisis audit."""
    rows, seen, dups = [], set(), 0
    for d in found:
        did = dialogue_id(d["messages"])
        if did in seen:
            dups += 1
            continue
        seen.add(did)
        rows.append({"id": did, "instruction": instruction, "messages": [dict(m) for m in d["messages"]],
                     "n_turns": len(d["messages"]) // 2, "source": d["source"], "topic": d.get("topic"),
                     "page_ref": d.get("page_ref"), "split": split_for(did, cfg.benchmark_share),
                     "generator_model": d["generator_model"], "prompt_version": d["prompt_version"]})
    keep_one_training(rows)
    for row, audit in zip(rows, audit_dialogues(detector, [r["messages"] for r in rows]), strict=True):
        row.update(audit)
    return rows, dups


def benchmark_records(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """FastChat question records from the ``benchmark`` dialogues: the client turns, in order."""
    return [{"question_id": f"mt-{r['id'][:10]}", "category": r.get("topic") or "interview",
             "turns": [m["content"] for m in r["messages"] if m["role"] == "user"]}
            for r in rows if r["split"] == "benchmark"]


def write_dialogue_outputs(folder: Path, rows: Sequence[Mapping[str, Any]]) -> dict[str, Path]:
    """``dialogues.parquet`` and, when any dialogue is held out, ``multiturn_benchmark.jsonl`` (atomic)."""
    from mentalchat.io import atomic_path
    from mentalchat.schemas import DIALOGUES, write_table

    out = {"table": write_table(DIALOGUES.from_rows(rows), folder / TABLE_FILE, DIALOGUES)}
    bench = benchmark_records(rows)
    if bench:
        path = folder / BENCHMARK_FILE
        with atomic_path(path) as tmp:
            tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in bench), encoding="utf-8")
        out["benchmark"] = path
    return out


def gate_items(rows: Iterable[Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """(page_ref, field, text) of every interview dialogue turn, for the leak gate."""
    return [(r["page_ref"], f"dialogue {m['role']} turn {i // 2 + 1}", m["content"])
            for r in rows if r["source"] == "interview" and r.get("page_ref")
            for i, m in enumerate(r["messages"])]


def window_fingerprints(
    page_refs: Mapping[str, Sequence[str]], rows: Iterable[Mapping[str, Any]]
) -> dict[str, list[str]]:
    """The leak gate's keys of each interview dialogue: the union over the pages of its window."""
    out = {}
    for r in rows:
        ref = r.get("page_ref")
        if r["source"] != "interview" or not ref:
            continue
        tid, span = ref.rsplit(":", 1)
        first, last = (int(x) for x in span.split("-"))
        out[ref] = sorted({k for p in range(first, last + 1) for k in page_refs.get(f"{tid}:{p}", ())})
    return out


# --------------------------------------------------------------------------------------------
# The two sources
# --------------------------------------------------------------------------------------------
def run_interview_dialogues(
    cfg: Any,  # DatasetConfig
    page_texts: Mapping[str, Mapping[int, str]],
    engine_cfg: EngineConfig,
    *,
    runner: Callable[[list[ChatRequest], EngineConfig], list[ChatResult]] | None = None,
) -> DialogueOutput:
    """Windows of de-identified pages → dialogues (one local-engine call per window)."""
    from mentalchat.dataset.deid import get_deidentifier
    from mentalchat.dataset.synthetic import _supports_json

    dcfg: DialoguesConfig = cfg.dialogues
    reqs = window_requests(page_texts, dcfg, json_schema=_supports_json(engine_cfg),
                           base_sampling=engine_cfg.sampling)
    if runner is None:
        from mentalchat.engine import run_requests

        def runner(r: list[ChatRequest], c: EngineConfig) -> list[ChatResult]:
            return run_requests(r, c, config_key=f"engines.{cfg.interview.paraphrase_engine}",
                                stage="dataset (interview dialogues)")
    results = runner(reqs, engine_cfg) if reqs else []
    deid = get_deidentifier(cfg.deid)
    out = DialogueOutput()
    counts: Counter = Counter()
    for req, res in zip(reqs, results, strict=True):
        got = process_window_result(res, deid, dcfg)
        counts.update(got.output_counts)
        if got.filter is None:
            out.dialogues.append({"messages": got.messages, "source": "interview", "topic": None,
                                  "page_ref": req.id, "generator_model": res.model or engine_cfg.label,
                                  "prompt_version": PROMPT_VERSION})
        else:
            out.rejects.append({"source": "interview", "filter": got.filter, "reason": got.reason,
                                "page_ref": req.id, "topic": None})
    out.stats = {"windows": len(reqs), "kept": len(out.dialogues), "rejected": len(out.rejects),
                 "output_deid_counts": dict(counts), "prompt_version": PROMPT_VERSION, "engine": engine_cfg.label}
    return out


class _RoundRunner:
    """Runs round after round on one engine where it lives in this process (a vLLM engine starts
    slowly); on a Ray cluster each round is one :func:`~mentalchat.engine.run_requests` pool run."""

    def __init__(self, name: str | None) -> None:
        self.name = name
        self.engine: Any = None

    def __call__(self, requests: list[ChatRequest], cfg: EngineConfig) -> list[ChatResult]:
        from mentalchat.engine import run_requests
        from mentalchat.engine.runner import _ray_running

        if cfg.backend == "vllm" and _ray_running():
            return run_requests(requests, cfg, config_key=f"engines.{self.name}",
                                stage="dataset (synthetic dialogues)")
        if self.engine is None:
            from mentalchat.engine.base import create_engine

            self.engine = create_engine(cfg)
        return self.engine.chat_batch(requests)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None


def _opening_requests(slots: list[str], scfg: Any, dcfg: DialoguesConfig, ecfg: EngineConfig,
                      use_json: bool) -> list[ChatRequest]:
    from mentalchat.dataset.synthetic import MESSAGES_SYSTEM, _messages_schema

    k = scfg.messages_per_call
    reqs = []
    for b in range(0, len(slots), k):
        batch = slots[b:b + k]
        listing = "\n".join(f"{i + 1}. {t}" for i, t in enumerate(batch))
        reqs.append(ChatRequest(
            id=f"dlg-open-{b // k:05d}",
            messages=[ChatMessage(role="system", content=MESSAGES_SYSTEM.format(min_words=max(dcfg.min_words, 1))),
                      ChatMessage(role="user", content=OPENING_USER.format(k=len(batch), topics=listing))],
            sampling=_sampling(ecfg.sampling, dcfg.max_tokens),
            json_schema=_messages_schema(len(batch)) if use_json else None,
            metadata={"slots": batch},
        ))
    return reqs


def _render(messages: Sequence[Mapping[str, str]]) -> str:
    return "\n\n".join(f"{'Person' if m['role'] == 'user' else 'Counsellor'}: {m['content']}" for m in messages)


def run_synthetic_dialogues(
    cfg: Any,  # DatasetConfig
    work_dir: Path,
    *,
    runner: Callable[[list[ChatRequest], EngineConfig], list[ChatResult]] | None = None,
) -> DialogueOutput:
    """``synthetic_count`` conversations: openings over the topics, then counsellor and client
    turns round by round (checkpointed under ``work_dir``)."""
    from mentalchat.dataset.dedup import near_duplicates
    from mentalchat.dataset.synthetic import (
        CallLog,
        _batch_runner,
        _supports_json,
        load_topics,
        parse_messages,
        plan_slots,
        run_logged,
    )

    dcfg: DialoguesConfig = cfg.dialogues
    name = cfg.dialogue_engine_name()
    if not name:
        from mentalchat.config import ConfigError

        raise ConfigError("dataset.dialogues.synthetic_count > 0 needs dialogues.synthetic_engine "
                          "(or synthetic.engine)")
    ecfg = cfg.engine(name)
    out = DialogueOutput()
    calllog = CallLog(work_dir / "dialogue_calls.jsonl")
    chunk = 10**9 if ecfg.backend in ("vllm", "transformers") else cfg.synthetic.chunk_size
    owned = None
    if runner is None:
        if ecfg.batch is not None:
            runner, chunk = _batch_runner(work_dir / "_dialogue_batches.json"), 10**9
        else:
            runner = owned = _RoundRunner(name)
    cost = 0.0
    calls = Counter()

    def reject(flt: str, why: str, topic: str | None) -> None:
        out.rejects.append({"source": "synthetic", "filter": flt, "reason": why, "topic": topic, "page_ref": None})

    def run(reqs: list[ChatRequest], step: str) -> list[ChatResult]:
        nonlocal cost
        res, new = run_logged(reqs, ecfg, calllog, chunk_size=chunk, runner=runner)
        calls[f"{step}_requests"] += len(reqs)
        calls[f"{step}_new_calls"] += new
        cost += sum(r.cost_usd for r in res if not r.cached)
        return res

    try:
        topics = load_topics(cfg.synthetic.topics)
        seed = cfg.effective_seed + 104729  # not the QA path's draw: other topics, other openings
        slots = plan_slots(topics, dcfg.synthetic_count, seed)
        reqs = _opening_requests(slots, cfg.synthetic, dcfg, ecfg, _supports_json(ecfg))
        openings: list[tuple[str, str]] = []
        for req, res in zip(reqs, run(reqs, "openings"), strict=True):
            batch = req.metadata["slots"]
            msgs = parse_messages(res.text) if res.ok else []
            if res.ok and res.finish_reason == "length" and msgs:
                msgs = msgs[:-1]
            for j, t in enumerate(batch):
                if not res.ok:
                    reject("engine_error", (res.error or "no text")[:500], t)
                elif j >= len(msgs):
                    reject("missing", f"batch {req.id} returned {len(msgs)} of {len(batch)} openings", t)
                elif problem := turn_problem("user", msgs[j], dcfg):
                    reject(*problem, t)
                else:
                    openings.append((t, msgs[j]))
        dups = near_duplicates([m for _, m in openings], threshold=dcfg.dedup_threshold)
        rng = random.Random(seed)
        convs: list[dict[str, Any]] = []
        for i, (t, m) in enumerate(openings):
            if i in dups:
                reject("near_duplicate",
                       f"opening: MinHash Jaccard >= {dcfg.dedup_threshold} with opening {dups[i]}", t)
                continue
            convs.append({"topic": t, "messages": [{"role": "user", "content": m}], "model": None,
                          "target": rng.randint(dcfg.min_turns, dcfg.max_turns), "stop": None, "done": False})

        sampling = _sampling(ecfg.sampling, dcfg.max_tokens)
        fmt = {"min_words": max(dcfg.min_words, 1), "max_words": dcfg.max_words}
        for k in range(1, dcfg.max_turns + 1):
            alive = [c for c in convs if not c["done"]]
            reqs = [ChatRequest(id=f"dlg-{i:05d}-a{k}", sampling=sampling, messages=[
                ChatMessage(role="system", content=COUNSELLOR_SYSTEM.format(**fmt)),
                *(ChatMessage(role=m["role"], content=m["content"]) for m in c["messages"])])
                for i, c in enumerate(alive)]
            for c, res in zip(alive, run(reqs, "counsellor"), strict=True):
                _take(c, "assistant", res, dcfg)
            alive = [c for c in convs if not c["done"] and len(c["messages"]) // 2 < c["target"]]
            for c in convs:
                if not c["done"] and len(c["messages"]) // 2 >= c["target"]:
                    c["done"] = True
            reqs = [ChatRequest(id=f"dlg-{i:05d}-u{k + 1}", sampling=sampling, messages=[
                ChatMessage(role="system", content=CLIENT_SYSTEM.format(topic=c["topic"].lower(), **fmt)),
                ChatMessage(role="user", content=CLIENT_USER.format(conversation=_render(c["messages"])))])
                for i, c in enumerate(alive)]
            for c, res in zip(alive, run(reqs, "client"), strict=True):
                _take(c, "user", res, dcfg)
    finally:
        if owned is not None:
            owned.close()

    for c in convs:
        kept, flt, why = check_dialogue(normalise_turns((m["role"], m["content"]) for m in c["messages"]), dcfg)
        if flt is not None:
            if c["stop"] is not None:
                flt, why = c["stop"][0], f"{c['stop'][1]}; {len(kept) // 2} exchanges before it (< {dcfg.min_turns})"
            reject(flt, why, c["topic"])
            continue
        out.dialogues.append({"messages": kept, "source": "synthetic", "topic": c["topic"], "page_ref": None,
                              "generator_model": c["model"] or ecfg.label,
                              "prompt_version": SYNTHETIC_PROMPT_VERSION})
    out.stats = {"engine": name, "requested": dcfg.synthetic_count, "kept": len(out.dialogues),
                 "rejected": len(out.rejects), "calls": dict(calls), "cost_usd": round(cost, 6),
                 "prompt_version": SYNTHETIC_PROMPT_VERSION}
    return out


def _take(conv: dict[str, Any], role: str, res: ChatResult, cfg: DialoguesConfig) -> None:
    """Append one generated turn, or end the conversation with the reason it stopped."""
    if not res.ok:
        conv["done"], conv["stop"] = True, ("engine_error", (res.error or "no text")[:500])
        return
    text = (res.text or "").strip()
    problem = turn_problem(role, text, cfg)
    if problem is None and (cut := truncated(res.finish_reason)):
        problem = ("truncated", cut)
    if problem is not None:
        conv["done"], conv["stop"] = True, problem
        return
    conv["messages"].append({"role": role, "content": text})
    conv["model"] = conv["model"] or res.model
