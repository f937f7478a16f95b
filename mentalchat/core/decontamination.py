"""Training-data decontamination: find training inputs that near-duplicate a benchmark question.

Why: MentalChat16K's 200 benchmark questions were drawn from a pool of real user posts, and
released or synthetic training pairs can carry the same posts (copied, lightly edited, sentences
reordered). A model tuned on a benchmark question and then judged on it measures memory, not
counselling. The fine-tuning stage drops such pairs before splitting (``finetune.decontamination``),
and the dataset cards of stage 1 and of ``mentalchat import-dataset`` count them.

Two methods, both on word n-grams of normalised text (NFKC, lower case, apostrophes dropped, runs
of letters and digits as words):

* ``ngram`` (default): exact shingle overlap through an inverted index. A pair's score against a
  question is its *containment* ``shared / min(|pair shingles|, |question shingles|)``, so a
  training input that quotes a question inside a longer text, or an excerpt of a question, scores
  as high as a copy. A hit also needs at least ``min_shared`` shared shingles (fewer when the
  question itself is that short), so one common phrase never flags a short text.
* ``minhash``: estimated Jaccard similarity from MinHash signatures (pure numpy, banded LSH for
  candidates). Symmetric, so it finds near-copies of similar length and misses excerpts; cheaper
  memory for a very large reference.

The reference is a questions file: FastChat ``question.jsonl`` or Parquet (read by
:func:`mentalchat.core.questions.load_questions`), or a CSV with a ``question``/``questions``/``text``
column (the authors' ``question_pool.csv``). ``against: benchmark`` means the run's benchmark
questions (the pipeline's ``pipeline.questions``), else the bundled sample questions.
"""

from __future__ import annotations

import csv
import hashlib
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from mentalchat.config import ConfigError, StrictModel
from mentalchat.errors import InputError

__all__ = [
    "DecontaminationConfig",
    "Decontaminator",
    "Hit",
    "Reference",
    "load_reference",
    "normalize_words",
    "reference_path",
    "scan_pairs",
    "shingles",
]

_WORD = re.compile(r"[a-z0-9]+")
_APOSTROPHES = re.compile(r"['\u2019\u2018\u02bc`]")


class DecontaminationConfig(StrictModel):
    """``decontamination:`` of the finetune and dataset sections."""

    enabled: bool = Field(True, description="check training inputs against benchmark questions")
    against: str = Field(
        "benchmark",
        description="benchmark: the run's questions (pipeline.questions, else the bundled samples); "
        "pool: the file in `pool`; or a questions file (question.jsonl, Parquet, CSV)",
    )
    pool: str | None = Field(None, description="the question pool file for against: pool (e.g. question_pool.csv)")
    method: Literal["ngram", "minhash"] = Field("ngram", description="ngram: containment; minhash: Jaccard")
    ngram: int = Field(5, ge=1, le=32, description="words per shingle")
    threshold: float = Field(0.5, gt=0, le=1, description="score at or above which a pair is flagged")
    min_shared: int = Field(
        5, ge=1, description="ngram: shared shingles a hit needs (fewer for shorter questions), so a "
        "common phrase ('i just don't know how to') never flags a short text")
    num_perm: int = Field(128, ge=16, le=1024, description="minhash: signature length")
    remove: bool = Field(True, description="finetune: drop flagged pairs (false: report them only)")


# ---------------------------------------------------------------------------------------------
# Text → shingles
# ---------------------------------------------------------------------------------------------
def normalize_words(text: str) -> list[str]:
    """Words of ``text`` after NFKC, lower-casing and dropping apostrophes (``don’t`` = ``dont``)."""
    text = unicodedata.normalize("NFKC", text).lower()
    return _WORD.findall(_APOSTROPHES.sub("", text))


def shingles(text: str, n: int) -> set[str]:
    """Word n-grams of ``text``; a text shorter than ``n`` words is one shingle (empty: none)."""
    words = normalize_words(text)
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


# ---------------------------------------------------------------------------------------------
# The reference questions
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reference:
    """Questions to check against: ids and texts in file order, and the file they came from.

    A multi-turn question gives one entry per client turn (its id repeated), so a training input
    that copies any one turn is caught as well as a copy of a single-turn question.
    """

    path: str
    ids: list[str]
    texts: list[str]
    sha256: str = ""
    questions: int | None = None  # when entries are turns: how many questions they came from

    def __len__(self) -> int:
        """Questions, not entries: a multi-turn question counts once."""
        return len(self.ids) if self.questions is None else self.questions


