"""What the de-identifier knows about the language: ordinary words, names, medications, our lists.

Why lists and not only a model: names in lowercase speech-to-text ("then rosalind called") carry
no capital for a model to see, and a transcript's rare words are more often names than anything
else. So, as Philter does, a word is suspect unless it is ordinary vocabulary, and a word that is
a known first or last name and not an everyday English word is a name in any case. The kept
vocabulary is large on purpose (everyday English, medications, clinical and feelings words), so
that what a counselling dataset is for survives.

Which words are names, when case is gone? Web text says: ``spacy-lookups-data``'s English
lexeme probabilities keep case, so for every word we know how often it is written capitalised
("walter" 95% of the time, "grace" 32%, "will" 3%). A word mostly capitalised is a proper noun (a
name, a place, an organisation); a word capitalised only sometimes is ambiguous and needs context;
the rest is ordinary vocabulary.

Sources: ``wordfreq`` (English word frequencies), ``spacy-lookups-data`` (cased lexeme
probabilities), ``names-dataset`` (first and last names of every origin, by country; reduced once
to the names ranked within the top ``NAME_RANK`` of some country), ``drug-named-entity-recognition``
(medication names and brands) and the project's own lists in ``mentalchat/data/deid/``. The
derived lists are cached under ``$MENTALCHAT_CACHE/deid`` (building them takes ~20 s and 2 GB once).
"""

from __future__ import annotations

import functools
import importlib.util
import re
import unicodedata
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mentalchat.errors import StageError
from mentalchat.io import atomic_path, build_lock, cache_root

__all__ = ["AMBIGUOUS", "NAME_RANK", "PROPER", "Vocabulary", "fold", "get_vocabulary", "load_list"]

#: A name counts when some country ranks it within this many (first or last names separately).
NAME_RANK = 5000
#: Everyday English: the most frequent words of wordfreq's English list.
COMMON_WORDS = 60_000
#: Capitalised at least this often in web text: a proper noun. Between AMBIGUOUS and PROPER: it depends.
PROPER = 0.5
AMBIGUOUS = 0.2
_NAMES_VERSION = 1
_CASE_VERSION = 1
_MEDICAL_VERSION = 1


def load_list(name: str) -> frozenset[str]:
    """One of ``mentalchat/data/deid/<name>.txt``: lowercase entries, comments and blanks dropped."""
    text = (resources.files("mentalchat") / "data" / "deid" / f"{name}.txt").read_text(encoding="utf-8")
    return frozenset(
        line.split("#", 1)[0].strip().lower() for line in text.splitlines() if line.split("#", 1)[0].strip()
    )


def fold(word: str) -> str:
    """Lowercase without accents ("José" → "jose"), so spellings with and without them meet."""
    norm = unicodedata.normalize("NFKD", word.lower())
    return "".join(ch for ch in norm if not unicodedata.combining(ch))


def _need(module: str, package: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise StageError(
            f"de-identification needs the PyPI package {package}: pip install 'mentalchat[dataset]'"
        )


def _names_cache() -> Path:
    return cache_root() / "deid" / f"names-rank{NAME_RANK}-v{_NAMES_VERSION}.tsv"


def _build_names(target: Path) -> None:
    """Reduce names-dataset to the names some country ranks within NAME_RANK (once; ~10 s, 2 GB)."""
    _need("names_dataset", "names-dataset")
    from names_dataset import NameDataset

    data = NameDataset()
    kinds: dict[str, set[str]] = {}
    for table, kind in ((data.first_names, "F"), (data.last_names, "L")):
        for name, info in table.items():
            ranks = [r for r in (info.get("rank") or {}).values() if r]
            if not ranks or min(ranks) > NAME_RANK:
                continue
            for form in {name.lower(), fold(name)}:
                if len(form) >= 2 and re.fullmatch(r"[^\W\d_][\w'’\-]*", form):
                    kinds.setdefault(form, set()).add(kind)
    with atomic_path(target) as tmp:
        tmp.write_text("".join(f"{n}\t{''.join(sorted(k))}\n" for n, k in sorted(kinds.items())), encoding="utf-8")


def _load_names() -> tuple[frozenset[str], frozenset[str]]:
    target = _names_cache()
    if not target.is_file():
        with build_lock(target):
            if not target.is_file():
                _build_names(target)
    first: set[str] = set()
    last: set[str] = set()
    for line in target.read_text(encoding="utf-8").splitlines():
        name, _, kind = line.partition("\t")
        if "F" in kind:
            first.add(name)
        if "L" in kind:
            last.add(name)
    return frozenset(first), frozenset(last)


def _case_cache() -> Path:
    return cache_root() / "deid" / f"case-v{_CASE_VERSION}.tsv"


def _build_case(target: Path) -> None:
    """Per lowercase word, the share of its web occurrences written capitalised (kept when >= AMBIGUOUS)."""
    _need("spacy_lookups_data", "spacy-lookups-data")
    import gzip
    import json
    import math

    spec = importlib.util.find_spec("spacy_lookups_data")
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin).parent / "data" / "en_lexeme_prob.json.gz"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        probs: dict[str, float] = json.load(fh)
    lower: dict[str, float] = {}
    upper: dict[str, float] = {}
    for word, logp in probs.items():
        if not word[:1].isalpha() or not re.fullmatch(r"[^\W\d_][\w'’\-]*", word):
            continue
        key = word.lower()
        if word == key:
            lower[key] = lower.get(key, 0.0) + math.exp(logp)
        elif word[:1].isupper() and word[1:] == word[1:].lower():
            upper[key] = upper.get(key, 0.0) + math.exp(logp)
    rows = []
    for key, up in upper.items():
        share = up / (up + lower.get(key, 0.0))
        if share >= AMBIGUOUS:
            rows.append(f"{key}\t{share:.3f}\n")
    with atomic_path(target) as tmp:
        tmp.write_text("".join(sorted(rows)), encoding="utf-8")


