"""Evaluation documents with gold PHI for the de-identifier, from text this project did not write.

Four sources, each turned into :class:`PhiDoc` objects (pages of one document and the gold spans
on them, in the categories below):

* :func:`presidio_sentences`: sentences from presidio-evaluator's ``PresidioSentenceFaker``
  (Microsoft's templates and fake-person records, ~200 templates);
* :func:`i2b2_notes`: the five i2b2-2014 de-identification sample notes with their gold tags that
  ship inside philter-lite (held out: split ``"test"`` only);
* :func:`generated_transcripts`: this project's own transcript generator, every occurrence of every
  planted value located in the pages;
* :func:`asr_variant`: a speech-to-text rendering of any of the above (lower case, no
  punctuation, numbers, dates, e-mail addresses and URLs spoken), gold offsets kept exact.

Categories follow HIPAA Safe Harbor (:data:`SAFE_HARBOR`); FACILITY (hospitals, schools, employers)
is an extended category reported apart. What a source tags but Safe Harbor does not count as PHI
(countries, states, nationalities, job titles, years alone, ages under 90, weekdays, name titles)
goes to :attr:`PhiDoc.ignored`: neither gold nor "non-PHI words" for the metrics.

Dev and test use different seeds (``2 * seed`` for dev, ``2 * seed + 1`` for test), so no seed is
ever shared. The test split and the i2b2 notes are for measuring only: rules are written and tuned
on the dev split. Nothing is cached on disk; the same arguments give the same documents.

presidio-evaluator and philter-lite are optional (``pip install --no-deps presidio-evaluator
philter-lite``); the loaders raise :class:`SourceMissing` when theirs is absent.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from mentalchat.errors import MentalchatError

__all__ = [
    "CATEGORIES",
    "EXTENDED",
    "I2B2_CATEGORIES",
    "PRESIDIO_FAKER_CATEGORIES",
    "SAFE_HARBOR",
    "TRANSCRIPT_CATEGORIES",
    "Gold",
    "PhiDoc",
    "SourceMissing",
    "asr_variant",
    "digits_to_words",
    "generated_transcripts",
    "i2b2_notes",
    "number_to_words",
    "ordinal_to_words",
    "presidio_sentences",
    "speak",
    "split_seed",
    "spoken_house_number",
    "year_to_words",
]

SAFE_HARBOR = ("NAME", "ADDRESS", "CITY", "ZIP", "DATE", "PHONE", "EMAIL", "SSN", "ID", "URL", "IP", "AGE_90")
EXTENDED = ("FACILITY",)
CATEGORIES = SAFE_HARBOR + EXTENDED
SPLITS = ("dev", "test")


class SourceMissing(MentalchatError, ImportError):
    """An optional source package (presidio-evaluator, philter-lite) is not installed."""


@dataclass(frozen=True)
class Gold:
    """One tagged span: ``pages[page][start:end] == value``."""

    page: int
    start: int
    end: int
    category: str  # one of CATEGORIES for gold; the source's own label for ignored spans
    value: str
    source_type: str = ""  # the tag in the source (faker type, i2b2 TYPE, planted kind)


@dataclass
class PhiDoc:
    """One document (the pages of one transcript, note or sentence) and its gold PHI."""

    set_name: str
    doc_id: str
    pages: list[str]
    gold: list[Gold] = field(default_factory=list)
    split: str = "test"
    ignored: list[Gold] = field(default_factory=list)  # tagged by the source, not PHI

    def check(self) -> PhiDoc:
        """Raise when a span does not slice to its value or spans overlap (loaders call this)."""
        for g in self.gold + self.ignored:
            if self.pages[g.page][g.start:g.end] != g.value:
                raise ValueError(f"{self.doc_id}: span {g} does not slice to its value")
        by_page: dict[int, list[Gold]] = {}
        for g in self.gold + self.ignored:
            by_page.setdefault(g.page, []).append(g)
        for spans in by_page.values():
            spans.sort(key=lambda g: g.start)
            for a, b in zip(spans, spans[1:], strict=False):
                if b.start < a.end:
                    raise ValueError(f"{self.doc_id}: overlapping spans {a} and {b}")
        return self


def split_seed(seed: int, split: str) -> int:
    """The generator seed of a split: dev seeds are even, test seeds odd, so they never meet."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    return 2 * seed + (1 if split == "test" else 0)


