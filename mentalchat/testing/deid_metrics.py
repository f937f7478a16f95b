"""Scores of a de-identification tool on :class:`~mentalchat.testing.deid_sets.PhiDoc` documents.

A *tool* maps the pages of one document to a :class:`ToolOutput`: the redacted pages and, per
page, the character intervals it removed (in the original page's offsets). Four figures:

* **value recall** (the headline): a gold value leaks when it is still in the redacted page as a
  whole word or phrase, in any case, whitespace normalised ("Anna  Lee" matches "anna lee"), more
  often than the same words stood outside gold spans in the original page (so "will" the verb
  does not count as a leak of "Will" the name). The unit is one distinct value per page and
  category. Safe-Harbor recall pools
  :data:`~mentalchat.testing.deid_sets.SAFE_HARBOR`; FACILITY is reported on its own.
* **token recall** (stricter): the share of the gold values' identifying tokens (alphanumeric
  runs of two characters or more) whose characters all lie inside removed intervals. A tool that
  turns "Anna Lee" into "[NAME] Lee" passes value recall for that value but not token recall.
* **non-PHI words removed**: word tokens that overlap neither a gold span nor a span the source
  tagged as not PHI (:attr:`PhiDoc.ignored`), and of those the share a removed interval touches.
* **pages per second**: pages over the wall seconds spent inside the tool (one process), plus
  pages per CPU second of this process.

The worst leaks (value, category, a snippet of the redacted text) are kept per set, at most
``max_leaks``; with ``examples=False`` (the i2b2 notes) only counts are kept.
"""

from __future__ import annotations

import bisect
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from mentalchat.testing.deid_sets import EXTENDED, SAFE_HARBOR, Gold, PhiDoc

__all__ = [
    "Leak",
    "SetScores",
    "Tool",
    "ToolOutput",
    "covered",
    "evaluate",
    "identifying_tokens",
    "mentalchat_tool",
    "merge_intervals",
    "redact_intervals",
    "value_leaked",
]


@dataclass
class ToolOutput:
    redacted: list[str]
    removed: list[list[tuple[int, int]]]  # per page, in the original page's offsets


Tool = Callable[[list[str]], ToolOutput]

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_TOKEN = re.compile(r"[^\W_]+")
# Most identifying first: the order the worst leaks are listed in.
_SEVERITY = ("SSN", "ID", "EMAIL", "PHONE", "NAME", "ADDRESS", "DATE", "AGE_90", "ZIP", "URL", "IP", "CITY",
             "FACILITY")


