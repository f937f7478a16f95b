"""Measure a de-identifier on generated transcripts whose planted identifiers are known.

Recall is per planted identifier (a value counts as caught when :func:`find_leaks` no longer finds
it in the de-identified text); precision is per replaced span (a span is right when it overlaps
an occurrence of a planted value in the raw text). Used by the tests and by
``benchmarks/dataset_throughput.py``.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from mentalchat.dataset.deid import Deidentifier
from mentalchat.dataset.transcripts import GeneratedTranscript, Planted, find_leaks

__all__ = ["DeidScores", "evaluate_deid"]


@dataclass
class DeidScores:
    planted: Counter = field(default_factory=Counter)
    leaked: Counter = field(default_factory=Counter)
    spans: int = 0
    spans_on_planted: int = 0
    pages: int = 0
    words: int = 0
    seconds: float = 0.0
    examples: list[tuple[str, str, str]] = field(default_factory=list)  # kind, value, snippet

    @property
    def recall(self) -> float:
        n = sum(self.planted.values())
        return 1.0 - sum(self.leaked.values()) / n if n else 1.0

    @property
    def precision(self) -> float:
        return self.spans_on_planted / self.spans if self.spans else 1.0

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.seconds if self.seconds else 0.0

    def by_kind(self) -> dict[str, dict[str, float]]:
        return {
            k: {"planted": self.planted[k], "leaked": self.leaked[k],
                "recall": 1.0 - self.leaked[k] / self.planted[k]}
            for k in sorted(self.planted)
        }

    def as_dict(self) -> dict:
        return {
            "recall": round(self.recall, 4), "precision": round(self.precision, 4),
            "planted": sum(self.planted.values()), "leaked": sum(self.leaked.values()),
            "spans": self.spans, "pages": self.pages, "words": self.words,
            "pages_per_s": round(self.pages_per_s, 2), "by_kind": self.by_kind(),
        }


def _intervals(text: str, planted: Sequence[Planted]) -> list[tuple[int, int]]:
    out = []
    for p in planted:
        values = [p.value, *p.value.split()] if p.kind == "name" else [p.value]
        for v in values:
            if len(v) < 2:
                continue
            out.extend(m.span() for m in re.finditer(rf"(?<!\w){re.escape(v)}(?!\w)", text, re.I))
    return out


def evaluate_deid(deid: Deidentifier, transcripts: Sequence[GeneratedTranscript]) -> DeidScores:
    scores = DeidScores()
    t0 = time.perf_counter()
    for t in transcripts:
        pages = t.page_texts()
        found = deid.find_spans(pages)
        redacted = [r.text for r in deid.deidentify_pages(pages, spans=found)]
        scores.pages += len(pages)
        scores.words += sum(len(p.split()) for p in pages)
        for p in dict.fromkeys(t.planted):
            scores.planted[p.kind] += 1
        for p, snippet in find_leaks(redacted, t.planted):
            scores.leaked[p.kind] += 1
            if len(scores.examples) < 50:
                scores.examples.append((p.kind, p.value, snippet))
        for page, spans in zip(pages, found, strict=True):
            iv = _intervals(page, t.planted)
            scores.spans += len(spans)
            scores.spans_on_planted += sum(any(a < s.end and s.start < b for a, b in iv) for s in spans)
    scores.seconds = time.perf_counter() - t0
    return scores
