"""Orchestrate stage 1: both paths, the crisis audit, the tables and the card, published atomically.

Interview path on Ray Data: transcripts are read on the driver (bad files and lines are reported
and counted), de-identified per transcript in actors (placeholders consistent across pages),
paraphrased with :func:`mentalchat.engine.run_on_dataset`, then parsed, de-identified again and
filtered in actors. Only then does anything reach the driver's tables.

Output folder (``--output``), written to a temporary sibling and renamed into place at the end:

* ``qa_pairs.parquet`` — the dataset (``instruction``, ``input``, ``output`` + provenance, crisis audit)
* ``rejects.parquet`` — what the filters dropped and why
* ``pages.parquet`` — one row per interview page: provenance and de-identification counts
* ``README.md`` + ``figures/*.png`` — the dataset card
* ``decontamination.json`` — inputs that near-duplicate a benchmark question (reported, not removed)
* ``build_stats.json`` and the done marker (``_MENTALCHAT_DONE.json``) with the config hash
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import sys
from collections import Counter
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from mentalchat.config import ConfigError, config_hash
from mentalchat.core.released_data import pair_id  # one content hash for built and imported pairs
from mentalchat.core.resources import Ask, ClusterShape, ensure_fits
from mentalchat.dataset import paraphrase
from mentalchat.dataset.config import DatasetConfig, DeidConfig, engine_is_local
from mentalchat.dataset.readers import read_transcripts
from mentalchat.engine.config import EngineConfig
from mentalchat.engine.types import ChatResult, SamplingConfig
from mentalchat.errors import MentalchatError
from mentalchat.io import atomic_dir, write_done_marker, write_json_atomic
from mentalchat.safety.detector import CrisisDetector, audit_pairs
from mentalchat.schemas import PAGES, QA_PAIRS, REJECTS, write_table

__all__ = ["BuildError", "build_dataset", "bundled_transcripts", "pair_id", "resolve_transcripts"]

log = logging.getLogger(__name__)


class BuildError(MentalchatError, RuntimeError):
    """The build cannot produce a dataset (nothing is published)."""


def bundled_transcripts() -> Path:
    """The fictional sample transcripts shipped with the package (quickstart input)."""
    return Path(str(resources.files("mentalchat") / "data" / "samples" / "transcripts"))


def resolve_transcripts(cfg: DatasetConfig, transcripts: str | Path | None) -> Path | None:
    spec = transcripts if transcripts is not None else cfg.interview.transcripts
    if spec is None:
        return None
    if str(spec) == "bundled":
        return bundled_transcripts()
    return Path(spec)


# --------------------------------------------------------------------------------------------
# Ray Data stages (classes: each actor loads the NER model once)
# --------------------------------------------------------------------------------------------
class DeidStage:
    """Transcript rows → page rows with de-identified text and a paraphrase request."""

    def __init__(self, deid_json: str, min_words: int, json_schema: bool, max_chars: int,
                 max_tokens: int | None, sampling_json: str | None, gate_salt: str | None = None) -> None:
        from mentalchat.dataset.deid import get_deidentifier
        from mentalchat.dataset.leak_gate import LeakGate

        self.deid = get_deidentifier(DeidConfig.model_validate_json(deid_json))
        self.gate = LeakGate(salt=bytes.fromhex(gate_salt)) if gate_salt else None
        self.min_words = min_words
        self.json_schema = json_schema
        self.max_chars = max_chars
        self.max_tokens = max_tokens
        self.sampling = SamplingConfig.model_validate_json(sampling_json) if sampling_json else None

    def __call__(self, batch: Any) -> Any:
        import pandas as pd

        rows = []
        for tid, pages_json in zip(batch["transcript_id"], batch["pages"], strict=True):
            pages = json.loads(pages_json)
            results = self.deid.deidentify_pages([text for _, text in pages])
            for (number, raw), res in zip(pages, results, strict=True):
                req = paraphrase.build_request(
                    f"{tid}:{number}", res.text, min_words=self.min_words, json_schema=self.json_schema,
                    max_chars=self.max_chars, max_tokens=self.max_tokens, base_sampling=self.sampling,
                )
                rows.append({
                    "transcript_id": tid, "page": int(number), "n_words": len(raw.split()),
                    "deid_counts": json.dumps(res.counts, sort_keys=True), "text_deid": res.text,
                    "request": req.model_dump_json(),
                    # salted hashes of the raw page's identifying-looking values, for the leak gate
                    "gate_keys": json.dumps(self.gate.fingerprints(raw) if self.gate is not None else []),
                })
        return pd.DataFrame(rows, columns=["transcript_id", "page", "n_words", "deid_counts", "text_deid", "request",
                                           "gate_keys"])


class PostStage:
    """Page rows with a result → parsed, de-identified again, filtered (no raw model text kept)."""

    def __init__(self, deid_json: str, min_words: int) -> None:
        from mentalchat.dataset.deid import get_deidentifier

        self.deid = get_deidentifier(DeidConfig.model_validate_json(deid_json))
        self.min_words = min_words

    def __call__(self, batch: Any) -> Any:
        import pandas as pd

        out = []
        for row in batch.to_dict("records"):
            res = ChatResult.model_validate_json(row.pop("result"))
            row.pop("request", None)
            p = paraphrase.process_result(res, self.deid, min_words=self.min_words)
            row.update({
                "question": p.question, "answer": p.answer, "filter": p.filter, "reason": p.reason,
                "generator_model": res.model, "finish_reason": res.finish_reason,
                "tokens_out": int(res.tokens_out),
            })
            out.append(row)
        return pd.DataFrame(out)


def _supports_json(cfg: EngineConfig) -> bool:
    from mentalchat.dataset.synthetic import _supports_json as check

    return check(cfg)


def run_interview(
    cfg: DatasetConfig, folder: Path, engine_cfg: EngineConfig, *, echo: Callable[[str], None] = print,
    gate_salt: str | None = None, page_texts: dict[str, dict[int, str]] | None = None,
) -> tuple[list[dict], list[dict], list[dict], dict[str, Any], dict[str, list[str]]]:
    """Read, de-identify, paraphrase, filter; returns (pages, pairs, rejects, stats) rows and the
    leak gate's fingerprints per page reference (empty without ``gate_salt``). ``page_texts``, when
    given, is filled with transcript id → page → de-identified text (for the dialogue windows)."""
    icfg = cfg.interview
    report = read_transcripts(folder, page_words=icfg.page_words, max_file_bytes=icfg.max_file_bytes)
    for issue in report.issues:
        echo(f"skipped {'line' if issue.kind == 'line' else 'file'}: {issue}")
    n_pages = sum(len(t.pages) for t in report.transcripts)
    stats: dict[str, Any] = {
        "files": report.files_read, "transcripts": len(report.transcripts), "pages": n_pages,
        "skipped_files": report.skipped_files, "skipped_lines": report.skipped_lines,
        "engine": engine_cfg.label, "engine_local": engine_is_local(engine_cfg),
        "prompt_version": paraphrase.PROMPT_VERSION,
        "deid_method": (f"Presidio + spaCy {cfg.deid.spacy_model} + rules" if cfg.deid.ner == "spacy"
                        else "Presidio pattern recognizers + rules (no NER)"),
    }
    if not report.transcripts:
        raise BuildError(
            f"no readable transcripts in {folder} ({report.files_read} files, {report.skipped_files} skipped)"
        )
    items = [{"transcript_id": t.transcript_id, "pages": json.dumps([[p.number, p.text] for p in t.pages])}
             for t in report.transcripts]
    deid_json = cfg.deid.model_dump_json()
    sampling = engine_cfg.sampling.model_dump_json() if icfg.max_tokens else None
    deid_kwargs = {"deid_json": deid_json, "min_words": icfg.min_words,
                   "json_schema": _supports_json(engine_cfg), "max_chars": icfg.max_answer_chars,
                   "max_tokens": icfg.max_tokens, "sampling_json": sampling, "gate_salt": gate_salt}
    post_kwargs = {"deid_json": deid_json, "min_words": icfg.min_words}
    if icfg.executor == "local":
        rows = _run_local(items, engine_cfg, deid_kwargs, post_kwargs)
    else:
        import ray.data

        from mentalchat.core.watchdog import StallWatchdog
        from mentalchat.engine import run_on_dataset

        deid_ask, engine_cfg, threads, post_ask = fit_interview(cfg, engine_cfg, echo=echo)
        ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 4 * deid_ask.count)))
        ds = ds.map_batches(
            DeidStage, fn_constructor_kwargs=deid_kwargs,
            compute=ray.data.ActorPoolStrategy(size=deid_ask.count),
            batch_size=1, batch_format="pandas", num_cpus=deid_ask.cpus,
        )
        ds = run_on_dataset(ds, engine_cfg, threads=threads)
        ds = ds.map_batches(
            PostStage, fn_constructor_kwargs=post_kwargs, compute=ray.data.ActorPoolStrategy(size=1),
            batch_size=16, batch_format="pandas", num_cpus=post_ask.cpus,
        )
        hint = (f"Check dataset.interview.deid_actors / deid_cpus and engines.{icfg.paraphrase_engine}.vllm "
                "(replicas, cpus_per_replica, gpus_per_replica, accelerator_type).")
        with StallWatchdog("dataset (interview path)", hint=hint) as dog:
            rows = list(dog.watch(ds.iter_rows()))
    rows = sorted(({k: _none_if_nan(v) for k, v in r.items()} for r in rows),
                  key=lambda r: (r["transcript_id"], r["page"]))
    pages, qa, rejects = [], [], []
    fingerprints: dict[str, list[str]] = {}
    deid_counts: Counter = Counter()
    out_counts: Counter = Counter()
    for r in rows:
        ref = f"{r['transcript_id']}:{r['page']}"
        fingerprints[ref] = json.loads(r.get("gate_keys") or "[]")
        if page_texts is not None:
            page_texts.setdefault(r["transcript_id"], {})[int(r["page"])] = r["text_deid"]
        deid_counts.update(json.loads(r["deid_counts"]))
        for text in (r["question"], r["answer"]):
            if text:
                out_counts.update(m.group(1) or "AGE" for m in _placeholders(text))
        status = "qa" if r["filter"] is None else "rejected"
        pages.append({"transcript_id": r["transcript_id"], "page": int(r["page"]), "n_words": int(r["n_words"]),
                      "deid_counts": r["deid_counts"], "text_deid": r["text_deid"] if icfg.keep_page_text else None,
                      "status": status})
        model = r["generator_model"] or engine_cfg.label
        if status == "qa":
            qa.append({"input": r["question"], "output": r["answer"], "source": "interview", "topic": None,
                       "page_ref": ref, "generator_model": model, "prompt_version": paraphrase.PROMPT_VERSION})
        else:
            rejects.append({"source": "interview", "filter": r["filter"], "reason": r["reason"], "topic": None,
                            "page_ref": ref, "input": r["question"], "output": r["answer"]})
    stats["deid_counts"] = dict(deid_counts)
    stats["output_deid_counts"] = dict(out_counts)
    stats["pairs"] = len(qa)
    stats["rejected"] = len(rejects)
    return pages, qa, rejects, stats, fingerprints


def interview_asks(cfg: DatasetConfig, engine_cfg: EngineConfig) -> list[Ask]:
    """The interview path's three actor pools, which run at the same time: de-id, paraphraser, post-processing."""
    from mentalchat.engine.pools import LIGHT_CPU, engine_pool_ask

    icfg = cfg.interview
    floor = min(icfg.deid_cpus, LIGHT_CPU)
    cpus_key = "dataset.interview.deid_cpus"
    return [
        Ask("the de-identification actors", {"CPU": icfg.deid_cpus}, count=icfg.deid_actors, min_count=1,
            keys={"CPU": cpus_key, "count": "dataset.interview.deid_actors"}, min_cpus=floor, light=True),
        engine_pool_ask(engine_cfg, key=f"engines.{icfg.paraphrase_engine}",
                        label=f"the paraphraser ({engine_cfg.backend} engine {icfg.paraphrase_engine!r})"),
        Ask("the post-processing actor", {"CPU": icfg.deid_cpus}, keys={"CPU": cpus_key}, min_cpus=floor,
            light=True),
    ]


