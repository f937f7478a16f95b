"""Synthetic path: patient messages over weighted topics, then one counsellor answer per message.

Step 1 asks for batches of patient messages; each slot of a batch draws its topic from the
topic weights (the 33 CounselChat topics by default), so the topic mix follows the distribution
whatever the model prefers to write about. Too-short messages and near-duplicates are dropped
before step 2, which asks for one counsellor answer per remaining message; answers that refuse,
disclaim being an AI, stop at the token limit or are too short are dropped.

Every finished call is appended to a checkpoint log (``work_dir``) keyed by a hash of the
request and engine, so a rerun after a crash repeats no call that had completed. Rate limits,
retries and budgets are the engine's (``engines.<name>.http``). An engine with ``batch`` set sends
each step through its provider's batch API (half price), the batch ids journaled in ``work_dir``
so a rerun collects open batches instead of submitting them again.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mentalchat.config import ConfigError
from mentalchat.engine.config import EngineConfig
from mentalchat.engine.preflight import PreflightCheck, PreflightMode, run_preflight, should_preflight
from mentalchat.engine.types import ChatMessage, ChatRequest, ChatResult, SamplingConfig, request_key

__all__ = [
    "PROMPT_VERSION",
    "CallLog",
    "SyntheticOutput",
    "estimate",
    "load_topics",
    "parse_messages",
    "plan_slots",
    "run_synthetic",
]

log = logging.getLogger(__name__)

PROMPT_VERSION = "synthetic-v1"

MESSAGES_SYSTEM = """You write realistic messages that people send to an online counselling \
service, for training a supportive counselling assistant. Each message is written by a different \
person in the first person, in everyday language, describing their own situation, feelings and \
what they have tried, and asking for help. Vary age, background, tone and detail. Never include \
real names, addresses or contact details. Each message is at least {min_words} words."""

MESSAGES_USER = """Write {k} messages, one for each topic below, in this order:
{topics}

