"""Read and write FastChat llm_judge files: ``question.jsonl``, ``model_answer/``, ``model_judgment/``.

Researchers compare judges with FastChat's llm_judge, and the MentalChat16K authors published
their answers and judgments in its formats. These functions turn those files into our
``answers`` and ``judgments`` tables and back, so the judge stage can score FastChat answers
and FastChat tools can show our judgments.

Two FastChat habits are corrected on the way in: the model name is the answer file's stem (as
FastChat itself does), not the record's ``model_id`` (often a hub path); and a judgment's
``score`` field (FastChat's first ``[[n]]`` in the text, often a metric) is ignored in favour of
:func:`mentalchat.core.judge_reply.parse_judgment`, which reads each metric by name. On the way out
``score`` is the overall rating. Malformed lines raise :class:`FastChatFormatError` naming the
file and line.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from mentalchat.core.judge_reply import parse_judgment
from mentalchat.core.model_names import ModelMapConfig
from mentalchat.core.rubric import METRICS
from mentalchat.errors import MentalchatError
from mentalchat.io import atomic_path, iter_jsonl
from mentalchat.schemas import ANSWERS, JUDGMENTS

__all__ = [
    "DUPLICATE_POLICIES",
    "Duplicate",
    "FastChatData",
    "FastChatFormatError",
    "format_judgment_text",
    "read_fastchat_dir",
    "read_jsonl",
    "read_model_answers",
    "read_model_judgments",
    "read_questions",
    "write_model_answers",
    "write_model_judgments",
    "write_questions",
]

DEFAULT_PROMPT_NAME = "mentalchat-single-v1"

#: What to do with a second judgment of the same (question, model, judge): refuse, keep the first, keep the last.
DUPLICATE_POLICIES = ("error", "first", "last")
_SHOW_DUPLICATES = 5


@dataclass(frozen=True)
class Duplicate:
    """A judgment of (question, model, judge) seen before: where it is and where the first one was."""

    question_id: str
    model: str
    judge: str
    where: str
    first: str


class FastChatFormatError(MentalchatError, ValueError):
    """A FastChat file that cannot be read; the message names the file and line."""


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, record) for each non-blank line; bad JSON names file and line."""
    yield from iter_jsonl(path, error=FastChatFormatError)


def _require(rec: Mapping[str, Any], keys: Iterable[str], where: str) -> None:
    missing = [k for k in keys if k not in rec]
    if missing:
        raise FastChatFormatError(f"{where}: missing field(s) {missing}")


def _qid_in(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str) or str(value) == "":
        raise FastChatFormatError(f"{where}: question_id must be an integer or string, got {value!r}")
    return str(value)


def _qid_out(value: str) -> int | str:
    """FastChat's own question files use integers; keep them integers where they were."""
    return int(value) if re.fullmatch(r"-?\d+", value) else value


def _jsonl_files(path: str | Path) -> list[Path]:
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.glob("*.jsonl") if not p.name.startswith("."))
        if not files:
            raise FastChatFormatError(f"{path}: folder holds no .jsonl files")
        return files
    if not path.is_file():
        raise FastChatFormatError(f"{path}: no such file or folder")
    return [path]


def _write_jsonl(path: Path, records: Iterable[Mapping[str, Any]]) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "unnamed"


# ---------------------------------------------------------------------------------------------
# Questions
# ---------------------------------------------------------------------------------------------
def read_questions(path: str | Path) -> list[dict[str, Any]]:
    """Read ``question.jsonl``: dicts with ``question_id`` (str), ``category``, ``turns``, ``question``."""
    out: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for line_no, rec in read_jsonl(path):
        where = f"{path}:{line_no}"
        _require(rec, ("question_id", "turns"), where)
        qid = _qid_in(rec["question_id"], where)
        turns = rec["turns"]
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
            raise FastChatFormatError(f"{where}: turns must be a non-empty list of strings")
        if qid in seen:
            raise FastChatFormatError(f"{where}: question_id {qid} repeats line {seen[qid]}")
        seen[qid] = line_no
        q = {"question_id": qid, "category": rec.get("category"), "turns": turns, "question": turns[0]}
        if rec.get("reference") is not None:  # MT-bench's reference answers (math, reasoning, coding)
            q["reference"] = rec["reference"]
        out.append(q)
    return out