def fit_interview(
    cfg: DatasetConfig, engine_cfg: EngineConfig, *, echo: Callable[[str], None] | None = None,
    cluster: ClusterShape | None = None,
) -> tuple[Ask, EngineConfig, int | None, Ask]:
    """The interview pools sized to the cluster (or a :class:`ResourceFitError` saying what to change).

    Returns the de-identification pool, the paraphraser's engine config and kept thread count
    (:func:`mentalchat.engine.pools.resize_engine`), and the post-processing actor.
    """
    from mentalchat.engine.pools import resize_engine

    fit = ensure_fits(interview_asks(cfg, engine_cfg), stage="dataset (interview path)", cluster=cluster, echo=echo)
    deid, engine, post = fit.asks
    engine_cfg, threads = resize_engine(engine_cfg, engine)
    return deid, engine_cfg, threads, post


def _run_local(items: list[dict], engine_cfg: EngineConfig, deid_kwargs: dict, post_kwargs: dict) -> list[dict]:
    """The same stages in this process, one after the other (``interview.executor: local``)."""
    import pandas as pd

    from mentalchat.engine import ChatRequest, run_requests

    pages = DeidStage(**deid_kwargs)(pd.DataFrame(items))
    requests = [ChatRequest.model_validate_json(r) for r in pages["request"]]
    results = run_requests(requests, engine_cfg, use_ray=False)
    pages["result"] = [r.model_dump_json() for r in results]
    return PostStage(**post_kwargs)(pages).to_dict("records")