Reply with a JSON object {{"messages": [{{"topic": ..., "message": ...}}, ...]}} holding exactly \
{k} items and nothing else."""

ANSWER_SYSTEM = """You are an experienced, warm counsellor replying to a message sent to a \
counselling service. Reflect what the person said and how they feel, validate them without \
judging, and offer clear, practical steps they can take. Where it would help, suggest ongoing \
professional support. If the person may be in danger or may harm someone, urge them to get \
immediate help from emergency services or a crisis line. Write in plain prose, at least \
{min_words} words."""


def load_topics(spec: str | dict[str, float]) -> dict[str, float]:
    """Topic → probability (normalised). ``counselchat``: the bundled 33-topic distribution."""
    if isinstance(spec, dict):
        raw = spec
    else:
        if spec == "counselchat":
            text = (resources.files("mentalchat") / "data" / "topics_counselchat.yaml").read_text("utf-8")
            source = "bundled topics_counselchat.yaml"
        else:
            path = Path(spec)
            if not path.is_file():
                raise ConfigError(f"dataset.synthetic.topics: file not found: {spec}")
            text = path.read_text("utf-8")
            source = str(path)
        doc = yaml.safe_load(text) or {}
        raw = doc.get("topics", doc) if isinstance(doc, dict) else None
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: expected a mapping topic: weight (optionally under 'topics:')")
    topics = {str(k).strip(): float(v) for k, v in raw.items()}
    bad = [k for k, v in topics.items() if not (v >= 0 and math.isfinite(v))]
    total = sum(topics.values())
    if bad or total <= 0:
        raise ConfigError(f"dataset.synthetic.topics: weights must be non-negative and sum > 0 (bad: {bad})")
    return {k: v / total for k, v in topics.items()}


def plan_slots(topics: dict[str, float], n: int, seed: int) -> list[str]:
    """One topic per message slot, drawn independently from the weights (seeded)."""
    rng = random.Random(seed)
    names = list(topics)
    return rng.choices(names, weights=[topics[t] for t in names], k=n)


def _messages_schema(k: int) -> dict[str, Any]:
    item = {
        "type": "object",
        "properties": {"topic": {"type": "string"}, "message": {"type": "string", "minLength": 1, "maxLength": 3000}},
        "required": ["topic", "message"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"messages": {"type": "array", "items": item, "minItems": k, "maxItems": k}},
        "required": ["messages"],
        "additionalProperties": False,
    }


def parse_messages(text: str | None) -> list[str]:
    """Messages from JSON (object with ``messages`` or a bare list), else a numbered list."""
    if not text or not text.strip():
        return []
    cands = [text.strip()]
    fence = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    if fence:
        cands.append(fence.group(1))
    for open_, close in (("{", "}"), ("[", "]")):
        a, b = text.find(open_), text.rfind(close)
        if 0 <= a < b:
            cands.append(text[a:b + 1])
    for c in cands:
        try:
            obj = json.loads(c, strict=False)
        except (json.JSONDecodeError, ValueError):
            continue
        items = obj.get("messages") if isinstance(obj, dict) else obj
        if isinstance(items, list):
            out = []
            for it in items:
                msg = it.get("message") if isinstance(it, dict) else it
                if isinstance(msg, str) and msg.strip():
                    out.append(msg.strip())
            if out:
                return out
    # JSON cut off by the token limit: keep the messages whose strings closed.
    salvaged = []
    for m in re.finditer(r'"message"\s*:\s*"((?:[^"\\]|\\.)*)"', text):
        try:
            salvaged.append(json.loads(f'"{m.group(1)}"', strict=False).strip())
        except json.JSONDecodeError:
            continue
    if any(salvaged):
        return [m for m in salvaged if m]
    parts = re.split(r"(?m)^\s*(?:\d+[.)]|[-*])\s+", text)
    return [p.strip() for p in parts if len(p.strip().split()) >= 3]


def _supports_json(cfg: EngineConfig) -> bool:
    """Whether the backend class honours ``json_schema`` (without building an engine)."""
    from mentalchat.engine import base

    if cfg.backend not in base.BACKENDS:
        base._load_builtin(cfg.backend)
    return bool(getattr(base.BACKENDS.get(cfg.backend), "supports_json_schema", False))


def _sampling(cfg: EngineConfig, max_tokens: int | None) -> SamplingConfig | None:
    return cfg.sampling.model_copy(update={"max_tokens": max_tokens}) if max_tokens else None


class CallLog:
    """Append-only JSONL of finished calls keyed by request hash: what makes reruns free."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.done: dict[str, ChatResult] = {}
        if self.path.is_file():
            with self.path.open(encoding="utf-8") as fh:
                for line in fh:
                    try:
                        row = json.loads(line)
                        self.done[row["key"]] = ChatResult.model_validate(row["result"])
                    except (json.JSONDecodeError, KeyError, ValueError):
                        continue  # a line cut by a crash: that call is simply redone

    def add(self, pairs: list[tuple[str, ChatResult]]) -> None:
        if not pairs:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            for key, res in pairs:
                fh.write(json.dumps({"key": key, "result": res.model_dump(mode="json")}) + "\n")
                self.done[key] = res
            fh.flush()
            os.fsync(fh.fileno())


def _key(cfg: EngineConfig, req: ChatRequest) -> str:
    return request_key(f"{cfg.backend}|{cfg.base_url or ''}", cfg.model, req, req.sampling or cfg.sampling)


def run_logged(
    requests: list[ChatRequest],
    cfg: EngineConfig,
    calllog: CallLog,
    *,
    chunk_size: int,
    runner: Callable[[list[ChatRequest], EngineConfig], list[ChatResult]] | None = None,
) -> tuple[list[ChatResult], int]:
    """Results for ``requests``, from the log where a call already finished; returns (results, new calls)."""
    if runner is None:
        from mentalchat.engine import run_requests as runner
    keys = [_key(cfg, r) for r in requests]
    todo = [i for i, k in enumerate(keys) if k not in calllog.done]
    out: dict[int, ChatResult] = {i: calllog.done[k].model_copy(update={"id": requests[i].id, "cached": True})
                                  for i, k in enumerate(keys) if k in calllog.done}
    for start in range(0, len(todo), chunk_size):
        idx = todo[start:start + chunk_size]
        results = runner([requests[i] for i in idx], cfg)
        finished = []
        for i, res in zip(idx, results, strict=True):
            out[i] = res
            if res.ok:  # failed calls are not logged: a rerun tries them again
                finished.append((keys[i], res))
        calllog.add(finished)
    return [out[i] for i in range(len(requests))], len(todo)


