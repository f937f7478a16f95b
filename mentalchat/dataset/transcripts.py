"""Fictional caregiver interview transcripts with planted identifiers.

Real interview transcripts are protected health information and are never shipped, so tests, the
quickstart samples and the leak benchmark use these instead. Every identifier the generator plants
is recorded (:class:`Planted`), so a test can prove that none of them survives de-identification
(:func:`find_leaks`). All text here is invented for this project; names, streets and cities are
drawn from small lists and combined at random, and phone numbers use the fictional 555-01xx range.

The de-identifier never sees these lists: it must find the identifiers on its own.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "GeneratedTranscript",
    "Planted",
    "find_leaks",
    "generate_transcripts",
    "write_transcripts",
]

# --------------------------------------------------------------------------------------------
# Vocabulary (invented combinations; no real person is meant)
# --------------------------------------------------------------------------------------------
FIRST_NAMES = [
    "Rosalind", "Tobias", "Marisol", "Dmitri", "Ifeoma", "Callum", "Annika", "Ezequiel",
    "Priyanka", "Lorenzo", "Henrietta", "Bartholomew", "Yusuf", "Svetlana", "Giacomo", "Thaddeus",
    "Wilhelmina", "Oluwaseun", "Kenji", "Ingrid", "Leopold", "Ximena", "Radovan", "Beatrix",
    "Anselm", "Delphine", "Cormac", "Perpetua", "Matthias", "Esperanza", "Ruairi", "Sunniva",
    "Teodoro", "Agnieszka", "Desmond", "Maribel", "Lucinda", "Osvaldo", "Philippa", "Quentin",
    "Siobhan", "Wendell", "Zofia", "Harriet", "Ambrose", "Maria", "James", "Linda", "Robert",
    "Patricia", "Michael", "Jennifer", "David", "Susan", "Carlos", "Aisha", "Mohammed", "Wei",
    "Thomas", "Barbara", "Dolores", "Gerald", "Yolanda", "Francisco", "Eleanor", "Malik",
]
LAST_NAMES = [
    "Petrakis", "Okafor", "Lindqvist", "Abernathy", "Kowalczyk", "Nakamura", "Delacroix",
    "Oyelaran", "Fitzwilliam", "Haverford", "Castellanos", "Brannigan", "Szymanski", "Achterberg",
    "Rasmussen", "Thibodeaux", "Quintero", "Halvorsen", "Gallagher", "Johnson", "Smith", "Garcia",
    "Martinez", "Nguyen", "Patel", "Williams", "Rodriguez", "Hernandez", "Lopez", "Wilson",
    "Anderson", "Thompson", "Robinson", "Ramirez", "Okonkwo", "Fischer", "Novak", "Horvath",
    "Sullivan", "Villanueva", "Adeyemi", "Mancini", "Kaczmarek", "Brennan", "Oduya", "Sato",
]
STREET_NAMES = [
    "Juniper", "Maplewood", "Harrow", "Birchmont", "Kingsley", "Ridgecrest", "Old Mill",
    "Sycamore", "Larkspur", "Pemberton", "Wexford", "Hollister", "Cedar Hollow", "Bramble",
    "Whitford", "Ashbury", "Linden", "Quarry", "Foxglove", "Orchard Hill",
]
STREET_SUFFIXES = [
    "Street", "Avenue", "Lane", "Road", "Drive", "Court", "Boulevard", "Way", "Place",
    "Terrace", "St.", "Ave", "Rd", "Dr.",
]
CITIES = [
    "Dayton", "Tacoma", "Bakersfield", "Knoxville", "Albuquerque", "Spokane", "Savannah",
    "Duluth", "Scranton", "Fresno", "Boise", "Lubbock", "Worcester", "Provo", "Shreveport",
    "Akron", "Chattanooga", "Pueblo", "Macon", "Tallahassee", "Kalamazoo", "Poughkeepsie",
]
STATES = ["Ohio", "Washington", "California", "Tennessee", "New Mexico", "Georgia", "Minnesota",
          "Pennsylvania", "Idaho", "Texas", "Massachusetts", "Utah", "Louisiana", "Michigan"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
RELATIONS_F = ["mother", "wife", "sister", "daughter", "grandmother", "aunt", "mother-in-law"]
RELATIONS_M = ["father", "husband", "brother", "son", "grandfather", "uncle", "father-in-law"]
NUMBER_WORDS = {
    90: "ninety", 91: "ninety-one", 92: "ninety-two", 93: "ninety-three", 94: "ninety-four",
    95: "ninety-five", 96: "ninety-six", 97: "ninety-seven", 98: "ninety-eight",
    99: "ninety-nine", 100: "a hundred", 101: "a hundred and one",
}
CONDITIONS = ["dementia", "Alzheimer's", "Parkinson's", "a stroke", "heart failure", "COPD",
              "pancreatic cancer", "ALS", "kidney failure", "lung cancer"]

# Interviewer prompts and caregiver filler: plain text with no identifiers at all. Some carry
# capitalised words, years and ages under 90 on purpose: a de-identifier must leave them alone.
INTERVIEWER_LINES = [
    "Can you tell me how a typical day looks for you now?",
    "What has been the hardest part of the caregiving for you?",
    "How are you sleeping these days?",
    "Who else helps you with the care, if anyone?",
    "How has this changed your relationship with them?",
    "When you feel overwhelmed, what do you usually do?",
    "Did anyone explain what to expect as the illness progressed?",
    "How do you look after your own health?",
    "What would have helped you most at the start?",
    "How did the hospice team support you?",
    "Is there anything you wish the doctors had done differently?",
    "How do the rest of the family feel about the arrangement?",
    "What keeps you going on the difficult days?",
    "Have you been able to take any time for yourself?",
    "How do you handle the moments when they do not recognise you?",
    "What was it like when you first heard the diagnosis?",
]
FILLER = [
    "Most mornings start at five because the medication has to be given with food.",
    "I feel guilty when I lose my patience, and then I lie awake replaying it.",
    "Nobody warned me how lonely it would be, even with people around.",
    "The hospice nurse showed me how to move her without hurting my back.",
    "Back in 2019 things were still manageable, we even travelled a little.",
    "She is 84 now and the falls have become more frequent.",
    "I am 58 and I feel like I have aged ten years since this started.",
    "Sundays are the hardest because the whole house goes quiet.",
    "My brothers call, but calling is not the same as showing up.",
    "I keep a notebook of every pill and every appointment so I do not forget.",
    "Some days he is sharp as ever, and the next day he asks who I am.",
    "The paperwork for Medicare took weeks and I cried over the forms more than once.",
    "Christmas was difficult this year because we could not leave the house.",
    "I stopped going to choir practice because I could not find anyone to sit with him.",
    "The support group helped, mostly because nobody there judged me.",
    "I used to be the one who planned everything, and now I can barely plan dinner.",
    "My own doctor told me my blood pressure is too high, which did not surprise me.",
    "We had to sell the car in 2021 because he kept trying to drive it.",
    "When she gets agitated in the evening I put on the old records she loves.",
    "Honestly I am tired in a way that sleep does not fix.",
    "Friends stopped visiting after the first year, and I understand, but it hurts.",
    "The respite program gave me four hours a week and I spent the first one crying in the car.",
    "I worry about money all the time because I cut my hours at work.",
    "We moved her bed downstairs so she would not have to use the stairs.",
    "There are moments of real tenderness, like when she squeezes my hand.",
    "I read everything I could find about the illness, which only scared me more.",
    "He was a proud man and accepting help has been very hard for him.",
    "The social worker at the hospital was kind but overloaded.",
    "My teenager helps with the laundry, and I worry that it is too much for him.",
    "Since the diagnosis I have put on weight and stopped exercising.",
    "I learned to ask for help, but it took me almost two years.",
    "Our pastor visits on Thursdays and that gives me an hour to breathe.",
]
CRISIS_FILLER = [
    "There were nights I thought everyone would be better off without me.",
    "I have had thoughts of ending my life when the exhaustion gets really bad.",
    "When he gets confused he hits me, and last week he pushed me into the wall.",
    "Sometimes I scratch my arms until they bleed just to feel something else.",
]


@dataclass(frozen=True)
class Planted:
    """One identifier the generator put into a transcript."""

    kind: str  # name | phone | email | address | city | zip | date | age | ssn | mrn | account | url
    value: str


@dataclass
class GeneratedTranscript:
    """A fictional transcript: pages of (speaker, text) turns and what was planted in it."""

    transcript_id: str
    pages: list[list[tuple[str, str]]]
    planted: list[Planted] = field(default_factory=list)
    crisis: bool = False

    def page_texts(self) -> list[str]:
        return ["\n".join(f"{s}: {t}" for s, t in page) for page in self.pages]


# --------------------------------------------------------------------------------------------
# Identifier factories: each returns (sentence, [planted values])
# --------------------------------------------------------------------------------------------
class _Person:
    def __init__(self, rng: random.Random, female: bool | None = None) -> None:
        self.first = rng.choice(FIRST_NAMES)
        self.last = rng.choice(LAST_NAMES)
        self.female = rng.random() < 0.5 if female is None else female

    @property
    def full(self) -> str:
        return f"{self.first} {self.last}"


def _phone(rng: random.Random) -> str:
    area = rng.randint(201, 989)
    line = f"01{rng.randint(0, 99):02d}"
    fmt = rng.choice(["({a}) 555-{l}", "{a}-555-{l}", "{a}.555.{l}", "+1 {a} 555 {l}", "555-{l}"])
    return fmt.format(a=area, l=line)


def _date(rng: random.Random) -> str:
    m = rng.randint(1, 12)
    d = rng.randint(1, 28)
    y = rng.randint(2012, 2024)
    month = MONTHS[m - 1]
    suffix = {1: "st", 2: "nd", 3: "rd", 21: "st", 22: "nd", 23: "rd"}.get(d, "th")
    fmt = rng.choice([
        f"{month} {d}, {y}", f"{m}/{d}/{y}", f"{m}/{d}/{y % 100:02d}", f"the {d}{suffix} of {month}",
        f"{month} {d}{suffix}", f"{m:02d}-{d:02d}-{y}", f"{month} {y}", f"{month[:3]}. {d}",
    ])
    return fmt


def _address(rng: random.Random) -> str:
    street = f"{rng.randint(3, 9899)} {rng.choice(STREET_NAMES)} {rng.choice(STREET_SUFFIXES)}"
    if rng.random() < 0.3:
        street += rng.choice([f", Apt {rng.randint(1, 40)}{rng.choice('ABCD')}", f" Unit {rng.randint(2, 300)}"])
    return street


def _email(rng: random.Random, p: _Person) -> str:
    user = rng.choice([
        f"{p.first.lower()}.{p.last.lower()}", f"{p.first[0].lower()}{p.last.lower()}{rng.randint(1, 99)}",
        f"{p.last.lower()}.family", f"{p.first.lower()}{rng.randint(1950, 2005)}",
    ])
    return f"{user}@{rng.choice(['example.com', 'example.org', 'mail.example.net'])}"


def _planters(rng: random.Random, cg: _Person, patient: _Person, rel: str) -> list:
    """Sentence factories that plant identifiers; each returns (text, planted list)."""
    pron = "she" if patient.female else "he"
    obj = "her" if patient.female else "him"
    poss = "her" if patient.female else "his"

    def name_intro():
        return f"My name is {cg.full} and I look after my {rel}.", [Planted("name", cg.full)]

    def name_im():
        return f"I'm {cg.first}, by the way, the {rel}'s main carer.", [Planted("name", cg.first)]

    def name_relation():
        return (f"My {rel}, {patient.first}, has lived with {rng.choice(CONDITIONS)} for years.",
                [Planted("name", patient.first)])

    def name_bare():
        return (f"{patient.first} still hums along when the radio plays in the kitchen.",
                [Planted("name", patient.first)])

    def name_full_bare():
        return (f"{patient.full} was a schoolteacher for thirty years before any of this.",
                [Planted("name", patient.full)])

    def name_doctor():
        d = _Person(rng)
        return (f"Dr. {d.last} told us there was nothing more the surgery could do.",
                [Planted("name", d.last)])

    def name_nurse():
        n = _Person(rng)
        return (f"The nurse, {n.full}, comes twice a week and {pron} trusts her.",
                [Planted("name", n.full)])

    def name_neighbour():
        n = _Person(rng)
        return (f"Our neighbour {n.first} {n.last} sometimes sits with {obj} so I can shop.",
                [Planted("name", n.full)])

    def name_told():
        n = _Person(rng)
        return (f"I told {n.first} that I could not do another night shift.", [Planted("name", n.first)])

    def name_mrs():
        n = _Person(rng)
        title = rng.choice(["Mrs.", "Mr.", "Ms."])
        return (f"{title} {n.last} from church drops off soup on Fridays.", [Planted("name", n.last)])

    def phone():
        ph = _phone(rng)
        return (rng.choice([f"You can reach me at {ph} if you need anything else.",
                            f"The hospice line, {ph}, was the number I called most.",
                            f"I wrote {ph} on the fridge in big letters."]), [Planted("phone", ph)])

    def email():
        em = _email(rng, cg)
        return (rng.choice([f"Send the forms to {em} and I will sign them.",
                            f"My sister set up {em} so the family could share updates."]),
                [Planted("email", em)])

    def address():
        ad = _address(rng)
        city = rng.choice(CITIES)
        z = f"{rng.randint(10000, 99999)}"
        st = rng.choice(STATES)
        kind = rng.random()
        if kind < 0.5:
            return (f"We live at {ad}, {city}, {st} {z}, in the house {pron} grew up in.",
                    [Planted("address", ad), Planted("city", city), Planted("zip", z)])
        if kind < 0.8:
            return (f"The day centre is on {ad} in {city}, about twenty minutes away.",
                    [Planted("address", ad), Planted("city", city)])
        return (f"We moved to {city} to be closer to the clinic.", [Planted("city", city)])

    def zipcode():
        z = f"{rng.randint(10000, 99999)}" + (f"-{rng.randint(1000, 9999)}" if rng.random() < 0.3 else "")
        return (f"The pharmacy only delivers inside the {z} zip code.", [Planted("zip", z)])

    def date():
        dt = _date(rng)
        return (rng.choice([f"The diagnosis came on {dt} and everything changed.",
                            f"{pron.capitalize()} was admitted on {dt} after the fall.",
                            f"Our next review is {dt}, if the appointment holds."]),
                [Planted("date", dt)])

    def age():
        a = rng.randint(90, 101)
        txt = rng.choice([
            (f"{pron.capitalize()} turned {a} in the spring.", str(a)),
            (f"My {rel} is {a} years old and still stubborn.", str(a)),
            (f"At {NUMBER_WORDS[a]}, {pron} has outlived all of {poss} friends.", NUMBER_WORDS[a]),
            (f"Caring for a {a}-year-old is not like caring for a child.", str(a)),
            (f"The doctor said that at age {a} surgery was out of the question.", str(a)),
        ])
        return txt[0], [Planted("age", txt[1])]

    def ssn():
        s = f"{rng.randint(100, 899)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}"
        if rng.random() < 0.3:
            s = s.replace("-", " ")
        return (f"The form asked for {poss} social security number, {s}, three times.",
                [Planted("ssn", s)])

    def mrn():
        m = rng.choice([f"{rng.randint(10**6, 10**8 - 1)}", f"{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}",
                        f"HR-{rng.randint(10000, 99999)}"])
        return (rng.choice([f"The medical record number is {m}, I know it by heart.",
                            f"Every call starts with them asking for MRN {m}."]), [Planted("mrn", m)])

    def account():
        a = rng.choice([f"{rng.randint(10**9, 10**10 - 1)}", f"XKD{rng.randint(100000, 999999)}",
                        f"{rng.randint(10, 99)}-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"])
        return (rng.choice([f"The insurance member ID is {a} and they still lost the claim.",
                            f"I pay the bills from account number {a} every month."]),
                [Planted("account", a)])

    def url():
        slug = rng.choice([cg.last.lower(), f"{patient.first.lower()}-care", "family-updates"])
        u = rng.choice([f"https://www.example.net/{slug}", f"www.caringpages.example.org/{slug}",
                        f"http://example.com/fund/{slug}{rng.randint(1, 999)}"])
        return (f"We post updates for the family on {u} so I do not repeat myself.", [Planted("url", u)])

    return [name_intro, name_im, name_relation, name_bare, name_full_bare, name_doctor, name_nurse,
            name_neighbour, name_told, name_mrs, phone, email, address, zipcode, date, age, ssn, mrn,
            account, url]


def _one(rng: random.Random, index: int, pages: tuple[int, int], crisis_rate: float,
         named_speakers_rate: float) -> GeneratedTranscript:
    patient = _Person(rng)
    cg = _Person(rng)
    rel = rng.choice(RELATIONS_F if patient.female else RELATIONS_M)
    planters = _planters(rng, cg, patient, rel)
    n_pages = rng.randint(*pages)
    crisis = rng.random() < crisis_rate
    named = rng.random() < named_speakers_rate
    planted: list[Planted] = []
    if named:
        who = rng.choice(["first_upper", "first_initial", "full"])
        label = {"first_upper": cg.first.upper(), "first_initial": f"{cg.first} {cg.last[0]}.",
                 "full": cg.full}[who]
        planted.append(Planted("name", cg.first if who != "full" else cg.full))
        asker = rng.choice(["Interviewer", "INTERVIEWER", "Q"])
    else:
        label = rng.choice(["Caregiver", "Participant", "CAREGIVER", "A"])
        asker = {"Caregiver": "Interviewer", "Participant": "Interviewer", "CAREGIVER": "INTERVIEWER",
                 "A": "Q"}[label]
    out: list[list[tuple[str, str]]] = []
    crisis_page = rng.randrange(n_pages) if crisis else -1
    for p in range(n_pages):
        turns: list[tuple[str, str]] = []
        for _ in range(rng.randint(4, 7)):
            turns.append((asker, rng.choice(INTERVIEWER_LINES)))
            sents = rng.sample(FILLER, rng.randint(2, 4))
            for _ in range(rng.choice([0, 1, 1, 2])):
                text, pl = rng.choice(planters)()
                sents.insert(rng.randrange(len(sents) + 1), text)
                planted.extend(pl)
            turns.append((label, " ".join(sents)))
        if p == crisis_page:
            i = rng.randrange(1, len(turns), 2)
            turns[i] = (turns[i][0], turns[i][1] + " " + rng.choice(CRISIS_FILLER))
        out.append(turns)
    return GeneratedTranscript(f"gen-{index:05d}", out, planted, crisis)


def generate_transcripts(
    n: int,
    *,
    seed: int = 0,
    pages: tuple[int, int] = (2, 5),
    crisis_rate: float = 0.15,
    named_speakers_rate: float = 0.3,
) -> list[GeneratedTranscript]:
    """Make ``n`` fictional transcripts; the same seed gives the same transcripts."""
    rng = random.Random(seed)
    return [_one(rng, i, pages, crisis_rate, named_speakers_rate) for i in range(n)]


def _write_docx(t: GeneratedTranscript, path: Path) -> None:
    import docx
    from docx.enum.text import WD_BREAK

    doc = docx.Document()
    for p, page in enumerate(t.pages):
        for speaker, text in page:
            doc.add_paragraph(f"{speaker}: {text}")
        if p < len(t.pages) - 1:
            doc.add_paragraph().add_run().add_break(WD_BREAK.PAGE)
    doc.save(str(path))


def write_transcripts(
    transcripts: Sequence[GeneratedTranscript],
    folder: str | Path,
    *,
    formats: Sequence[str] = ("txt",),
    form_feeds: bool = True,
) -> list[Path]:
    """Write each transcript as ``<id>.<fmt>``, cycling through ``formats``.

    ``.txt`` separates pages with a form feed (or not, with ``form_feeds=False``: then the reader
    cuts pages by its word budget); ``.jsonl`` has one turn per line with its page number;
    ``.docx`` puts a page break between pages.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, t in enumerate(transcripts):
        fmt = formats[i % len(formats)]
        path = folder / f"{t.transcript_id}.{fmt}"
        if fmt == "txt":
            sep = "\n\f" if form_feeds else "\n"
            path.write_text(sep.join(t.page_texts()) + "\n", encoding="utf-8")
        elif fmt == "jsonl":
            with path.open("w", encoding="utf-8") as fh:
                for p, page in enumerate(t.pages, start=1):
                    for speaker, text in page:
                        fh.write(json.dumps({"page": p, "speaker": speaker, "text": text}) + "\n")
        elif fmt == "docx":
            _write_docx(t, path)
        else:
            raise ValueError(f"unknown transcript format {fmt!r}")
        paths.append(path)
    return paths