_TEXT_COLUMNS = ("question", "questions", "text", "input", "prompt")
_ID_COLUMNS = ("question_id", "id")


def _read_csv_questions(path: Path) -> tuple[list[str], list[str]]:
    ids: list[str] = []
    texts: list[str] = []
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip().lower() for h in next(reader, [])]
            text_col = next((header.index(c) for c in _TEXT_COLUMNS if c in header), None)
            if text_col is None:
                raise InputError.at(path, 1, f"no question column (one of {list(_TEXT_COLUMNS)}; header {header})")
            id_col = next((header.index(c) for c in _ID_COLUMNS if c in header), None)
            for n, row in enumerate(reader, 1):
                if not row or text_col >= len(row) or not row[text_col].strip():
                    continue
                ids.append(row[id_col].strip() if id_col is not None and id_col < len(row) else str(n))
                texts.append(row[text_col])
        except UnicodeDecodeError:
            raise InputError.at(path, None, "not UTF-8") from None
        except csv.Error as exc:
            raise InputError.at(path, reader.line_num, f"malformed CSV: {exc}") from None
    return ids, texts


def load_reference(path: str | Path) -> Reference:
    """Read a questions file (FastChat JSONL, Parquet or CSV) as a :class:`Reference`."""
    from mentalchat.core.questions import load_questions

    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"decontamination reference not found: {path}", path=path)
    count: int | None = None  # set when a multi-turn question gives several entries
    if path.suffix.lower() == ".csv":
        ids, texts = _read_csv_questions(path)
        if not texts:
            raise InputError(f"{path}: holds no questions", path=path)
    else:
        questions = load_questions(path)
        ids = [q.question_id for q in questions for _ in q.turns]
        texts = [t for q in questions for t in q.turns]
        if len(texts) > len(questions):
            count = len(questions)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Reference(path=str(path), ids=ids, texts=texts, sha256=digest, questions=count)


def reference_path(cfg: DecontaminationConfig, benchmark: str | Path | None = None) -> Path:
    """The file ``cfg.against`` names; ``benchmark`` is the run's question file when there is one."""
    from mentalchat.core.questions import bundled_questions

    if cfg.against == "benchmark":
        return Path(benchmark) if benchmark is not None else bundled_questions()
    if cfg.against == "pool":
        if not cfg.pool:
            raise ConfigError("decontamination.against: pool needs decontamination.pool: PATH (a question pool file)")
        return Path(cfg.pool).expanduser()
    return Path(cfg.against).expanduser()


# ---------------------------------------------------------------------------------------------
# Matching
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hit:
    """Text ``index`` near-duplicates reference question ``question_id`` (``shared`` shingles;
    ``shared`` is the estimated count for minhash)."""

    index: int
    question_id: str
    score: float
    shared: int


_EMPTY = (1 << 64) - 1


def _hash64(s: str) -> int:
    return int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=8).digest(), "little")