def write_questions(questions: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Write ``question.jsonl`` from dicts with ``question_id`` and ``turns`` or ``question``."""
    records = []
    for q in questions:
        turns = q.get("turns") or [q["question"]]
        rec = {"question_id": _qid_out(str(q["question_id"])),
               "category": q.get("category") or "generic", "turns": list(turns)}
        if q.get("reference") is not None:
            rec["reference"] = list(q["reference"])
        records.append(rec)
    return _write_jsonl(Path(path), records)


# ---------------------------------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------------------------------
def read_model_answers(
    path: str | Path, model_map: ModelMapConfig | None = None, *, questions: Iterable[Mapping[str, Any]] | None = None
) -> pa.Table:
    """Read a ``model_answer`` folder (or one file) into an ``answers`` table.

    The model name is the file's stem, as in FastChat; ``model_map`` fills ``base_model`` and
    ``data_config`` (left null for unmapped names). An answer with several turns (MT-bench's
    two-turn questions) gives one row per turn (``turn`` 1..n); a one-turn answer is a single-turn
    row (``turn`` null) unless ``questions`` (:func:`read_questions` records) say its question has
    more turns: then it is turn 1 of a conversation whose later turns are missing. With
    ``questions``, an answer with more turns than its question is an error.
    """
    n_turns = {str(q["question_id"]): len(q.get("turns") or [q.get("question")]) for q in questions or ()}
    rows: list[dict[str, Any]] = []
    for file in _jsonl_files(path):
        model = file.stem
        entry = model_map.lookup(model) if model_map else None
        seen: dict[str, int] = {}
        for line_no, rec in read_jsonl(file):
            where = f"{file}:{line_no}"
            _require(rec, ("question_id", "choices"), where)
            qid = _qid_in(rec["question_id"], where)
            choices = rec["choices"]
            if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
                raise FastChatFormatError(f"{where}: choices must be a non-empty list of objects")
            turns = choices[0].get("turns")
            if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
                raise FastChatFormatError(f"{where}: choices[0].turns must be a list of strings")
            if qid in n_turns and len(turns) > n_turns[qid]:
                raise FastChatFormatError(
                    f"{where}: {len(turns)} answer turns for question {qid}, which has {n_turns[qid]}")
            if qid in seen:
                raise FastChatFormatError(f"{where}: question_id {qid} repeats line {seen[qid]}")
            seen[qid] = line_no
            multi = len(turns) > 1 or n_turns.get(qid, 1) > 1
            for k, text in enumerate(turns, 1):
                row = {
                    "question_id": qid,
                    "model_id": model,
                    "base_model": entry.base if entry else None,
                    "data_config": entry.config if entry else None,
                    "answer": text,
                    "engine": "fastchat",
                    "params": json.dumps({"fastchat_model_id": rec.get("model_id")}) if rec.get(
                        "model_id") else None,
                }
                if multi:
                    row["turn"] = k
                rows.append(row)
    return ANSWERS.from_rows(rows)


def write_model_answers(answers: pa.Table, folder: str | Path) -> list[Path]:
    """Write one ``<model>.jsonl`` per model of an ``answers`` table into ``folder``.

    The turns of a multi-turn question (rows with ``turn`` 1..n) become one record whose
    ``choices[0].turns`` lists them in order, as FastChat's ``gen_model_answer.py`` writes two-turn
    answers. A conversation cut short by a failed turn keeps the turns before it (turns 1..k); a
    gap (turn 1 and 3 without 2) is an error, since FastChat reads turns by position.
    """
    table = ANSWERS.validate(answers, source="<answers>")
    if "turn" not in table.column_names:  # a v1 table: single-turn only
        table = table.append_column("turn", pa.nulls(len(table), pa.int32()))
    folder = Path(folder)
    by_model: dict[str, list[dict[str, Any]]] = {}
    conversations: dict[tuple[str, str], tuple[dict[str, Any], dict[int, str]]] = {}  # record, turn -> answer
    for row in table.select(["question_id", "model_id", "answer", "turn"]).to_pylist():
        qid, model, answer, turn = row["question_id"], row["model_id"], row["answer"], row["turn"]
        if turn is None:
            digest = hashlib.sha256(f"{model}\0{qid}\0{answer}".encode()).hexdigest()[:22]
            by_model.setdefault(model, []).append({
                "question_id": _qid_out(qid),
                "answer_id": digest,
                "model_id": model,
                "choices": [{"index": 0, "turns": [answer]}],
                "tstamp": time.time(),
            })
            continue
        if (model, qid) not in conversations:
            rec = {"question_id": _qid_out(qid), "answer_id": "", "model_id": model,
                   "choices": [{"index": 0, "turns": []}], "tstamp": time.time()}
            by_model.setdefault(model, []).append(rec)
            conversations[(model, qid)] = (rec, {})
        got = conversations[(model, qid)][1]
        if turn in got:
            raise FastChatFormatError(f"answers table: model {model!r}, question {qid}: turn {turn} appears twice")
        got[turn] = answer
    for (model, qid), (rec, got) in conversations.items():
        if sorted(got) != list(range(1, len(got) + 1)):
            raise FastChatFormatError(f"answers table: model {model!r}, question {qid}: turns {sorted(got)}; "
                                      "FastChat needs turns 1..n")
        turns = [got[k] for k in sorted(got)]
        rec["choices"][0]["turns"] = turns
        rec["answer_id"] = hashlib.sha256("\0".join([model, qid, *turns]).encode()).hexdigest()[:22]
    return [_write_jsonl(folder / f"{_safe_name(m)}.jsonl", recs) for m, recs in sorted(by_model.items())]


# ---------------------------------------------------------------------------------------------
# Judgments
# ---------------------------------------------------------------------------------------------
def read_model_judgments(
    paths: str | Path | Iterable[str | Path],
    model_map: ModelMapConfig | None = None,
    *,
    keep_text: bool = True,
    on_duplicate: str = "error",
    duplicates: list[Duplicate] | None = None,
) -> pa.Table:
    """Read FastChat single-answer judgments into a ``judgments`` table (7 rows per judgment).

    Scores come from the judge's text, parsed metric by metric; ``parse_status`` is the
    parser's (``failed`` for FastChat's ``$ERROR$`` placeholder of a failed API call), and
    ``error`` says why a row's score is null. ``keep_text=False`` drops ``raw_text`` and
    ``explanation`` to save memory when only the numbers are needed.

    The same (question, model, judge) twice (FastChat appends on a rerun): ``on_duplicate="error"``
    refuses the input, listing the first few repeats with file and line; ``first`` / ``last`` keep
    one judgment and append every dropped one to ``duplicates`` (when given), so callers can report it.
    Each turn is its own judgment; a (question, model, judge) with a turn above 1 is read as
    multi-turn (``turn`` kept), any other as single-turn (``turn`` null).
    """
    if on_duplicate not in DUPLICATE_POLICIES:
        raise FastChatFormatError(f"on_duplicate {on_duplicate!r}: expected one of {list(DUPLICATE_POLICIES)}")
    if isinstance(paths, str | Path):
        paths = [paths]
    files = [f for p in paths for f in _jsonl_files(p)]
    kept: dict[tuple[str, str, str, int], list[dict[str, Any]]] = {}
    seen: dict[tuple[str, str, str, int], str] = {}
    found: list[Duplicate] = []
    for file in files:
        for line_no, rec in read_jsonl(file):
            where = f"{file}:{line_no}"
            if "model_1" in rec or "model_2" in rec:
                raise FastChatFormatError(f"{where}: pairwise judgments are not supported")
            _require(rec, ("question_id", "model", "judge", "judgment"), where)
            qid = _qid_in(rec["question_id"], where)
            model = rec["model"]
            if not isinstance(model, str) or not model:
                raise FastChatFormatError(f"{where}: model must be a non-empty string")
            turn = rec.get("turn", 1)
            if isinstance(turn, bool) or not isinstance(turn, int) or turn < 1:
                raise FastChatFormatError(f"{where}: turn {turn!r}; expected a positive integer (1, or 2 for "
                                          "FastChat's multi-turn grading)")
            judge_field = rec["judge"]
            if isinstance(judge_field, list) and judge_field and all(
                    isinstance(x, str) for x in judge_field):
                judge, prompt = judge_field[0], (judge_field[1] if len(judge_field) > 1 else None)
            elif isinstance(judge_field, str) and judge_field:
                judge, prompt = judge_field, None
            else:
                raise FastChatFormatError(f"{where}: judge must be [model, prompt name] or a string")
            text = rec["judgment"]
            if text is not None and not isinstance(text, str):
                raise FastChatFormatError(f"{where}: judgment must be a string")
            key = (judge, model, qid, turn)
            if key in seen:
                found.append(Duplicate(qid, model, judge, where, seen[key]))
                if on_duplicate != "last":
                    continue  # error: listed below; first: the earlier one stays
            else:
                seen[key] = where
            kept[key] = _judgment_rows(qid, model, judge, prompt, text, model_map, keep_text)
    if found and on_duplicate == "error":
        shown = "\n  ".join(f"{d.where}: question {d.question_id}, model {d.model!r}, judge {d.judge!r} "
                            f"(first at {d.first})" for d in found[:_SHOW_DUPLICATES])
        more = f"\n  ... and {len(found) - _SHOW_DUPLICATES} more" if len(found) > _SHOW_DUPLICATES else ""
        first = found[0]
        file, _, line = first.where.rpartition(":")
        raise FastChatFormatError(
            f"{first.where}: second judgment of question {first.question_id} for model {first.model!r} by "
            f"{first.judge!r} (first at {first.first}); {len(found)} repeated judgment(s) in all:\n  {shown}{more}\n"
            "keep one of each with on_duplicate first|last (mentalchat fastchat import --on-duplicate)",
            path=file, line=int(line))
    if duplicates is not None:
        duplicates.extend(found)
    # FastChat writes turn 1 for a single-turn question and for the first turn of a two-turn one:
    # a (judge, model, question) with a later turn is multi-turn (turn kept), otherwise single-turn (null).
    multi = {k[:3] for k in kept if k[3] > 1}
    rows = []
    for key, group in kept.items():
        for row in group:
            rows.append({**row, "turn": key[3]} if key[:3] in multi else row)
    if not rows:
        return JUDGMENTS.empty()
    return JUDGMENTS.from_rows(rows)


def _judgment_rows(
    qid: str,
    model: str,
    judge: str,
    prompt: str | None,
    text: str | None,
    model_map: ModelMapConfig | None,
    keep_text: bool,
) -> list[dict[str, Any]]:
    entry = model_map.lookup(model) if model_map else None
    parsed = parse_judgment(text)
    failed = text is not None and text.strip() == "$ERROR$"
    status = "failed" if failed else parsed.status
    base = {
        "question_id": qid,
        "model": model,
        "base_model": entry.base if entry else None,
        "data_config": entry.config if entry else None,
        "judge": judge,
        "overall": parsed.overall,
        "explanation": parsed.explanation if keep_text else None,
        "parse_status": status,
        "raw_text": text if keep_text else None,
        "prompt_version": prompt,
    }
    out = []
    for metric in METRICS:
        score = parsed.scores[metric]
        error = None
        if score is None:
            if failed:
                error = "judge call failed (FastChat $ERROR$)"
            else:
                mine = [n for n in parsed.notes if n.startswith(f"{metric}:")]
                error = "; ".join(mine) or "; ".join(parsed.notes) or "no score"
        out.append({**base, "metric": metric, "score": score, "error": error})
    return out


def format_judgment_text(
    scores: Mapping[str, float | None], overall: float | None, explanation: str | None
) -> str:
    """A FastChat-style judgment text; the overall rating comes first so that FastChat's own
    first-``[[n]]`` rule reads the overall rating."""

    def fmt(v: float | None) -> str:
        if v is None:
            return "N/A"
        return str(int(v)) if float(v).is_integer() else f"{v:g}"

    lines = []
    if explanation:
        lines += [explanation.strip(), ""]
    lines.append(f"Rating: [[{fmt(overall)}]]")
    lines.append("")
    lines += [f"{m}: [[{fmt(scores.get(m))}]]" for m in METRICS]
    return "\n".join(lines)


def write_model_judgments(
    judgments: pa.Table, folder: str | Path, *, prompt_name: str | None = None
) -> list[Path]:
    """Write a ``judgments`` table as FastChat ``<judge>_single.jsonl`` files in ``folder``.

    ``judgment`` is the judge's raw text where we have it, otherwise a FastChat-style text
    built from the scores (human ratings, for example); ``score`` is the overall rating
    (``-1`` when there is none, as FastChat writes for failed judgments). Multi-turn rows keep
    their turn (FastChat's ``"turn": 2`` for the second); single-turn rows are turn 1 as before, and
    whole-conversation rows (turn 0) are left out, FastChat having no such record.
    """
    table = JUDGMENTS.validate(judgments, source="<judgments>")
    cols = ["question_id", "model", "judge", "metric", "score", "overall", "explanation",
            "raw_text", "prompt_version"]
    if "turn" in table.column_names:
        cols.append("turn")
    items: dict[tuple[str, str, str, int | None], dict[str, Any]] = {}
    for row in table.select(cols).to_pylist():
        if row.get("turn") == 0:
            continue  # whole-conversation grades have no FastChat record
        key = (row["judge"], row["model"], row["question_id"], row.get("turn"))
        item = items.setdefault(key, {"scores": {}, **row})
        item["scores"][row["metric"]] = row["score"]
    by_judge: dict[str, list[dict[str, Any]]] = {}
    for (judge, model, qid, turn), item in items.items():
        text = item["raw_text"]
        if text is None:
            text = format_judgment_text(item["scores"], item["overall"], item["explanation"])
        overall = item["overall"]
        by_judge.setdefault(judge, []).append({
            "question_id": _qid_out(qid),
            "model": model,
            "judge": [judge, prompt_name or item["prompt_version"] or DEFAULT_PROMPT_NAME],
            "user_prompt": "",
            "judgment": text,
            "score": (int(overall) if float(overall).is_integer() else overall)
            if overall is not None else -1,
            "turn": 1 if turn is None else turn,
            "tstamp": time.time(),
        })
    folder = Path(folder)
    return [
        _write_jsonl(folder / f"{_safe_name(judge)}_single.jsonl", recs)
        for judge, recs in sorted(by_judge.items())
    ]


# ---------------------------------------------------------------------------------------------
# A whole FastChat data folder
# ---------------------------------------------------------------------------------------------
@dataclass
class FastChatData:
    """What a FastChat data folder held (``None`` for parts it lacked)."""

    questions: list[dict[str, Any]] | None
    answers: pa.Table | None
    judgments: pa.Table | None
    judgment_dirs: list[Path]
    #: judgments dropped as repeats of a (question, model, judge) (``on_duplicate`` first or last)
    duplicates: list[Duplicate] = field(default_factory=list)


def read_fastchat_dir(
    root: str | Path, model_map: ModelMapConfig | None = None, *, keep_text: bool = False,
    on_duplicate: str = "error",
) -> FastChatData:
    """Read ``question.jsonl``, ``model_answer/*.jsonl`` and every ``model_judgment*/*.jsonl``
    (``on_duplicate``: see :func:`read_model_judgments`)."""
    root = Path(root)
    if not root.is_dir():
        raise FastChatFormatError(f"{root}: not a folder")
    qfile = root / "question.jsonl"
    questions = read_questions(qfile) if qfile.is_file() else None
    adir = root / "model_answer"
    answers = read_model_answers(adir, model_map, questions=questions) if adir.is_dir() else None
    jdirs = sorted(p for p in root.glob("model_judgment*") if p.is_dir())
    duplicates: list[Duplicate] = []
    judgments = read_model_judgments(jdirs, model_map, keep_text=keep_text, on_duplicate=on_duplicate,
                                     duplicates=duplicates) if jdirs else None
    if questions is None and answers is None and judgments is None:
        raise FastChatFormatError(
            f"{root}: holds none of question.jsonl, model_answer/, model_judgment*/"
        )
    return FastChatData(questions, answers, judgments, jdirs, duplicates)
