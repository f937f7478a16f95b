"""De-identification of transcript pages and model outputs (HIPAA Safe-Harbor categories).

Detection combines three sources, because no single one finds everything:

1. Presidio's analyzer with a spaCy NER pipeline (``en_core_web_sm`` from PyPI; never downloaded at
   run time) for person, place and organisation names and dates, plus Presidio's phone, URL,
   SSN, credit-card, IBAN and IP recognizers;
2. this module's regular expressions for e-mail and street addresses, ZIP codes, numeric and
   written dates, ages over 89, SSNs, medical-record and account numbers and long digit runs;
3. name heuristics that need no list of names: speaker labels that are not roles, words after
   "my name is", titles ("Dr.", "Mrs."), relations ("my husband, ...").

Every name, place or organisation found once is then searched for on every page of the
transcript (and each part of a person's name on its own), so a name the NER model misses in one
sentence is still caught where it found it elsewhere.

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

from mentalchat.dataset.config import DeidConfig
from mentalchat.errors import StageError

__all__ = [
    "ENTITY_TYPES",
    "PLACEHOLDER_RE",
    "DeidContext",
    "DeidResult",
    "Deidentifier",
    "Span",
    "get_deidentifier",
]

ENTITY_TYPES = (
    "EMAIL", "URL", "SSN", "PHONE", "MRN", "ACCOUNT", "ADDRESS", "DATE", "ZIP", "AGE", "ID",
    "NAME", "LOCATION", "ORG",
)
_PRIORITY = {t: i for i, t in enumerate(ENTITY_TYPES)}  # lower wins when spans overlap
AGE_PLACEHOLDER = "[AGE_90_PLUS]"
PLACEHOLDER_RE = re.compile(r"\[(?:(" + "|".join(ENTITY_TYPES) + r")_(\d+)|AGE_90_PLUS)\]")

# --------------------------------------------------------------------------------------------
# Word lists that are about the language, not about any person
# --------------------------------------------------------------------------------------------
_ROLES = {
    "interviewer", "caregiver", "carer", "participant", "respondent", "moderator", "facilitator",
    "speaker", "researcher", "patient", "family member", "family", "q", "a", "i", "r", "p", "int",
    "interviewee", "subject", "clinician", "doctor", "nurse", "therapist", "counselor",
    "counsellor", "coach", "client", "question", "answer", "unknown", "unidentified", "note",
    "notes", "transcriber", "crosstalk", "inaudible", "both", "all", "other", "husband", "wife",
    "son", "daughter", "mother", "father",
}
_NOT_NAMES = {
    "mom", "mum", "dad", "mommy", "mummy", "daddy", "mama", "papa", "grandma", "grandpa", "granny",
    "nana", "nan", "gran", "auntie", "aunty", "uncle", "aunt", "sis", "bro", "honey", "dear",
    "god", "lord", "jesus", "christ", "hospice", "medicare", "medicaid", "alzheimer", "alzheimer's",
    "parkinson", "parkinson's", "covid", "covid-19", "i", "the", "a", "an", "and", "but", "or",
    "so", "yes", "no", "okay", "ok", "well", "oh", "um", "uh", "yeah", "hi", "hello", "thanks",
    "sir", "madam", "ma'am", "doctor", "nurse", "dr", "mr", "mrs", "ms", "miss", "mx", "prof",
    "pastor", "father", "sister", "brother", "reverend", "rev", "interviewer", "caregiver",
    "he", "she", "they", "we", "you", "it", "his", "her", "their", "our", "my", "me", "him",
    "mrn", "ssn", "id", "dob",
}
_NOT_NAMES |= {m.lower() for m in (
    "January February March April May June July August September October November December "
    "Monday Tuesday Wednesday Thursday Friday Saturday Sunday Christmas Easter Thanksgiving"
).split()}
_SAFE_ORGS = {
    "medicare", "medicaid", "va", "icu", "er", "copd", "als", "covid", "covid-19", "cna", "rn",
    "aa", "na", "ssi", "ssdi", "hipaa", "fmla", "dnr", "hospice", "alzheimer's", "parkinson's",
    "ptsd", "adhd", "ocd", "cpr", "ems", "gp", "lpn", "md", "mri", "ct", "ekg", "iv", "mrn",
    "ssn", "dob", "id", "q", "a",
}
_US_STATES = {
    s.lower() for s in (
        "Alabama,Alaska,Arizona,Arkansas,California,Colorado,Connecticut,Delaware,Florida,Georgia,"
        "Hawaii,Idaho,Illinois,Indiana,Iowa,Kansas,Kentucky,Louisiana,Maine,Maryland,Massachusetts,"
        "Michigan,Minnesota,Mississippi,Missouri,Montana,Nebraska,Nevada,New Hampshire,New Jersey,"
        "New Mexico,New York,North Carolina,North Dakota,Ohio,Oklahoma,Oregon,Pennsylvania,"
        "Rhode Island,South Carolina,South Dakota,Tennessee,Texas,Utah,Vermont,Virginia,Washington,"
        "West Virginia,Wisconsin,Wyoming"
    ).split(",")
}

# --------------------------------------------------------------------------------------------
# Regular expressions (each returns the span to replace: group 1 when present, else the match)
# --------------------------------------------------------------------------------------------
_MONTH = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
          r"Sept?(?:ember)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?")
_ORD = r"\d{1,2}(?:st|nd|rd|th)?"
_CAP = r"[A-Z][a-zA-Z'’\-]+"
_NAME2 = rf"({_CAP}(?:\s+{_CAP}){{0,2}})"
_AGE_NUM = r"(?:9\d|1[01]\d)"
_AGE_WORD = (r"(?:ninety(?:[\s-](?:one|two|three|four|five|six|seven|eight|nine))?|"
             r"(?:a|one)\s+hundred(?:\s+and\s+(?:one|two|three|four|five|six|seven|eight|nine|ten))?)")
_STREET = (r"(?:Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|Court|Ct|Boulevard|Blvd|Way|Place|Pl|"
           r"Terrace|Ter|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Trail|Trl|Square|Sq|Loop|Row|Crescent|Close)")

_REGEXES: list[tuple[str, re.Pattern[str]]] = [
    ("EMAIL", re.compile(r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b")),
    ("URL", re.compile(r"(?i)\b(?:https?://|www\.)[^\s<>\"']+[^\s<>\"'.,;:!?)\]]")),
    ("URL", re.compile(
        r"(?i)\b[a-z0-9][a-z0-9\-]*(?:\.[a-z0-9\-]+)*\.(?:com|org|net|edu|gov|io|us|info|co|me|health)"
        r"/[^\s<>\"']*[^\s<>\"'.,;:!?)\]]")),
    ("SSN", re.compile(r"(?<![\d-])\d{3}[- ]\d{2}[- ]\d{4}(?![\d-])")),
    ("PHONE", re.compile(r"(?<![\w+])(?:\+?1[\s.\-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.\-])\d{3}[\s.\-]\d{4}(?![\d-])")),
    ("PHONE", re.compile(r"(?<![\d-])\d{3}-\d{4}(?![\d-])")),
    ("ADDRESS", re.compile(
        rf"\b\d{{1,6}}\s+(?:[NSEW]\.?\s+)?(?:{_CAP}\s+){{1,4}}{_STREET}\b\.?"
        r"(?:,?\s+(?:Apt|Apartment|Unit|Suite|Ste|#)\.?\s*[A-Za-z0-9\-]+)?")),
    ("ADDRESS", re.compile(r"(?i)\b(?:P\.?\s?O\.?\s?Box|Post Office Box)\s+\d+\b")),
    ("DATE", re.compile(r"(?<![\d/])\d{1,2}[/\-.]\d{1,2}[/\-.](?:\d{4}|\d{2})(?![\d/])")),
    ("DATE", re.compile(r"\b\d{4}-\d{2}-\d{2}\b")),
    ("DATE", re.compile(rf"\b{_MONTH}\s+{_ORD}\b(?:,?\s+\d{{4}}\b)?")),
    ("DATE", re.compile(rf"(?i:\bthe\s+)?\b{_ORD}\s+(?:of\s+)?{_MONTH}(?:,?\s+\d{{4}}\b)?")),
    ("DATE", re.compile(rf"\b{_MONTH}\s+(?:of\s+)?\d{{4}}\b")),
    ("DATE", re.compile(r"(?<![\d/])\d{1,2}/\d{1,2}(?![\d/])")),
    ("ZIP", re.compile(r"(?<![\d\-$.,])\d{5}(?:-\d{4})?(?![\d\-])")),
    ("AGE", re.compile(rf"\b({_AGE_NUM}|{_AGE_WORD})[\s\-]*(?:years?|yrs?)[\s\-]*old\b", re.I)),
    ("AGE", re.compile(rf"\b({_AGE_NUM}|{_AGE_WORD})-year-old\b", re.I)),
    ("AGE", re.compile(
        rf"(?i:\b(?:aged?|turned|turns|turning|is|was|at|reached|reach|be|being|of)\s+|['’]s\s+)"
        rf"((?i:{_AGE_NUM}|{_AGE_WORD}))\b(?!\s*(?:%|percent|minutes|dollars|pounds|lbs|kg|degrees|miles|times))")),
    ("AGE", re.compile(r"(?i)\bninety(?:[\s-](?:one|two|three|four|five|six|seven|eight|nine))?\b(?=[\s,.;]+(?:years?|and still|now|this year|last))")),
    ("MRN", re.compile(
        r"(?i:\b(?:MRN|medical\s+record(?:\s+(?:number|no\.?|#))?|chart(?:\s+(?:number|no\.?|#))|"
        r"patient\s+(?:ID|number|no\.?)|record\s+(?:number|no\.?|#))\b)"
        r"[\s:#\-]*(?:(?:is|was|of)\s+)?([A-Za-z]{0,4}[\-]?\d[\d\- ]{2,}\d|[A-Z0-9][A-Z0-9\-]{4,})")),
    ("ACCOUNT", re.compile(
        r"(?i:\b(?:account|acct|member|policy|insurance|subscriber|group|claim|card|ID|"
        r"identification|license|licence|certificate|plate|routing|case|reference|ref)\b"
        r"(?:\s+(?:number|no\.?|#|ID|num))?)[\s:#\-]*(?:(?:is|was|of)\s+)?"
        r"([A-Za-z]{0,4}[\-]?\d[\d\- ]{3,}\d|[A-Z]{1,4}\d{4,}[A-Z0-9]*)")),
    ("ID", re.compile(r"(?<![\w\-])[A-Za-z]{0,4}-?\d(?:[\d\-]*\d){5,}(?![\w\-])")),
    ("ID", re.compile(r"\b[A-Z]{2,5}\d{5,}[A-Z0-9]*\b")),
]

_STATE_NAMES = (
    "Alabama|Alaska|Arizona|Arkansas|California|Colorado|Connecticut|Delaware|Florida|Georgia|Hawaii|"
    "Idaho|Illinois|Indiana|Iowa|Kansas|Kentucky|Louisiana|Maine|Maryland|Massachusetts|Michigan|"
    "Minnesota|Mississippi|Missouri|Montana|Nebraska|Nevada|New Hampshire|New Jersey|New Mexico|"
    "New York|North Carolina|North Dakota|Ohio|Oklahoma|Oregon|Pennsylvania|Rhode Island|"
    "South Carolina|South Dakota|Tennessee|Texas|Utah|Vermont|Virginia|Washington|West Virginia|"
    "Wisconsin|Wyoming"
)
_STATE_CODES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|"
    "NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|DC"
)
# "Dayton, Ohio" / "Dayton, OH 45402": the words before a state are a city (Safe Harbor: remove).
_CITY_STATE = re.compile(
    rf"\b([A-Z][a-zA-Z.'’\-]+(?:\s+[A-Z][a-zA-Z.'’\-]+){{0,2}}),\s+(?:{_STATE_NAMES}|(?:{_STATE_CODES})(?=[\s,.]|$))\b"
)

_NAME_TRIGGERS = [
    re.compile(rf"(?i:\b(?:my\s+name\s+is|my\s+name's|i\s+am\s+called|call\s+me|named|"
               rf"i'm|i’m|this\s+is|it's|it’s)\s+){_NAME2}"),
    re.compile(rf"\b(?:Dr|Mr|Mrs|Ms|Mx|Miss|Prof|Doctor|Nurse|Pastor|Reverend|Rev|Father|Sister|"
               rf"Brother|Officer|Judge|Aunt|Auntie|Uncle|Grandma|Grandpa|Nana|Papa)\.?\s+{_NAME2}"),
    re.compile(rf"(?i:\b(?:my|our|his|her|their)\s+(?:(?:late|older|younger|little|big|ex|step)[\s\-]?)?"
               rf"(?:mother|father|mom|mum|dad|wife|husband|partner|spouse|sister|brother|son|daughter|"
               rf"grandmother|grandfather|grandma|grandpa|aunt|uncle|cousin|niece|nephew|"
               rf"mother-in-law|father-in-law|sister-in-law|brother-in-law|son-in-law|daughter-in-law|"
               rf"friend|neighbou?r|nurse|doctor|aide|carer|caregiver|caseworker|social\s+worker|"
               rf"pastor|priest|rabbi|imam|boss|therapist|counsel+or|roommate|girlfriend|boyfriend)"
               rf"(?:-in-law)?),?\s+{_NAME2}"),
    re.compile(rf"(?i:\b(?:neighbou?r|nurse|aide|friend|colleague|coworker|co-worker)),?\s+{_NAME2}"),
    re.compile(rf"(?i:\b(?:told|asked|thanked|texted|phoned|hugged|reminded|visited|married|"
               rf"dear|sweet|poor|little|old)\s+){_NAME2}"),
]
# A capitalised word that opens a sentence and is followed by a verb people do ("Ambrose still
# hums", "Dolores said") is taken for a name; the small NER model misses many of these.
_PERSON_VERBS = (
    r"(?:said|says|told|tells|asked|asks|cried|cries|laughed|laughs|smiled|smiles|thinks|thought|knows|"
    r"knew|feels|felt|wants|wanted|loves|loved|hates|hated|refuses|refused|forgets|forgot|remembers|"
    r"remembered|hums|hummed|sings|sang|died|passed\s+away|visits|visited|calls|called|helps|helped|"
    r"lives|lived|worries|worried|insists|insisted|keeps|kept|wakes|woke|sleeps|slept|sits|sat|"
    r"comes|came|brings|brought|drives|drove|cooks|cooked|prays|prayed|argues|argued|shouts|shouted|"
    r"screams|screamed|wanders|wandered|recognises|recognizes|recognised|recognized|gets|got|tries|tried)"
)
_SENTENCE_SUBJECT = re.compile(
    r"(?:^|(?<=[.!?]\s)|(?<=[.!?]\s\s)|(?<=:\s)|(?<=[\"“]))([A-Z][a-z'’\-]{2,})\s+"
    r"(?:(?:still|always|never|often|sometimes|usually|really|just|also|even|finally|barely|only)\s+)?"
    + _PERSON_VERBS + r"\b",
    re.M,
)
_GENERIC_SUBJECTS = {
    "he", "she", "they", "it", "we", "you", "this", "that", "there", "these", "those", "everyone",
    "everybody", "someone", "somebody", "nobody", "anyone", "anybody", "people", "friends", "family",
    "doctors", "nurses", "kids", "children", "parents", "neighbours", "neighbors", "staff", "nothing",
    "everything", "something", "one", "who", "what", "which", "then", "now", "today", "yesterday",
    "nurse", "doctor", "mother", "father", "husband", "wife", "son", "daughter", "brother", "sister",
    "grandma", "grandpa", "mom", "dad", "mum", "mama", "papa", "nana", "granny", "aunt", "uncle",
    "cousin", "baby", "patient", "carer", "caregiver", "team", "hospice", "hospital", "home", "life",
    "work", "time", "money", "sleep", "nobody's", "somebody's", "everyone's", "all", "both", "each",
    "most", "some", "many", "few", "several", "his", "her", "their", "our", "my", "your", "its",
    "when", "while", "after", "before", "because", "if", "though", "although", "once", "since",
}
_SPEAKER = re.compile(r"^[ \t]*([A-Za-z][A-Za-z .'’\-]{0,40}?)[ \t]*(?:\(\w[^)]{0,20}\))?[ \t]*:", re.M)


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


def _merge(spans: list[Span], protected: list[tuple[int, int]]) -> list[Span]:
    """Union overlapping spans (the higher-priority type wins) and keep placeholders intact."""
    spans = [s for s in spans if s.end > s.start]
    for a, b in protected:  # cut spans around existing placeholders
        cut: list[Span] = []
        for s in spans:
            if s.end <= a or s.start >= b:
                cut.append(s)
                continue
            if s.start < a:
                cut.append(Span(s.start, a, s.type, s.source))
            if s.end > b:
                cut.append(Span(b, s.end, s.type, s.source))
        spans = cut
    spans.sort(key=lambda s: (s.start, -(s.end - s.start)))
    out: list[Span] = []
    for s in spans:
        if out and s.start < out[-1].end:
            last = out[-1]
            etype = min((last.type, s.type), key=lambda t: _PRIORITY[t])
            out[-1] = Span(last.start, max(last.end, s.end), etype, last.source)
        else:
            out.append(s)
    return out


def _trim(text: str, s: Span) -> Span | None:
    """Drop surrounding spaces/punctuation so placeholders sit where the value was."""
    a, b = s.start, s.end
    while a < b and text[a] in " \t\n,;:!?\"'()[]":
        a += 1
    while b > a and text[b - 1] in " \t\n,;:!?\"'()[].":
        b -= 1
    return Span(a, b, s.type, s.source) if b > a else None


class Deidentifier:
    """Finds and replaces identifiers; one instance per process (the NER model is loaded once)."""

    def __init__(self, cfg: DeidConfig | None = None) -> None:
        self.cfg = cfg or DeidConfig()
        self._analyzer = self._build_analyzer()
        self._lock = threading.Lock()

    # ----------------------------------------------------------------------------------------
    def _build_analyzer(self):  # -> presidio_analyzer.AnalyzerEngine
        try:
            import spacy
            from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
            from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine
            from presidio_analyzer.predefined_recognizers import (
                CreditCardRecognizer,
                IbanRecognizer,
                IpRecognizer,
                PhoneRecognizer,
                SpacyRecognizer,
                UrlRecognizer,
                UsSsnRecognizer,
            )
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
                    "use regular expressions only (names are then found far less reliably)"
                )
            nlp = spacy.load(cfg.spacy_model, exclude=["lemmatizer", "parser"])
        else:
            nlp = spacy.blank("en")
        mapping = {"PERSON": "PERSON", "PER": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION",
                   "FAC": "LOCATION", "ORG": "ORGANIZATION", "DATE": "DATE_TIME"}

        class _LoadedSpacy(SpacyNlpEngine):
            # Presidio's own load() would try to download a missing model; ours is already loaded.
            def load(self) -> None:
                self.nlp = {"en": nlp}

        engine = _LoadedSpacy(ner_model_configuration=NerModelConfiguration(
            model_to_presidio_entity_mapping=mapping, labels_to_ignore=["CARDINAL", "ORDINAL", "QUANTITY",
                                                                        "MONEY", "PERCENT", "TIME", "NORP",
                                                                        "LANGUAGE", "EVENT", "WORK_OF_ART",
                                                                        "LAW", "PRODUCT"]))
        engine.load()
        registry = RecognizerRegistry(supported_languages=["en"])
        # E-mail is found by our own pattern: Presidio's validator fetches the public suffix list.
        for rec in (PhoneRecognizer(), UrlRecognizer(), UsSsnRecognizer(), CreditCardRecognizer(),
                    IbanRecognizer(), IpRecognizer()):
            registry.add_recognizer(rec)
        if cfg.ner == "spacy":
            registry.add_recognizer(SpacyRecognizer(
                supported_entities=["PERSON", "LOCATION", "ORGANIZATION", "DATE_TIME"]))
        return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])

    _PRESIDIO = {"PERSON": "NAME", "LOCATION": "LOCATION", "ORGANIZATION": "ORG", "DATE_TIME": "DATE",
                 "PHONE_NUMBER": "PHONE", "URL": "URL", "US_SSN": "SSN", "CREDIT_CARD": "ACCOUNT",
                 "IBAN_CODE": "ACCOUNT", "IP_ADDRESS": "ID"}

    # ----------------------------------------------------------------------------------------
    def analyze(self, text: str) -> list[Span]:
        """All identifier spans in one text (overlapping, not yet merged)."""
        spans: list[Span] = []
        with self._lock:
            artifacts = self._analyzer.nlp_engine.process_text(text, "en")
            results = self._analyzer.analyze(
                text=text, language="en", score_threshold=self.cfg.min_score, nlp_artifacts=artifacts
            )
        roles = [m.span(1) for m in _SPEAKER.finditer(text) if not self._label_is_name(m.group(1).strip())]
        for r in results:
            if any(a <= r.start and r.end <= b for a, b in roles):
                continue  # "INTERVIEWER:" is a role, whatever NER thinks
            etype = self._PRESIDIO.get(r.entity_type)
            if etype is None:
                continue
            value = text[r.start:r.end]
            if not self._keep_ner(etype, value):
                continue
            spans.append(Span(r.start, r.end, etype, "presidio"))
        if self.cfg.ner == "spacy" and self.cfg.proper_nouns:
            ner = [(s.start, s.end) for s in spans]
            spans.extend(
                s for s in self._proper_nouns(artifacts.tokens)
                if not any(a < s.end and s.start < b for a, b in ner + roles)
            )
        for etype, rx in _REGEXES:
            for m in rx.finditer(text):
                a, b = (m.span(1) if m.re.groups >= 1 and m.group(1) is not None else m.span())
                if etype in ("ID", "ACCOUNT", "MRN") and sum(ch.isdigit() for ch in text[a:b]) < 4:
                    continue
                spans.append(Span(a, b, etype, "regex"))
        for m in _CITY_STATE.finditer(text):
            words = m.group(1).split()
            while words and (words[0].lower() in _NOT_NAMES or re.fullmatch(_STREET + r"\.?", words[0])):
                words = words[1:]  # "Ave, Dayton" / "Lane, ..." : keep the city only
            if words:
                city = " ".join(words)
                a = m.start(1) + m.group(1).rfind(city)
                spans.append(Span(a, a + len(city), "LOCATION", "city-state"))
        for rx in _NAME_TRIGGERS:
            for m in rx.finditer(text):
                a, b = self._name_group(text, m)
                if b > a:
                    spans.append(Span(a, b, "NAME", "trigger"))
        for m in _SENTENCE_SUBJECT.finditer(text):
            word = m.group(1)
            low = word.lower()
            if low not in _GENERIC_SUBJECTS and low not in _NOT_NAMES and low not in _ROLES:
                spans.append(Span(m.start(1), m.end(1), "NAME", "subject"))
        for m in _SPEAKER.finditer(text):
            label = m.group(1).strip()
            if self._label_is_name(label):
                a = m.start(1) + m.group(1).find(label)
                spans.append(Span(a, a + len(label), "NAME", "speaker"))
        return spans

    @staticmethod
    def _proper_nouns(doc) -> list[Span]:  # doc: spacy.tokens.Doc
        """Capitalised words the tagger calls proper nouns but NER left unlabelled.

        The small NER model misses names in plain sentences ("Ifeoma called"); its tagger still
        marks them NNP. Common capitalised words (months, kinship terms, roles) are kept.
        """
        out = []
        for tok in doc:
            if tok.tag_ not in ("NNP", "NNPS") or tok.ent_type_ in ("DATE", "TIME", "CARDINAL"):
                continue
            word = tok.text
            low = word.lower().strip("'’.")
            if (len(word) < 3 or not word[:1].isupper() or not word[1:2].isalpha()
                    or low in _NOT_NAMES or low.rstrip("s") in _NOT_NAMES or low in _SAFE_ORGS
                    or low in _US_STATES or low in _ROLES or word.isupper() and len(word) <= 4):
                continue
            out.append(Span(tok.idx, tok.idx + len(word), "NAME", "propn"))
        return out

    def _keep_ner(self, etype: str, value: str) -> bool:
        low = value.strip().lower()
        if etype == "NAME":
            words = [w for w in re.split(r"\s+", low) if w]
            return bool(words) and not all(w.strip(".,'’") in _NOT_NAMES for w in words) and any(
                c.isupper() for c in value)
        if etype == "LOCATION":
            return not (self.cfg.keep_states and low in _US_STATES) and any(c.isupper() for c in value)
        if etype == "ORG":
            return self.cfg.redact_orgs and low not in _SAFE_ORGS and any(c.isupper() for c in value)
        if etype == "DATE":
            # More specific than a year: a month name, or day/month digits. Years alone stay.
            return bool(re.search(_MONTH + r"\s*\d|\d\s*(?:st|nd|rd|th)?\s*(?:of\s+)?" + _MONTH, value)
                        or re.search(r"\d{1,2}[/\-.]\d{1,2}", value)
                        or re.search(_MONTH + r"\s+(?:of\s+)?\d{4}", value))
        return True

    @staticmethod
    def _name_group(text: str, m: re.Match[str]) -> tuple[int, int]:
        """Keep only the leading capitalised words that are not common words."""
        words = list(re.finditer(r"\S+", m.group(1)))
        end = m.start(1)
        for w in words:
            bare = w.group().strip(".,;:!?'’").lower()
            if bare in _NOT_NAMES or bare.rstrip("s") in _NOT_NAMES or not w.group()[:1].isupper():
                break
            end = m.start(1) + w.start() + len(w.group().rstrip(".,;:!?"))
        return m.start(1), end

    @staticmethod
    def _label_is_name(label: str) -> bool:
        low = re.sub(r"[\d.]+$", "", label.lower()).strip()
        if not low or low in _ROLES or len(label) > 40:
            return False
        words = low.replace(".", " ").split()
        if all(w in _ROLES or w in _NOT_NAMES or len(w) == 1 for w in words):
            return False
        return label[:1].isupper()

    # ----------------------------------------------------------------------------------------
    def _propagate(self, texts: Sequence[str], found: list[list[Span]]) -> None:
        """Search every text for each name/place/org value found anywhere in the transcript."""
        values: dict[str, str] = {}
        for text, spans in zip(texts, found, strict=True):
            for s in spans:
                if s.type not in ("NAME", "LOCATION", "ORG"):
                    continue
                value = text[s.start:s.end].strip(" .,'’")
                value = re.sub(r"['’]s$", "", value)
                if len(value) < 2:
                    continue
                found_as = [(value.lower(), s.type)]
                if s.type == "NAME":
                    for tok in re.split(r"[\s.]+", value):
                        tok = tok.strip("'’-")
                        if len(tok) > 1 and tok.lower() not in _NOT_NAMES and tok[:1].isupper():
                            found_as.append((tok.lower(), "NAME"))
                for key, etype in found_as:  # a value seen as a name anywhere is a name everywhere
                    if key not in values or _PRIORITY[etype] < _PRIORITY[values[key]]:
                        values[key] = etype
        if not values:
            return
        keys = sorted(values, key=len, reverse=True)
        rx = re.compile(r"(?<![\w\-])(" + "|".join(re.escape(k) for k in keys) + r")(?![\w\-])", re.I)
        for text, spans in zip(texts, found, strict=True):
            for m in rx.finditer(text):
                if m.group()[:1].isupper():
                    etype = values[m.group().lower()]
                    spans.append(Span(m.start(), m.end(), etype, "propagated"))
                    # the propagated type also overrides a weaker NER type on the same words
                    for i, s in enumerate(spans):
                        if s.start == m.start() and s.end == m.end() and _PRIORITY[s.type] > _PRIORITY[etype]:
                            spans[i] = Span(s.start, s.end, etype, s.source)

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
        found = [self.analyze(t) for t in pages]
        self._propagate(pages, found)
        out = []
        for text, spans in zip(pages, found, strict=True):
            protected = [m.span() for m in PLACEHOLDER_RE.finditer(text)]
            trimmed = [t for s in spans if (t := _trim(text, s)) is not None]
            out.append(_merge(trimmed, protected))
        return out

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
    """One de-identifier per config per process (spaCy loads in ~2 s; reuse it)."""
    cfg = cfg or DeidConfig()
    key = cfg.model_dump_json()
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = Deidentifier(cfg)
        return _CACHE[key]
