"""Our judged answers as Inspect AI eval logs, written by ``inspect_ai.log``'s own writer.

Why: evaluation teams browse results in ``inspect view``. One log per answering model (Inspect's
unit: a task run against one model); each benchmark question is a sample holding the client's
message, the model's answer, and one score per judge (the seven metrics and the overall rating
as the score's value, the judge's explanation beside it; a human rater is a judge
``human:<rater>``). The results carry each judge's per-metric means, so the viewer's header
shows them. Single-turn rows only: a multi-turn conversation is not one Inspect sample yet.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import re
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from mentalchat.core.rubric import METRIC_KEYS, METRIC_TO_KEY, METRICS, OVERALL
from mentalchat.errors import UsageError

__all__ = ["TASK_NAME", "write_inspect_logs"]

TASK_NAME = "mentalchat16k"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def write_inspect_logs(
    answers: pa.Table, judgments: pa.Table, questions: Mapping[str, str], output: str | Path,
    *, task: str = TASK_NAME,
) -> list[Path]:
    """One ``.eval`` log per model in ``output``; returns their paths.

    ``questions`` maps question id to the client's message (the sample input). Answers without
    any judgment are samples without scores; judgments of answers not in ``answers`` are an error.
    """
    try:
        from inspect_ai.log import (
            EvalConfig, EvalDataset, EvalLog, EvalMetric, EvalResults, EvalSample, EvalScore, EvalSpec,
            EvalStats, write_eval_log,
        )
        from inspect_ai.model import ChatMessageAssistant, ChatMessageUser, ModelOutput
        from inspect_ai.scorer import Score
    except ImportError:
        raise UsageError("Inspect logs need inspect_ai: pip install 'mentalchat[inspect]'") from None

    single = [r for r in answers.to_pylist() if r.get("turn") is None]
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in single:
        by_model[r["model_id"]].append(r)
    scores: dict[tuple[str, str, str], dict[str, Any]] = {}
    for j in judgments.to_pylist():
        if j.get("turn") is not None:
            continue
        key = (j["model"], j["question_id"], j["judge"])
        entry = scores.setdefault(key, {"value": {}, "explanation": j.get("explanation"),
                                        "parse_status": j.get("parse_status")})
        if j["score"] is not None and j["metric"] in METRIC_TO_KEY:
            entry["value"][METRIC_TO_KEY[j["metric"]]] = float(j["score"])
        if j.get("overall") is not None:
            entry["value"][OVERALL] = float(j["overall"])
    answered = {(r["model_id"], r["question_id"]) for r in single}
    orphans = sorted({(m, q) for m, q, _ in scores} - answered)
    if orphans:
        raise UsageError(f"{len(orphans)} judged answers are not in the answers table "
                         f"(e.g. question {orphans[0][1]!r} of {orphans[0][0]!r})")
    missing_q = sorted({r["question_id"] for r in single} - set(questions))
    if missing_q:
        raise UsageError(f"{len(missing_q)} answered questions are not in the questions file (e.g. {missing_q[0]!r})")

    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    out_dir = Path(output)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for model, rows in sorted(by_model.items()):
        rows.sort(key=lambda r: (len(r["question_id"]), r["question_id"]))
        judges = sorted({k[2] for k in scores if k[0] == model})
        samples = []
        per_judge: dict[str, dict[str, list[float]]] = {j: defaultdict(list) for j in judges}
        for r in rows:
            sample_scores = {}
            for judge in judges:
                s = scores.get((model, r["question_id"], judge))
                if s is None or not s["value"]:
                    continue
                value = {k: s["value"][k] for k in (*METRIC_KEYS, OVERALL) if k in s["value"]}  # rubric order
                sample_scores[judge] = Score(value=value, answer=r["answer"], explanation=s["explanation"],
                                             metadata={"parse_status": s["parse_status"]})
                for name, v in value.items():
                    per_judge[judge][name].append(v)
            question = questions[r["question_id"]]
            samples.append(EvalSample(
                id=r["question_id"], epoch=1, input=question, target="",
                messages=[ChatMessageUser(content=question), ChatMessageAssistant(content=r["answer"], model=model)],
                output=ModelOutput.from_content(model=model, content=r["answer"]),
                scores=sample_scores or None,
                metadata={"base_model": r.get("base_model"), "data_config": r.get("data_config"),
                          "engine": r.get("engine"), "finish_reason": r.get("finish_reason")},
            ))
        results = EvalResults(total_samples=len(samples), completed_samples=len(samples), scores=[
            EvalScore(name=judge, scorer=judge, scored_samples=len(per_judge[judge].get(METRIC_TO_KEY[METRICS[0]], [])),
                      metrics={f"{name}_mean": EvalMetric(name=f"{name}_mean", value=statistics.fmean(vals))
                               for name, vals in per_judge[judge].items()})  # a name is there once scored
            for judge in judges
        ])
        first = rows[0] if rows else {}
        log = EvalLog(
            status="success",
            eval=EvalSpec(created=now, task=task, dataset=EvalDataset(name="questions", samples=len(samples),
                                                                      sample_ids=[s.id for s in samples]),
                          model=f"mentalchat/{model}", config=EvalConfig(),
                          metadata={"base_model": first.get("base_model"), "data_config": first.get("data_config"),
                                    "judges": judges, "source": "mentalchat answers + judgments"}),
            results=results, stats=EvalStats(started_at=now, completed_at=now), samples=samples,
        )
        path = out_dir / f"{task}_{_safe(model)}.eval"
        tmp = path.with_name(f".{path.stem}.tmp.eval")  # then a rename: no half-written log in the folder
        write_eval_log(log, tmp, format="eval")
        os.replace(tmp, path)
        paths.append(path)
    return paths
