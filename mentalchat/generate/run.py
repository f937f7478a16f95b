"""The answer stage: every question through every base model and every adapter, in one pass.

Rows are grouped by base model: one vLLM engine per base model (replicated by
``vllm.replicas`` through Ray Data) answers that model untuned and through each of its LoRA
adapters, the adapter chosen per row. A multi-turn question is answered turn by turn: all
questions' turn k in one round, each asked with the model's own answers to turns 1..k-1 in
context, one answers row per turn (``turn`` = k; null for single-turn questions). The output folder is published atomically: the answers
table, FastChat ``model_answer`` files for FastChat's tools, and a summary naming any failed rows.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mentalchat.config import ConfigError
from mentalchat.core.questions import Question, load_questions
from mentalchat.engine.config import EngineConfig
from mentalchat.engine.types import ChatRequest, ChatResult
from mentalchat.errors import InputError, InputNotFoundError, StageError, UsageError
from mentalchat.generate.config import GenerateConfig
from mentalchat.generate.prompts import ModelPrompts, prepare_prompts
from mentalchat.io import atomic_dir, write_done_marker, write_json_atomic
from mentalchat.schemas import get_table, write_table

__all__ = ["AnswerModel", "GenerateSummary", "answer_models", "read_adapters", "run_generate"]

log = logging.getLogger(__name__)

_SEP = "\x1f"
_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


@dataclass(frozen=True)
class AnswerModel:
    """One row source: a base model untuned (``adapter`` None) or with a LoRA adapter."""

    model_id: str
    base_model: str  # label
    base_path: str  # what the engine loads
    data_config: str
    adapter: str | None = None
    prompt_format: str = "auto"


@dataclass
class GenerateSummary:
    questions: int = 0
    models: list[str] = field(default_factory=list)
    answers: int = 0
    failed: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    resumed: int = 0  # answers taken from the journal of an earlier, crashed run
    engines_at_once: int = 1
    engine_times: list[dict[str, Any]] = field(default_factory=list)  # per base model: wall-clock start, end
    multi_turn: int = 0  # questions with more than one client turn (one answer row per turn)


# ---------------------------------------------------------------------------------------------
# Models


def _first(rec: dict[str, Any], *names: str) -> Any:
    for n in names:
        if rec.get(n) not in (None, ""):
            return rec[n]
    return None


def read_adapters(path: str | Path) -> list[AnswerModel]:
    """Adapters from the fine-tuning manifest: a manifest Parquet, or a folder holding one.

    A folder without a manifest is read as adapter folders (each with ``adapter_config.json``;
    the base model comes from its ``base_model_name_or_path``).
    """
    path = Path(path)
    manifest: Path | None = None
    if path.is_file():
        manifest = path
    elif path.is_dir():
        candidates = [path / "manifest.parquet"] + sorted(path.glob("*.parquet"))
        manifest = next((c for c in candidates if c.is_file()), None)
    else:
        raise InputNotFoundError(f"adapters not found: {path}", path=path)
    if manifest is None:
        return _scan_adapter_dirs(path)
    from mentalchat.schemas import read_table

    table = read_table(manifest, "manifest")  # SchemaError (a ValueError) names the file
    out = []
    for i, rec in enumerate(table.to_pylist()):
        where = f"{manifest}: row {i}"
        status = _first(rec, "status")
        if status not in (None, "ok", "done", "completed", "succeeded", "success"):
            log.warning("%s: skipping adapter with status %r", where, status)
            continue
        adapter = _first(rec, "adapter_path", "adapter_dir", "adapter")
        base_path = _first(rec, "base_model_path", "base_path", "model_path", "base_model")
        if adapter is None or base_path is None:
            raise InputError(f"{where}: needs an adapter path and a base model (columns {sorted(rec)})")
        adapter_path = Path(adapter)
        if not adapter_path.is_absolute():
            adapter_path = manifest.parent / adapter_path
        if not (adapter_path / "adapter_config.json").is_file():
            raise InputError(f"{where}: adapter folder {adapter_path} has no adapter_config.json")
        base_label = str(_first(rec, "base_model", "base_model_name") or base_path)
        data_config = str(_first(rec, "data_config") or "unknown")
        model_id = str(_first(rec, "model_id", "model", "name") or f"{base_label}-{data_config}")
        out.append(
            AnswerModel(
                model_id=model_id, base_model=base_label, base_path=str(base_path), data_config=data_config,
                adapter=str(adapter_path), prompt_format=_format_setting(_first(rec, "prompt_format")),
            )
        )
    return out


def _format_setting(value: Any) -> str:
    """A manifest's resolved format id back to the formatter setting that reproduces it."""
    if value is None:
        return "auto"
    value = str(value)
    if value in ("auto", "chat_template", "instruction"):
        return value
    if value.startswith("chat_template"):
        return "chat_template"
    from mentalchat.core.prompt_format import INSTRUCTION_FORMAT_ID

    return "instruction" if value == INSTRUCTION_FORMAT_ID else "auto"