def _none_if_nan(value: Any) -> Any:
    """pandas turns missing strings into NaN; tables want None."""
    return None if isinstance(value, float) and value != value else value


def _placeholders(text: str):
    from mentalchat.dataset.deid import PLACEHOLDER_RE

    return PLACEHOLDER_RE.finditer(text)


# --------------------------------------------------------------------------------------------
def _dry_run(cfg: DatasetConfig, folder: Path | None, work_dir: Path, echo: Callable[[str], None]) -> dict[str, Any]:
    from mentalchat.dataset.synthetic import CallLog, estimate

    plan: dict[str, Any] = {}
    if folder is not None and cfg.interview.enabled:
        ecfg = cfg.paraphrase_engine_cfg()
        report = read_transcripts(folder, page_words=cfg.interview.page_words,
                                  max_file_bytes=cfg.interview.max_file_bytes)
        for issue in report.issues:
            echo(f"would skip: {issue}")
        pages = sum(len(t.pages) for t in report.transcripts)
        plan["interview"] = {"engine": ecfg.label, "files": report.files_read, "skipped_files": report.skipped_files,
                             "skipped_lines": report.skipped_lines, "pages": pages, "calls": pages,
                             "est_cost_usd": 0.0, "local": engine_is_local(ecfg)}
    if cfg.synthetic.enabled:
        ecfg = cfg.engine(cfg.synthetic.engine)  # type: ignore[arg-type]
        plan["synthetic"] = estimate(cfg.synthetic, ecfg, CallLog(work_dir / "calls.jsonl"))
    echo(json.dumps({"dry_run": plan}, indent=2))
    return plan


