"""Every detector of the de-identifier, each a Presidio recognizer, in one registry.

Why one registry: detectors that ran beside the analyzer (regular expressions, name heuristics)
each had their own idea of overlaps and thresholds. Now every one is a
:class:`presidio_analyzer.EntityRecognizer`; the analyzer runs them all on one text with one spaCy
pass, and :mod:`.deidentifier` resolves the overlaps in one step.

Recall first, failing closed: identifiers are matched whether written or spoken
(:mod:`.spoken`), in any case, in US, UK and Canadian formats; names by their shape in context
(titles, relations, "my name is"), by the vocabulary (a known name that is not an everyday word,
any case; a word web text writes capitalised; a word no dictionary knows) and by spaCy's NER,
which on lowercase speech-to-text reads a truecased copy.

Entity types are the placeholders' types (:data:`ENTITY_TYPES`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from presidio_analyzer import EntityRecognizer, RecognizerResult

from mentalchat.dataset.deid import spoken
from mentalchat.dataset.deid.vocab import AMBIGUOUS, PROPER, Vocabulary

__all__ = [
    "ENTITY_TYPES",
    "NameTriggerRecognizer",
    "NerRecognizer",
    "RegexRecognizer",
    "Rule",
    "VocabularyNameRecognizer",
    "build_recognizers",
]

ENTITY_TYPES = (
    "EMAIL", "URL", "HANDLE", "SSN", "PHONE", "MRN", "ACCOUNT", "ADDRESS", "DATE", "ZIP", "AGE", "ID",
    "NAME", "LOCATION", "ORG",
)


def _words(items: Iterable[str]) -> str:
    """An alternation of literal words (longest first, so "care home" wins over "home")."""
    return "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in sorted(set(items), key=len, reverse=True))


# --------------------------------------------------------------------------------------------
# Pattern rules
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """One regular expression: the span is ``group`` (whole match for 0), kept when ``accept`` agrees."""

    name: str
    pattern: re.Pattern[str]
    score: float = 0.85
    group: int | str = 0
    accept: Callable[[str, re.Match[str]], bool] | None = None
    #: skip the rule unless the lowercased text contains one of these (cheap, for costly patterns)
    needs: tuple[str, ...] = ()


class RegexRecognizer(EntityRecognizer):
    """A Presidio recognizer over a list of :class:`Rule` for one entity type."""

    def __init__(self, entity: str, rules: Sequence[Rule], name: str | None = None) -> None:
        self.rules = list(rules)
        super().__init__(supported_entities=[entity], name=name or f"{entity.lower()}-patterns")

    def load(self) -> None:  # nothing to load
        return None

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        entity = self.supported_entities[0]
        out = []
        low = text.lower()
        for rule in self.rules:
            if rule.needs and not any(n in low for n in rule.needs):
                continue
            for m in rule.pattern.finditer(text):
                if rule.accept is not None and not rule.accept(text, m):
                    continue
                a, b = m.span(rule.group)
                if a < 0 or b <= a:
                    continue
                out.append(RecognizerResult(entity, a, b, rule.score,
                                            recognition_metadata={"recognizer_name": self.name, "rule": rule.name}))
        return out


def _digits(s: str) -> int:
    return sum(ch.isdigit() for ch in s)


def _nhs_valid(digits: str) -> bool:
    """NHS numbers carry a modulus-11 check digit."""
    if len(digits) != 10:
        return False
    total = sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    return check != 10 and check == int(digits[9])


_I = re.I
_MONTH = spoken.MONTH
_ORD = r"\d{1,2}(?:st|nd|rd|th)?"
_SPOKEN_DIGITS = spoken.SPOKEN_DIGITS
#: a number read out any way: "ninety six eighty three", "oh nine", "zero two eight seven"
_NUM_SEQ = rf"(?:{spoken.SPOKEN_NUMBER}|{spoken.DIGIT_WORD})(?:\s+(?:{spoken.SPOKEN_NUMBER}|{spoken.DIGIT_WORD})){{0,4}}"
_AGE_NUM = r"(?:9\d|1[01]\d)"
_AGE_WORD = (r"(?:ninety(?:[\s-](?:one|two|three|four|five|six|seven|eight|nine))?|"
             r"(?:a|one)\s+hundred(?:\s+and\s+(?:one|two|three|four|five|six|seven|eight|nine|ten))?)")
_MBI_L = "AC-HJKMNP-RT-Y"  # letters a Medicare Beneficiary Identifier may use (no S L O I B Z)
_ID_CONTEXT = (r"(?:account|acct|member(?:ship)?|policy|insurance|subscriber|group|claim|card|"
               r"identification|licen[cs]e|certificate|routing|case|reference|ref|patient|chart|"
               r"record|medical\s+record|mrn|medicare|medicaid|nhs|health\s+(?:card|number|plan)|"
               r"beneficiary|passport|plate|registration|reg|vin|serial|device|badge|employee|student)")


def _last_words(text: str, end: int, n: int = 4) -> list[str]:
    words = re.findall(r"[^\W\d_][\w'’.\-]*", text[max(0, end - 60):end])
    return [w.lower().strip(".") for w in words[-n:]]


def _after_any(text: str, start: int, names: frozenset[str]) -> bool:
    """The words just before ``start`` (only spaces and a comma between) end with one of ``names``."""
    gap = text[max(0, start - 3):start]
    if re.search(r"[^\s,]", gap[-2:] if len(gap) >= 2 else gap) and not gap.endswith((" ", ",")):
        return False
    before = text[max(0, start - 60):start].rstrip(" ,")
    if not before or not before[-1].isalpha():
        return False
    words = _last_words(before, len(before))
    return any(" ".join(words[i:]) in names for i in range(len(words)))


def _before_any(text: str, end: int, names: frozenset[str]) -> bool:
    """The words just after ``end`` (spaces and a comma between) start with one of ``names``."""
    words = [w.lower().strip(".,") for w in re.findall(r"[^\W\d_][\w'’.\-]*", text[end:end + 60])[:4]]
    return any(" ".join(words[:i]) in names for i in range(1, len(words) + 1))


def _pattern_rules(v: Vocabulary) -> dict[str, list[Rule]]:
    """Every pattern rule by entity type (built once per vocabulary)."""
    street = _words(v.streets)
    tld = spoken.TLD
    c = re.compile
    rules: dict[str, list[Rule]] = {
        "EMAIL": [
            Rule("email", c(r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b")),
            # spoken: "john dot smith at gmail dot com", "rosie underscore k at yahoo dot co dot uk"
            Rule("email-spoken", c(
                rf"(?i)\b[a-z0-9]+(?:\s+(?:dot|underscore|dash|hyphen|period)\s+[a-z0-9]+){{0,4}}"
                rf"(?:\s+[a-z0-9]+)?\s+at\s+[a-z0-9]+(?:\s+(?:dot|dash)\s+[a-z0-9]+){{0,3}}\s+dot\s+{tld}\b"
            ), score=0.8, needs=(" at ",), accept=lambda t, m: not re.search(r"(?i)\bat\s+www\b", m.group())),
        ],
        "URL": [
            Rule("url", c(r"(?i)\b(?:https?://|www\.)[^\s<>\"']+[^\s<>\"'.,;:!?)\]]")),
            Rule("url-path", c(
                r"(?i)\b[a-z0-9][a-z0-9\-]*(?:\.[a-z0-9\-]+)*\.(?:com|org|net|edu|gov|io|us|uk|ca|info|co|me|health)"
                r"(?:/[^\s<>\"']*[^\s<>\"'.,;:!?)\]])?")),
            Rule("url-spoken", c(
                rf"(?i)\b(?:(?:https?\s+)?(?:colon\s+)?(?:slash\s+slash\s+)?www\s+dot\s+)?[a-z0-9]+(?:\s+dot\s+[a-z0-9]+)*"
                rf"\s+dot\s+{tld}\b(?:\s+(?:slash|forward\s+slash)\s+[a-z0-9]+(?:\s+(?:dash|underscore)\s+[a-z0-9]+)*)*"
            ), score=0.7, needs=(" dot ",), accept=lambda t, m: "www" in m.group().lower()
                                                or " slash " in m.group().lower() or len(m.group().split()) <= 5),
        ],
        "HANDLE": [
            Rule("handle", c(r"(?<![\w@.])@[A-Za-z0-9_][A-Za-z0-9_.]{1,29}\b")),
            Rule("handle-context", c(
                r"(?i)\b(?:instagram|insta|twitter|tiktok|snapchat|facebook|linkedin|reddit|discord|threads|"
                r"handle|username|user\s+name|screen\s+name|gamertag)\b(?:\s+(?:is|was|as|at|it's|its|called|name))*"
                r"[\s:]+(@?[a-z0-9][\w.]*(?:\s+(?:underscore|dot)\s+[a-z0-9]+)*)"
            ), group=1, score=0.7, accept=lambda t, m: not v.is_kept(m.group(1)) or "_" in m.group(1)
                                                       or any(ch.isdigit() for ch in m.group(1))
                                                       or " underscore " in m.group(1).lower()),
        ],
        "SSN": [
            Rule("ssn", c(r"(?<![\d-])\d{3}[- ]\d{2}[- ]\d{4}(?![\d-])")),
            Rule("ssn-context", c(r"(?i)\b(?:social(?:\s+security)?|ssn|ss\s*#)(?:\s+(?:number|no\.?|#|is|was))*[\s:#]*(\d{9})\b"),
                 group=1),
            Rule("ssn-spoken", c(rf"(?i)\b(?:social(?:\s+security)?|ssn)(?:\s+(?:number|is|was))*[\s:,]+({spoken.digit_run(8, 11)})"),
                 group=1),
        ],
        "PHONE": [
            Rule("phone-nanp", c(r"(?<![\w+])(?:\+?1[\s.\-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.\-])\d{3}[\s.\-]\d{4}(?![\d-])")),
            Rule("phone-local", c(r"(?<![\d-])\d{3}-\d{4}(?![\d-])")),
            Rule("phone-intl", c(r"(?<![\w+])\+\d{1,3}(?:[\s.\-]?\(?\d{1,5}\)?){2,5}\d(?![\d-])")),
            Rule("phone-uk", c(r"(?<![\w+])0(?:\d{2,4}[\s\-]?\d{3,4}[\s\-]?\d{3,4}|7\d{3}[\s\-]?\d{6})(?![\d-])")),
            # European and other national formats: digit groups ("0688 548 53 80", "031 339 63 15")
            Rule("phone-groups", c(r"(?<![\w+.,/:])(?:\+\d{1,3}[\s.\-]?|0)\d{1,4}(?:[\s.\-]\d{2,4}){2,5}(?![\w]|[.,\-/:]\d)"),
                 score=0.8, accept=lambda t, m: 8 <= _digits(m.group()) <= 13),
            Rule("digit-groups", c(r"(?<![\w+.,/:$])\d{2,4}(?:\s\d{2,4}){1,5}(?![\w]|[.,:/]\d)"), score=0.6,
                 accept=lambda t, m: 8 <= _digits(m.group()) <= 14
                 and not all(re.fullmatch(r"(?:19|20)\d\d", g) for g in m.group().split())),
            Rule("phone-context", c(
                r"(?i)\b(?:phone|tel|telephone|mobile|cell|fax|call\s+me(?:\s+(?:on|at))?|ring\s+me(?:\s+on)?|"
                r"text\s+me(?:\s+(?:on|at))?|reach\s+me\s+(?:on|at))\b[\s:#.]*(\+?\d[\d\s().\-]{4,}\d)"),
                 group=1, score=0.8, accept=lambda t, m: _digits(m.group(1)) >= 6),
            Rule("phone-spoken", c(rf"(?i){_SPOKEN_DIGITS}"), score=0.7,
                 accept=lambda t, m: len(re.findall(r"[a-z]+|\d", m.group().lower())) >= 7),
        ],
        "ZIP": [
            Rule("zip-us", c(r"(?<![\d\-$.,])\d{5}(?:-\d{4})?(?![\d\-])")),
            Rule("postcode-uk", c(r"(?i)\b(?:[a-z]{1,2}\d[a-z\d]?|gir)\s*\d[abd-hjlnp-uw-z]{2}\b"), score=0.75,
                 accept=lambda t, m: any(ch.isdigit() for ch in m.group()) and not re.fullmatch(r"(?i)\d+", m.group())),
            Rule("postcode-ca", c(r"(?i)\b[abceghj-nprstvxy]\d[abceghj-nprstv-z][ -]?\d[abceghj-nprstv-z]\d\b")),
            Rule("zip-after-state", c(rf"(?i)(?<=\s)(\d{{5}}(?:-\d{{4}})?|{spoken.digit_run(5, 9)})\b"), group=1, score=0.8,
                 accept=lambda t, m: _after_any(t, m.start(1), v.us_states | v.state_codes | v.provinces)),
            Rule("postcode-context", c(
                r"(?i)\b(?:zip(?:\s*code)?|post\s*code|postal\s+code|plz|cap|cp)\b(?:\s+(?:is|was|number))?[\s:#\-]+"
                r"([a-z]{0,2}[\s\-]?\d{3,6}(?:[\s\-]\d{2,4})?|[a-z0-9]{2,4}\s?[a-z0-9]{3})\b"), group=1, score=0.85,
                 accept=lambda t, m: _digits(m.group(1)) >= 3),
            Rule("postcode-after-country", c(
                rf"(?i)(?<=[\s,])(\d{{4,6}}|\d{{3}}\s\d{{2}}|[a-z]{{1,2}}-?\d{{4,5}}|{spoken.digit_run(4, 7)})(?![\w-])"),
                 group=1, score=0.75, accept=lambda t, m: _after_any(t, m.start(1), v.countries)),
            Rule("postcode-before-country", c(r"(?<![\d$.,])(\d{4,6}|\d{3}\s\d{2})(?=[\s,]+[A-Za-z])"), group=1, score=0.7,
                 accept=lambda t, m: _before_any(t, m.end(1), v.countries)),
            Rule("postcode-line-end", c(r"(?m)(?<![\d$.,:/\-])\b(\d{4})[ \t]*$"), group=1, score=0.5,
                 accept=lambda t, m: not re.fullmatch(r"(?:19|20)\d\d", m.group(1))),
            Rule("zip-before-word", c(rf"(?i)\b(\d{{5}}|{spoken.digit_run(5, 9)})\s+(?:zip|post)\s*code\b"),
                 group=1, score=0.8),
            # five digits read out one by one and nothing around them: almost always a ZIP code
            Rule("zip-five-spoken", c(rf"(?i)(?<![\w-])(?:{spoken.DIGIT_WORD}\s+){{4}}{spoken.DIGIT_WORD}(?![\w-])"),
                 score=0.5, accept=lambda t, m: not re.search(
                     rf"(?i)(?:{spoken.DIGIT_WORD})\s*$", t[max(0, m.start() - 12):m.start()])
                 and not re.match(rf"(?i)\s+(?:{spoken.DIGIT_WORD})\b", t[m.end():m.end() + 12])),
            Rule("postcode-spoken-alnum", c(
                rf"(?i)\b(?:zip(?:\s+code)?|post\s*code|postal\s+code)(?:\s+(?:is|was))?[\s:,]+"
                rf"((?:(?:[a-z]|{spoken.DIGIT_WORD})\s+){{2,7}}(?:[a-z]|{spoken.DIGIT_WORD}))\b"), group=1, score=0.8,
                 accept=lambda t, m: re.search(spoken.DIGIT_WORD, m.group(1), re.I) is not None),
            Rule("zip-spoken", c(rf"(?i)\b(?:zip(?:\s+code)?|post\s*code|postal\s+code)(?:\s+(?:is|was))?[\s:,]+({spoken.digit_run(5, 9)})"),
                 group=1, score=0.8),
        ],
        "DATE": [
            Rule("date-numeric", c(r"(?<![\d/])\d{1,2}[/\-.]\d{1,2}[/\-.](?:\d{4}|\d{2})(?![\d/])")),
            Rule("date-iso", c(r"\b\d{4}-\d{2}-\d{2}\b")),
            Rule("date-month-day", c(rf"(?i)\b{_MONTH}\s+(?:the\s+)?{spoken.DAY_ORDINAL}\b(?:,?\s+(?:\d{{4}}|{spoken.SPOKEN_YEAR})\b)?")),
            Rule("date-day-month", c(rf"(?i)(?:\bthe\s+)?\b{spoken.DAY_ORDINAL}\s+(?:of\s+)?{_MONTH}(?:,?\s+(?:\d{{4}}|{spoken.SPOKEN_YEAR})\b)?")),
            Rule("date-month-year", c(rf"(?i)\b{_MONTH}\s+(?:of\s+)?(?:\d{{4}}|{spoken.SPOKEN_YEAR})\b")),
            Rule("date-day-slash", c(r"(?<![\d/])\d{1,2}/\d{1,2}(?![\d/])")),
        ],
        "AGE": [
            Rule("age-years-old", c(rf"(?i)\b({_AGE_NUM}|{_AGE_WORD})[\s\-]*(?:years?|yrs?)[\s\-]*old\b"), group=1),
            Rule("age-year-old", c(rf"(?i)\b({_AGE_NUM}|{_AGE_WORD})-year-old\b"), group=1),
            Rule("age-context", c(
                rf"(?i:\b(?:aged?|turned|turns|turning|is|was|at|reached|reach|be|being|of|he's|she's)\s+|['’]s\s+)"
                rf"((?i:{_AGE_NUM}|{_AGE_WORD}))\b(?!\s*(?:%|percent|minutes|dollars|pounds|lbs|kg|degrees|miles|times|mg|pills))"),
                 group=1),
            Rule("age-ninety", c(r"(?i)\bninety(?:[\s-](?:one|two|three|four|five|six|seven|eight|nine))?\b(?=[\s,.;]+(?:years?|and still|now|this year|last))")),
        ],
        "MRN": [
            Rule("mrn", c(
                r"(?i:\b(?:mrn|medical\s+record(?:\s+(?:number|no\.?|#))?|chart(?:\s+(?:number|no\.?|#))|"
                r"patient\s+(?:id|number|no\.?)|record\s+(?:number|no\.?|#))\b)"
                r"[\s:#\-]*(?:(?:is|was|of)\s+)?([A-Za-z]{0,4}[\-]?\d[\d\- ]{2,}\d|[A-Z0-9][A-Z0-9\-]{4,})"), group=1,
                 accept=lambda t, m: _digits(m.group(1)) >= 4),
        ],
        "ACCOUNT": [
            Rule("account", c(
                rf"(?i:\b{_ID_CONTEXT}\b(?:\s+(?:number|no\.?|#|id|num))?)[\s:#\-]*(?:(?:is|was|of|reads)\s+)?"
                r"([A-Za-z]{0,4}[\s\-]?\d[\d\- ]{3,}\d|[A-Za-z]{1,4}\d{4,}[A-Za-z0-9]*|\d[A-Za-z0-9\-]{5,})"), group=1,
                 accept=lambda t, m: _digits(m.group(1)) >= 4),
            Rule("account-spoken", c(
                rf"(?i:\b(?:{_ID_CONTEXT}|mrn)\b(?:\s+(?:number|no|id|num))?)(?:\s+(?:is|was|of|reads))?[\s:,]+"
                rf"(?:(?:asking|ask)\s+for\s+)?((?:[a-z]\s+){{0,4}}{spoken.digit_run(4)})"), group=1, score=0.8),
        ],
        "ID": [
            Rule("mbi", c(rf"(?i)\b[1-9][{_MBI_L}][{_MBI_L}0-9]\d-?[{_MBI_L}][{_MBI_L}0-9]\d-?[{_MBI_L}]{{2}}\d{{2}}\b")),
            Rule("nhs", c(r"(?<![\d-])\d{3}[ -]?\d{3}[ -]?\d{4}(?![\d-])"), score=0.8,
                 accept=lambda t, m: _nhs_valid(re.sub(r"\D", "", m.group()))),
            Rule("digit-run", c(r"(?<![\w\-])[A-Za-z]{0,4}-?\d(?:[\d\-]*\d){5,}(?![\w\-])")),
            Rule("letters-digits", c(r"\b[A-Z]{2,5}\d{5,}[A-Z0-9]*\b")),
            # mixed letters and digits, six or more: hashes, codes, licence and plate numbers
            Rule("alnum-mix", c(r"(?<![\w\-])(?=[A-Za-z0-9\-]*\d)(?=[A-Za-z0-9\-]*[A-Za-z])[A-Za-z0-9](?:[A-Za-z0-9\-]{4,}[A-Za-z0-9])(?![\w\-])"),
                 score=0.6, accept=lambda t, m: _digits(m.group()) >= 2 and not re.fullmatch(
                     r"(?i)\d+(?:st|nd|rd|th|s|am|pm|mg|ml|kg|lb|lbs|km|cm|mm|yo|yrs?|x|k|m)|[a-z]+\d{1,2}|\d{1,2}[a-z]{1,3}\d?|covid-?19|mp[34]|[a-z]\d"
                     r"|\d+(?:-[a-z]+)+|[a-z]+(?:-[a-z]+)*-\d+",
                     m.group())),
            Rule("plate-licence", c(
                r"(?i)\b(?:licen[cs]e\s+plate|number\s+plate|plate|registration|reg(?:istration)?\s+number|tag|"
                r"driver'?s\s+licen[cs]e|licen[cs]e)(?:\s+(?:number|no\.?|#|is|was|reads))*[\s:#]+"
                r"([A-Z0-9]{1,4}[ -]?[A-Z0-9]{2,5}[ -]?[A-Z0-9]{0,4})\b"), group=1,
                 accept=lambda t, m: _digits(m.group(1)) >= 1 and len(re.sub(r"\W", "", m.group(1))) >= 5),
            Rule("ip", c(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")),
            Rule("ipv6", c(r"(?i)(?<![\w:])(?:[0-9a-f]{1,4}:){2,7}(?::|[0-9a-f]{1,4})(?:[0-9a-f]{0,4}(?::[0-9a-f]{1,4})*)(?![\w:])"),
                 accept=lambda t, m: m.group().count(":") >= 3),
            # read out: "one nine two dot one six eight ...", "f one one e colon seven one a e colon ..."
            Rule("ip-spoken", c(
                rf"(?i)\b(?:(?:{spoken.DIGIT_WORD}|[a-f])(?:\s+(?:{spoken.DIGIT_WORD}|[a-f])){{0,3}}\s+colon\s+){{3,7}}"
                rf"(?:{spoken.DIGIT_WORD}|[a-f])(?:\s+(?:{spoken.DIGIT_WORD}|[a-f])){{0,3}}\b"), score=0.75, needs=(" colon ",)),
            Rule("ipv4-spoken", c(
                rf"(?i)\b(?:{spoken.SPOKEN_NUMBER}|(?:{spoken.DIGIT_WORD}\s+){{0,2}}{spoken.DIGIT_WORD})"
                rf"(?:\s+dot\s+(?:{spoken.SPOKEN_NUMBER}|(?:{spoken.DIGIT_WORD}\s+){{0,2}}{spoken.DIGIT_WORD})){{3}}\b"), score=0.7,
                 needs=(" dot ",)),
        ],
        "ADDRESS": [
            Rule("street", c(
                rf"(?i)\b(?:\d{{1,6}}[a-z]?|{spoken.SPOKEN_NUMBER})(?:\s*[-,]\s*\d{{1,5}})?\s+(?:[nsew]\.?\s+)?"
                rf"(?:[a-z][\w'’\-]*\s+){{1,4}}(?:{street})\b\.?"
                r"(?:,?\s+(?:apt|apartment|unit|suite|ste|flat|#)\.?\s*[a-z0-9\-]+)?")),
            Rule("unit-first", c(rf"(?i)\b(?:flat|apartment|apt|unit)\s+\d+[a-z]?,?\s+\d{{1,5}}\s+(?:[a-z][\w'’\-]*\s+){{1,4}}(?:{street})\b")),
            Rule("secondary", c(rf"(?i)\b(?:apt|apartment|suite|ste|flat)\.?\s*#?\s*(?:\d{{1,5}}[a-z]?|{_NUM_SEQ})\b")),
            Rule("po-box", c(rf"(?i)\b(?:p\.?\s?o\.?\s?box|post\s+office\s+box)\s+(?:\d+|{spoken.SPOKEN_NUMBER})\b")),
            # military mail: "Unit 3323 Box 6599", "PSC 5425, Box 6606", "USNS Harris", "FPO AA"
            Rule("military", c(
                rf"(?i)\b(?:unit|psc|cmr)\s+(?:\d{{3,5}}|{_NUM_SEQ}),?\s+box\s+(?:\d{{3,5}}|{_NUM_SEQ})\b"
                r"|\b(?:USNS|USNV|USS|USCGC)\s+[A-Z][a-z]+\b|\b(?:APO|FPO|DPO)\s+A[AEP]\b")),
            # number after the street (European order): "Via Roma 12", "Hauptstrasse 5"
            Rule("street-number-after", c(
                r"\b(?:Via|Viale|Rue|Avenida|Avenue|Calle|Carrer|Rua|Piazza|Plaza|Strada|Ulica|Ul\.)\s+"
                r"(?:[A-Z][\w'’\-]*\s+){0,3}[A-Z][\w'’\-]*\s+\d{1,5}[a-z]?\b"
                r"|\b[A-Z][\w'’\-]*(?:strasse|straße|gasse|weg|platz|laan|straat|vej|gatan|gade)\s+\d{1,5}[a-z]?\b")),
        ],
    }
    return rules


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------
_TOKEN = re.compile(r"[^\W\d_][\w'’\-]*", re.U)
# Titles before a name; only abbreviations take a full stop ("Dr. Okafor", not "my father. Back").
_CAPS_TITLE = (r"(?:(?:Dr|Mr|Mrs|Ms|Mx|Prof|Rev|Sr|Fr)\.?|Miss|Doctor|Nurse|Pastor|Reverend|Father|Sister|Brother|"
               r"Officer|Judge|Aunt|Auntie|Uncle|Grandma|Grandpa|Nana|Papa|Sir|Dame|Lady|Lord)")


def is_uncased(text: str) -> bool:
    """Speech-to-text style: next to no capital letters (at most 1 in 50 word starts)."""
    starts = [w[0] for w in _TOKEN.findall(text)]
    if len(starts) < 4:
        return not any(ch.isupper() for ch in text)
    return sum(ch.isupper() for ch in starts) <= max(1, len(starts) // 50)


class VocabularyNameRecognizer(EntityRecognizer):
    """Names by the vocabulary, in any case (Philter's rule: suspect what is not ordinary vocabulary).

    A word is a name when it is a known first or last name that web text writes capitalised; when
    it is a known name no dictionary knows as a word; when web text writes it capitalised at least
    ``proper`` of the time (places and organisations too) and it is not on a kept list; or, with
    ``unknown_words``, when no dictionary knows it at all. A name that is also an everyday word
    ("grace", "mark") needs a neighbour: another name word, or a capital in lowercase-free text.
    """

    def __init__(self, vocab: Vocabulary, *, unknown_words: bool = True, proper: float = PROPER) -> None:
        self.v = vocab
        self.unknown_words = unknown_words
        self.proper = proper
        self._cache: dict[tuple[str, bool, bool], float] = {}  # (word, capitalised mid-sentence, lowercase in cased) -> strength
        super().__init__(supported_entities=["NAME"], name="vocabulary-names")

    def load(self) -> None:
        return None

    def _strength(self, word: str, capitalised_in_cased: bool, lower_in_cased: bool = False) -> float:
        """0 (not a name) .. 1, from the vocabulary alone (``lower_in_cased``: a lowercase word in text
        that has capitals, where writers capitalise names: only clear cases count)."""
        v = self.v
        low = re.sub(r"['’]s$", "", word.lower()).strip("'’-")
        if len(low) < 2 or v.never_name(low):
            return 0.0
        if low in spoken.NUMBER_WORDS or low in v.medications or (low in v.clinical and not v.name_like(low)):
            return 0.0
        share = v.cap_share(low)
        known_name = v.name_like(low)
        zipf = v.zipf(low)
        if lower_in_cased:
            if known_name and share >= 0.8 and zipf < 4.5:
                return 0.6
            if self.unknown_words and zipf == 0.0 and share == 0.0 and len(low) >= 5 and low.isalpha():
                return 0.5
            return 0.0
        if known_name and share >= self.proper:
            return 0.85
        if known_name and share == 0.0 and zipf < 2.5:
            return 0.75  # a name no dictionary uses as a word ("ifeoma", "csanád")
        if share >= max(self.proper, 0.75) and zipf < 5.0 and low not in v.us_states and low not in v.countries:
            return 0.7  # mostly capitalised in web text: a place or an organisation
        if known_name and share >= AMBIGUOUS:
            return 0.45 if capitalised_in_cased else 0.25  # "grace", "mark": context decides
        if capitalised_in_cased and (share >= AMBIGUOUS or zipf < 3.5) and not v.is_everyday(low, 4.5):
            return 0.45  # capitalised mid-sentence and not an everyday word
        if capitalised_in_cased and v.is_name(low) and not v.is_everyday(low, 5.0):
            return 0.45  # a listed name, capitalised mid-sentence ("Why is Mai ...")
        if self.unknown_words and share == 0.0 and low.isalpha() and (
                (zipf == 0.0 and len(low) >= 4) or (zipf < 2.0 and len(low) >= 4)):
            return 0.5  # no dictionary knows it, or hardly (rare surnames, small towns)
        return 0.0

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        cased = not is_uncased(text)
        tokens = list(_TOKEN.finditer(text))
        cache = self._cache
        strengths = []
        prev_end = 0
        for i, m in enumerate(tokens):
            word = m.group()
            capitalised = False
            if word.isupper() and len(word) > 1:
                # headings, abbreviations ("HPI", "BUN") or a name in capitals ("TOULOUSE"): judged as
                # lowercase text is, except that short unknown capitals are taken for abbreviations
                key = (word.lower(), False, False)
                s = cache.get(key)
                if s is None:
                    s = cache[key] = self._strength(word, False)
                strengths.append(0.0 if len(word) <= 3 or (len(word) <= 5 and s <= 0.5) else s)
                prev_end = m.end()
                continue
            if cased and word[:1].isupper() and i > 0:
                gap = text[prev_end:m.start()].rstrip()
                capitalised = not gap or gap[-1] not in ".!?:\n\"“"
            prev_end = m.end()
            lower = cased and word[:1].islower()
            key = (word.lower(), capitalised, lower)
            s = cache.get(key)
            if s is None:
                s = cache[key] = self._strength(word, capitalised, lower)
            strengths.append(s)
        out = []
        for i, m in enumerate(tokens):
            s = strengths[i]
            if s < 0.3:
                # an ambiguous name word next to a sure one ("grace okafor") is a name too
                if s != 0.25:
                    continue
                near = [strengths[j] for j in (i - 1, i + 1) if 0 <= j < len(tokens)
                        and text[min(tokens[j].end(), m.end()):max(tokens[j].start(), m.start())].isspace()]
                if not any(n >= 0.7 for n in near):
                    continue
                s = 0.6
            out.append(RecognizerResult("NAME", m.start(), m.end(), s,
                                        recognition_metadata={"recognizer_name": self.name}))
        return out


class NameTriggerRecognizer(EntityRecognizer):
    """Names by their shape in context: speaker labels, "my name is", titles, relations, "said"."""

    def __init__(self, vocab: Vocabulary) -> None:
        self.v = vocab
        relations = _words(v for v in vocab.relations if v)
        name_words = r"[^\W\d_][\w'’\-]*(?:\s+[^\W\d_][\w'’\-]*){0,2}"
        # (pattern, strong): after a strong trigger the first word is a name whatever it is
        self._triggers = [
            (re.compile(rf"(?i:\b(?:my\s+name\s+is|my\s+name's|i\s+am\s+called|call\s+me|named|"
                        rf"name's|name\s+is|known\s+as|goes\s+by)\s+)({name_words})"), True),
            (re.compile(rf"(?i:\b(?:called|i'm|i’m|this\s+is|it's|it’s)\s+)({name_words})"), False),
            (re.compile(rf"\b{_CAPS_TITLE}\s+({name_words})"), False),
            (re.compile(rf"(?i:\b(?:(?:dr|mr|mrs|ms|mx|prof)\.?|miss|doctor|nurse|pastor|father|sister|brother|aunt|auntie|uncle)\s+)({name_words})"), False),
            (re.compile(rf"(?i:\b(?:my|our|his|her|their|your)\s+(?:(?:late|older|younger|little|big|ex|step|best|old|new)[\s\-]?)?"
                        rf"(?:{relations})(?:-in-law)?),?\s+({name_words})"), False),
            (re.compile(rf"(?i:\b(?:neighbou?r|nurse|aide|friend|colleague|coworker|co-worker|grandson|granddaughter)),?\s+({name_words})"), False),
            (re.compile(rf"(?i:\b(?:told|asked|thanked|texted|phoned|hugged|reminded|visited|married|"
                        rf"dear|sweet|poor|little|old)\s+)({name_words})"), False),
        ]
        verbs = _words(vocab.person_verbs)
        self._subject = re.compile(
            rf"(?:^|(?<=[.!?]\s)|(?<=[.!?]\s\s)|(?<=:\s)|(?<=[\"“]))([A-Z][a-z'’\-]{{2,}})\s+"
            r"(?:(?:still|always|never|often|sometimes|usually|really|just|also|even|finally|barely|only)\s+)?"
            rf"(?:{verbs}|passed\s+away)\b", re.M)
        # a speaker label: at most four words before a colon at the start of a line
        self._speaker = re.compile(
            r"^[ \t]*([A-Za-z][A-Za-z.'’\-]*(?:[ \t]+[A-Za-z.'’\-]+){0,3}?)[ \t]*(?:\(\w[^)]{0,20}\))?[ \t]*:", re.M)
        super().__init__(supported_entities=["NAME"], name="name-triggers")

    def load(self) -> None:
        return None

    def _name_words(self, text: str, start: int, group: str, strong: bool = False) -> tuple[int, int]:
        """The leading words of ``group`` that can be a name (the first must, unless ``strong``; then names or capitals).

        In text that has capitals, a lowercase word is taken only when it is clearly a name.
        """
        end = start
        cased = not is_uncased(text)
        for i, w in enumerate(re.finditer(r"\S+", group)):
            bare = w.group().strip(".,;:!?'’\"()").lower()
            bare = re.sub(r"['’]s$", "", bare)
            v = self.v
            if not bare or v.never_name(bare) or bare in spoken.NUMBER_WORDS:
                break
            capital = w.group()[:1].isupper()
            # after "my name is" the first word is a name, unless it is plainly an everyday lowercase word
            first_of_strong = strong and i == 0 and (capital or not cased or not v.is_everyday(bare, 4.0))
            if not first_of_strong:
                lower_ok = v.name_like(bare) and (not cased or v.cap_share(bare) >= 0.8)
                if not capital and not lower_ok and not (v.zipf(bare) == 0.0 and len(bare) >= 3):
                    break
                if capital and v.is_everyday(bare, 4.5) and not v.name_like(bare):
                    break
            end = start + w.start() + len(w.group().rstrip(".,;:!?'’\"()"))
            if w.group()[-1:] in ",.;:!?":
                break
        return start, end

    def label_is_name(self, label: str) -> bool:
        v = self.v
        low = re.sub(r"[\d.]+$", "", label.lower()).strip()
        if not low or low in v.roles or len(label) > 40:
            return False
        words = low.replace(".", " ").split()
        if all(w in v.roles or w in v.not_names or len(w) == 1 for w in words):
            return False
        # "HILDEGARD:" and "Mrs Okafor:" are people; "Address:" and "Personal info:" are form fields
        return all(w in v.roles or w in v.not_names or len(w) == 1 or v.name_like(w) or v.zipf(w) < 3.5
                   for w in words)

    def roles(self, text: str) -> list[tuple[int, int]]:
        """Speaker labels that are roles ("INTERVIEWER:", "Family member 2:"): never a name, whatever NER thinks."""
        v = self.v
        out = []
        for m in self._speaker.finditer(text):
            words = re.sub(r"[\d.]+", " ", m.group(1).lower()).split()
            if words and all(w in v.roles or w in v.not_names or len(w) == 1 for w in words):
                out.append(m.span(1))
        return out

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        out = []

        def add(a: int, b: int, score: float, how: str) -> None:
            if b > a:
                out.append(RecognizerResult("NAME", a, b, score, recognition_metadata={"recognizer_name": self.name,
                                                                                          "rule": how}))

        for rx, strong in self._triggers:
            for m in rx.finditer(text):
                add(*self._name_words(text, m.start(1), m.group(1), strong), 0.8, "trigger")
        for m in self._subject.finditer(text):
            low = m.group(1).lower()
            if not (self.v.is_everyday(low, 4.0) and not self.v.name_like(low)) and not self.v.never_name(low):
                add(m.start(1), m.end(1), 0.6, "subject")
        for m in self._speaker.finditer(text):
            label = m.group(1).strip()
            if self.label_is_name(label):
                a = m.start(1) + m.group(1).find(label)
                add(a, a + len(label), 0.9, "speaker")
        return out


class ProperNounRecognizer(EntityRecognizer):
    """Capitalised words the tagger calls proper nouns but NER left unlabelled ("Ifeoma called")."""

    def __init__(self, vocab: Vocabulary) -> None:
        self.v = vocab
        super().__init__(supported_entities=["NAME"], name="proper-nouns")

    def load(self) -> None:
        return None

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        if nlp_artifacts is None or is_uncased(text):
            return []
        v = self.v
        out = []
        for tok in nlp_artifacts.tokens:
            if tok.tag_ not in ("NNP", "NNPS") or tok.ent_type_ in ("DATE", "TIME", "CARDINAL"):
                continue
            word = tok.text
            low = word.lower().strip("'’.")
            if (len(word) < 3 or not word[:1].isupper() or not word[1:2].isalpha() or v.never_name(low)
                    or low in v.streets or (word.isupper() and len(word) <= 4) or low in v.clinical
                    or low in v.medications):
                continue
            out.append(RecognizerResult("NAME", tok.idx, tok.idx + len(word), 0.5,
                                        recognition_metadata={"recognizer_name": self.name}))
        return out


# spaCy's labels, and Presidio's names for them (what its NlpArtifacts carry)
_NER_TYPES = {"PERSON": "NAME", "PER": "NAME", "GPE": "LOCATION", "LOC": "LOCATION", "FAC": "LOCATION",
              "LOCATION": "LOCATION", "ORG": "ORG", "ORGANIZATION": "ORG", "DATE": "DATE", "DATE_TIME": "DATE"}


class NerRecognizer(EntityRecognizer):
    """spaCy's named entities; on lowercase speech-to-text, those of a truecased copy.

    Truecasing capitalises words the vocabulary takes for proper nouns (same length, so offsets
    hold), which gives the model back the cue it was trained on.
    """

    def __init__(self, vocab: Vocabulary, nlp: Any, *, keep_states: bool, redact_orgs: bool) -> None:
        self.v = vocab
        self.nlp = nlp
        self.keep_states = keep_states
        self.redact_orgs = redact_orgs
        super().__init__(supported_entities=["NAME", "LOCATION", "ORG", "DATE"], name="spacy-ner")

    def load(self) -> None:
        return None

    def truecase(self, text: str) -> str:
        v = self.v

        def cap(m: re.Match[str]) -> str:
            w = m.group()
            low = w.lower()
            if v.never_name(low) or low in spoken.NUMBER_WORDS:
                return w
            if v.cap_share(low) >= PROPER or (v.name_like(low) and not v.is_everyday(low, 4.0)):
                return w[:1].upper() + w[1:]
            return w

        return _TOKEN.sub(cap, text)

    def _keep(self, etype: str, value: str) -> bool:
        v = self.v
        low = value.strip().lower()
        words = [w.strip(".,'’") for w in re.split(r"\s+", low) if w]
        if not words:
            return False
        if len(words) == 1 and value.strip().isupper() and len(value.strip()) <= 5 and v.zipf(low) >= 2.5:
            return False  # "ATM", "ASAP", "IBAN": acronyms, not names
        if etype == "NAME":
            return not all(v.never_name(w) or w in spoken.NUMBER_WORDS for w in words)
        if etype == "LOCATION":
            return not (self.keep_states and low in v.us_states) and low not in v.countries and low not in v.keep_proper
        if etype == "ORG":
            return self.redact_orgs and low not in v.safe_terms and low not in v.keep_proper
        if etype == "DATE":
            # More specific than a year: a month name with a day, or day/month digits. Years alone stay.
            return bool(re.search(_MONTH + r"\s*\d|\d\s*(?:st|nd|rd|th)?\s*(?:of\s+)?" + _MONTH, low)
                        or re.search(r"\d{1,2}[/\-.]\d{1,2}", low)
                        or re.search(_MONTH + r"\s+(?:of\s+)?\d{4}", low))
        return True

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        # the deidentifier's artifacts already come from the truecased copy for lowercase text
        if nlp_artifacts is not None:
            ents = [(e.start_char, e.end_char, e.label_) for e in nlp_artifacts.entities]
        else:
            doc = self.nlp(self.truecase(text) if is_uncased(text) else text)
            ents = [(e.start_char, e.end_char, e.label_) for e in doc.ents]
        out = []
        for a, b, label in ents:
            etype = _NER_TYPES.get(label)
            if etype is None or not self._keep(etype, text[a:b]):
                continue
            out.append(RecognizerResult(etype, a, b, 0.85, recognition_metadata={"recognizer_name": self.name,
                                                                                    "label": label}))
        return out


class PlaceAndOrgRecognizer(EntityRecognizer):
    """Cities before a state ("Dayton, Ohio", "dayton oh"), facilities and employers by their words."""

    def __init__(self, vocab: Vocabulary) -> None:
        self.v = vocab
        states = _words(vocab.us_states | vocab.state_codes | vocab.provinces)
        self._city_state = re.compile(
            rf"(?i)\b([a-z][\w.'’\-]*(?:\s+[a-z][\w.'’\-]*){{0,2}}),?\s+(?:{states})\b(?=[\s,.;:!?]|$)")
        facility = _words(vocab.facility_words)
        self._facility = re.compile(
            rf"(?i)\b((?:(?:st\.?|saint|mount|mt\.?)\s+)?(?:[a-z][\w'’\-]*\s+){{1,4}}(?:{facility}))\b")
        self._employer = re.compile(
            r"(?i)\b(?:work(?:s|ed|ing)?\s+(?:at|for)|employed\s+(?:at|by)|job\s+at|retired\s+from|"
            r"volunteer(?:s|ed|ing)?\s+at|goes\s+to|went\s+to|attends?|attended|stays?\s+at|lives?\s+at|"
            r"moved\s+(?:her|him|them|mum|mom|dad)?\s*(?:in)?to|admitted\s+to|transferred\s+to)\s+(?:the\s+)?"
            r"((?:[a-z][\w&'’\-]*\s*){1,4})")
        super().__init__(supported_entities=["LOCATION", "ORG"], name="places-and-organisations")

    def load(self) -> None:
        return None

    def _placeish(self, word: str, cased: bool) -> bool:
        """Can be part of a place or organisation name: proper in web text, a name, unknown, or capitalised."""
        v = self.v
        low = word.lower().strip(".,'’")
        if (low in v.not_names or low in v.keep_proper or low in spoken.NUMBER_WORDS or low in v.roles
                or v.zipf(low) >= 5.5):
            return False
        if cased:
            return word[:1].isupper() and not (v.is_everyday(low, 5.0) and v.cap_share(low) < PROPER)
        return v.cap_share(low) >= PROPER or v.name_like(low) or (v.zipf(low) == 0.0 and len(low) >= 3)

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        out = []
        cased = not is_uncased(text)
        for m in self._city_state.finditer(text):
            words = list(re.finditer(r"\S+", m.group(1)))
            # keep the trailing words that can be a place name ("we moved to dayton ohio" -> "dayton")
            keep = []
            for w in reversed(words):
                if not self._placeish(w.group(), cased) or w.group().lower().rstrip(".") in self.v.streets:
                    break
                keep.append(w)
            if keep:
                a = m.start(1) + keep[-1].start()
                b = m.start(1) + keep[0].end()
                out.append(RecognizerResult("LOCATION", a, b, 0.8, recognition_metadata={"recognizer_name": self.name}))
        for rx, etype in ((self._facility, "ORG"), (self._employer, "ORG")):
            for m in rx.finditer(text):
                words = list(re.finditer(r"\S+", m.group(1)))
                if rx is self._facility:
                    head = [w for w in words[:-1] if not re.fullmatch(r"(?i)(?:care|nursing|high)", w.group())]
                    keep = []
                    for w in reversed(head):  # the name words right before "Hospital"
                        word = w.group()
                        ok = (word[:1].isupper() and not self.v.never_name(word)) if cased else self._placeish(word, cased)
                        if not ok and word.lower() not in ("st", "st.", "saint", "mount", "mt", "mt."):
                            break
                        keep.append(w)
                    if not keep:
                        continue
                    a, b = m.start(1) + keep[-1].start(), m.end(1)
                else:
                    keep = []
                    for w in words:  # the name words right after "works at"
                        if not self._placeish(w.group(), cased):
                            break
                        keep.append(w)
                    if not keep:
                        continue
                    a, b = m.start(1) + keep[0].start(), m.start(1) + keep[-1].end()
                out.append(RecognizerResult(etype, a, b, 0.6, recognition_metadata={"recognizer_name": self.name}))
        return out


def build_recognizers(vocab: Vocabulary, nlp: Any, cfg: Any) -> list[EntityRecognizer]:
    """Every recognizer of the registry for a :class:`~mentalchat.dataset.config.DeidConfig`."""
    from presidio_analyzer.predefined_recognizers import CreditCardRecognizer, IbanRecognizer

    recs: list[EntityRecognizer] = [
        RegexRecognizer(entity, rules) for entity, rules in _pattern_rules(vocab).items()
    ]
    # Presidio's own, for shapes with checksums (their entity names are mapped in the deidentifier)
    recs += [CreditCardRecognizer(), IbanRecognizer()]
    recs += [NameTriggerRecognizer(vocab), PlaceAndOrgRecognizer(vocab)]
    if cfg.vocabulary_names:
        recs.append(VocabularyNameRecognizer(vocab, unknown_words=cfg.unknown_words))
    if cfg.ner == "spacy":
        recs.append(NerRecognizer(vocab, nlp, keep_states=cfg.keep_states, redact_orgs=cfg.redact_orgs))
        if cfg.proper_nouns:
            recs.append(ProperNounRecognizer(vocab))
    return recs