def _scan_adapter_dirs(folder: Path) -> list[AnswerModel]:
    out = []
    for cfg_file in sorted(folder.rglob("adapter_config.json")):
        adapter = cfg_file.parent
        try:
            meta = json.loads(cfg_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{cfg_file}: unreadable adapter config: {exc}", path=cfg_file) from None
        base = meta.get("base_model_name_or_path")
        if not base:
            raise InputError(f"{cfg_file}: no base_model_name_or_path; use a manifest to name the base model", path=cfg_file)
        label = Path(str(base)).name
        out.append(AnswerModel(model_id=adapter.name, base_model=label, base_path=str(base),
                               data_config="unknown", adapter=str(adapter)))
    if not out:
        raise InputNotFoundError(f"{folder}: no manifest and no adapter folders (adapter_config.json)", path=folder)
    return out


def answer_models(cfg: GenerateConfig, adapters: Sequence[AnswerModel]) -> list[AnswerModel]:
    """Base models (configured, plus each adapter's base when ``include_base``) and the adapters."""
    models: list[AnswerModel] = []
    for spec in cfg.base_models:
        models.append(AnswerModel(model_id=spec.label, base_model=spec.label, base_path=spec.path,
                                  data_config=spec.data_config, prompt_format=spec.prompt_format))
    if cfg.include_base:
        known = {m.base_path for m in models}
        for a in adapters:
            if a.base_path not in known:
                known.add(a.base_path)
                models.append(AnswerModel(model_id=a.base_model, base_model=a.base_model, base_path=a.base_path,
                                          data_config="base", prompt_format=a.prompt_format))
    models.extend(adapters)
    ids = [m.model_id for m in models]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ConfigError(f"model ids must be unique across base models and adapters; repeated: {dupes}")
    if not models:
        raise UsageError("generate: no models to answer with (no base_models configured and no adapters given)")
    return models


def _lora_rank(adapters: Sequence[AnswerModel]) -> int:
    ranks = []
    for a in adapters:
        try:
            ranks.append(int(json.loads((Path(a.adapter or "") / "adapter_config.json").read_text())["r"]))
        except (OSError, KeyError, ValueError, TypeError):
            continue
    need = max(ranks, default=8)
    return next((r for r in _LORA_RANKS if r >= need), need)


def _engine_for(
    template: EngineConfig, base_path: str, adapters: Sequence[AnswerModel], prompts: ModelPrompts, cfg: GenerateConfig
) -> EngineConfig:
    update: dict[str, Any] = {"model": base_path, "name": None}
    if template.backend == "vllm":
        vopts: dict[str, Any] = {
            "engine_kwargs": {**template.vllm.engine_kwargs, **prompts.engine_kwargs()},
        }
        if adapters:
            # One LoRA slot more than adapters: with every slot taken, vLLM (0.32, CPU, measured)
            # applies an adapter to the batch's base-model rows too.
            vopts.update(enable_lora=True, max_lora_rank=max(template.vllm.max_lora_rank, _lora_rank(adapters)),
                         max_loras=len(adapters) + 1)
        if cfg.replicas:
            vopts["replicas"] = cfg.replicas
        update["vllm"] = template.vllm.model_copy(update=vopts)
    else:
        if prompts.tokenizer_dir:
            raise ConfigError(f"{base_path}: the instruction prompt format needs the vllm backend")
        if cfg.replicas:  # the pool's size lives in the vllm section whatever the backend (run_on_dataset)
            update["vllm"] = template.vllm.model_copy(update={"replicas": cfg.replicas})
    return template.model_copy(update=update)


@dataclass
class _Group:
    """One engine's work: a base model (in one prompt format) untuned and through its adapters."""

    base_path: str
    models: list[AnswerModel]
    prompts: ModelPrompts
    engine: EngineConfig
    started: float = 0.0
    finished: float = 0.0


def _engines_at_once(cfg: GenerateConfig, engines: Sequence[EngineConfig], use_ray: bool | None) -> int:
    """How many base models' engines run at the same time: all when their pools fit the cluster together.

    In-process engines (no Ray) always take turns: two vLLM engines in one process share its memory.
    """
    limit = min(len(engines), cfg.engines_at_once or len(engines))
    if limit <= 1 or use_ray is False:
        return 1
    from mentalchat.engine.runner import _ray_running

    if use_ray is None and not (all(e.backend == "vllm" for e in engines) and _ray_running()):
        return 1
    from mentalchat.core.resources import ClusterShape, fits_together
    from mentalchat.engine.pools import engine_pool_ask

    asks = [engine_pool_ask(e, key="generate.engine") for e in engines[:limit]]
    cluster = ClusterShape.from_ray()
    while limit > 1 and not fits_together(asks[:limit], cluster):
        limit -= 1
    return limit


def _turn_digest(q: Question, k: int, answers: Sequence[str]) -> str:
    """What turn ``k``'s answer depends on: the question text (single-turn, as before), else the
    client turns up to k and the model's own answers before it (a re-asked turn 1 re-asks turn 2)."""
    from mentalchat.generate.journal import question_digest

    if not q.is_multi_turn:
        return question_digest(q.text)
    convo = [x for pair in zip(q.turns[: k - 1], answers, strict=True) for x in pair] + [q.turns[k - 1]]
    return question_digest(json.dumps(convo, ensure_ascii=False))


def _answer_group(
    g: _Group, questions: Sequence[Question], sampling: Any, params: str, instruction: str, cfg: GenerateConfig,
    use_ray: bool | None, journal_dir: Path,
) -> tuple[list[dict[str, Any]], list[dict[str, str]], int]:
    """Answer one group's (model, question, turn) triples not already in its journal; rows, failures, reused count.

    Round k asks turn k of every question that has one (single-turn questions are round 1), each
    with the model's own answers to turns 1..k-1 in context; a turn that failed ends its conversation.
    """
    from mentalchat.engine.runner import run_rounds
    from mentalchat.generate.journal import AnswerJournal

    shape = g.engine.model_dump(mode="json", exclude={"name"})
    shape["vllm"] = {k: v for k, v in shape["vllm"].items()
                     if k not in ("replicas", "cpus_per_replica", "gpus_per_replica", "accelerator_type", "batch_size")}
    journal = AnswerJournal(journal_dir, Path(g.base_path).name, {
        "engine": shape, "sampling": params, "instruction": instruction, "format": g.prompts.format_id,
        "adapters": sorted(str(m.adapter) for m in g.models if m.adapter)})
    earlier = journal.done() if cfg.resume else {}
    meta: dict[str, tuple[AnswerModel, Question, int, str]] = {}  # rid -> model, question, turn, digest
    rows: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    said: dict[tuple[str, str], list[str]] = defaultdict(list)  # (model, question) -> its answers so far
    reused = 0

    def rid_of(m: AnswerModel, q: Question, k: int) -> str:  # single-turn ids as before, so old journals resume
        return f"{m.model_id}{_SEP}{q.question_id}" + (f"{_SEP}{k}" if q.is_multi_turn else "")

    def row_of(res: ChatResult) -> dict[str, Any]:
        m, q, k, _ = meta[res.id]
        row = {
            "question_id": q.question_id, "model_id": m.model_id, "base_model": m.base_model,
            "data_config": m.data_config, "answer": res.text, "tokens_in": res.tokens_in,
            "tokens_out": res.tokens_out, "finish_reason": res.finish_reason,
            "engine": g.engine.backend, "params": params, "prompt_format": g.prompts.format_id,
        }
        if q.is_multi_turn:
            row["turn"] = k
        return row

    def round_requests(k: int) -> list[ChatRequest]:
        """Turn k's requests of the conversations still going, after taking what the journal holds."""
        nonlocal reused
        out: list[ChatRequest] = []
        for m in g.models:
            for q in questions:
                answers = said[(m.model_id, q.question_id)]
                if len(q.turns) < k or len(answers) != k - 1:
                    continue  # no turn k, or an earlier turn failed
                rid = rid_of(m, q, k)
                digest = _turn_digest(q, k, answers)
                meta[rid] = (m, q, k, digest)
                old = earlier.get(rid)
                if old is not None and old.get("question_digest") == digest:
                    rows.append(old["row"])
                    answers.append(old["row"]["answer"])
                    reused += 1
                    continue
                out.append(ChatRequest(id=rid, messages=g.prompts.conversation(q.turns[:k], answers),
                                       sampling=sampling, lora=m.adapter))
        return out

    most_turns = max((len(q.turns) for q in questions), default=1)
    turn = [1]

    def next_round(results: list[ChatResult]) -> list[ChatRequest]:
        """Take round k's results; build the next round that has anything to ask ([] when none is left)."""
        for res in results:
            m, q, k, _ = meta[res.id]
            if not res.ok:
                failures.append(_failure(m, q, k, res.error or "no text"))
                continue
            rows.append(row_of(res))
            said[(m.model_id, q.question_id)].append(res.text or "")
        while turn[0] < most_turns:
            turn[0] += 1
            requests = round_requests(turn[0])
            if requests:
                log.info("base %s: turn %d of multi-turn questions (%d requests)", g.base_path, turn[0], len(requests))
                return requests
        return []

    pending: list[dict[str, Any]] = []
    last_flush = [time.monotonic()]

    def record(res: ChatResult) -> None:  # batch the fsyncs: every 16 answers or 2 seconds
        if res.ok and res.id in meta:
            pending.append({"rid": res.id, "question_digest": meta[res.id][3], "row": row_of(res)})
        if len(pending) >= 16 or time.monotonic() - last_flush[0] > 2.0:
            journal.append(pending[:])
            pending.clear()
            last_flush[0] = time.monotonic()

    first = round_requests(1)
    log.info("answering %d questions with %d model(s) on base %s (%d requests)", len(questions), len(g.models),
             g.base_path, len(first))
    if not first:  # turn 1 came whole from the journal: the first round to ask is a later one
        first = next_round([])
    g.started = time.time()
    run_rounds(
        first, g.engine, next_round, use_ray=use_ray, stage="generate",
        config_key=f"engines.{cfg.engine}" if isinstance(cfg.engine, str) else "generate.engine",
        keys={"count": "generate.replicas"} if cfg.replicas else None, on_result=record,
    )
    journal.append(pending)
    g.finished = time.time()
    if reused:
        log.info("base %s: %d answers taken from the journal of an earlier run", g.base_path, reused)
    # a failed turn ends its conversation: the turns after it were not asked
    for m in g.models:
        for q in questions:
            answered = len(said[(m.model_id, q.question_id)])
            if q.is_multi_turn and answered < len(q.turns):
                for k in range(answered + 2, len(q.turns) + 1):
                    failures.append(_failure(m, q, k, f"not asked: turn {answered + 1} failed"))
    return rows, failures, reused


def _failure(m: AnswerModel, q: Question, k: int, error: str) -> dict[str, str]:
    """A failed (model, question[, turn]); single-turn failures keep their old three keys."""
    out = {"model_id": m.model_id, "question_id": q.question_id, "error": error}
    if q.is_multi_turn:
        out["turn"] = str(k)
    return out


# ---------------------------------------------------------------------------------------------
# The stage


def run_generate(
    cfg: GenerateConfig,
    questions_path: str | Path,
    output: str | Path,
    *,
    adapters: str | Path | None = None,
    use_ray: bool | None = None,
) -> GenerateSummary:
    """Answer every question with every model; publish ``output`` (answers.parquet, model_answer/)."""
    from mentalchat.config import config_hash

    output = Path(output)
    questions: list[Question] = load_questions(questions_path, limit=cfg.max_questions)
    if cfg.crisis_probes:
        from mentalchat.core.crisis_probes import load_probes

        known = {q.question_id for q in questions}
        questions += [p for p in load_probes() if p.question_id not in known]
    adapter_models = read_adapters(adapters) if adapters else []
    models = answer_models(cfg, adapter_models)
    template = cfg.engine_template()
    sampling = cfg.sampling or template.sampling
    instruction = cfg.instruction_text()
    work = output.parent / f".{output.name}.work"

    # One engine per (base model, prompt format): adapters trained on a format are asked in it.
    by_base: dict[tuple[str, str], list[AnswerModel]] = defaultdict(list)
    for m in models:
        fmt = cfg.prompt_format if cfg.prompt_format != "auto" else m.prompt_format
        by_base[(m.base_path, fmt)].append(m)

    from mentalchat.models.kit import resolve_model

    summary = GenerateSummary(questions=len(questions), models=[m.model_id for m in models],
                              multi_turn=sum(q.is_multi_turn for q in questions))
    params = json.dumps(sampling.model_dump(mode="json"), sort_keys=True)
    groups = []
    for (base_path, fmt), group in by_base.items():
        prompts = prepare_prompts(resolve_model(base_path), fmt, instruction, work, multi_turn=summary.multi_turn > 0)
        engine_cfg = _engine_for(template, base_path, [m for m in group if m.adapter], prompts, cfg)
        groups.append(_Group(base_path, group, prompts, engine_cfg))
    width = _engines_at_once(cfg, [g.engine for g in groups], use_ray)
    if width > 1:
        log.info("answering with %d base models' engines at once (they fit the cluster together)", width)
    summary.engines_at_once = width

    def answer(g: _Group) -> tuple[list[dict[str, Any]], list[dict[str, str]], int]:
        return _answer_group(g, questions, sampling, params, instruction, cfg, use_ray, work / "journal")

    if width > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(width, thread_name_prefix="generate") as pool:
            outcomes = list(pool.map(answer, groups))
    else:
        outcomes = [answer(g) for g in groups]
    summary.engine_times = [{"base": g.base_path, "started": g.started, "finished": g.finished} for g in groups]
    rows: list[dict[str, Any]] = []
    for got, failures, reused in outcomes:
        rows.extend(got)
        summary.failures.extend(failures)
        summary.resumed += reused
    # the same order whether answers came fresh, from the journal or from engines running at once
    model_rank = {m.model_id: i for i, m in enumerate(models)}
    question_rank = {q.question_id: i for i, q in enumerate(questions)}
    rows.sort(key=lambda r: (model_rank[r["model_id"]], question_rank[r["question_id"]], r.get("turn") or 0))
    summary.answers = len(rows)
    summary.failed = len(summary.failures)
    if not rows:
        raise StageError(f"generate: every request failed; first error: {summary.failures[0]['error']}")

    from mentalchat.core.fastchat import write_model_answers

    with atomic_dir(output) as tmp:
        table = get_table("answers").from_rows(rows)
        write_table(table, tmp / "answers.parquet", "answers")
        if cfg.fastchat_export:
            write_model_answers(table, tmp / "model_answer")
        summary.outputs = {"answers": str(output / "answers.parquet")}
        if cfg.fastchat_export:
            summary.outputs["model_answer"] = str(output / "model_answer")
        write_json_atomic(tmp / "summary.json", asdict(summary))
        write_done_marker(tmp, stage="generate", config_hash=config_hash(cfg), answers=len(rows),
                          failed=summary.failed)
    shutil.rmtree(work, ignore_errors=True)
    if summary.failed:
        log.warning("%d of %d answers failed (see %s)", summary.failed, summary.failed + summary.answers,
                    output / "summary.json")
    return summary