# --------------------------------------------------------------------------------------------
# Shared span handling
# --------------------------------------------------------------------------------------------
_TITLES = r"(?:mr|mrs|ms|miss|mx|dr|prof|rev|sir|madam|dame|lady|lord)"
_SUFFIXES = r"(?:jr|sr|ii|iii|iv|md|dds|dvm|phd|esq|rn|np)"
_LEAD_TITLE = re.compile(rf"^(?:{_TITLES}\.?\s+)+", re.I)
_TRAIL_SUFFIX = re.compile(rf"(?:,?\s+{_SUFFIXES}\.?)+$", re.I)
_YEAR_ONLY = re.compile(r"(?:['’]?\d{2}|\d{4})s?")
_WEEKDAY_ONLY = re.compile(
    r"(?i)(?:mon|tues?|wed(?:nes)?|thu(?:rs)?|fri|sat(?:ur)?|sun)(?:day)?s?\.?")


@dataclass
class _Raw:
    """A span before it is finished: category None means ignored (label in ``label``)."""

    start: int
    end: int
    category: str | None
    label: str
    source_type: str


def _date_category(value: str) -> str | None:
    """DATE unless the value is only a year or only a weekday (neither identifies a day)."""
    v = value.strip()
    if _YEAR_ONLY.fullmatch(v) or _WEEKDAY_ONLY.fullmatch(v):
        return None
    return "DATE"


def _age_category(value: str) -> str | None:
    m = re.search(r"\d+(?:\.\d+)?", value)
    if m:
        return "AGE_90" if float(m.group()) > 89 else None
    words = value.lower()
    return "AGE_90" if re.search(r"\bninety|\bhundred", words) else None


def _split_name_titles(text: str, r: _Raw) -> list[_Raw]:
    """Leading titles ("Dr.") and trailing suffixes ("MD") of a name are not the name."""
    value = text[r.start:r.end]
    out = []
    a, b = r.start, r.end
    m = _LEAD_TITLE.match(value)
    if m and m.end() < len(value):
        out.append(_Raw(a, a + len(m.group().rstrip()), None, "TITLE", r.source_type))
        a += m.end()
    m = _TRAIL_SUFFIX.search(text[a:b])
    if m and m.start() > 0:
        s = a + m.start() + (len(m.group()) - len(m.group().lstrip(", \t\n")))
        out.append(_Raw(s, b, None, "TITLE", r.source_type))
        b = a + m.start()
    out.append(_Raw(a, b, r.category, r.label, r.source_type))
    return out


def _trim(text: str, r: _Raw) -> _Raw | None:
    a, b = r.start, r.end
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return replace(r, start=a, end=b) if b > a else None


def _finish(text: str, raws: Iterable[_Raw]) -> list[_Raw]:
    """Trim, split titles off names, drop overlaps (longer spans first, gold before ignored)."""
    spans: list[_Raw] = []
    for r in raws:
        t = _trim(text, r)
        if t is None:
            continue
        spans.extend(_split_name_titles(text, t) if t.category == "NAME" else [t])
    spans.sort(key=lambda r: (r.category is None, -(r.end - r.start), r.start))
    kept: list[_Raw] = []
    for r in spans:
        if not any(r.start < k.end and k.start < r.end for k in kept):
            kept.append(r)
    return sorted(kept, key=lambda r: r.start)


def _golds(page: int, text: str, spans: Sequence[_Raw]) -> tuple[list[Gold], list[Gold]]:
    gold, ignored = [], []
    for r in spans:
        g = Gold(page, r.start, r.end, r.category or r.label, text[r.start:r.end], r.source_type)
        (gold if r.category else ignored).append(g)
    return gold, ignored


# --------------------------------------------------------------------------------------------
# presidio-evaluator's sentence faker
# --------------------------------------------------------------------------------------------
#: Faker / template types → category; None: tagged but not PHI (kept out of both sides).
PRESIDIO_FAKER_CATEGORIES: dict[str, str | None] = {
    # people
    "person": "NAME", "name": "NAME", "name_female": "NAME", "name_male": "NAME",
    "first_name": "NAME", "first_name_female": "NAME", "first_name_male": "NAME",
    "first_name_nonbinary": "NAME", "last_name": "NAME", "last_name_female": "NAME",
    "last_name_male": "NAME",
    # street level (inside an address, first_name/last_name are street names: see _ADDRESS_PARTS)
    "address": "ADDRESS", "street_address": "ADDRESS", "street_name": "ADDRESS",
    "building_number": "ADDRESS", "secondary_address": "ADDRESS", "military_apo": "ADDRESS",
    "military_dpo": "ADDRESS", "military_ship": "ADDRESS",
    "city": "CITY", "zipcode": "ZIP", "postcode": "ZIP",
    "date_time": "DATE", "date_of_birth": "DATE",
    "phone_number": "PHONE", "email": "EMAIL", "ssn": "SSN",
    "credit_card_number": "ID", "iban": "ID", "us_driver_license": "ID",
    "url": "URL", "ip_address": "IP",
    "age": "AGE_90",  # only over 89; younger ages are ignored
    "organization": "FACILITY",
    # not PHI under Safe Harbor
    "country": None, "state": None, "state_abbr": None, "military_state": None,
    "nationality": None, "nation_woman": None, "nation_man": None, "nation_plural": None,
    "prefix": None, "prefix_male": None, "prefix_female": None, "job": None,
    "year": None, "day_of_week": None,
}
#: Inside a generated address these types name streets ("{{first_name}} and {{street_name}}").
_ADDRESS_PARTS = {"first_name": "ADDRESS", "last_name": "ADDRESS"}
_IGNORED_LABEL = {
    "country": "COUNTRY", "state": "STATE", "state_abbr": "STATE", "military_state": "STATE",
    "nationality": "NRP", "nation_woman": "NRP", "nation_man": "NRP", "nation_plural": "NRP",
    "prefix": "TITLE", "prefix_male": "TITLE", "prefix_female": "TITLE", "job": "PROFESSION",
    "year": "YEAR", "day_of_week": "WEEKDAY", "age": "AGE", "date_time": "YEAR",
    "date_of_birth": "YEAR",
}