def _load_case() -> dict[str, float]:
    target = _case_cache()
    if not target.is_file():
        with build_lock(target):
            if not target.is_file():
                _build_case(target)
    out: dict[str, float] = {}
    for line in target.read_text(encoding="utf-8").splitlines():
        word, _, share = line.partition("\t")
        out[word] = float(share)
    return out


def _load_medications() -> frozenset[str]:
    _need("drug_named_entity_recognition", "drug-named-entity-recognition")
    import bz2
    import pickle

    spec = importlib.util.find_spec("drug_named_entity_recognition")
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin).parent / "drug_ner_dictionary.pkl.bz2"
    with bz2.open(path, "rb") as fh:
        variants = pickle.load(fh)["drug_variant_to_canonical"]  # noqa: S301 - a packaged data file
    return frozenset(v for v in (k.lower() for k in variants) if re.fullmatch(r"[a-z][a-z\-]{3,}", v))


def _load_medical() -> frozenset[str]:
    """Every word of the ICD-10-CM diagnosis descriptions (``simple-icd-10-cm``): the vocabulary of
    clinical notes that must survive, cached as a word list. Eponyms stay out ("Parkinson")."""
    target = cache_root() / "deid" / f"icd10cm-words-v{_MEDICAL_VERSION}.txt"
    if not target.is_file():
        with build_lock(target):
            if not target.is_file():
                _need("simple_icd_10_cm", "simple-icd-10-cm")
                import simple_icd_10_cm as cm

                words = {w.lower() for code in cm.get_all_codes(with_dots=False)
                         for w in re.findall(r"[A-Za-z][A-Za-z\-]+", cm.get_description(code))}
                with atomic_path(target) as tmp:
                    tmp.write_text("".join(f"{w}\n" for w in sorted(words)), encoding="utf-8")
    return frozenset(target.read_text(encoding="utf-8").split())


def _load_countries() -> frozenset[str]:
    """Country names (Safe Harbor keeps them), from pycountry, with their common short forms."""
    _need("pycountry", "pycountry")
    import pycountry

    names: set[str] = set()
    for country in pycountry.countries:
        for attr in ("name", "common_name", "official_name"):
            value = getattr(country, attr, None)
            if value:
                names.add(value.lower())
                names.add(value.split(",")[0].lower())
    return frozenset(names | {"usa", "america", "uk", "britain", "great britain", "the states"})


def _load_common() -> frozenset[str]:
    _need("wordfreq", "wordfreq")
    import wordfreq

    return frozenset(w.lower() for w in wordfreq.top_n_list("en", COMMON_WORDS) if w.isalpha() or "'" in w)


@functools.lru_cache(maxsize=200_000)
def _zipf(word: str) -> float:
    import wordfreq

    return wordfreq.zipf_frequency(word, "en")


