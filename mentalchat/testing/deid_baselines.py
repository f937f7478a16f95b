"""Two outside de-identifiers as tools for :func:`mentalchat.testing.deid_metrics.evaluate`.

* :func:`presidio_tool`: Presidio's ``AnalyzerEngine`` with its default recognizers and its default
  spaCy NER configuration, pointed at the installed ``en_core_web_sm`` (never downloaded); every
  entity it returns is redacted, whatever its score.
* :func:`philter_tool`: philter-lite 0.6.0 with the configuration it ships
  (``configs/philter_delta.toml``). Philter keeps what its "safe" filters match and asterisks
  every other letter and digit; the removed intervals are those it would asterisk. Its part-of-
  speech tags come from spaCy's tagger (Penn tags, over philter's own token list) instead of
  ``nltk.pos_tag``, whose model cannot be downloaded here.

Both raise :class:`~mentalchat.testing.deid_sets.SourceMissing` when their package is absent.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import types
from pathlib import Path

from mentalchat.testing.deid_metrics import Tool, ToolOutput, redact_intervals
from mentalchat.testing.deid_sets import SourceMissing

__all__ = ["philter_tool", "presidio_tool", "spacy_model_path", "spacy_penn_tagger"]


def spacy_model_path(package: str | None = None) -> Path:
    """The data folder of the installed spaCy model package (a path: spaCy loads it, Presidio
    sees it exists and downloads nothing)."""
    from mentalchat.dataset.config import DeidConfig

    package = package or DeidConfig().spacy_model
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SourceMissing(f"spaCy model package {package!r} is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    for sub in sorted(root.iterdir()):
        if sub.is_dir() and (sub / "config.cfg").is_file():
            return sub
    if (root / "config.cfg").is_file():
        return root
    raise SourceMissing(f"no spaCy model data under {root}")


def presidio_tool() -> Tool:
    """Presidio's default analyzer (all default recognizers) on ``en_core_web_sm``."""
    try:
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import NlpEngineProvider
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SourceMissing("presidio-analyzer is not installed") from exc

    # Presidio's own default NLP configuration (entity mapping, labels to ignore), with the model
    # swapped for the installed small one.
    provider = NlpEngineProvider()
    conf = dict(provider.nlp_configuration)
    conf["models"] = [{"lang_code": "en", "model_name": str(spacy_model_path())}]
    engine = NlpEngineProvider(nlp_configuration=conf).create_engine()
    analyzer = AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])
    # The e-mail validator's tldextract tries to fetch the public suffix list and falls back to
    # its bundled copy: quiet its complaint.
    logging.getLogger("tldextract").setLevel(logging.CRITICAL)

    def run(pages: list[str]) -> ToolOutput:
        redacted, removed = [], []
        for text in pages:
            results = analyzer.analyze(text=text, language="en")
            found = [(r.start, r.end, r.entity_type) for r in results if r.end > r.start]
            redacted.append(redact_intervals(text, found))
            removed.append([(a, b) for a, b, _ in found])
        return ToolOutput(redacted, removed)

    return run


def spacy_penn_tagger(nlp):
    """A drop-in for ``nltk.pos_tag`` over philter's token list (words and whitespace runs)."""
    from spacy.tokens import Doc

    def pos_tag(tokens: list[str]) -> list[tuple[str, str]]:
        words, spaces, where = [], [], []
        for i, tok in enumerate(tokens):
            if tok.isspace():
                if spaces:
                    spaces[-1] = True
                continue
            words.append(tok)
            spaces.append(False)
            where.append(i)
        tags = ["_SP"] * len(tokens)
        if words:
            doc = nlp(Doc(nlp.vocab, words=words, spaces=spaces))
            for i, tok in zip(where, doc, strict=True):
                tags[i] = tok.tag_
        return list(zip(tokens, tags, strict=True))

    return pos_tag


def philter_tool() -> Tool:
    """philter-lite 0.6.0, default configuration, spaCy's Penn tags in place of NLTK's."""
    try:
        import philter_lite
        from philter_lite import philter as philter_mod
    except ImportError as exc:
        raise SourceMissing("philter-lite is not installed: pip install --no-deps philter-lite==0.6.0") from exc
    import spacy

    config = Path(philter_lite.__file__).parent / "configs" / "philter_delta.toml"
    filters = philter_lite.load_filters(str(config))
    nlp = spacy.load(spacy_model_path(), exclude=["parser", "ner", "lemmatizer", "attribute_ruler", "senter"])
    shim = types.SimpleNamespace(pos_tag=spacy_penn_tagger(nlp))

    @contextlib.contextmanager
    def spacy_tags():
        real = philter_mod.nltk
        philter_mod.nltk = shim
        try:
            yield
        finally:
            philter_mod.nltk = real

    def run(pages: list[str]) -> ToolOutput:
        redacted, removed = [], []
        with spacy_tags():
            for text in pages:
                include_map, _, _ = philter_lite.detect_phi(text, patterns=filters)
                out = philter_lite.transform_text_asterisk(text, include_map)
                if len(out) != len(text):  # pragma: no cover - philter keeps lengths
                    raise RuntimeError("philter changed the text length")
                iv, start = [], None
                for i, (a, b) in enumerate(zip(text, out, strict=True)):
                    if a != b and start is None:
                        start = i
                    elif a == b and start is not None:
                        iv.append((start, i))
                        start = None
                if start is not None:
                    iv.append((start, len(text)))
                redacted.append(out)
                removed.append(iv)
        return ToolOutput(redacted, removed)

    return run