def _presidio_modules():
    try:
        from presidio_evaluator.data_generator import presidio_sentence_faker as psf
        from presidio_evaluator.data_generator.faker_extensions import AddressProviderNew, HospitalProvider
        from presidio_evaluator.data_generator.faker_extensions.datasets import load_fake_person_df
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SourceMissing(
            "presidio-evaluator is not installed: pip install --no-deps presidio-evaluator==0.3.2"
        ) from exc
    return psf, AddressProviderNew, HospitalProvider, load_fake_person_df


@contextlib.contextmanager
def _restored_random_state():
    """PresidioSentenceFaker seeds the global random, numpy and Faker generators: undo that."""
    import numpy as np
    from faker.generator import random as faker_random

    states = random.getstate(), np.random.get_state(), faker_random.getstate()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        faker_random.setstate(states[2])


def _category_for(source_type: str, value: str, in_address: bool) -> tuple[str | None, str]:
    if in_address and source_type in _ADDRESS_PARTS:
        return _ADDRESS_PARTS[source_type], source_type
    if source_type not in PRESIDIO_FAKER_CATEGORIES:
        raise ValueError(f"presidio faker type {source_type!r} has no category: add it to PRESIDIO_FAKER_CATEGORIES")
    cat = PRESIDIO_FAKER_CATEGORIES[source_type]
    if cat == "AGE_90":
        cat = _age_category(value)
    elif cat == "DATE":
        cat = _date_category(value)
    return cat, _IGNORED_LABEL.get(source_type, source_type.upper())


def _merge_street_parts(text: str, raws: list[_Raw]) -> list[_Raw]:
    """Adjacent street-level parts (number, street, apartment) form one street address."""
    raws = sorted(raws, key=lambda r: r.start)
    out: list[_Raw] = []
    for r in raws:
        prev = out[-1] if out else None
        if (prev is not None and prev.category == "ADDRESS" and r.category == "ADDRESS"
                and re.fullmatch(r"[ \t,]*(?:\n[ \t,]*)?", text[prev.end:r.start])):
            out[-1] = replace(prev, end=max(prev.end, r.end), source_type="street_address")
        else:
            out.append(r)
    return out


_FAKER_CLOCK = datetime(2024, 12, 31, 12, 0, 0)
_ESCAPES = (("\\n", "\n"), ("\\,", ","))  # the template file holds literal "\n" and "\,"


def _unescape_rebuild(text: str, raws: list[_Raw]) -> tuple[str, list[_Raw]]:
    """Turn the templates' literal ``\\n`` into new lines, moving the spans with the text."""
    out, spans, pos = [], [], 0

    def plain(s: str) -> str:
        for a, b in _ESCAPES:
            s = s.replace(a, b)
        return s

    length = 0
    for r in sorted(raws, key=lambda r: r.start):
        seg = plain(text[pos:r.start])
        out.append(seg)
        length += len(seg)
        val = plain(text[r.start:r.end])
        spans.append(replace(r, start=length, end=length + len(val)))
        out.append(val)
        length += len(val)
        pos = r.end
    out.append(plain(text[pos:]))
    return "".join(out), spans


def presidio_templates() -> list[str]:
    """The sentence templates PresidioSentenceFaker draws from (as it preprocesses them)."""
    psf = _presidio_modules()[0]
    lines = [ln.strip() for ln in psf.presidio_templates_file_path.read_text().splitlines()]
    return [psf.PresidioSentenceFaker._preprocess_template(t) for t in lines]