def _leak_gate(
    cfg: DatasetConfig, salt: str, fingerprints: dict[str, list[str]], pairs: list[dict], rejects: list[dict],
    pages: list[dict], work_dir: Path, echo: Callable[[str], None], dialogues: list[dict] | None = None,
) -> dict[str, Any]:
    """Scan the interview-derived text about to be published; refuse above the configured limit.
    A dialogue is checked against the fingerprints of every page of its window."""
    from mentalchat.dataset.leak_gate import LeakGate

    gate = LeakGate(cfg.leak_gate, salt=bytes.fromhex(salt))
    items = [(r["page_ref"], f, r.get(f)) for r in (*pairs, *rejects) if r["source"] == "interview"
             for f in ("input", "output")]
    items += [(f"{p['transcript_id']}:{p['page']}", "text_deid", p.get("text_deid")) for p in pages]
    if dialogues:
        from mentalchat.dataset.dialogues import gate_items, window_fingerprints

        items += gate_items(dialogues)
        fingerprints = {**fingerprints, **window_fingerprints(fingerprints, dialogues)}
    suspects = gate.scan(items, fingerprints)
    review = gate.enforce(suspects, work_dir)  # raises above max_suspects: nothing is published
    if review is not None:
        echo(f"leak gate: {len(suspects)} suspected leaks (at most {cfg.leak_gate.max_suspects} allowed) "
             f"listed in {review}")
    return {"scanned": sum(1 for *_, t in items if t), "suspects": len(suspects),
            "max_suspects": cfg.leak_gate.max_suspects}


