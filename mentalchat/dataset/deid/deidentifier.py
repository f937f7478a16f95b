"""De-identification of transcript pages and model outputs (HIPAA Safe-Harbor categories and more).

One Presidio analyzer runs every detector (:mod:`.recognizers`) on a page with one spaCy pass;
:func:`resolve` turns their overlapping findings into the spans to replace, in one step (drop
what falls inside a role label or an existing placeholder, union overlaps, the stronger type wins).

Then propagation, transcript-wide: every name, place or organisation found once is searched for on
every page of the transcript, in any case (each part of a person's name on its own too), and a
found name also condemns any web address, handle or e-mail local part that contains it
("rosalind.okafor88", "instagram.com/rosieokafor"). So a name the detectors miss in one sentence is
still caught where they found it elsewhere. A name part that is also an everyday word ("Will",
"Grace") is propagated only where it is capitalised.

Spans are replaced by typed placeholders that stay consistent within a transcript
(``[NAME_1]`` is the same person on every page); ages over 89 become ``[AGE_90_PLUS]``. The
mapping from values to placeholders lives only in memory. The same de-identifier runs again on
the model's output (:meth:`Deidentifier.redact_output`), which keeps existing placeholders and
numbers new ones after them.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mentalchat.dataset.config import DeidConfig
from mentalchat.dataset.deid.recognizers import (
    ENTITY_TYPES,
    NameTriggerRecognizer,
    NerRecognizer,
    build_recognizers,
    is_uncased,
)
from mentalchat.dataset.deid.vocab import Vocabulary, get_vocabulary
from mentalchat.errors import StageError

__all__ = [
    "ENTITY_TYPES",
    "PLACEHOLDER_RE",
    "DeidContext",
    "DeidResult",
    "Deidentifier",
    "Span",
    "get_deidentifier",
    "resolve",
]

_PRIORITY = {t: i for i, t in enumerate(ENTITY_TYPES)}  # lower wins when spans overlap
# Whose type wins when spans overlap: a recognizer that types what it finds (patterns, NER, places)
# over those that only know a word is name-like (the vocabulary, the tagger's proper nouns).
_WEAK_SOURCES = {"vocabulary-names", "proper-nouns"}
AGE_PLACEHOLDER = "[AGE_90_PLUS]"
PLACEHOLDER_RE = re.compile(r"\[(?:(" + "|".join(ENTITY_TYPES) + r")_(\d+)|AGE_90_PLUS)\]")
# Presidio's own recognizers report their entity names; ours already use the placeholder types.
_PRESIDIO_TYPES = {"CREDIT_CARD": "ACCOUNT", "IBAN_CODE": "ACCOUNT"}
_TOKENISH = re.compile(r"[^\s<>\"'()\[\],;]+")


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    type: str
    source: str = "regex"


@dataclass
class DeidResult:
    text: str
    counts: dict[str, int]


@dataclass
class DeidContext:
    """Value → placeholder numbers for one transcript (in memory only; it holds raw values)."""

    index: dict[str, dict[str, int]] = field(default_factory=dict)
    next_id: Counter = field(default_factory=Counter)
    name_tokens: dict[str, int] = field(default_factory=dict)

    def seed_from(self, text: str) -> None:
        """Number new placeholders after those already in ``text`` (second pass on outputs)."""
        for m in PLACEHOLDER_RE.finditer(text):
            if m.group(1):
                self.next_id[m.group(1)] = max(self.next_id[m.group(1)], int(m.group(2)))

    def placeholder(self, etype: str, value: str) -> str:
        if etype == "AGE":
            return AGE_PLACEHOLDER
        key = _norm_key(etype, value)
        table = self.index.setdefault(etype, {})
        if key in table:
            return f"[{etype}_{table[key]}]"
        if etype == "NAME":
            toks = [t for t in key.split() if len(t) > 1]
            hit = {self.name_tokens[t] for t in toks if t in self.name_tokens}
            if len(hit) == 1:
                n = hit.pop()
                table[key] = n
                return f"[NAME_{n}]"
        self.next_id[etype] += 1
        n = self.next_id[etype]
        table[key] = n
        if etype == "NAME":
            for t in key.split():
                if len(t) > 1:
                    self.name_tokens.setdefault(t, n)
        return f"[{etype}_{n}]"


def _norm_key(etype: str, value: str) -> str:
    if etype in ("PHONE", "SSN", "ZIP", "MRN", "ACCOUNT", "ID"):
        digits = re.sub(r"[^0-9A-Za-z]", "", value).lower()
        return digits[-10:] if etype == "PHONE" else digits
    v = re.sub(r"\s+", " ", value.strip().lower())
    v = re.sub(r"['’]s$", "", v)
    return v


_LEADING_ARTICLE = re.compile(r"(?i)(?:the|a|an)\s+")


def _trim(text: str, s: Span) -> Span | None:
    """Drop surrounding spaces/punctuation (and a leading article of a name) so placeholders sit where the value was."""
    a, b = s.start, s.end
    while a < b and text[a] in " \t\n,;:!?\"'()[]":
        a += 1
    while b > a and text[b - 1] in " \t\n,;:!?\"'()[].":
        b -= 1
    if s.type in ("NAME", "LOCATION", "ORG") and (m := _LEADING_ARTICLE.match(text, a, b)) is not None:
        a = m.end()
    return Span(a, b, s.type, s.source) if b > a else None


def resolve(text: str, spans: Sequence[Span], *, protected: Sequence[tuple[int, int]] = (),
            excluded: Sequence[tuple[int, int]] = ()) -> list[Span]:
    """The one conflict-resolution step: the spans to replace, disjoint and sorted.

    Spans wholly inside an ``excluded`` range (a speaker label that is a role) are dropped; spans
    are cut around ``protected`` ranges (placeholders already in the text); what remains is trimmed
    of punctuation and overlapping spans are united, the higher-priority type winning.
    """
    kept = [t for s in spans if not any(a <= s.start and s.end <= b for a, b in excluded)
            if (t := _trim(text, s)) is not None]
    for a, b in protected:
        cut: list[Span] = []
        for s in kept:
            if s.end <= a or s.start >= b:
                cut.append(s)
                continue
            if s.start < a:
                cut.append(Span(s.start, a, s.type, s.source))
            if s.end > b:
                cut.append(Span(b, s.end, s.type, s.source))
        kept = [t for s in cut if (t := _trim(text, s)) is not None]
    kept.sort(key=lambda s: (s.start, -(s.end - s.start)))
    out: list[Span] = []
    for s in kept:
        if out and s.start < out[-1].end:
            last = out[-1]
            best = min((last, s), key=lambda x: (x.source in _WEAK_SOURCES, _PRIORITY[x.type]))
            out[-1] = Span(last.start, max(last.end, s.end), best.type, best.source)
        else:
            out.append(s)
    return out


class _NoContext:
    """Presidio's context enhancer, switched off: our recognizers put their context into their
    patterns (it is deterministic there), and the enhancer's token walk costs time per finding."""

    def enhance_using_context(self, text: str, raw_results: list[Any], nlp_artifacts: Any,
                              recognizers: list[Any], context: list[str] | None = None) -> list[Any]:
        return raw_results