def presidio_sentences(n: int = 3000, seed: int = 0, split: str = "test") -> list[PhiDoc]:
    """``n`` sentences from presidio-evaluator's PresidioSentenceFaker, one document each.

    The faker's generated addresses are one span in its own output; here they are generated with
    their parts (street, city, state, country, postcode) so each part gets its own category. The
    faker's HospitalProvider (which queries WikiData on start-up) is left out: no template uses it.
    Dev and test draw their fake people from disjoint halves of the faker's 3,000 records (even
    and odd record numbers), so names, e-mails, phones and street addresses taken from a record
    never appear in both splits.
    """
    psf, address_base, hospital, load_fake_person_df = _presidio_modules()
    parts_log: list[list[tuple[str, int, int]]] = []

    class AddressWithParts(address_base):
        def address(self) -> str:
            # the same draws as faker's address(), keeping the spans of what it filled in
            pattern = self.random_element(self.address_formats)
            sample = self.generator.parse(pattern, add_spans=True)
            parts_log.append([(s.entity_type, s.start_position, s.end_position) for s in sample.spans])
            return sample.full_text

    from faker.providers.date_time.en_US import Provider as DateTimeProvider

    class FixedClockDates(DateTimeProvider):
        # faker's dates end "now" by default: fix the end so a seed gives the same dates any day
        def unix_time(self, end_datetime=None, start_datetime=None) -> float:
            return super().unix_time(end_datetime=end_datetime or _FAKER_CLOCK, start_datetime=start_datetime)

    providers = [AddressWithParts if p is address_base else p
                 for p in psf.presidio_additional_entity_providers if p is not hospital] + [FixedClockDates]
    identity = {k: k for k in PRESIDIO_FAKER_CATEGORIES}
    docs: list[PhiDoc] = []
    with _restored_random_state(), contextlib.redirect_stdout(io.StringIO()):
        # The fake people are drawn with the global random module (middle initials): seed first.
        psf.PresidioSentenceFaker.seed(split_seed(seed, split))
        people = load_fake_person_df()
        people = people[people["number"] % 2 == (1 if split == "test" else 0)].reset_index(drop=True)
        faker = psf.PresidioSentenceFaker(
            "en_US", lower_case_ratio=0.05, entity_providers=providers, base_records=people,
            entity_type_mapping=identity, random_seed=split_seed(seed, split),
        )
        real_tqdm = psf.tqdm
        psf.tqdm = lambda it, **_: it  # one sample per call below: no progress bar per call
        try:
            for i in range(n):
                parts_log.clear()
                sample = faker.generate_new_fake_sentences(num_samples=1)[0]
                docs.append(_presidio_doc(sample, parts_log, f"presidio-{split}-{seed}-{i:05d}", split))
        finally:
            psf.tqdm = real_tqdm
    return docs


def _presidio_doc(sample, parts_log, doc_id: str, split: str) -> PhiDoc:
    # The faker's lower-casing sets ``fake`` (lower-cased text) without touching ``full_text``.
    text = getattr(sample, "fake", None) or sample.full_text
    raws: list[_Raw] = []
    queue = list(parts_log)
    for sp in sorted(sample.spans, key=lambda s: s.start_position):
        etype, a, b = sp.entity_type, sp.start_position, sp.end_position
        if etype == "address" and queue:
            for ptype, pa, pb in queue.pop(0):
                cat, label = _category_for(ptype, text[a + pa:a + pb], in_address=True)
                raws.append(_Raw(a + pa, a + pb, cat, label, ptype))
            continue
        cat, label = _category_for(etype, text[a:b], in_address=False)
        raws.append(_Raw(a, b, cat, label, etype))
    text, raws = _unescape_rebuild(text, raws)
    raws = _merge_street_parts(text, raws)
    gold, ignored = _golds(0, text, _finish(text, raws))
    return PhiDoc("presidio", doc_id, [text], gold, split, ignored).check()


# --------------------------------------------------------------------------------------------
# i2b2-2014 sample notes shipped with philter-lite
# --------------------------------------------------------------------------------------------
#: i2b2-2014 TYPE → category (AGE and DATE are checked per value); None: not PHI.
I2B2_CATEGORIES: dict[str, str | None] = {
    "PATIENT": "NAME", "DOCTOR": "NAME",
    "USERNAME": "ID",
    "HOSPITAL": "FACILITY", "ORGANIZATION": "FACILITY", "LOCATION-OTHER": "FACILITY",
    "STREET": "ADDRESS", "CITY": "CITY", "ZIP": "ZIP",
    "STATE": None, "COUNTRY": None,
    "AGE": "AGE_90", "DATE": "DATE",
    "PHONE": "PHONE", "FAX": "PHONE", "EMAIL": "EMAIL", "URL": "URL", "IPADDR": "IP",
    "SSN": "SSN",
    "MEDICALRECORD": "ID", "IDNUM": "ID", "HEALTHPLAN": "ID", "ACCOUNT": "ID", "DEVICE": "ID",
    "BIOID": "ID", "LICENSE": "ID", "VEHICLE": "ID",
    "PROFESSION": None,
}