# --------------------------------------------------------------------------------------------
# Leak detection
# --------------------------------------------------------------------------------------------
# Digit runs that stand alone: not glued to letters (hex hashes, ids like "t-1161829...").
_DIGITS_RUN = re.compile(r"(?<![\w-])\d[\d\s().+-]*\d(?!\w)")


def _digit_runs(text: str) -> list[str]:
    return [re.sub(r"\D", "", m.group()) for m in _DIGITS_RUN.finditer(text)]


def _leaked(p: Planted, text: str, low: str, runs: list[str]) -> bool:
    if p.kind == "name":
        # A name leaks if the full value or any of its parts appears as a capitalised whole word.
        # Case-insensitive (speaker labels are often upper case) but capitalised in the text.
        parts = [p.value, *p.value.split()]
        return any(
            m.group()[:1].isupper()
            for x in parts if len(x) > 2
            for m in re.finditer(rf"(?<![\w-]){re.escape(x)}(?![\w-])", text, re.I)
        )
    if p.kind in ("city",):
        return any(m.group()[:1].isupper() for m in re.finditer(rf"\b{re.escape(p.value)}\b", text, re.I))
    digits = re.sub(r"\D", "", p.value)
    if p.kind in ("phone", "ssn", "zip", "mrn", "account") and len(digits) >= 4:
        if p.kind == "phone":
            digits = digits[-7:]  # the local part is what identifies; area codes recur by chance
        # the run holds the value and at most a few more digits (ZIP+4, a country code)
        if any(digits in run and len(run) - len(digits) <= 4 for run in runs):
            return True
        return p.value.lower() in low if not p.value.isdigit() else False
    if p.kind == "age":
        v = re.escape(p.value)
        if not p.value.isdigit():  # written out ("ninety-four"): rare enough anywhere
            return re.search(rf"\b{v}\b", text, re.I) is not None
        # digits: only in an age context, not any number in a table of counts
        return re.search(rf"(?i)\b(?:turned|turns|is|was|at|age|aged|of|['’]s)\s+{v}\b|\b{v}[\s-]*(?:years?|yrs?)\b",
                         text) is not None
    if p.kind == "address":
        # Number plus street name is what identifies the house.
        num, _, rest = p.value.partition(" ")
        street = rest.split(",")[0].split(" Unit")[0]
        words = street.split()
        name = " ".join(words[:-1]) if len(words) > 1 else street
        return re.search(rf"\b{re.escape(num)}\s+{re.escape(name)}\b", text) is not None
    return p.value.lower() in low


def find_leaks(texts: Iterable[str], planted: Iterable[Planted]) -> list[tuple[Planted, str]]:
    """Planted identifiers found in any of ``texts``: (identifier, a snippet around it)."""
    texts = [t for t in texts if t]
    prepared = [(t, t.lower(), _digit_runs(t)) for t in texts]
    leaks = []
    for p in dict.fromkeys(planted):
        for t, low, runs in prepared:
            if _leaked(p, t, low, runs):
                leaks.append((p, _snippet(p, t)))
                break
    return leaks


def _snippet(p: Planted, text: str) -> str:
    key = p.value.split()[0] if p.kind == "name" else p.value
    i = text.find(key)
    if i < 0:
        return text[:80]
    return text[max(0, i - 40): i + len(key) + 40]
