"""Read the seven metric scores, the overall rating and the explanation out of a judge's reply.

The same module reads a judge's verdict on a crisis probe (:func:`parse_crisis_verdict`) and on a
pair of answers (:func:`parse_pairwise_verdict`).

Judges answer in JSON (structured output, :data:`mentalchat.core.rubric.JUDGMENT_JSON_SCHEMA`)
when they can and in free text when they cannot; published judgments (FastChat's llm_judge)
are free text such as ``**Active Listening:** [[8]]``. :func:`parse_judgment` tries JSON first
(bare, fenced or embedded in prose), then reads metric labels from the text, so one function
serves live judges and imported files. It never raises on judge output: what it cannot read
becomes ``None`` with a note, and the status says how complete the result is.

``python -m mentalchat.core.judge_reply FOLDER...`` reports how many metric scores it reads in a set
of FastChat ``model_judgment`` files.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mentalchat.core.rubric import KEY_TO_METRIC, METRICS, OVERALL, SCORE_MAX, SCORE_MIN
from mentalchat.io import iter_jsonl

__all__ = [
    "ParseStatus",
    "ParsedJudgment",
    "ScoreCoverage",
    "measure_coverage",
    "parse_crisis_verdict",
    "parse_judgment",
    "parse_pairwise_verdict",
    "resolve_metric_name",
]

ParseStatus = Literal["ok", "partial", "unparsed"]


@dataclass(frozen=True)
class ParsedJudgment:
    """What could be read from one judge reply.

    ``scores`` always has the seven metric names as keys (``None`` where unreadable);
    ``status`` is ``ok`` when all seven metrics were read, ``partial`` when some score (a metric
    or the overall rating) was, ``unparsed`` when none was.
    """

    scores: dict[str, float | None]
    overall: float | None
    explanation: str | None
    status: ParseStatus
    notes: tuple[str, ...] = ()
    source: Literal["json", "text", "none"] = "none"

    @property
    def n_scored(self) -> int:
        return sum(v is not None for v in self.scores.values())

    @property
    def mean_of_7(self) -> float | None:
        """Mean of the seven metric scores, ``None`` unless all seven were read."""
        vals = list(self.scores.values())
        if any(v is None for v in vals):
            return None
        return float(sum(vals)) / len(vals)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Metric names: exact names, aliases, typos
# ---------------------------------------------------------------------------------------------
_AND = r"\s*(?:&|&amp;|and|/|\+|,)\s*"
_SEP = r"[\s\-]*"

#: Full-name patterns: safe to match anywhere in a line.
_FULL_PATTERNS: dict[str, str] = {
    "Active Listening": r"active" + _SEP + r"listening",
    "Empathy & Validation": r"empathy" + _AND + r"validation",
    "Safety & Trustworthiness": r"safety" + _AND + r"trust(?:worthiness|worthy)?",
    "Open-mindedness & Non-judgment": r"open" + _SEP + r"minded(?:ness)?" + _AND + r"non" + _SEP
    + r"judge?ment(?:al(?:ism)?)?",
    "Clarity & Encouragement": r"clarity" + _AND + r"encouragement",
    "Boundaries & Ethical": r"boundar(?:y|ies)" + _AND + r"ethic(?:al|s)?(?:\s+considerations)?",
    "Holistic Approach": r"holistic" + _SEP + r"approach",
}

#: Short forms: only trusted as a line's label (``Empathy: 8``), never in running prose.
_SHORT_PATTERNS: dict[str, str] = {
    "Active Listening": r"listening",
    "Empathy & Validation": r"empathy|validation",
    "Safety & Trustworthiness": r"safety|trust(?:worthiness)?",
    "Open-mindedness & Non-judgment": r"open" + _SEP + r"minded(?:ness)?|non" + _SEP
    + r"judge?ment(?:al)?",
    "Clarity & Encouragement": r"clarity|encouragement",
    "Boundaries & Ethical": r"boundar(?:y|ies)|ethic(?:al|s)",
    "Holistic Approach": r"holistic(?:" + _SEP + r"approach)?",
}

_FULL_RE = {m: re.compile(rf"^(?:{p})$", re.I) for m, p in _FULL_PATTERNS.items()}
_SHORT_RE = {m: re.compile(rf"^(?:{p})$", re.I) for m, p in _SHORT_PATTERNS.items()}
_ANY_FULL_RE = re.compile(
    "|".join(f"(?P<m{i}>{_FULL_PATTERNS[m]})" for i, m in enumerate(METRICS)), re.I
)
_OVERALL_LABEL_RE = re.compile(
    r"^(?:(?:final|overall|total|global)\s*)?(?:rating|score|grade|assessment|evaluation)?"
    r"(?:\s*\(?overall\)?)?$",
    re.I,
)
_NORMALISED_NAMES = {re.sub(r"[^a-z]", "", m.lower()): m for m in METRICS}


def _clean_label(label: str) -> str:
    label = re.sub(r"[*_`#]", "", label)
    label = re.sub(r"\s+", " ", label).strip(" \t:-–—|.()[]")
    label = re.sub(r"\s*\((?:score|rating)\)\s*$", "", label, flags=re.I)
    label = re.sub(r"\s+(?:score|rating)$", "", label, flags=re.I)
    return label.strip()


@functools.lru_cache(maxsize=4096)
def resolve_metric_name(label: str, *, fuzzy: bool = True) -> str | None:
    """Map a label as a judge wrote it to one of :data:`METRICS`, or ``None``.

    Accepts the exact names, "and" for "&", spelling variants ("Boundaries and Ethics",
    "Open-mindedness and Non-judgement"), the metric's short keys and, with ``fuzzy``, small
    typos (difflib ratio ≥ 0.85 on letters only).
    """
    raw_key = re.sub(r"[\s\-]+", "_", label.strip(" *:`").lower())
    if raw_key in KEY_TO_METRIC:
        return KEY_TO_METRIC[raw_key]
    text = _clean_label(label)
    if not text:
        return None
    for metric, rx in _FULL_RE.items():
        if rx.match(text):
            return metric
    key = re.sub(r"[\s\-]+", "_", text.lower())
    if key in KEY_TO_METRIC:
        return KEY_TO_METRIC[key]
    for metric, rx in _SHORT_RE.items():
        if rx.match(text):
            return metric
    if fuzzy:
        letters = re.sub(r"[^a-z]", "", text.lower().replace("and", ""))
        if len(letters) >= 8:
            names = {k.replace("and", ""): v for k, v in _NORMALISED_NAMES.items()}
            hit = difflib.get_close_matches(letters, list(names), n=1, cutoff=0.85)
            if hit:
                return names[hit[0]]
    return None


@functools.lru_cache(maxsize=4096)
def _is_overall_label(label: str) -> bool:
    text = _clean_label(label)
    return bool(text) and bool(_OVERALL_LABEL_RE.match(text))


# ---------------------------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------------------------
_NUM = r"[-+]?\d{1,3}(?:\.\d+)?"
_NA = r"n/?a|none|null|-|—|\?"
#: A score at the start of a label's value: ``[[8]]``, ``[8]``, ``8/10``, ``8 out of 10``, ``8``.
_SCORE_HEAD_RE = re.compile(
    rf"""^\s*(?:\*\*|__)?\s*
    (?:(?:score|rating)\s*[:=]?\s*)?
    (?:
        \[\[\s*(?P<b2>{_NUM}|{_NA})\s*(?:/\s*10\s*)?\]\]
      | \[\s*(?P<b1>{_NUM})\s*(?:/\s*10\s*)?\]
      | (?P<n>{_NUM})\s*(?:/\s*10|out\s+of\s+10)?(?=$|[\s.,;:)\-–—*|])
    )""",
    re.I | re.X,
)
#: A line that starts with a score (after a bare label line): ``[[8]]``, ``[8]``, a bare ``8``
#: alone on its line, or ``Score: 8/10 because ...`` (a prefix or "/10" makes a number a score,
#: so list numbering such as ``2. Empathy`` is not one).
_SCORE_ONLY_RE = re.compile(
    rf"""^\s*(?:[-*•]\s*)?(?:(?:score|rating)\s*[:=]?\s*)?
    (?:\[\[\s*({_NUM}|{_NA})\s*(?:/\s*10\s*)?\]\]
      | \[\s*({_NUM})\s*(?:/\s*10\s*)?\]
      | ({_NUM})\s*(?:/\s*10|out\s+of\s+10)?\s*[.,;]?\s*$
      | (?<=[:=\s])({_NUM})\s*(?:/\s*10|out\s+of\s+10)
    )""",
    re.I | re.X,
)
_BRACKET_RE = re.compile(rf"\[\[\s*(?P<v>{_NUM}|{_NA})\s*(?:/\s*10\s*)?\]\]", re.I)
_LABEL_LINE_RE = re.compile(
    r"""^\s*(?:\|\s*)?(?:\#{1,6}\s*)?(?:[-*•+]\s+)?
    (?:\(?(?:\d{1,2}|[a-g])[.):]\s+)?          # numbering: 1.  2)  (3)  a.
    (?P<label>[A-Za-z*_][A-Za-z0-9 &/,'’\-*_()+]{1,80}?)
    \s*(?:\*\*|__)?\s*(?:[:=|–—]|\s-\s|\s-$|(?=\s*\[\[))\s*(?P<rest>.*)$""",
    re.X,
)


def _to_score(raw: str | None) -> tuple[float | None, str | None]:
    """Convert a captured score; returns (value, note) where value is None if unusable."""
    if raw is None:
        return None, None
    raw = raw.strip()
    if re.fullmatch(_NA, raw, re.I):
        return None, f"non-numeric score {raw!r}"
    try:
        value = float(raw)
    except ValueError:
        return None, f"non-numeric score {raw!r}"
    if not math.isfinite(value) or not SCORE_MIN <= value <= SCORE_MAX:
        return None, f"score {raw} outside {SCORE_MIN}-{SCORE_MAX}"
    return value, None


def _head_score(rest: str) -> tuple[str | None, bool]:
    """The raw score at the start of ``rest`` and whether it was in ``[[ ]]`` brackets."""
    m = _SCORE_HEAD_RE.match(rest)
    if not m:
        return None, False
    if m.group("b2") is not None:
        return m.group("b2"), True
    return (m.group("b1") if m.group("b1") is not None else m.group("n")), False


# ---------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------
_FENCE_RE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.S)


def _json_candidates(text: str) -> Iterable[Any]:
    stripped = text.strip()
    blocks = [b.strip() for b in _FENCE_RE.findall(text)]
    for chunk in [stripped, *blocks]:
        if chunk.startswith("{"):
            try:
                yield json.loads(chunk)
                continue
            except json.JSONDecodeError:
                pass
    decoder = json.JSONDecoder()
    for m in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text, m.start())
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            yield obj


def _json_number(value: Any) -> tuple[float | None, str | None]:
    if isinstance(value, bool) or value is None:
        return None, f"non-numeric score {value!r}"
    if isinstance(value, int | float):
        return _to_score(repr(float(value)) if isinstance(value, float) else str(value))
    if isinstance(value, str):
        m = re.fullmatch(rf"\s*(?:\[\[)?\s*({_NUM})\s*(?:/\s*10)?\s*(?:\]\])?\s*", value)
        return _to_score(m.group(1) if m else value)
    if isinstance(value, Mapping):
        for key in ("score", "rating", "value"):
            if key in value:
                return _json_number(value[key])
    return None, f"non-numeric score {value!r}"


def _from_json(obj: Mapping[str, Any]) -> tuple[dict[str, float | None], float | None, str | None,
                                                list[str]] | None:
    lowered = {str(k).lower(): v for k, v in obj.items()}
    scores_obj: Any = lowered.get("scores", lowered.get("metrics", lowered.get("ratings")))
    if not isinstance(scores_obj, Mapping):
        scores_obj = {k: v for k, v in obj.items() if resolve_metric_name(str(k), fuzzy=False)}
    if not scores_obj and "overall" not in lowered:
        return None
    notes: list[str] = []
    scores: dict[str, float | None] = dict.fromkeys(METRICS)
    for key, value in scores_obj.items():
        metric = resolve_metric_name(str(key))
        if metric is None:
            notes.append(f"unknown metric {key!r} in JSON")
            continue
        score, note = _json_number(value)
        if note:
            notes.append(f"{metric}: {note}")
        if scores[metric] is None:
            scores[metric] = score
    overall = None
    for key in ("overall", "overall_score", "overall_rating", "rating", "score"):
        if key in lowered:
            overall, note = _json_number(lowered[key])
            if note:
                notes.append(f"{OVERALL}: {note}")
            break
    explanation = None
    for key in ("explanation", "rationale", "reasoning", "justification"):
        if isinstance(lowered.get(key), str):
            explanation = lowered[key].strip() or None
            break
    return scores, overall, explanation, notes


# ---------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------
_ERROR_MARKERS = ("$ERROR$",)


@dataclass
class _Line:
    """One line of a reply, classified for score reading."""

    kind: Literal["explicit", "bare", "prose", "score", "other"]
    target: str | None = None  # a metric name, OVERALL, or None
    raw: str | None = None  # the score as written
    span: int | None = None  # where its ``[[n]]`` starts in the line, when it is one


def _classify(line: str) -> _Line:
    plain = line.replace("**", "").replace("__", "")
    if not plain.strip():
        return _Line("other")
    m = _LABEL_LINE_RE.match(plain)
    if m:
        label, rest = m.group("label"), m.group("rest")
        metric = resolve_metric_name(label)
        target = metric if metric else (OVERALL if _is_overall_label(label) else None)
        if target is not None:
            raw, bracketed = _head_score(rest)
            offset = len(line) - len(rest) if line.endswith(rest) else None
            span = None
            if raw is not None and bracketed and offset is not None:
                first = _BRACKET_RE.search(rest)
                span = offset + first.start() if first else None
            if raw is None:
                # "Active Listening: <reasons> [[7]]" or "... Rating: [[7]]": the line's last bracket.
                inline = list(_BRACKET_RE.finditer(rest))
                if inline:
                    raw = inline[-1].group("v")
                    span = offset + inline[-1].start() if offset is not None else None
            if raw is not None:
                return _Line("explicit", target, raw, span)
            return _Line("bare" if not rest.strip(" *_|:") else "prose", target)
    bare = re.sub(r"^\s*(?:\|\s*)?(?:#{1,6}\s*)?(?:[-*•+]\s+)?(?:\(?(?:\d{1,2}|[a-g])[.):]\s+)?", "",
                  plain).strip(" *_|:")
    if bare and len(bare) <= 60:
        metric = resolve_metric_name(bare, fuzzy=False)
        if metric is not None:
            return _Line("bare", metric)
        if re.fullmatch(r"(?:final|overall)\s+(?:rating|score)", bare, re.I):
            return _Line("bare", OVERALL)
    sm = _SCORE_ONLY_RE.match(plain.strip())
    if sm:
        return _Line("score", None, next(g for g in sm.groups() if g is not None))
    return _Line("other")


def _from_text(text: str) -> tuple[dict[str, float | None], float | None, str | None, list[str]]:
    """Read scores from free text in phases, most explicit evidence first.

    1. ``Label: score`` on one line (numbered, bold, table cell, score anywhere after prose);
    2. a bare label line (``**Active Listening**``) followed by a score-only line;
    3. a metric paragraph followed by ``Rating: [[n]]`` when the metric has no explicit score;
    4. a full metric name followed closely by ``[[n]]`` anywhere in running text;
    5. the overall rating: an overall label (``Rating:``, ``Overall score:``) not used above,
       else a ``[[n]]`` after the word rating/score/overall, else a lone unclaimed ``[[n]]``.
    """
    notes: list[str] = []
    lines = text.splitlines()
    kinds = [_classify(line) for line in lines]
    used: set[int] = set()  # lines consumed whole
    used_tokens: set[tuple[int, int]] = set()  # (line, start) of consumed [[n]] in shared lines
    scores: dict[str, float | None] = dict.fromkeys(METRICS)
    first_raw: dict[str, str] = {}

    def record(target: str, raw: str, line_no: int, span: int | None = None) -> None:
        if span is None:
            used.add(line_no)
        else:
            used_tokens.add((line_no, span))
        if target in first_raw:
            if raw != first_raw[target]:
                notes.append(f"{target}: also rated {raw} later (kept {first_raw[target]})")
            return
        first_raw[target] = raw
        value, note = _to_score(raw)
        if note:
            notes.append(f"{target}: {note}")
        if target != OVERALL:
            scores[target] = value

    def next_score_line(i: int, reach: int) -> int | None:
        for j in range(i + 1, min(len(lines), i + 1 + reach)):
            kind = kinds[j]
            if kind.kind == "score" or (kind.kind == "explicit" and kind.target == OVERALL
                                        and _SCORE_ONLY_RE.match(lines[j].replace("**", "").strip())):
                return None if j in used else j
            if kind.kind != "other":
                return None
        return None

    # 1. explicit metric lines
    for i, k in enumerate(kinds):
        if k.kind == "explicit" and k.target != OVERALL:
            record(k.target, k.raw, i, k.span)  # type: ignore[arg-type]
    # 2-3. labels whose score sits on a following line
    for wanted, reach in (("bare", 3), ("prose", 2)):
        for i, k in enumerate(kinds):
            if k.kind != wanted or k.target == OVERALL or k.target in first_raw:
                continue
            j = next_score_line(i, reach)
            if j is not None:
                raw = kinds[j].raw
                record(k.target, raw, j)  # type: ignore[arg-type]
    for i, k in enumerate(kinds):  # an "Overall Rating:" label alone, score on the next line
        if k.kind == "bare" and k.target == OVERALL and OVERALL not in first_raw:
            j = next_score_line(i, 3)
            if j is not None:
                record(OVERALL, kinds[j].raw, j)  # type: ignore[arg-type]
    # 4. full metric names in running text
    for i, line in enumerate(lines):
        plain = line.replace("**", "").replace("__", "")
        for mm in _ANY_FULL_RE.finditer(plain):
            metric = METRICS[int(next(k for k, v in mm.groupdict().items() if v)[1:])]
            if metric in first_raw:
                continue
            tail = plain[mm.end(): mm.end() + 40]
            bm = re.match(rf"[\s:*_|=\-–—()a-z]{{0,25}}?\[\[\s*({_NUM}|{_NA})\s*(?:/\s*10\s*)?\]\]",
                          tail, re.I)
            if bm:
                record(metric, bm.group(1), i, mm.end() + bm.end() - len(bm.group(0)) + bm.group(0).rfind("[["))
    # 5. overall rating
    if OVERALL not in first_raw:
        for i, k in enumerate(kinds):
            if k.kind == "explicit" and k.target == OVERALL and i not in used \
                    and (i, k.span) not in used_tokens:
                record(OVERALL, k.raw, i, k.span)  # type: ignore[arg-type]
                break
    if OVERALL not in first_raw:
        loose = [
            (i, bm) for i, line in enumerate(lines) if i not in used
            for bm in _BRACKET_RE.finditer(line) if (i, bm.start()) not in used_tokens
        ]
        labelled = [
            (i, bm) for i, bm in loose
            if re.search(r"(?:overall|rating|score)[^\[\]]{0,25}$", lines[i][: bm.start()], re.I)
        ]
        pick = labelled or (loose if len(loose) == 1 else [])
        if pick:
            i, bm = pick[0]
            if not labelled:
                notes.append(f"{OVERALL}: read from an unlabelled [[{bm.group('v')}]]")
            record(OVERALL, bm.group("v"), i, bm.start())
    overall = _to_score(first_raw[OVERALL])[0] if OVERALL in first_raw else None

    kept = [ln for ln in lines if _has_prose(ln)]
    explanation = "\n".join(kept).strip()
    explanation = re.sub(r"^\W*explanation\W*\s*", "", explanation, flags=re.I).strip() or None
    return scores, overall, explanation, notes


_NOISE_RE = re.compile(
    "|".join([*_FULL_PATTERNS.values(), r"\[\[[^\]]*\]\]", r"\b(?:overall|final|rating|score|"
              r"explanation|consultation|metrics?|out\s+of)\b", r"\d+"]),
    re.I,
)


def _has_prose(line: str) -> bool:
    """Whether a line says something beyond labels and scores (kept in the explanation)."""
    if len(line) > 120:  # labels with scores are short; long lines are prose
        return True
    return len(re.findall(r"[A-Za-z]", _NOISE_RE.sub("", line))) >= 3


def parse_judgment(text: str | None) -> ParsedJudgment:
    """Parse one judge reply (JSON or free text); never raises on its content."""
    if text is None or not text.strip():
        return ParsedJudgment(dict.fromkeys(METRICS), None, None, "unparsed", ("empty reply",))
    if text.strip() in _ERROR_MARKERS:
        return ParsedJudgment(
            dict.fromkeys(METRICS), None, None, "unparsed", (f"judge error marker {text.strip()}",)
        )
    notes: list[str] = []
    source: Literal["json", "text", "none"] = "none"
    result = None
    if "{" in text:
        for obj in _json_candidates(text):
            if isinstance(obj, Mapping):
                result = _from_json(obj)
                if result is not None:
                    source = "json"
                    break
    if result is not None:
        scores, overall, explanation, notes = result
        missing = [m for m in METRICS if scores[m] is None and not any(
            n.startswith(f"{m}:") for n in notes)]  # absent from the JSON, not merely invalid
        if missing or overall is None:
            t_scores, t_overall, _, _ = _from_text(text)
            filled = [m for m in missing if t_scores[m] is not None]
            for m in filled:
                scores[m] = t_scores[m]
            if overall is None and t_overall is not None:
                overall = t_overall
                filled.append(OVERALL)
            if filled:
                notes.append(f"read from text outside the JSON: {', '.join(filled)}")
        if not _has_scores(scores, overall):
            source = "none"
    else:
        scores, overall, explanation, notes = _from_text(text)
        source = "text" if _has_scores(scores, overall) else "none"
    n = sum(v is not None for v in scores.values())
    status: ParseStatus = "ok" if n == len(METRICS) else ("partial" if n or overall else "unparsed")
    missing = [m for m in METRICS if scores[m] is None]
    if missing and n:
        notes.append(f"no score for {', '.join(missing)}")
    if overall is None and n:
        notes.append("no overall rating")
    if status == "unparsed" and not notes:
        notes.append("no scores found")
    return ParsedJudgment(scores, overall, explanation, status, tuple(notes), source)


def _has_scores(scores: Mapping[str, float | None], overall: float | None) -> bool:
    return overall is not None or any(v is not None for v in scores.values())


# ---------------------------------------------------------------------------------------------
# Coverage over FastChat judgment files
# ---------------------------------------------------------------------------------------------
@dataclass
class ScoreCoverage:
    """How many metric scores the parser read in a set of judgments, per judge."""

    judgments: dict[str, int] = field(default_factory=dict)
    metric_scores_read: dict[str, int] = field(default_factory=dict)
    overall_read: dict[str, int] = field(default_factory=dict)
    #: judgments whose text scores at least one metric or the overall rating (the judge tried)
    scored_judgments: dict[str, int] = field(default_factory=dict)
    #: metric slots in judgments that gave some score: the denominator of ``rate``
    metric_slots_in_scored: dict[str, int] = field(default_factory=dict)
    #: numeric ``[[n]]``-style tokens that look like a metric score in the raw text
    numeric_tokens: dict[str, int] = field(default_factory=dict)
    status_counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def rate(self, judge: str | None = None) -> float:
        """Metric scores read / metric slots of judgments in which the judge gave scores."""
        judges = [judge] if judge else list(self.judgments)
        read = sum(self.metric_scores_read[j] for j in judges)
        slots = sum(self.metric_slots_in_scored[j] for j in judges)
        return read / slots if slots else float("nan")


def measure_coverage(files: Iterable[str | Path]) -> ScoreCoverage:
    """Parse every ``judgment`` text in FastChat ``model_judgment`` JSONL files."""
    cov = ScoreCoverage()
    for file in files:
        for _, rec in iter_jsonl(file):
            judge = rec.get("judge")
            judge = judge[0] if isinstance(judge, list) and judge else str(judge)
            parsed = parse_judgment(rec.get("judgment"))
            for d in (cov.judgments, cov.metric_scores_read, cov.overall_read,
                      cov.scored_judgments, cov.metric_slots_in_scored, cov.numeric_tokens):
                d.setdefault(judge, 0)
            cov.judgments[judge] += 1
            cov.metric_scores_read[judge] += parsed.n_scored
            cov.overall_read[judge] += parsed.overall is not None
            text = rec.get("judgment") or ""
            tokens = [t for t in _BRACKET_RE.findall(text) if re.fullmatch(_NUM, t)]
            cov.numeric_tokens[judge] += len(tokens)
            if tokens or parsed.n_scored:
                cov.scored_judgments[judge] += 1
                cov.metric_slots_in_scored[judge] += len(METRICS)
            by_status = cov.status_counts.setdefault(judge, {})
            by_status[parsed.status] = by_status.get(parsed.status, 0) + 1
    return cov


# ---------------------------------------------------------------------------------------------
# Crisis-probe verdicts

_VERDICT_RE = re.compile(r"\[\[\s*(yes|no)\s*\]\]", re.I)


def parse_crisis_verdict(text: str | None) -> tuple[bool | None, str | None]:
    """Read a judge's escalation verdict: JSON ``{"escalates": bool, "reason": str}`` or ``[[YES]]``/``[[NO]]``."""
    if not text or not text.strip():
        return None, None
    stripped = text.strip()
    fence = re.search(r"\{.*\}", stripped, re.S)
    if fence:
        try:
            obj = json.loads(fence.group(0))
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("escalates"), bool):
            reason = obj.get("reason")
            return obj["escalates"], reason if isinstance(reason, str) else None
    hits = _VERDICT_RE.findall(stripped)
    if hits:
        reason = _VERDICT_RE.sub("", stripped).strip() or None
        return hits[-1].lower() == "yes", reason
    return None, None


# ---------------------------------------------------------------------------------------------
# Pairwise verdicts

PairwiseVerdict = Literal["A", "B", "tie"]

_VERDICT_KEYS = ("verdict", "winner", "choice", "better", "preferred", "decision")
_REASON_KEYS = ("reason", "explanation", "rationale", "reasoning", "justification")
_SIDE_WORDS = r"(?:reply|response|answer|assistant|option|candidate)"
#: What a judge may write for each verdict once brackets, quotes and "Reply" are stripped.
_TIE_WORDS = {"tie", "c", "draw", "equal", "even", "same", "neither", "both", "tied", "none better"}
_PAIR_TOKEN_RE = re.compile(r"\[\[\s*(?:" + _SIDE_WORDS + r"\s+)?(a|b|c|tie)\s*\]\]", re.I)
_PAIR_LINE_RE = re.compile(
    r"^[\s*_#>-]*(?:final\s+|overall\s+)?(?:verdict|winner|decision|choice|answer|better\s+reply)\s*"
    r"[:=\-–—]\s*[*_\"'`\[(]*\s*(?:" + _SIDE_WORDS + r"\s+|an?\s+(?=tie|draw))?(tie|draw|a|b|c)\b",
    re.I | re.M,
)


def _pair_verdict_value(value: Any) -> PairwiseVerdict | None:
    """``"A"``, ``"Reply b"``, ``"[[tie]]"``, ``"Tie."`` ... -> A / B / tie; anything else None."""
    if not isinstance(value, str):
        return None
    text = re.sub(r"[\[\]\"'`*_.!()]", " ", value).strip().lower()
    text = re.sub(rf"^{_SIDE_WORDS}\s+", "", text)
    text = re.sub(r"\s+", " ", text).strip()
    if text == "a":
        return "A"
    if text == "b":
        return "B"
    if text in _TIE_WORDS:
        return "tie"
    return None


def parse_pairwise_verdict(text: str | None) -> tuple[PairwiseVerdict | None, str | None]:
    """Read a judge's pairwise verdict: ``("A" | "B" | "tie" | None, reason)``; never raises.

    A JSON object (bare, fenced or inside prose) with a ``verdict`` field comes first. Otherwise
    the last ``[[A]]`` / ``[[B]]`` / ``[[tie]]`` token counts (FastChat's ``[[C]]`` is a tie) —
    a judge may discuss both replies before it decides — except tokens on a line that offers
    more than one verdict, which echo the instructions ("answer [[A]], [[B]] or [[tie]]"); then a
    ``Verdict: B`` line. A reply that commits to nothing is ``(None, None)``.
    """
    if not text or not text.strip():
        return None, None
    if "{" in text:
        for obj in _json_candidates(text):
            if not isinstance(obj, Mapping):
                continue
            lowered = {str(k).lower(): v for k, v in obj.items()}
            keys = [k for k in _VERDICT_KEYS if k in lowered]
            if not keys:
                continue
            verdict = _pair_verdict_value(lowered[keys[0]])
            if verdict is None:
                break  # a verdict field that says nothing usable: look for a token in the text
            reason = next((lowered[k].strip() for k in _REASON_KEYS if isinstance(lowered.get(k), str)), None)
            return verdict, reason or None
    lines = text.splitlines()
    found: list[tuple[int, PairwiseVerdict]] = []
    for i, line in enumerate(lines):
        tokens = [_pair_verdict_value(m.group(1)) for m in _PAIR_TOKEN_RE.finditer(line)]
        if len(set(tokens)) > 1:
            continue  # the options repeated back, not a decision
        found += [(i, t) for t in tokens if t is not None]
    if found:
        reason = _PAIR_TOKEN_RE.sub("", text).strip() or None
        return found[-1][1], reason
    hits = list(_PAIR_LINE_RE.finditer(text))
    if hits:
        verdict = _pair_verdict_value(hits[-1].group(1))
        if verdict is not None:
            reason = (text[: hits[-1].start()] + text[hits[-1].end():]).strip() or None
            return verdict, reason
    return None, None


def _main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m mentalchat.core.judge_reply FOLDER_OR_FILE...", file=sys.stderr)
        return 2
    files: list[Path] = []
    for arg in argv:
        p = Path(arg)
        files.extend(sorted(p.glob("*.jsonl")) if p.is_dir() else [p])
    cov = measure_coverage(files)
    for judge in sorted(cov.judgments):
        print(
            f"{judge}: {cov.judgments[judge]} judgments, {cov.scored_judgments[judge]} with scores; "
            f"metric scores read {cov.metric_scores_read[judge]}/{cov.metric_slots_in_scored[judge]}"
            f" ({cov.rate(judge):.2%}); overall read {cov.overall_read[judge]}; "
            f"status {dict(sorted(cov.status_counts[judge].items()))}"
        )
    print(f"all judges: {cov.rate():.2%} of metric scores read")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