# --------------------------------------------------------------------------------------------
# Intervals and matching
# --------------------------------------------------------------------------------------------
def merge_intervals(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted((a, b) for a, b in intervals if b > a):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def covered(a: int, b: int, merged: Sequence[tuple[int, int]]) -> bool:
    """Whether [a, b) lies inside one interval of ``merged`` (sorted, non-overlapping)."""
    i = bisect.bisect_right(merged, (a, float("inf"))) - 1
    return i >= 0 and merged[i][0] <= a and b <= merged[i][1]


def _overlaps(a: int, b: int, merged: Sequence[tuple[int, int]]) -> bool:
    i = bisect.bisect_left(merged, (b, b))
    return i > 0 and merged[i - 1][1] > a


def _value_pattern(value: str) -> re.Pattern[str] | None:
    parts = value.split()
    if not parts:
        return None
    pattern = r"\s+".join(re.escape(p) for p in parts)
    if re.match(r"\w", parts[0]):
        pattern = r"(?<!\w)" + pattern
    if re.search(r"\w$", parts[-1]):
        pattern += r"(?!\w)"
    return re.compile(pattern, re.I)


def value_leaked(value: str, redacted: str, original: str | None = None,
                 gold: Sequence[tuple[int, int]] = ()) -> re.Match[str] | None:
    """An occurrence of ``value`` left in ``redacted`` (whole word, any case, whitespace
    normalised), or None.

    With the ``original`` page and its merged ``gold`` intervals, occurrences of the same words
    that were never PHI ("will" the verb beside "Will" the name) are allowed for: the value leaks
    only when the redacted page holds more occurrences than the original had outside gold spans.
    """
    rx = _value_pattern(value)
    if rx is None:
        return None
    found = list(rx.finditer(redacted))
    if not found:
        return None
    if original is None:
        return found[0]
    not_phi = sum(not _overlaps(m.start(), m.end(), gold) for m in rx.finditer(original))
    return found[0] if len(found) > not_phi else None


def identifying_tokens(g: Gold) -> list[tuple[int, int]]:
    """Page offsets of the gold value's alphanumeric tokens of two characters or more."""
    return [(g.start + m.start(), g.start + m.end()) for m in _TOKEN.finditer(g.value) if len(m.group()) >= 2]


def redact_intervals(text: str, intervals: Iterable[tuple[int, int, str]]) -> str:
    """``text`` with each (start, end, label) replaced by ``<label>`` (overlaps merged, first label)."""
    out, pos = [], 0
    for a, b, label in sorted(intervals):
        if a < pos:
            if b > pos:
                pos = b
            continue
        out += [text[pos:a], f"<{label}>"]
        pos = b
    out.append(text[pos:])
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------
@dataclass
class Leak:
    category: str
    value: str
    snippet: str
    doc_id: str


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


@dataclass
class SetScores:
    set_name: str
    tool: str
    split: str = ""
    docs: int = 0
    pages: int = 0
    chars: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    units: Counter = field(default_factory=Counter)
    leaked: Counter = field(default_factory=Counter)
    tokens: Counter = field(default_factory=Counter)
    tokens_covered: Counter = field(default_factory=Counter)
    words: int = 0
    words_removed: int = 0
    examples: bool = True
    leaks: list[Leak] = field(default_factory=list)

    def value_recall(self, categories: Iterable[str] = SAFE_HARBOR) -> float | None:
        cats = list(categories)
        n = sum(self.units[c] for c in cats)
        return None if not n else 1.0 - sum(self.leaked[c] for c in cats) / n

    def token_recall(self, categories: Iterable[str] = SAFE_HARBOR) -> float | None:
        cats = list(categories)
        return _ratio(sum(self.tokens_covered[c] for c in cats), sum(self.tokens[c] for c in cats))

    @property
    def facility_recall(self) -> float | None:
        return self.value_recall(EXTENDED)

    @property
    def nonphi_removed(self) -> float | None:
        return _ratio(self.words_removed, self.words)

    @property
    def pages_per_s(self) -> float | None:
        return _ratio(self.pages, self.seconds)

    @property
    def pages_per_cpu_s(self) -> float | None:
        return _ratio(self.pages, self.cpu_seconds)

    def by_category(self) -> dict[str, dict[str, float | int | None]]:
        return {
            c: {"gold": self.units[c], "leaked": self.leaked[c], "value_recall": self.value_recall([c]),
                "tokens": self.tokens[c], "token_recall": self.token_recall([c])}
            for c in (*SAFE_HARBOR, *EXTENDED) if self.units[c] or self.tokens[c]
        }

    def worst_leaks(self, n: int = 20) -> list[Leak]:
        """Distinct leaked values, most identifying category first, taken round-robin over the
        categories (so one category does not fill the list), longest values first within each."""
        rank = {c: i for i, c in enumerate(_SEVERITY)}
        seen: set[tuple[str, str]] = set()
        groups: dict[str, list[Leak]] = {}
        for leak in sorted(self.leaks, key=lambda x: (rank.get(x.category, 99), -len(x.value))):
            key = (leak.category, leak.value.lower())
            if key not in seen:
                seen.add(key)
                groups.setdefault(leak.category, []).append(leak)
        out: list[Leak] = []
        while len(out) < n and any(groups.values()):
            for group in groups.values():
                if group and len(out) < n:
                    out.append(group.pop(0))
        return out

    def as_dict(self, max_leaks: int = 20) -> dict:
        def r(x: float | None, nd: int = 4) -> float | None:
            return None if x is None else round(x, nd)

        out = {
            "set": self.set_name, "tool": self.tool, "split": self.split, "docs": self.docs, "pages": self.pages,
            "chars_per_page": round(self.chars / self.pages) if self.pages else 0,
            "gold": sum(self.units[c] for c in SAFE_HARBOR), "leaked": sum(self.leaked[c] for c in SAFE_HARBOR),
            "value_recall": r(self.value_recall()), "token_recall": r(self.token_recall()),
            "facility_gold": self.units["FACILITY"], "facility_value_recall": r(self.facility_recall),
            "facility_token_recall": r(self.token_recall(EXTENDED)),
            "nonphi_words": self.words, "nonphi_removed": r(self.nonphi_removed),
            "seconds": round(self.seconds, 2), "pages_per_s": r(self.pages_per_s, 2),
            "pages_per_cpu_s": r(self.pages_per_cpu_s, 2),
            "by_category": {c: {k: r(v) if isinstance(v, float) else v for k, v in d.items()}
                            for c, d in self.by_category().items()},
        }
        if self.examples:
            out["worst_leaks"] = [{"category": x.category, "value": x.value, "snippet": x.snippet, "doc": x.doc_id}
                                  for x in self.worst_leaks(max_leaks)]
        return out


def _snippet(text: str, m: re.Match[str], width: int = 40) -> str:
    s = text[max(0, m.start() - width): m.end() + width]
    return re.sub(r"\s+", " ", s).strip()


def score_document(doc: PhiDoc, out: ToolOutput, scores: SetScores) -> None:
    """Add one document's figures to ``scores``."""
    if len(out.redacted) != len(doc.pages) or len(out.removed) != len(doc.pages):
        raise ValueError(f"{doc.doc_id}: the tool returned {len(out.redacted)} pages for {len(doc.pages)}")
    removed = [merge_intervals(iv) for iv in out.removed]
    units: dict[tuple[int, str, str], Gold] = {}
    for g in doc.gold:
        units.setdefault((g.page, g.category, " ".join(g.value.lower().split())), g)
        merged = removed[g.page]
        toks = identifying_tokens(g)
        scores.tokens[g.category] += len(toks)
        scores.tokens_covered[g.category] += sum(covered(a, b, merged) for a, b in toks)
    gold_iv = {i: merge_intervals((g.start, g.end) for g in doc.gold if g.page == i) for i in range(len(doc.pages))}
    for (page, cat, _), g in units.items():
        scores.units[cat] += 1
        m = value_leaked(g.value, out.redacted[page], doc.pages[page], gold_iv[page])
        if m:
            scores.leaked[cat] += 1
            if scores.examples:
                scores.leaks.append(Leak(cat, g.value, _snippet(out.redacted[page], m), doc.doc_id))
    for i, text in enumerate(doc.pages):
        tagged = merge_intervals((g.start, g.end) for g in doc.gold + doc.ignored if g.page == i)
        for m in _WORD.finditer(text):
            if _overlaps(m.start(), m.end(), tagged):
                continue
            scores.words += 1
            scores.words_removed += _overlaps(m.start(), m.end(), removed[i])


def evaluate(tool: Tool, docs: Sequence[PhiDoc], *, tool_name: str, examples: bool = True,
             max_leaks: int = 200) -> SetScores:
    """Run ``tool`` on every document (one call per document, timed) and score it."""
    if not docs:
        raise ValueError("no documents to evaluate")
    scores = SetScores(docs[0].set_name, tool_name, docs[0].split, examples=examples)
    for doc in docs:
        t0, c0 = time.perf_counter(), time.process_time()
        out = tool(list(doc.pages))
        scores.seconds += time.perf_counter() - t0
        scores.cpu_seconds += time.process_time() - c0
        scores.docs += 1
        scores.pages += len(doc.pages)
        scores.chars += sum(len(p) for p in doc.pages)
        score_document(doc, out, scores)
        if len(scores.leaks) > max_leaks:  # keep memory flat: only the worst are reported anyway
            scores.leaks = scores.worst_leaks(max_leaks)
    return scores


# --------------------------------------------------------------------------------------------
# mentalchat's own de-identifier as a tool
# --------------------------------------------------------------------------------------------
def mentalchat_tool(cfg=None) -> Tool:
    """``mentalchat.dataset.deid`` as a tool: one transcript per call, names propagated across pages."""
    from mentalchat.dataset.config import DeidConfig
    from mentalchat.dataset.deid import get_deidentifier

    deid = get_deidentifier(cfg or DeidConfig())

    def run(pages: list[str]) -> ToolOutput:
        spans = deid.find_spans(pages)
        results = deid.deidentify_pages(pages, spans=spans)
        return ToolOutput([r.text for r in results], [[(s.start, s.end) for s in page] for page in spans])

    return run