@dataclass(frozen=True, repr=False)
class Vocabulary:
    """Word sets the recognizers consult (all lowercase; names also accent-folded)."""

    def __repr__(self) -> str:
        return (f"Vocabulary({len(self.common)} common words, {len(self.first_names)} first and "
                f"{len(self.last_names)} last names, {len(self.medications)} medications)")

    common: frozenset[str]
    first_names: frozenset[str]
    last_names: frozenset[str]
    medications: frozenset[str]
    clinical: frozenset[str]
    not_names: frozenset[str]
    roles: frozenset[str]
    safe_terms: frozenset[str]
    streets: frozenset[str]
    person_verbs: frozenset[str]
    relations: frozenset[str]
    facility_words: frozenset[str]
    keep_proper: frozenset[str]
    us_states: frozenset[str]
    state_codes: frozenset[str]
    provinces: frozenset[str]
    countries: frozenset[str]
    #: lowercase word -> share of web occurrences capitalised (only words at or above AMBIGUOUS)
    capitalised: dict[str, float]

    def cap_share(self, word: str) -> float:
        """How often ``word`` is written capitalised in web text (0 when rarely or never, or unknown).

        Very frequent words that open sentences ("Please ...") are capitalised often for that reason
        alone, so above Zipf 5 the share is discounted by how far the word's frequency goes beyond.
        """
        w = word.lower().strip("'’.")
        share = self.capitalised.get(w, 0.0)
        if share and share < 0.8:
            zipf = self.zipf(w)
            if zipf > 5.0:
                share = max(0.0, share - 0.25 * (zipf - 5.0))
        return share

    def is_proper(self, word: str) -> bool:
        """Mostly written capitalised: a name, a place or an organisation."""
        return self.cap_share(word) >= PROPER

    @staticmethod
    def zipf(word: str) -> float:
        """wordfreq's Zipf frequency of an English word (7 = "the", 3 = once per million words, 0 = unknown)."""
        return _zipf(word.lower())

    def is_name(self, word: str) -> bool:
        w = word.lower().strip("'’.")
        return w in self.first_names or w in self.last_names or fold(w) in self.first_names or fold(w) in self.last_names

    def never_name(self, word: str) -> bool:
        """Words that are never a person's name here, in any inflection ("Thursdays", "Mum's")."""
        w = word.lower().strip("'’.")
        forms = {w, re.sub(r"['’]s$", "", w), w[:-1] if w.endswith("s") else w, w[:-2] if w.endswith("es") else w}
        lists = (self.not_names, self.roles, self.safe_terms, self.keep_proper, self.us_states, self.countries)
        return any(f in lst for f in forms for lst in lists)

    def name_like(self, word: str) -> bool:
        """A known name that web text writes capitalised at times, or that no dictionary uses as a word.

        The name lists are broad (some list "Had" or "The" as names somewhere), so membership alone
        is not enough: "walter" (capitalised 95% of the time) is a name, "had" (never) is not.
        """
        w = word.lower().strip("'’.")
        w = re.sub(r"['’]s$", "", w)
        if not self.is_name(w) or self.never_name(w):
            return False
        return self.cap_share(w) >= AMBIGUOUS or self.zipf(w) < 3.0

    def is_kept(self, word: str) -> bool:
        """Vocabulary that is never an identifier by itself (everyday, clinical, medication, our lists)."""
        w = word.lower().strip("'’.")
        w = re.sub(r"['’]s$", "", w)
        return (w in self.common or w in self.clinical or w in self.medications or w in self.not_names
                or w in self.safe_terms or w in self.roles or w in self.streets)

    def is_everyday(self, word: str, threshold: float = 3.0) -> bool:
        """A word ordinary enough that being somebody's name too is not evidence ("will", "grace", "hope")."""
        w = word.lower().strip("'’.")
        return w in self.not_names or w in self.clinical or w in self.medications or self.zipf(w) >= threshold


@functools.lru_cache(maxsize=1)
def get_vocabulary() -> Vocabulary:
    """The process's vocabulary (built on first use: ~1 s, or ~10 s once to derive the name list)."""
    first, last = _load_names()
    return Vocabulary(
        common=_load_common(),
        first_names=first,
        last_names=last,
        medications=_load_medications(),
        clinical=load_list("clinical") | _load_medical(),
        not_names=load_list("not_names"),
        roles=load_list("roles"),
        safe_terms=load_list("safe_terms"),
        streets=load_list("streets"),
        person_verbs=load_list("person_verbs"),
        relations=load_list("relations"),
        facility_words=load_list("facility_words"),
        keep_proper=load_list("keep_proper"),
        us_states=load_list("us_states"),
        state_codes=load_list("state_codes"),
        provinces=load_list("provinces"),
        countries=_load_countries(),
        capitalised=_load_case(),
    )