def _mix(x: Any) -> Any:
    """splitmix64's finaliser on a uint64 array (multiplications wrap modulo 2**64 on purpose).

    Why not ``(a * h + b) mod p``: with 64-bit integers that linear map has to be kept from
    overflowing, and then it is monotonic in ``h`` over most of its range, so the shingle with the
    smallest hash wins in most permutations and unrelated texts sharing it look alike.
    """
    import numpy as np

    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _bands(num_perm: int, threshold: float) -> tuple[int, int]:
    """(bands, rows) whose LSH S-curve rises a little below ``threshold`` (recall first)."""
    target = 0.8 * threshold
    best = min(range(1, num_perm + 1), key=lambda r: abs((1 / (num_perm // r)) ** (1 / r) - target))
    return num_perm // best, best


@dataclass
class Decontaminator:
    """An index over reference questions; :meth:`match` finds the best near-duplicate of a text."""

    reference: Reference
    method: str = "ngram"
    ngram: int = 5
    threshold: float = 0.5
    min_shared: int = 5
    num_perm: int = 128
    seed: int = 1
    _index: dict[Any, list[int]] = field(default_factory=dict, repr=False)
    _sizes: list[int] = field(default_factory=list, repr=False)
    _sigs: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.method not in ("ngram", "minhash"):
            raise ConfigError(f"decontamination.method: unknown {self.method!r} (ngram or minhash)")
        refs = [shingles(t, self.ngram) for t in self.reference.texts]
        self._sizes = [len(s) for s in refs]
        if self.method == "ngram":
            for j, sh in enumerate(refs):
                for s in sh:
                    self._index.setdefault(s, []).append(j)
            return
        import numpy as np

        rng = np.random.default_rng(self.seed)
        self._masks = rng.integers(0, 1 << 63, self.num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._n_bands, self._rows = _bands(self.num_perm, self.threshold)
        self._sigs = np.stack([self._signature(s) for s in refs]) if refs else np.zeros((0, self.num_perm))
        for j, sig in enumerate(self._sigs):
            if not self._sizes[j]:
                continue
            for band, key in enumerate(self._band_keys(sig)):
                self._index.setdefault((band, key), []).append(j)

    @classmethod
    def from_config(cls, cfg: DecontaminationConfig, reference: Reference) -> Decontaminator:
        return cls(reference, method=cfg.method, ngram=cfg.ngram, threshold=cfg.threshold,
                   min_shared=cfg.min_shared, num_perm=cfg.num_perm)

    # -- minhash --------------------------------------------------------------------------------
    def _signature(self, sh: set[str]) -> Any:
        import numpy as np

        if not sh:
            return np.full(self.num_perm, _EMPTY, dtype=np.uint64)
        h = np.fromiter((_hash64(s) for s in sh), dtype=np.uint64, count=len(sh))
        # one independent hash per permutation: the shingle hash xor a random odd mask, then mixed
        return _mix(h[:, None] ^ self._masks[None, :]).min(axis=0)

    def _band_keys(self, sig: Any) -> list[bytes]:
        r = self._rows
        return [sig[b * r:(b + 1) * r].tobytes() for b in range(self._n_bands)]

    # -- both -----------------------------------------------------------------------------------
    def match(self, text: str, index: int = 0) -> Hit | None:
        """The best-scoring reference question ``text`` near-duplicates, or None."""
        sh = shingles(text, self.ngram)
        if not sh:
            return None
        if self.method == "ngram":
            counts = Counter(j for s in sh for j in self._index.get(s, ()))
            best: Hit | None = None
            for j, shared in counts.items():
                score = shared / min(len(sh), self._sizes[j])
                if score < self.threshold or shared < min(self.min_shared, self._sizes[j]):
                    continue
                if best is None or (score, shared) > (best.score, best.shared):
                    best = Hit(index, self.reference.ids[j], round(score, 4), shared)
            return best
        sig = self._signature(sh)
        cands = {j for band, key in enumerate(self._band_keys(sig)) for j in self._index.get((band, key), ())}
        best = None
        for j in cands:
            jac = float((self._sigs[j] == sig).mean())
            if jac >= self.threshold and (best is None or jac > best.score):
                shared = round(jac * (len(sh) + self._sizes[j]) / (1 + jac))
                best = Hit(index, self.reference.ids[j], round(jac, 4), shared)
        return best

    def scan(self, texts: Sequence[str]) -> list[Hit]:
        """Every text with a near-duplicate, in order."""
        return [h for i, t in enumerate(texts) if (h := self.match(t, i)) is not None]


# ---------------------------------------------------------------------------------------------
# One call for the stages: scan a table's inputs, report in one JSON-able dict
# ---------------------------------------------------------------------------------------------
def scan_pairs(
    ids: Sequence[str],
    inputs: Sequence[str],
    sources: Sequence[str],
    cfg: DecontaminationConfig,
    *,
    benchmark: str | Path | None = None,
    reference: Reference | None = None,
) -> tuple[list[Hit], dict[str, Any]]:
    """Check every pair's input; returns the hits and a report (counts, settings, flagged pairs).

    The report is what the stages log, write beside their outputs and show in dataset cards.
    """
    start = time.perf_counter()
    ref = reference if reference is not None else load_reference(reference_path(cfg, benchmark))
    hits = Decontaminator.from_config(cfg, ref).scan(inputs)
    by_source = Counter(sources[h.index] for h in hits)
    report = {
        "reference": ref.path,
        "reference_sha256": ref.sha256,
        "reference_questions": len(ref),
        "method": cfg.method,
        "ngram": cfg.ngram,
        "threshold": cfg.threshold,
        "min_shared": cfg.min_shared if cfg.method == "ngram" else None,
        "checked": len(inputs),
        "checked_by_source": dict(sorted(Counter(sources).items())),
        "flagged": len(hits),
        "flagged_by_source": dict(sorted(by_source.items())),
        "questions_hit": len({h.question_id for h in hits}),
        "pairs": [{"id": ids[h.index], "source": sources[h.index], "question_id": h.question_id,
                   "score": h.score, "shared": h.shared} for h in hits],
        "seconds": round(time.perf_counter() - start, 3),
    }
    return hits, report