@dataclass
class SyntheticOutput:
    qa: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    cost_usd: float = 0.0


def _batch_runner(journal: Path) -> Callable[[list[ChatRequest], EngineConfig], list[ChatResult]]:
    """A runner sending requests through the engine's batch API (half price, resumable)."""

    def run(requests: list[ChatRequest], cfg: EngineConfig) -> list[ChatResult]:
        from mentalchat.engine.batch import run_batch

        return run_batch(requests, cfg, journal=journal)

    return run


def _message_requests(slots: list[str], scfg: Any, ecfg: EngineConfig, use_json: bool) -> list[ChatRequest]:
    k = scfg.messages_per_call
    reqs = []
    for b in range(0, len(slots), k):
        batch = slots[b:b + k]
        listing = "\n".join(f"{i + 1}. {t}" for i, t in enumerate(batch))
        reqs.append(ChatRequest(
            id=f"msg-{b // k:05d}",
            messages=[
                ChatMessage(role="system", content=MESSAGES_SYSTEM.format(min_words=max(scfg.min_message_words, 1))),
                ChatMessage(role="user", content=MESSAGES_USER.format(k=len(batch), topics=listing)),
            ],
            sampling=_sampling(ecfg, scfg.message_max_tokens),
            json_schema=_messages_schema(len(batch)) if use_json else None,
            metadata={"slots": batch},
        ))
    return reqs


def _answer_request(i: int, message: str, scfg: Any, ecfg: EngineConfig) -> ChatRequest:
    return ChatRequest(
        id=f"ans-{i:06d}",
        messages=[
            ChatMessage(role="system", content=ANSWER_SYSTEM.format(min_words=max(scfg.min_answer_words, 1))),
            ChatMessage(role="user", content=message),
        ],
        sampling=_sampling(ecfg, scfg.answer_max_tokens),
    )


def estimate(scfg: Any, ecfg: EngineConfig, calllog: CallLog | None = None) -> dict[str, Any]:
    """Calls and cost of a run before making it (``--dry-run``)."""
    from mentalchat.engine.pricing import resolve_price

    k = scfg.messages_per_call
    n1 = math.ceil(scfg.n_messages / k)
    n2 = scfg.n_messages
    max1 = scfg.message_max_tokens or ecfg.sampling.max_tokens
    max2 = scfg.answer_max_tokens or ecfg.sampling.max_tokens
    in1 = (len(MESSAGES_SYSTEM) + len(MESSAGES_USER) + 25 * k) // 4
    in2 = len(ANSWER_SYSTEM) // 4 + 200  # system prompt + a ~150-word message
    typical1 = min(max1, 220 * k)  # ~160 words per message
    typical2 = min(max2, 450)  # ~330 words per answer
    price = resolve_price(ecfg, ecfg.base_url)
    done = 0
    if calllog is not None:
        done = len(calllog.done)
    typ = (n1 * in1 + n2 * in2) * price[0] / 1e6 + (n1 * typical1 + n2 * typical2) * price[1] / 1e6
    upper = (n1 * in1 + n2 * in2) * price[0] / 1e6 + (n1 * max1 + n2 * max2) * price[1] / 1e6
    return {
        "engine": ecfg.label, "calls_step1_messages": n1, "calls_step2_answers_max": n2,
        "calls_total_max": n1 + n2, "calls_already_done": done,
        "price_usd_per_mtok": {"in": price[0], "out": price[1]},
        "est_cost_usd_typical": round(typ, 4), "est_cost_usd_upper_bound": round(upper, 4),
    }