def _dialogues(
    cfg: DatasetConfig, page_texts: dict[str, dict[int, str]], engine_cfg: EngineConfig | None, work_dir: Path,
    detector: CrisisDetector, stats: dict[str, Any], echo: Callable[[str], None],
) -> list[dict]:
    """The ``dialogues`` rows from interview windows (local engine) and synthetic conversations."""
    from mentalchat.dataset import dialogues as dlg

    dcfg = cfg.dialogues
    found: list[dict] = []
    rejects: list[dict] = []
    st: dict[str, Any] = {}
    if dcfg.interview and engine_cfg is not None and page_texts:
        got = dlg.run_interview_dialogues(cfg, page_texts, engine_cfg)
        found += got.dialogues
        rejects += got.rejects
        st["interview"] = got.stats
    if dcfg.synthetic_count:
        got = dlg.run_synthetic_dialogues(cfg, work_dir)
        found += got.dialogues
        rejects += got.rejects
        st["synthetic"] = got.stats
    rows, dups = dlg.finalize_dialogues(found, instruction=cfg.instruction, cfg=dcfg, detector=detector)
    st.update({
        "dialogues": len(rows), "duplicates": dups, "rejected": len(rejects),
        "by_filter": dict(Counter(f"{r['source']}:{r['filter']}" for r in rejects)),
        "by_source": dict(Counter(r["source"] for r in rows)),
        "benchmark": sum(r["split"] == "benchmark" for r in rows),
        "turns": dict(Counter(str(r["n_turns"]) for r in rows)),
        "crisis_flagged": sum(r["crisis_flag"] for r in rows),
        "crisis_without_escalation": sum(r["crisis_escalated"] is False for r in rows),
    })
    stats["dialogues"] = st
    echo(f"dialogues: {len(rows)} kept ({st['benchmark']} held out for the benchmark), {len(rejects)} rejected")
    return rows


def default_work_dir(output: Path) -> Path:
    return output.parent / f".{output.name}.work"