class Deidentifier:
    """Finds and replaces identifiers; one instance per process (spaCy and the word lists load once)."""

    def __init__(self, cfg: DeidConfig | None = None) -> None:
        self.cfg = cfg or DeidConfig()
        self.vocab: Vocabulary = get_vocabulary()
        self._analyzer = self._build_analyzer()
        self._triggers = next(r for r in self._analyzer.registry.recognizers if isinstance(r, NameTriggerRecognizer))
        self._lock = threading.Lock()

    # ----------------------------------------------------------------------------------------
    def _build_analyzer(self) -> Any:  # presidio_analyzer.AnalyzerEngine
        try:
            import spacy
            from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
            from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine
        except ImportError as exc:
            raise ImportError(
                "de-identification needs presidio-analyzer and spaCy: pip install 'mentalchat[dataset]'"
            ) from exc

        cfg = self.cfg
        if cfg.ner == "spacy":
            if not spacy.util.is_package(cfg.spacy_model):
                raise StageError(
                    f"spaCy model {cfg.spacy_model!r} is not installed (models are never downloaded at "
                    "run time): pip install 'mentalchat[dataset]', or set dataset.deid.ner=none to "
                    "use patterns and word lists only"
                )
            # NER is what the recognizers read (its own embedding); the tagger only for proper_nouns
            exclude = ["lemmatizer", "parser", "attribute_ruler"] + ([] if cfg.proper_nouns else ["tagger", "tok2vec"])
            nlp = spacy.load(cfg.spacy_model, exclude=exclude)
        else:
            nlp = spacy.blank("en")

        class _LoadedSpacy(SpacyNlpEngine):
            # Presidio's own load() would try to download a missing model; ours is already loaded.
            def load(self) -> None:
                self.nlp = {"en": nlp}

        engine = _LoadedSpacy(ner_model_configuration=NerModelConfiguration(labels_to_ignore=[
            "CARDINAL", "ORDINAL", "QUANTITY", "MONEY", "PERCENT", "TIME", "NORP", "LANGUAGE", "EVENT",
            "WORK_OF_ART", "LAW", "PRODUCT"]))
        engine.load()
        registry = RecognizerRegistry(supported_languages=["en"])
        recognizers = build_recognizers(self.vocab, nlp, cfg)
        for rec in recognizers:
            registry.add_recognizer(rec)
        self._nlp = nlp
        self._ner = next((r for r in recognizers if isinstance(r, NerRecognizer)), None)
        return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"],
                              context_aware_enhancer=_NoContext())

    def _artifacts(self, pages: Sequence[str]) -> list[Any]:
        """One spaCy pass over the pages (batched), as Presidio NlpArtifacts.

        Lowercase speech-to-text pages are tagged in a truecased copy (same offsets), so NER sees
        capitals where names are. Lemmas and keywords are left out: no recognizer reads them.
        """
        from presidio_analyzer.nlp_engine import NlpArtifacts

        texts = [self._ner.truecase(p) if self._ner is not None and is_uncased(p) else p for p in pages]
        out = []
        for doc in self._nlp.pipe(texts, batch_size=16):
            ents = list(doc.ents)
            out.append(NlpArtifacts(entities=ents, tokens=doc, tokens_indices=[], lemmas=[],
                                    nlp_engine=self._analyzer.nlp_engine if hasattr(self, "_analyzer") else None,
                                    language="en", scores=[0.85] * len(ents)))
        return out

    # ----------------------------------------------------------------------------------------
    def analyze(self, text: str, artifacts: Any = None) -> list[Span]:
        """Every recognizer's findings on one text (overlapping; see :func:`resolve`)."""
        with self._lock:
            if artifacts is None:
                artifacts = self._artifacts([text])[0]
            results = self._analyzer.analyze(
                text=text, language="en", score_threshold=self.cfg.min_score, nlp_artifacts=artifacts
            )
        spans = []
        for r in results:
            etype = _PRESIDIO_TYPES.get(r.entity_type, r.entity_type)
            if etype in _PRIORITY:
                source = (r.recognition_metadata or {}).get("recognizer_name", "presidio")
                spans.append(Span(r.start, r.end, etype, source))
        return spans

    # ----------------------------------------------------------------------------------------
    def _propagate(self, texts: Sequence[str], found: list[list[Span]]) -> None:
        """Search every text for each name/place/org value found anywhere in the transcript."""
        v = self.vocab
        values: dict[str, str] = {}
        rank: dict[str, tuple[bool, int]] = {}  # the typing recognizers' word over the name-like ones
        for text, spans in zip(texts, found, strict=True):
            for s in spans:
                if s.type not in ("NAME", "LOCATION", "ORG"):
                    continue
                value = text[s.start:s.end].strip(" .,'’")
                value = re.sub(r"['’]s$", "", value)
                if len(value) < 2:
                    continue
                weak = s.source in _WEAK_SOURCES
                if weak and v.is_everyday(value, 4.5):
                    continue  # a guess on an everyday word stays where it was made
                found_as = [(value.lower(), s.type)]
                if s.type == "NAME":
                    for tok in re.split(r"[\s.]+", value):
                        tok = tok.strip("'’-")
                        if len(tok) > 1 and not v.never_name(tok) and not (weak and v.is_everyday(tok, 4.5)):
                            found_as.append((tok.lower(), "NAME"))
                for key, etype in found_as:  # a value seen as a name anywhere is a name everywhere
                    r = (s.source in _WEAK_SOURCES, _PRIORITY[etype])
                    if key not in values or r < rank[key]:
                        values[key], rank[key] = etype, r
        if not values:
            return
        keys = sorted(values, key=len, reverse=True)
        rx = re.compile(r"(?<![\w\-])(" + "|".join(re.escape(k) for k in keys) + r")(?![\w\-])", re.I)
        # a name part that is an everyday word ("will") spreads only where it is capitalised
        everyday = {k for k in keys if " " not in k and v.is_everyday(k, 4.0) and v.cap_share(k) < 0.5}
        inside = [k for k in keys if len(k) >= 4 and " " not in k and k not in everyday and values[k] == "NAME"]
        inner = re.compile("|".join(re.escape(k) for k in inside), re.I) if inside else None
        for text, spans in zip(texts, found, strict=True):
            for m in rx.finditer(text):
                key = m.group().lower()
                if key in everyday and not m.group()[:1].isupper():
                    continue
                etype = values[key]
                spans.append(Span(m.start(), m.end(), etype, "propagated"))
                # the propagated type also overrides a weaker NER type on the same words
                for i, s in enumerate(spans):
                    if s.start == m.start() and s.end == m.end() and _PRIORITY[s.type] > _PRIORITY[etype]:
                        spans[i] = Span(s.start, s.end, etype, s.source)
            if inner is None:
                continue
            for tok in _TOKENISH.finditer(text):
                word = tok.group().rstrip(".,;:!?")
                if not re.search(r"[@._/\d]", word) or word.lower() in values:
                    continue
                hit = inner.search(word)
                if hit is None or (hit.start() == 0 and hit.end() == len(word)):
                    continue
                kind = "EMAIL" if "@" in word[1:] else ("HANDLE" if word.startswith("@") or "_" in word else
                                                         "URL" if "/" in word or "." in word else "ID")
                spans.append(Span(tok.start(), tok.start() + len(word), kind, "propagated-inside"))

    @staticmethod
    def _replace(text: str, merged: list[Span], ctx: DeidContext) -> DeidResult:
        out: list[str] = []
        counts: Counter = Counter()
        pos = 0
        for s in merged:
            out.append(text[pos:s.start])
            out.append(ctx.placeholder(s.type, text[s.start:s.end]))
            counts[s.type] += 1
            pos = s.end
        out.append(text[pos:])
        return DeidResult("".join(out), dict(counts))

    def find_spans(self, pages: Sequence[str]) -> list[list[Span]]:
        """Merged spans to replace on each page of one transcript (after propagation)."""
        with self._lock:
            artifacts = self._artifacts(pages)
        found = [self.analyze(t, a) for t, a in zip(pages, artifacts, strict=True)]
        self._propagate(pages, found)
        return [
            resolve(text, spans, protected=[m.span() for m in PLACEHOLDER_RE.finditer(text)],
                    excluded=self._triggers.roles(text))
            for text, spans in zip(pages, found, strict=True)
        ]

    def deidentify_pages(
        self, pages: Sequence[str], ctx: DeidContext | None = None, *, spans: list[list[Span]] | None = None
    ) -> list[DeidResult]:
        """De-identify the pages of one transcript with placeholders consistent across pages
        (``spans``: the result of :meth:`find_spans` when the caller already has it)."""
        ctx = ctx or DeidContext()
        spans = spans if spans is not None else self.find_spans(pages)
        return [self._replace(t, s, ctx) for t, s in zip(pages, spans, strict=True)]

    def deidentify(self, text: str, ctx: DeidContext | None = None) -> DeidResult:
        return self.deidentify_pages([text], ctx)[0]

    def redact_output(self, *texts: str) -> list[DeidResult]:
        """Second pass on model output: existing placeholders stay, new finds are numbered after."""
        ctx = DeidContext()
        for t in texts:
            ctx.seed_from(t)
        return self.deidentify_pages(list(texts), ctx)


_CACHE: dict[str, Deidentifier] = {}
_CACHE_LOCK = threading.Lock()


def get_deidentifier(cfg: DeidConfig | None = None) -> Deidentifier:
    """One de-identifier per config per process (spaCy and the word lists load in a few seconds; reuse it)."""
    cfg = cfg or DeidConfig()
    key = cfg.model_dump_json()
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = Deidentifier(cfg)
        return _CACHE[key]