def i2b2_folder() -> Path:
    spec = importlib.util.find_spec("philter_lite")
    if spec is None or not spec.submodule_search_locations:
        raise SourceMissing("philter-lite is not installed: pip install --no-deps philter-lite==0.6.0")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "i2b2_xml"
    if not folder.is_dir():
        raise SourceMissing(f"philter-lite has no i2b2 sample notes at {folder}")
    return folder


def i2b2_notes() -> list[PhiDoc]:
    """The five i2b2-2014 sample notes in philter-lite with their gold tags (split "test" only)."""
    import xmltodict

    docs = []
    for path in sorted(i2b2_folder().glob("*.xml")):
        root = xmltodict.parse(path.read_bytes(), strip_whitespace=False)["deIdi2b2"]
        text = root["TEXT"]
        raws = []
        for key, tags in (root.get("TAGS") or {}).items():
            if key.startswith("#") or key.startswith("@"):
                continue
            for tag in tags if isinstance(tags, list) else [tags]:
                itype = tag["@TYPE"]
                a, b, value = int(tag["@start"]), int(tag["@end"]), tag["@text"]
                if text[a:b] != value:
                    raise ValueError(f"{path.name}: tag {tag.get('@id')} {a}:{b} does not slice to {value!r}")
                if itype not in I2B2_CATEGORIES:
                    raise ValueError(f"{path.name}: i2b2 type {itype!r} has no category in I2B2_CATEGORIES")
                cat = I2B2_CATEGORIES[itype]
                if cat == "AGE_90":
                    cat = _age_category(value)
                elif cat == "DATE":
                    cat = _date_category(value)
                raws.append(_Raw(a, b, cat, itype, itype))
        gold, ignored = _golds(0, text, _finish(text, raws))
        docs.append(PhiDoc("i2b2", f"i2b2-{path.stem}", [text], gold, "test", ignored).check())
    return docs


# --------------------------------------------------------------------------------------------
# This project's generated transcripts
# --------------------------------------------------------------------------------------------
#: Planted kinds of mentalchat.dataset.transcripts → category.
TRANSCRIPT_CATEGORIES = {
    "name": "NAME", "phone": "PHONE", "email": "EMAIL", "address": "ADDRESS", "city": "CITY",
    "zip": "ZIP", "date": "DATE", "age": "AGE_90", "ssn": "SSN", "mrn": "ID", "account": "ID",
    "url": "URL",
}


def _occurrences(value: str, text: str) -> Iterable[tuple[int, int]]:
    pattern = r"\s+".join(re.escape(t) for t in value.split())
    if value[:1].isalnum():
        pattern = r"(?<![\w\-])" + pattern
    if value[-1:].isalnum():
        pattern += r"(?![\w\-])"
    return (m.span() for m in re.finditer(pattern, text, re.I))


def generated_transcripts(n: int = 60, seed: int = 0, split: str = "test") -> list[PhiDoc]:
    """``n`` transcripts of :func:`mentalchat.dataset.transcripts.generate_transcripts`; gold is
    every occurrence (any case) of every planted value on every page, and of each part of a
    planted name on its own."""
    from mentalchat.dataset.transcripts import generate_transcripts

    docs = []
    for t in generate_transcripts(n, seed=split_seed(seed, split)):
        pages = t.page_texts()
        values: dict[tuple[str, str], str] = {}
        for p in t.planted:
            values.setdefault((p.value, TRANSCRIPT_CATEGORIES[p.kind]), p.kind)
            if p.kind == "name":
                for part in p.value.split():
                    if len(part) > 1:
                        values.setdefault((part, "NAME"), p.kind)
        gold: list[Gold] = []
        ignored: list[Gold] = []
        for i, text in enumerate(pages):
            raws = [_Raw(a, b, cat, cat, kind) for (value, cat), kind in values.items()
                    for a, b in _occurrences(value, text)]
            g, ig = _golds(i, text, _finish(text, raws))
            gold += g
            ignored += ig
        docs.append(PhiDoc("transcripts", f"{t.transcript_id}-{split}-{seed}", pages, gold, split, ignored).check())
    return docs