def build_dataset(
    cfg: DatasetConfig,
    output: str | Path,
    *,
    transcripts: str | Path | None = None,
    dry_run: bool = False,
    echo: Callable[[str], None] | None = None,
    benchmark: str | Path | None = None,
) -> dict[str, Any]:
    """Build the dataset into ``output`` (replaced atomically); returns the build statistics.

    ``benchmark`` is the run's question file, which ``dataset.decontamination`` checks the pairs'
    inputs against by default (else the bundled sample questions).
    """
    echo = echo or (lambda msg: print(msg, file=sys.stderr))
    output = Path(output)
    folder = resolve_transcripts(cfg, transcripts) if cfg.interview.enabled else None
    run_interview_path = cfg.interview.enabled and folder is not None
    if cfg.interview.enabled and folder is None and not cfg.synthetic.enabled:
        raise ConfigError("no transcripts: give --transcripts DIR or dataset.interview.transcripts "
                          "(or enable dataset.synthetic)")
    if not run_interview_path and not cfg.synthetic.enabled:
        raise ConfigError("nothing to build: dataset.interview and dataset.synthetic are both off")
    if folder is not None and not folder.is_dir():
        raise ConfigError(f"transcript folder not found: {folder}")
    engine_cfg = cfg.paraphrase_engine_cfg() if run_interview_path else None  # refuses non-local first
    if engine_cfg is not None and not engine_is_local(engine_cfg):
        echo(f"WARNING: {cfg.interview.paraphrase_engine!r} is not local and "
             "allow_remote_paraphrase_i_accept_phi_leaves_cluster is set: de-identified interview pages "
             f"will be sent to {engine_cfg.base_url}")
    work_dir = Path(cfg.synthetic.work_dir) if cfg.synthetic.work_dir else default_work_dir(output)
    if dry_run:
        return {"dry_run": _dry_run(cfg, folder, work_dir, echo)}

    stats: dict[str, Any] = {"config_hash": config_hash(cfg)}
    pages: list[dict] = []
    qa: list[dict] = []
    rejects: list[dict] = []
    fingerprints: dict[str, list[str]] = {}
    gate_salt = secrets.token_hex(16) if cfg.leak_gate.enabled else None
    page_texts: dict[str, dict[int, str]] = {}
    if run_interview_path:
        assert engine_cfg is not None and folder is not None
        pages, qa, rejects, stats["interview"], fingerprints = run_interview(
            cfg, folder, engine_cfg, echo=echo, gate_salt=gate_salt, page_texts=page_texts)
        echo(f"interview: {stats['interview']['pages']} pages → {len(qa)} pairs, {len(rejects)} rejected")
    topic_weights = None
    if cfg.synthetic.enabled:
        from mentalchat.dataset.synthetic import PROMPT_VERSION, load_topics, run_synthetic

        topic_weights = load_topics(cfg.synthetic.topics)
        syn = run_synthetic(cfg, work_dir)
        qa += syn.qa
        rejects += syn.rejects
        stats["synthetic"] = {"engine": cfg.synthetic.engine, "prompt_version": PROMPT_VERSION,
                              "n_messages": cfg.synthetic.n_messages, "calls": syn.calls,
                              "cost_usd": round(syn.cost_usd, 6), "pairs": len(syn.qa), "rejected": len(syn.rejects)}
        echo(f"synthetic: {len(syn.qa)} pairs, {len(syn.rejects)} rejected, calls {syn.calls}")

    # Ids, exact duplicates, crisis audit (the same detector as jobs/crisis.py and the judge stage).
    final: list[dict] = []
    seen: set[str] = set()
    unique: list[tuple[str, dict]] = []
    for row in qa:
        pid = pair_id(row["input"], row["output"])
        if pid in seen:
            rejects.append({"source": row["source"], "filter": "duplicate", "reason": f"same content as pair {pid}",
                            "topic": row["topic"], "page_ref": row["page_ref"], "input": row["input"],
                            "output": row["output"]})
            continue
        seen.add(pid)
        unique.append((pid, row))
    detector = CrisisDetector(cfg.crisis_detector.resolve(cfg.engines))
    audits = audit_pairs(detector, [row["input"] for _, row in unique], [row["output"] for _, row in unique])
    for (pid, row), audit in zip(unique, audits, strict=True):
        final.append({"id": pid, "instruction": cfg.instruction, **row, **audit})
    reject_rows = []
    for r in rejects:
        rid = hashlib.sha256(json.dumps([r["source"], r["filter"], r["page_ref"], r["input"], r["output"], r["reason"]],
                                        ensure_ascii=False).encode()).hexdigest()[:16]
        reject_rows.append({"id": rid, **r})
    dialogues = _dialogues(cfg, page_texts, engine_cfg if run_interview_path else None, work_dir, detector, stats,
                           echo) if cfg.dialogues.enabled else None
    flagged = sum(r["crisis_flag"] for r in final)
    no_esc = sum(1 for r in final if r["crisis_escalated"] is False)
    stats["crisis"] = {"flagged": flagged, "without_escalation": no_esc}
    stats["pairs"] = len(final)
    stats["rejected"] = len(reject_rows)
    stats["by_filter"] = dict(Counter(f"{r['source']}:{r['filter']}" for r in reject_rows))

    decontamination = None
    if cfg.decontamination.enabled:
        from mentalchat.core.decontamination import scan_pairs

        _, decontamination = scan_pairs([r["id"] for r in final], [r["input"] for r in final],
                                        [r["source"] for r in final], cfg.decontamination, benchmark=benchmark)
        stats["decontamination"] = {k: v for k, v in decontamination.items() if k != "pairs"}
        echo(f"decontamination: {decontamination['flagged']} of {decontamination['checked']} pairs near-duplicate "
             f"a question of {decontamination['reference']}")

    if gate_salt is not None:
        stats["leak_gate"] = _leak_gate(cfg, gate_salt, fingerprints, final, reject_rows, pages, work_dir, echo,
                                        dialogues=dialogues)

    from mentalchat.dataset.card import write_card, write_histograms

    with atomic_dir(output) as tmp:
        write_table(QA_PAIRS.from_rows(final), tmp / "qa_pairs.parquet", QA_PAIRS)
        write_table(REJECTS.from_rows(reject_rows), tmp / "rejects.parquet", REJECTS)
        write_table(PAGES.from_rows(pages), tmp / "pages.parquet", PAGES)
        if dialogues is not None:
            from mentalchat.dataset.dialogues import write_dialogue_outputs

            write_dialogue_outputs(tmp, dialogues)
        figures = write_histograms(final, tmp / "figures", bins=cfg.histogram_bins)
        write_card(tmp / "README.md", qa=final, rejects=reject_rows, stats=stats, figures=figures,
                   topic_weights=topic_weights, instruction=cfg.instruction)
        write_json_atomic(tmp / "build_stats.json", stats)
        if decontamination is not None:
            write_json_atomic(tmp / "decontamination.json", decontamination)
        write_done_marker(tmp, stage="dataset", config_hash=stats["config_hash"], pairs=len(final))
    echo(f"dataset: {len(final)} pairs ({flagged} crisis-flagged, {no_esc} without escalation), "
         f"{len(reject_rows)} rejected → {output}")
    return stats