def run_synthetic(
    cfg: Any,  # DatasetConfig
    work_dir: Path,
    *,
    runner: Callable[[list[ChatRequest], EngineConfig], list[ChatResult]] | None = None,
    preflight: PreflightMode | None = None,
) -> SyntheticOutput:
    """Both steps with checkpoints under ``work_dir``; returns pair rows and reject rows."""
    from mentalchat.dataset.dedup import near_duplicates
    from mentalchat.dataset.filters import refusal_or_disclaimer, too_short, truncated

    scfg = cfg.synthetic
    ecfg = cfg.engine(scfg.engine)
    out = SyntheticOutput()
    topics = load_topics(scfg.topics)
    slots = plan_slots(topics, scfg.n_messages, cfg.effective_seed)
    use_json = _supports_json(ecfg)
    calllog = CallLog(work_dir / "calls.jsonl")
    # Local engines cost nothing per call and start slowly: one chunk. API calls: small chunks.
    chunk = 10**9 if ecfg.backend in ("vllm", "transformers") else scfg.chunk_size
    if runner is None and ecfg.backend == "vllm":
        import functools

        from mentalchat.engine import run_requests

        runner = functools.partial(run_requests, config_key=f"engines.{scfg.engine}", stage="dataset (synthetic path)")
    if ecfg.batch is not None and runner is None:
        # Batch mode: each step is one batch run, its batch ids journaled beside the call log.
        runner = _batch_runner(work_dir / "_batches.json")
        chunk = 10**9

    def reject(flt: str, reason: str, topic: str | None, inp: str | None, outp: str | None) -> None:
        out.rejects.append({"source": "synthetic", "filter": flt, "reason": reason, "topic": topic,
                            "page_ref": None, "input": inp, "output": outp})

    # Step 1: patient messages (after one check call, when the sweep is worth checking).
    reqs1 = _message_requests(slots, scfg, ecfg, use_json)
    mode = preflight or scfg.preflight
    if reqs1 and ecfg.is_http and should_preflight(mode, estimate(scfg, ecfg)["est_cost_usd_typical"],
                                                   scfg.preflight_min_cost_usd):
        first = reqs1[0]
        check = PreflightCheck(scfg.engine or ecfg.label, ecfg, first, lambda text: bool(parse_messages(text)),
                               label="patient messages")
        (res,) = run_preflight([check], section="dataset.engines", echo=lambda m: log.info("%s", m))
        calllog.add([(_key(ecfg, first), res)])
    res1, new1 = run_logged(reqs1, ecfg, calllog, chunk_size=chunk, runner=runner)
    messages: list[tuple[str, str]] = []  # (topic, message)
    for req, res in zip(reqs1, res1, strict=True):
        batch = req.metadata["slots"]
        out.cost_usd += 0.0 if res.cached else res.cost_usd
        if not res.ok:
            for t in batch:
                reject("engine_error", (res.error or "no text")[:500], t, None, None)
            continue
        msgs = parse_messages(res.text)
        if res.finish_reason == "length" and msgs:
            msgs = msgs[:-1]  # the last message of a cut batch is cut too
        for j, t in enumerate(batch):
            if j >= len(msgs):
                reject("missing", f"batch {req.id} returned {len(msgs)} of {len(batch)} messages", t, None, None)
                continue
            reason = too_short(msgs[j], scfg.min_message_words, "message")
            if reason:
                reject("too_short", reason, t, msgs[j], None)
                continue
            messages.append((t, msgs[j]))
    dups = near_duplicates([m for _, m in messages], threshold=scfg.dedup_threshold)
    kept = []
    for i, (t, m) in enumerate(messages):
        if i in dups:
            reject("near_duplicate", f"MinHash Jaccard >= {scfg.dedup_threshold} with message {dups[i]}", t, m, None)
        else:
            kept.append((t, m))

    # Step 2: one answer per message.
    reqs2 = [_answer_request(i, m, scfg, ecfg) for i, (_, m) in enumerate(kept)]
    res2, new2 = run_logged(reqs2, ecfg, calllog, chunk_size=chunk, runner=runner)
    for (t, m), res in zip(kept, res2, strict=True):
        out.cost_usd += 0.0 if res.cached else res.cost_usd
        if not res.ok:
            reject("engine_error", (res.error or "no text")[:500], t, m, None)
            continue
        answer = res.text.strip()
        cut = truncated(res.finish_reason) if scfg.drop_truncated else None
        for flt, reason in (("truncated", cut),
                            ("refusal", refusal_or_disclaimer(answer)),
                            ("too_short", too_short(answer, scfg.min_answer_words, "answer"))):
            if reason:
                reject(flt, reason, t, m, answer)
                break
        else:
            out.qa.append({"input": m, "output": answer, "source": "synthetic", "topic": t,
                           "page_ref": None, "generator_model": res.model or ecfg.label,
                           "prompt_version": PROMPT_VERSION})
    out.calls = {"step1_requests": len(reqs1), "step1_new_calls": new1,
                 "step2_requests": len(reqs2), "step2_new_calls": new2}
    return out