# --------------------------------------------------------------------------------------------
# Spoken numbers (for the speech-to-text rendering)
# --------------------------------------------------------------------------------------------
_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_ORDINAL_WORD = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                 "nine": "ninth", "twelve": "twelfth"}
_MONTHS = ("january february march april may june july august september october november "
           "december").split()


def number_to_words(n: int) -> str:
    """Cardinal words: 254 → "two hundred fifty four"."""
    if n < 0:
        return "minus " + number_to_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {number_to_words(rest)}" if rest else "")
    for size, name in ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand")):
        if n >= size:
            high, rest = divmod(n, size)
            return f"{number_to_words(high)} {name}" + (f" {number_to_words(rest)}" if rest else "")
    raise AssertionError(n)  # pragma: no cover


def ordinal_to_words(n: int) -> str:
    """Ordinal words: 14 → "fourteenth", 21 → "twenty first"."""
    words = number_to_words(n).split()
    last = words[-1]
    if last in _ORDINAL_WORD:
        last = _ORDINAL_WORD[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join([*words[:-1], last])


def _pair(n: int) -> str:
    """Two digits as said after a year's or house number's first pair: 5 → "oh five"."""
    return f"oh {_ONES[n]}" if n < 10 else number_to_words(n)


def year_to_words(y: int) -> str:
    """Years as said: 2021 → "twenty twenty one", 2005 → "two thousand five", 1900 → "nineteen hundred"."""
    if y < 1000 or y > 9999 or y % 1000 == 0 or (y // 100 % 10 == 0 and y % 100 < 10):
        return number_to_words(y)
    high, low = divmod(y, 100)
    return f"{number_to_words(high)} " + ("hundred" if low == 0 else _pair(low))


def spoken_house_number(n: int) -> str:
    """House and apartment numbers as said: 254 → "two fifty four", 1234 → "twelve thirty four"."""
    if n >= 10000:
        return digits_to_words(str(n))
    if n < 100 or n % 1000 == 0 or (n < 1000 and n % 100 == 0):
        return number_to_words(n)
    high, low = divmod(n, 100)
    return f"{number_to_words(high)} " + ("hundred" if low == 0 else _pair(low))


def digits_to_words(s: str) -> str:
    """Each digit on its own (letters spelled): "555-0123" → "five five five zero one two three"."""
    return " ".join(_ONES[int(c)] if c.isdigit() else c.lower() for c in s if c.isalnum())


def _two_digit_year(s: str) -> str:
    n = int(s)
    return _pair(n) if len(s) == 2 and n < 10 else number_to_words(n)


# --------------------------------------------------------------------------------------------
# Speech-to-text rendering, one segment at a time
# --------------------------------------------------------------------------------------------
def _sub_words(rx: str, fn: Callable[[re.Match[str]], str], s: str, flags: int = 0) -> str:
    return re.sub(rx, lambda m: f" {fn(m)} ", s, flags=flags)


def _finish_words(s: str) -> str:
    """Lower case, apostrophes dropped, other punctuation to spaces, spaces collapsed."""
    s = s.lower()
    s = re.sub(r"(?<=\w)['’](?=\w)", "", s)
    s = re.sub(r"[^\w\s]|_", " ", s)
    s = re.sub(r"[ \t\r\f\v]+", " ", s)
    s = re.sub(r" ?\n[\s]*", "\n", s)
    return s


def _speak_numbers(s: str) -> str:
    """Numbers in running text: ordinals, percentages, decimals, times, years, cardinals."""
    s = _sub_words(r"(?<!\d)(\d+)(?:st|nd|rd|th)\b", lambda m: ordinal_to_words(int(m.group(1))), s, re.I)
    s = _sub_words(r"(?<![\d.])(\d{2}|1[1-9]\d0|20\d0)['’]?s\b", lambda m: _plural(_decade_words(m.group(1))), s)
    s = _sub_words(r"(?<![\d.])(\d+)\s?%", lambda m: f"{number_to_words(int(m.group(1)))} percent", s)
    s = _sub_words(r"(?<![\d.])(\d+)\.(\d+)(?![\d.])",
                   lambda m: f"{number_to_words(int(m.group(1)))} point {digits_to_words(m.group(2))}", s)
    s = _sub_words(r"(?<!\d)(\d{1,2}):(\d{2})(?::(\d{2}))?(?!\d)", _speak_time, s)
    s = _sub_words(r"(?<!\d)(1[1-9]\d\d|20\d\d)(?!\d)", lambda m: year_to_words(int(m.group())), s)
    s = _sub_words(r"(?<!\d)\d{1,3}(?:,\d{3})+(?!\d)", lambda m: number_to_words(int(m.group().replace(",", ""))), s)
    s = _sub_words(r"(?<!\d)(?:0|[1-9]\d{0,5})(?!\d)", lambda m: number_to_words(int(m.group())), s)
    s = _sub_words(r"\d+", lambda m: digits_to_words(m.group()), s)
    s = s.replace("&", " and ").replace("@", " at ").replace("+", " plus ")
    s = re.sub(r"#(?=\s*[a-z])", " number ", s)
    return s


def _decade_words(digits: str) -> str:
    return year_to_words(int(digits)) if len(digits) == 4 else number_to_words(int(digits))


def _plural(words: str) -> str:
    """ "seventy" → "seventies", "nineteen eighty" → "nineteen eighties"."""
    return words[:-1] + "ies" if words.endswith("y") else words + "s"


def _speak_time(m: re.Match[str]) -> str:
    hour, minute, second = int(m.group(1)), int(m.group(2)), m.group(3)
    out = number_to_words(hour) + ("" if minute == 0 else f" {_pair(minute)}")
    return out + (f" {number_to_words(int(second))}" if second and int(second) else "")


def _speak_plain(s: str) -> str:
    return _finish_words(_speak_numbers(s))


_ADDRESS_WORDS = {
    "st": "street", "ave": "avenue", "av": "avenue", "rd": "road", "dr": "drive", "ln": "lane",
    "ct": "court", "blvd": "boulevard", "pl": "place", "ter": "terrace", "pkwy": "parkway",
    "hwy": "highway", "cir": "circle", "sq": "square", "trl": "trail", "apt": "apartment",
    "ste": "suite", "fl": "floor",
}


def _speak_address(s: str) -> str:
    s = re.sub(r"\b([A-Za-z]{2,4})\b\.?", lambda m: _ADDRESS_WORDS.get(m.group(1).lower(), m.group(1)), s)
    s = re.sub(r"\b([A-Za-z])\.(?=\s*[A-Za-z]\.)", r"\1 ", s)  # "P.O." → "P O"
    s = _sub_words(r"\d+", lambda m: spoken_house_number(int(m.group())) if len(m.group()) <= 4
                   and not m.group().startswith("0") else digits_to_words(m.group()), s)
    return _finish_words(s)


def _speak_code(s: str) -> str:
    """Phone, SSN, ZIP and ID numbers: digit by digit, letters spelled, separators dropped."""
    s = re.sub(r"(?i)\s*(?:x|ext\.?|extension)\s*(\d+)\s*$", r" extension \1", s)
    out = []
    for tok in re.findall(r"\+|[^\W_]+", s):
        if tok == "+":
            out.append("plus")
        elif tok.lower() == "extension" or (tok.isalpha() and len(tok) > 1 and not tok.isupper()):
            out.append(tok.lower())
        else:
            out.append(digits_to_words(tok))
    return " ".join(out)


def _speak_date(s: str) -> str:
    v = s.strip()
    m = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?", v)
    if m and 1 <= int(m.group(2)) <= 12:
        out = f"{_MONTHS[int(m.group(2)) - 1]} {ordinal_to_words(int(m.group(3)))} {year_to_words(int(m.group(1)))}"
        if m.group(4):
            out += " " + _speak_time(re.match(r"(\d+):(\d+)(?::(\d+))?", v[m.start(4):]))
        return out
    m = re.fullmatch(r"(\d{1,2})[/\-.](\d{1,2})[/\-.](\d{4}|\d{2})", v)
    if m:
        month, day = int(m.group(1)), int(m.group(2))
        if month > 12 >= day:
            month, day = day, month
        if 1 <= month <= 12:
            year = m.group(3)
            spoken_year = year_to_words(int(year)) if len(year) == 4 else _two_digit_year(year)
            return f"{_MONTHS[month - 1]} {ordinal_to_words(day)} {spoken_year}"
    m = re.fullmatch(r"(\d{1,2})[/\-](\d{2}|\d{4})", v)
    if m and 1 <= int(m.group(1)) <= 12:
        month, rest = _MONTHS[int(m.group(1)) - 1], m.group(2)
        if len(rest) == 4:
            return f"{month} {year_to_words(int(rest))}"
        if int(rest) > 31:
            return f"{month} {_two_digit_year(rest)}"
        return f"{month} {ordinal_to_words(int(rest))}"
    # written dates: "March 14, 2021", "the 9th of October", "Oct. 9", "May 2019"
    months = r"jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec"
    full = {m[:3]: m for m in _MONTHS}
    v = re.sub(rf"(?i)\b({months})(?:[a-z]*)\b\.?", lambda m: full[m.group(1).lower()[:3]], v)
    v = re.sub(r"(?<!\d)(\d{1,2}):(\d{2})(?::(\d{2}))?(?!\d)", lambda m: f" {_speak_time(m)} ", v)
    v = _sub_words(r"(?<!\d)(\d{4})(?!\d)", lambda m: year_to_words(int(m.group(1))), v)
    v = _sub_words(r"(?<!\d)(\d{1,2})(?:st|nd|rd|th)?\b", lambda m: ordinal_to_words(int(m.group(1))), v, re.I)
    return _speak_plain(v)


def _speak_email(s: str) -> str:
    names = {".": " dot ", "@": " at ", "_": " underscore ", "-": " dash ", "+": " plus "}
    s = re.sub(r"[.@_\-+]", lambda m: names[m.group()], s)
    s = _sub_words(r"\d+", lambda m: digits_to_words(m.group()), s)
    return _finish_words(s)


def _speak_url(s: str) -> str:
    s = re.sub(r"(?i)^[a-z][a-z0-9+.\-]*://", "", s.strip()).rstrip("/")
    names = {".": " dot ", "/": " slash ", ":": " colon ", "-": " dash ", "_": " underscore ",
             "?": " question mark ", "=": " equals ", "&": " and ", "#": " hash ", "%": " percent ",
             "~": " tilde ", "@": " at ", "+": " plus "}
    s = re.sub(r"[./:\-_?=&#%~@+]", lambda m: names[m.group()], s)
    s = _sub_words(r"\d+", lambda m: digits_to_words(m.group()), s)
    return _finish_words(s)


def _speak_ip(s: str) -> str:
    out = []
    for tok in re.findall(r"[0-9A-Fa-f]+|[.:]", s):
        out.append({".": "dot", ":": "colon"}.get(tok) or digits_to_words(tok))
    return " ".join(out)


def _speak_age(s: str) -> str:
    return _finish_words(_sub_words(r"\d+", lambda m: number_to_words(int(m.group())), s))


_SPEAKERS: dict[str, Callable[[str], str]] = {
    "ADDRESS": _speak_address, "ZIP": _speak_code, "PHONE": _speak_code, "SSN": _speak_code,
    "ID": _speak_code, "DATE": _speak_date, "EMAIL": _speak_email, "URL": _speak_url,
    "IP": _speak_ip, "AGE_90": _speak_age,
}


def speak(text: str, category: str | None = None) -> str:
    """How a speech-to-text system would write ``text`` (a value of ``category``, or running text)."""
    return _SPEAKERS.get(category or "", _speak_plain)(text)


def _asr_page(text: str, spans: Sequence[tuple[Gold, bool]]) -> tuple[str, list[tuple[Gold, bool]]]:
    buf = ""
    out: list[tuple[Gold, bool]] = []
    pos = 0

    def add(piece: str) -> tuple[int, int]:
        nonlocal buf
        if not buf:
            piece = piece.lstrip()
        if buf and piece:
            if buf[-1].isspace() and piece[0].isspace():
                piece = piece.lstrip(" ")
                if buf[-1] == "\n":
                    piece = piece.lstrip("\n")
            elif (buf[-1].isalnum()) and piece[0].isalnum():
                buf += " "  # a value never runs into its neighbour ("smith" + "'s")
        start = len(buf)
        buf += piece
        return start, len(buf)

    for g, is_gold in sorted(spans, key=lambda x: x[0].start):
        add(_speak_plain(text[pos:g.start]))
        spoken = speak(g.value, g.category if is_gold else None).strip()
        pos = g.end
        if not spoken:
            continue
        a, b = add(spoken)
        out.append((replace(g, start=a, end=b, value=buf[a:b]), is_gold))
    add(_speak_plain(text[pos:]).rstrip())
    return buf, out


def asr_variant(docs: Iterable[PhiDoc]) -> list[PhiDoc]:
    """The documents as a speech-to-text system would write them (set name prefixed ``asr:``).

    Each page is rebuilt segment by segment (gold and ignored spans and the text between them),
    so every gold span still slices exactly to its value, and the value is spoken the way the
    category is said: digits of phone, SSN, ZIP and ID numbers one by one, house numbers and ages
    as numbers, dates in words, e-mail addresses and URLs with "at", "dot" and "slash".
    """
    out = []
    for d in docs:
        pages, gold, ignored = [], [], []
        for i, text in enumerate(d.pages):
            spans = [(g, True) for g in d.gold if g.page == i] + [(g, False) for g in d.ignored if g.page == i]
            page, spans = _asr_page(text, spans)
            pages.append(page)
            gold += [g for g, is_gold in spans if is_gold]
            ignored += [g for g, is_gold in spans if not is_gold]
        out.append(PhiDoc(f"asr:{d.set_name}", d.doc_id, pages, gold, d.split, ignored).check())
    return out
