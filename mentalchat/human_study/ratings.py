"""A Label Studio export (JSON) + the unblinding key → ``judgments`` rows (``human:<rater>``) and flags.

The export is what Label Studio's "JSON" export (or ``pull``) writes: a list of tasks, each with
its ``data`` (our ``item`` and ``rater``) and its ``annotations`` (``result`` items per control).
Only the key turns an item id back into (question, model); an item the key does not hold, a score
outside 1-10 or a control this study did not define is an error naming the file and the task.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from mentalchat.core.rubric import METRIC_TO_KEY, METRICS, SCORE_MAX, SCORE_MIN
from mentalchat.errors import InputError
from mentalchat.schemas import JUDGMENTS, get_table

from .label_config import COMMENT, CRISIS, CRISIS_CHOICE, OVERALL_CONTROL

__all__ = ["ImportedRatings", "StudyImportError", "read_export", "read_key"]

_KEY_TO_NAME = {k: m for m, k in METRIC_TO_KEY.items()}


class StudyImportError(InputError):
    """A Label Studio export or key that cannot be used; the message names the file and task."""


@dataclass
class ImportedRatings:
    """What an export held: judgments rows, one flag row per annotation, and counts for the log."""

    judgments: pa.Table
    flags: pa.Table
    annotated: dict[str, int] = field(default_factory=dict)  # rater -> annotations read
    unannotated: int = 0
    cancelled: int = 0


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise StudyImportError(f"{path}: cannot read {what}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise StudyImportError(f"{path}:{exc.lineno}: not JSON: {exc.msg}") from None


def read_key(path: str | Path) -> dict[str, dict[str, Any]]:
    """The unblinding key's item map (item id -> question_id, model, base_model, data_config)."""
    path = Path(path)
    doc = _read_json(path, "the unblinding key")
    items = doc.get("items") if isinstance(doc, dict) else None
    if not isinstance(items, dict) or not items:
        raise StudyImportError(f"{path}: not an unblinding key (no 'items' map)")
    return items


def _load_tasks(path: Path) -> list[dict[str, Any]]:
    doc = _read_json(path, "the export")
    if not isinstance(doc, list):
        raise StudyImportError(f"{path}: a Label Studio JSON export is a list of tasks, got {type(doc).__name__}")
    return doc


def _annotator(ann: dict[str, Any]) -> str:
    who = ann.get("completed_by")
    if isinstance(who, dict):
        return str(who.get("email") or who.get("username") or who.get("id"))
    return str(who)


def _parse_result(result: Any, where: str) -> tuple[dict[str, float], bool, str | None]:
    """Scores by control name, the crisis checkbox and the comment of one annotation."""
    if not isinstance(result, list):
        raise StudyImportError(f"{where}: 'result' is not a list")
    scores: dict[str, float] = {}
    crisis = False
    comment: str | None = None
    for part in result:
        name = part.get("from_name") if isinstance(part, dict) else None
        value = part.get("value") if isinstance(part, dict) else None
        if not isinstance(value, dict):
            raise StudyImportError(f"{where}: a result item without a 'value': {part!r}")
        if name in _KEY_TO_NAME or name == OVERALL_CONTROL:
            rating = value.get("rating")
            if isinstance(rating, bool) or not isinstance(rating, int | float) or not SCORE_MIN <= rating <= SCORE_MAX:
                raise StudyImportError(f"{where}: {name!r} rating {rating!r} is outside {SCORE_MIN}-{SCORE_MAX}")
            scores[name] = float(rating)
        elif name == CRISIS:
            crisis = CRISIS_CHOICE in (value.get("choices") or [])
        elif name == COMMENT:
            text = value.get("text")
            comment = "\n".join(text) if isinstance(text, list) else (str(text) if text else None)
        else:
            raise StudyImportError(
                f"{where}: control {name!r} is not one of this study's "
                f"({sorted([*_KEY_TO_NAME, OVERALL_CONTROL, CRISIS, COMMENT])}); was the export made from another project?"
            )
    return scores, crisis, (comment or "").strip() or None


def read_export(
    paths: list[str | Path], key: dict[str, dict[str, Any]], *, rater_from: str = "task"
) -> ImportedRatings:
    """Read Label Studio exports into ``judgments`` (7 rows per annotation) and ``human_flags`` rows.

    ``rater_from="task"`` names the rater by the task's ``data.rater`` (one project per rater, as
    ``push`` makes them); ``"annotator"`` by the annotation's author (one shared project).
    """
    if rater_from not in ("task", "annotator"):
        raise ValueError(f"rater_from must be 'task' or 'annotator', not {rater_from!r}")
    rows: list[dict[str, Any]] = []
    flags: list[dict[str, Any]] = []
    out = ImportedRatings(JUDGMENTS.empty(), get_table("human_flags").empty())
    seen: dict[tuple[str, str], str] = {}
    for path in map(Path, paths):
        for n, task in enumerate(_load_tasks(path), start=1):
            where = f"{path}: task {n}"
            data = task.get("data") if isinstance(task, dict) else None
            if not isinstance(data, dict) or "item" not in data:
                raise StudyImportError(f"{where}: no data.item (not a task of a mentalchat study, or a JSON-MIN/CSV "
                                       "export: export the project as JSON)")
            item = str(data["item"])
            entry = key.get(item)
            if entry is None:
                raise StudyImportError(f"{where}: item {item!r} is not in the unblinding key (another study's key?)")
            where = f"{where} (item {item})"
            done = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
            out.cancelled += len(task.get("annotations") or []) - len(done)
            if not done:
                out.unannotated += 1
                continue
            if rater_from == "task" and len(done) > 1:
                raise StudyImportError(
                    f"{where}: {len(done)} annotations in a one-rater task; use --rater-from annotator "
                    f"when several people annotate one project"
                )
            for ann in done:
                rater = str(data.get("rater") or "") if rater_from == "task" else _annotator(ann)
                if not rater:
                    raise StudyImportError(f"{where}: no data.rater; use --rater-from annotator")
                if (rater, item) in seen:
                    raise StudyImportError(f"{where}: rater {rater!r} rated this item already ({seen[rater, item]})")
                seen[rater, item] = where
                scores, crisis, comment = _parse_result(ann.get("result"), f"{where}, annotation {ann.get('id')}")
                judge = f"human:{rater}"
                for metric in METRICS:
                    score = scores.get(METRIC_TO_KEY[metric])
                    rows.append({
                        "question_id": entry["question_id"], "model": entry["model"],
                        "base_model": entry.get("base_model"), "data_config": entry.get("data_config"),
                        "judge": judge, "metric": metric, "score": score, "overall": scores.get(OVERALL_CONTROL),
                        "explanation": comment, "parse_status": "human",
                        "error": None if score is not None else "not rated",
                    })
                lead = ann.get("lead_time")
                flags.append({
                    "item": item, "question_id": entry["question_id"], "model": entry["model"], "judge": judge,
                    "annotator": _annotator(ann), "crisis_concern": crisis,
                    "lead_time_s": float(lead) if isinstance(lead, int | float) else None,
                    "comment": comment,
                })
                out.annotated[rater] = out.annotated.get(rater, 0) + 1
    if rows:
        out.judgments = JUDGMENTS.from_rows(rows)
        out.flags = get_table("human_flags").from_rows(flags)
    return out
