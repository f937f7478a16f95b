"""mentalchat.testing.deid_sets / deid_metrics / deid_baselines: the evaluation documents, the
speech-to-text rendering and the metrics, each on cases whose answer is known."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from mentalchat.testing import deid_metrics as dm
from mentalchat.testing import deid_sets as ds
from mentalchat.testing.deid_sets import CATEGORIES, Gold, PhiDoc


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


needs_presidio_evaluator = pytest.mark.skipif(not _has("presidio_evaluator"), reason="presidio-evaluator not installed")
needs_philter = pytest.mark.skipif(not _has("philter_lite"), reason="philter-lite not installed")


@pytest.fixture(scope="module")
def presidio_test():
    pytest.importorskip("presidio_evaluator")
    return ds.presidio_sentences(150, seed=0, split="test")


@pytest.fixture(scope="module")
def transcripts_test():
    return ds.generated_transcripts(14, seed=0, split="test")  # no. 13 has an upper-case speaker label


def _slices(doc: PhiDoc) -> None:
    for g in doc.gold + doc.ignored:
        assert doc.pages[g.page][g.start:g.end] == g.value, (doc.doc_id, g)


# --------------------------------------------------------------------------------------------
# presidio-evaluator sentences
# --------------------------------------------------------------------------------------------
@needs_presidio_evaluator
def test_presidio_sentences_counts_and_categories(presidio_test) -> None:
    assert len(presidio_test) == 150
    assert len({d.doc_id for d in presidio_test}) == 150
    cats = Counter(g.category for d in presidio_test for g in d.gold)
    assert set(cats) <= set(CATEGORIES)
    for c in ("NAME", "ADDRESS", "CITY", "ZIP", "PHONE", "ID", "FACILITY"):
        assert cats[c] > 0, c
    for d in presidio_test:
        assert d.split == "test" and d.set_name == "presidio" and len(d.pages) == 1
        assert "\\n" not in d.pages[0]  # the templates' literal "\n" became new lines
        _slices(d)
        for g in d.gold:
            if g.category == "DATE":
                assert not re.fullmatch(r"\d{4}", g.value)
            if g.category == "NAME":
                assert not re.match(r"(?i)(mr|mrs|ms|dr)\.?\s", g.value)  # titles are not the name
    ignored = Counter(g.category for d in presidio_test for g in d.ignored)
    assert ignored["COUNTRY"] > 0 and set(ignored) <= {"COUNTRY", "STATE", "NRP", "TITLE", "PROFESSION", "YEAR",
                                                       "WEEKDAY", "AGE"}


@needs_presidio_evaluator
def test_every_faker_type_has_a_category() -> None:
    from presidio_evaluator.data_generator.faker_extensions import AddressProviderNew

    types = {m for t in ds.presidio_templates() for m in re.findall(r"{{(\w+)}}", t)}
    assert types and types <= set(ds.PRESIDIO_FAKER_CATEGORIES), types - set(ds.PRESIDIO_FAKER_CATEGORIES)
    nested = {m for f in AddressProviderNew.address_formats for m in re.findall(r"{{(\w+)}}", f)}
    assert nested <= set(ds.PRESIDIO_FAKER_CATEGORIES)


@needs_presidio_evaluator
def test_presidio_address_parts_and_mapping_on_a_known_sample() -> None:
    from presidio_evaluator import InputSample, Span

    text = "Meet me at 12 Oak St\\n Apt. 5, Springfield, IL 62704 with Dr. Ann Fox MD, 95, from Peru"
    def span(t, value):
        i = text.index(value)
        return Span(entity_type=t, entity_value=value, start_position=i, end_position=i + len(value))

    sample = InputSample(full_text=text, spans=[
        span("building_number", "12"), span("street_name", "Oak St"), span("secondary_address", "Apt. 5"),
        span("city", "Springfield"), span("state_abbr", "IL"), span("zipcode", "62704"),
        span("name", "Dr. Ann Fox MD"), span("age", "95"), span("country", "Peru")])
    doc = ds._presidio_doc(sample, [], "x", "test")
    gold = {(g.category, g.value) for g in doc.gold}
    assert gold == {("ADDRESS", "12 Oak St\n Apt. 5"), ("CITY", "Springfield"), ("ZIP", "62704"),
                    ("NAME", "Ann Fox"), ("AGE_90", "95")}
    assert {(g.category, g.value) for g in doc.ignored} == {("STATE", "IL"), ("TITLE", "Dr."), ("TITLE", "MD"),
                                                             ("COUNTRY", "Peru")}
    with pytest.raises(ValueError, match="no category"):
        ds._presidio_doc(InputSample(full_text="a b", spans=[Span("blood_type", "a", 0, 1)]), [], "y", "test")


@needs_presidio_evaluator
def test_presidio_sentences_deterministic_split_separated_and_global_random_untouched(presidio_test) -> None:
    random.seed(123)
    expected = random.random()
    random.seed(123)
    again = ds.presidio_sentences(150, seed=0, split="test")
    assert random.random() == expected  # the faker's global seeding was undone
    assert [d.pages for d in again] == [d.pages for d in presidio_test]
    assert [d.gold for d in again] == [d.gold for d in presidio_test]
    dev = ds.presidio_sentences(150, seed=0, split="dev")
    assert ds.split_seed(0, "dev") != ds.split_seed(0, "test")
    assert {ds.split_seed(s, "dev") for s in range(50)}.isdisjoint({ds.split_seed(s, "test") for s in range(50)})
    def full_names(docs):
        return {g.value.lower() for d in docs for g in d.gold if g.category == "NAME" and " " in g.value}

    def with_gold(docs):
        return {d.pages[0] for d in docs if d.gold}

    assert full_names(dev) and full_names(dev).isdisjoint(full_names(presidio_test))
    assert with_gold(dev).isdisjoint(with_gold(presidio_test))
    assert {d.split for d in dev} == {"dev"}


# --------------------------------------------------------------------------------------------
# i2b2 notes
# --------------------------------------------------------------------------------------------
@needs_philter
def test_i2b2_notes_offsets_slice_to_the_tagged_text() -> None:
    import xmltodict

    docs = ds.i2b2_notes()
    assert len(docs) == 5 and {d.split for d in docs} == {"test"}
    n_tags = 0
    for path, doc in zip(sorted(ds.i2b2_folder().glob("*.xml")), docs, strict=True):
        root = xmltodict.parse(path.read_bytes(), strip_whitespace=False)["deIdi2b2"]
        tags = [t for k, v in root["TAGS"].items() if not k.startswith("#")
                for t in (v if isinstance(v, list) else [v])]
        n_tags += len(tags)
        spans = {(g.start, g.end, g.value) for g in doc.gold + doc.ignored}
        for t in tags:
            a, b = int(t["@start"]), int(t["@end"])
            assert doc.pages[0][a:b] == t["@text"]
            assert (a, b, t["@text"]) in spans
        _slices(doc)
    assert n_tags == 46
    by_value = {g.value: g.category for d in docs for g in d.gold}
    assert by_value["Villegas"] == "NAME" and by_value["2069-04-07"] == "DATE" and by_value["November"] == "DATE"
    assert by_value["8249813"] == "ID" and by_value["FB59"] == "ID" and by_value["SILVER RIDGE"] == "FACILITY"
    assert by_value["84710"] == "PHONE"


def test_date_and_age_rules() -> None:
    assert ds._date_category("2069") is None and ds._date_category("'69") is None
    assert ds._date_category("Monday") is None
    assert ds._date_category("November") == "DATE" and ds._date_category("3/80") == "DATE"
    assert ds._age_category("92") == "AGE_90" and ds._age_category("ninety-two") == "AGE_90"
    assert ds._age_category("89") is None and ds._age_category("1.5") is None
    assert ds.I2B2_CATEGORIES["PROFESSION"] is None and ds.I2B2_CATEGORIES["FAX"] == "PHONE"


# --------------------------------------------------------------------------------------------
# Generated transcripts
# --------------------------------------------------------------------------------------------
def test_generated_transcripts_every_occurrence_is_gold(transcripts_test) -> None:
    from mentalchat.dataset.transcripts import generate_transcripts

    raw = generate_transcripts(14, seed=ds.split_seed(0, "test"))
    assert [len(d.pages) for d in transcripts_test] == [len(t.pages) for t in raw]
    for doc, t in zip(transcripts_test, raw, strict=True):
        _slices(doc)
        for p in t.planted:
            for i, page in enumerate(doc.pages):
                for m in re.finditer(rf"(?<![\w-]){re.escape(p.value)}(?![\w-])", page, re.I):
                    assert any(g.page == i and g.start <= m.start() and m.end() <= g.end for g in doc.gold), (p, i)
        assert {g.category for g in doc.gold} <= set(CATEGORIES)
    # upper-case speaker labels ("THOMAS:") are found whatever the case of the planted value
    labels = {g.value for d in transcripts_test for g in d.gold if g.value.isupper() and g.category == "NAME"}
    assert labels == {"THOMAS"}


def test_generated_transcripts_splits_differ_and_repeat(transcripts_test) -> None:
    again = ds.generated_transcripts(14, seed=0, split="test")
    assert [d.pages for d in again] == [d.pages for d in transcripts_test]
    assert [d.gold for d in again] == [d.gold for d in transcripts_test]
    dev = ds.generated_transcripts(4, seed=0, split="dev")
    assert {d.split for d in dev} == {"dev"}
    assert {p for d in dev for p in d.pages}.isdisjoint({p for d in transcripts_test for p in d.pages})
    assert {d.doc_id for d in dev}.isdisjoint({d.doc_id for d in transcripts_test})
    with pytest.raises(ValueError):
        ds.generated_transcripts(1, seed=0, split="train")


# --------------------------------------------------------------------------------------------
# Speech-to-text rendering
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("fn", "n", "words"), [
    (ds.number_to_words, 0, "zero"), (ds.number_to_words, 13, "thirteen"), (ds.number_to_words, 40, "forty"),
    (ds.number_to_words, 92, "ninety two"), (ds.number_to_words, 101, "one hundred one"),
    (ds.number_to_words, 254, "two hundred fifty four"), (ds.number_to_words, 12_000_005, "twelve million five"),
    (ds.spoken_house_number, 254, "two fifty four"), (ds.spoken_house_number, 1234, "twelve thirty four"),
    (ds.spoken_house_number, 105, "one oh five"), (ds.spoken_house_number, 300, "three hundred"),
    (ds.spoken_house_number, 42, "forty two"),
    (ds.year_to_words, 2021, "twenty twenty one"), (ds.year_to_words, 2005, "two thousand five"),
    (ds.year_to_words, 1999, "nineteen ninety nine"), (ds.year_to_words, 1900, "nineteen hundred"),
    (ds.year_to_words, 1905, "nineteen oh five"), (ds.year_to_words, 2000, "two thousand"),
    (ds.ordinal_to_words, 14, "fourteenth"), (ds.ordinal_to_words, 9, "ninth"),
    (ds.ordinal_to_words, 21, "twenty first"),
    (ds.ordinal_to_words, 30, "thirtieth"), (ds.ordinal_to_words, 12, "twelfth"), (ds.ordinal_to_words, 3, "third"),
])
def test_number_words(fn, n, words) -> None:
    assert fn(n) == words


@pytest.mark.parametrize(("value", "category", "spoken"), [
    ("555-2180", "PHONE", "five five five two one eight zero"),
    ("(415) 555-0123 x12", "PHONE", "four one five five five five zero one two three extension one two"),
    ("123-45-6789", "SSN", "one two three four five six seven eight nine"),
    ("02139-4307", "ZIP", "zero two one three nine four three zero seven"),
    ("XKD123456", "ID", "x k d one two three four five six"),
    ("254 Juniper St., Apt 4B", "ADDRESS", "two fifty four juniper street apartment four b"),
    ("92", "AGE_90", "ninety two"),
    ("March 14, 2021", "DATE", "march fourteenth twenty twenty one"),
    ("3/14/2021", "DATE", "march fourteenth twenty twenty one"),
    ("the 9th of October", "DATE", "the ninth of october"),
    ("Oct. 9", "DATE", "october ninth"),
    ("2069-04-07", "DATE", "april seventh twenty sixty nine"),
    ("04/07/69", "DATE", "april seventh sixty nine"),
    ("May 2019", "DATE", "may twenty nineteen"),
    ("john.smith@gmail.com", "EMAIL", "john dot smith at gmail dot com"),
    ("rose_b-1@mail.example.org", "EMAIL", "rose underscore b dash one at mail dot example dot org"),
    ("https://www.example.com/abc", "URL", "www dot example dot com slash abc"),
    ("192.168.0.1", "IP", "one nine two dot one six eight dot zero dot one"),
    ("O'Brien-Smith", "NAME", "obrien smith"),
])
def test_spoken_values(value, category, spoken) -> None:
    assert ds.speak(value, category).strip() == spoken


def test_asr_variant_keeps_offsets_exact_on_a_known_page() -> None:
    page = "Call Anna at 555-0123 or anna.lee@example.com on March 14, 2021. Smith's son is 84, born 1940."
    spans = [("NAME", "Anna"), ("PHONE", "555-0123"), ("EMAIL", "anna.lee@example.com"),
             ("DATE", "March 14, 2021"), ("NAME", "Smith")]
    gold = [Gold(0, page.index(v), page.index(v) + len(v), c, v) for c, v in spans]
    ignored = [Gold(0, page.index("84"), page.index("84") + 2, "AGE", "84")]
    doc = PhiDoc("hand", "h1", [page], gold, "dev", ignored).check()
    (asr,) = ds.asr_variant([doc])
    assert asr.set_name == "asr:hand" and asr.split == "dev" and asr.doc_id == "h1"
    assert asr.pages[0] == ("call anna at five five five zero one two three or anna dot lee at example dot com on "
                            "march fourteenth twenty twenty one smith s son is eighty four born nineteen forty")
    assert [g.value for g in asr.gold] == ["anna", "five five five zero one two three",
                                           "anna dot lee at example dot com", "march fourteenth twenty twenty one",
                                           "smith"]
    assert [g.value for g in asr.ignored] == ["eighty four"]
    _slices(asr)
    # a value is never glued to the word beside it
    glued = PhiDoc("hand", "h2", ["Annabelle"], [Gold(0, 0, 4, "NAME", "Anna")], "dev").check()
    assert ds.asr_variant([glued])[0].pages == ["anna belle"]


def test_asr_variant_of_every_source(presidio_test, transcripts_test) -> None:
    docs = list(presidio_test[:60]) + list(transcripts_test)
    if _has("philter_lite"):
        docs += ds.i2b2_notes()
    asr = ds.asr_variant(docs)
    assert len(asr) == len(docs)
    for before, after in zip(docs, asr, strict=True):
        _slices(after)
        assert after.set_name == f"asr:{before.set_name}"
        assert [g.category for g in after.gold] == [g.category for g in before.gold]
        for page in after.pages:
            assert page == page.lower()
            assert not re.search(r"\d", page), page
            assert not re.search(r"[^\w\s]", page), page


# --------------------------------------------------------------------------------------------
# Metrics on hand-made cases
# --------------------------------------------------------------------------------------------
PAGE = "Anna Lee called Bob from Ohio today."


def _doc() -> PhiDoc:
    gold = [Gold(0, 0, 8, "NAME", "Anna Lee"), Gold(0, 16, 19, "NAME", "Bob")]
    return PhiDoc("hand", "d1", [PAGE], gold, "test", [Gold(0, 25, 29, "STATE", "Ohio")]).check()


def _tool(redacted: str, removed: list[tuple[int, int]]):
    return lambda pages: dm.ToolOutput([redacted], [removed])


def test_metrics_a_leak_is_counted() -> None:
    s = dm.evaluate(_tool(PAGE, []), [_doc()], tool_name="none")
    assert s.value_recall() == 0.0 and s.leaked["NAME"] == 2 and s.units["NAME"] == 2
    assert s.token_recall() == 0.0
    assert {x.value for x in s.leaks} == {"Anna Lee", "Bob"} and "Anna Lee called" in s.leaks[0].snippet


def test_metrics_a_leak_in_another_case_is_counted() -> None:
    s = dm.evaluate(_tool("ANNA   LEE called [NAME] from Ohio today.", [(16, 19)]), [_doc()], tool_name="case")
    assert s.leaked["NAME"] == 1 and s.value_recall() == 0.5
    assert s.token_recall() == pytest.approx(1 / 3)


def test_metrics_partial_removal_caught_by_token_recall_only() -> None:
    s = dm.evaluate(_tool("[NAME] Lee called [NAME] from Ohio today.", [(0, 4), (16, 19)]), [_doc()], tool_name="p")
    assert s.value_recall() == 1.0  # "Anna Lee" is no longer there as a whole
    assert s.token_recall() == pytest.approx(2 / 3)  # but "Lee" was not removed


def test_metrics_non_phi_share_leaves_out_gold_and_ignored_words() -> None:
    # non-PHI words: called, from, today ("Ohio" was tagged as not PHI: on neither side)
    s = dm.evaluate(_tool("[N] called [N] from [S] [X].", [(0, 8), (16, 19), (25, 29), (30, 35)]), [_doc()],
                    tool_name="eager")
    assert s.words == 3 and s.words_removed == 1 and s.nonphi_removed == pytest.approx(1 / 3)
    assert s.value_recall() == 1.0 and s.token_recall() == 1.0
    assert s.pages == 1 and s.docs == 1 and s.pages_per_s > 0


def test_metrics_same_word_outside_gold_is_not_a_leak() -> None:
    page = "Will said he will come."
    doc = PhiDoc("hand", "w", [page], [Gold(0, 0, 4, "NAME", "Will")], "test").check()
    kept = dm.evaluate(_tool("[NAME] said he will come.", [(0, 4)]), [doc], tool_name="t")
    assert kept.value_recall() == 1.0
    left = dm.evaluate(_tool(page, []), [doc], tool_name="t")
    assert left.value_recall() == 0.0


def test_metrics_categories_facility_apart_and_counts_only() -> None:
    page = "Jo Ray, SSN 123-45-6789, works at Acme Corp."
    gold = [Gold(0, 0, 6, "NAME", "Jo Ray"), Gold(0, 12, 23, "SSN", "123-45-6789"),
            Gold(0, 34, 43, "FACILITY", "Acme Corp")]
    doc = PhiDoc("hand", "f", [page], gold, "test").check()
    s = dm.evaluate(_tool(page, []), [doc], tool_name="t", examples=False)
    assert s.units["FACILITY"] == 1 and s.facility_recall == 0.0
    assert sum(s.units[c] for c in ds.SAFE_HARBOR) == 2  # FACILITY is not in the Safe-Harbor figure
    assert s.leaks == [] and "worst_leaks" not in s.as_dict()
    shown = dm.evaluate(_tool(page, []), [doc], tool_name="t")
    assert [x.category for x in shown.worst_leaks()] == ["SSN", "NAME", "FACILITY"]
    many = dm.SetScores("s", "t", leaks=[dm.Leak("SSN", f"{i}23-45-678{i}", "", "d") for i in range(5)]
                        + [dm.Leak("CITY", "Tulsa", "", "d"), dm.Leak("SSN", "023-45-6780", "", "d")])
    assert [x.category for x in many.worst_leaks(3)] == ["SSN", "CITY", "SSN"]  # round-robin, duplicates once
    assert len(many.worst_leaks(20)) == 6


def test_intervals() -> None:
    merged = dm.merge_intervals([(5, 8), (0, 2), (2, 4), (7, 10)])
    assert merged == [(0, 4), (5, 10)]
    assert dm.covered(0, 4, merged) and dm.covered(6, 9, merged) and not dm.covered(3, 6, merged)
    assert dm.value_leaked("Anna  Lee", "x anna\nlee y") and not dm.value_leaked("Ann", "Anna")
    assert dm.value_leaked("(555) 123", "call (555) 123.")
    assert dm.redact_intervals("ab cd ef", [(3, 5, "X"), (0, 2, "Y"), (4, 6, "Z")]) == "<Y> <X>ef"


# --------------------------------------------------------------------------------------------
# The tools
# --------------------------------------------------------------------------------------------
def test_mentalchat_tool_reports_original_offsets() -> None:
    pytest.importorskip("presidio_analyzer")
    tool = dm.mentalchat_tool()
    page = "My name is Anna Lee, call me on 415-555-0123."
    out = tool([page])
    assert "415-555-0123" not in out.redacted[0] and "Anna" not in out.redacted[0]
    removed = [page[a:b] for a, b in out.removed[0]]
    assert "415-555-0123" in removed


@needs_philter
def test_philter_tool_removed_intervals_are_the_asterisks() -> None:
    from philter_lite import philter as philter_mod

    from mentalchat.testing.deid_baselines import philter_tool

    real = philter_mod.nltk
    tool = philter_tool()
    page = "Patient John Smith seen on 04/07/2069 by Dr. Perez, MRN 8249813. BP 120/80."
    out = tool([page])  # would raise LookupError if NLTK's tagger (no data here) were used
    assert philter_mod.nltk is real
    red = out.redacted[0]
    assert len(red) == len(page) and "Smith" not in red and "8249813" not in red
    merged = dm.merge_intervals(out.removed[0])
    for i, (a, b) in enumerate(zip(page, red, strict=True)):
        assert (a != b) == dm.covered(i, i + 1, merged), i
        if a != b:
            assert b == "*"


def test_presidio_tool_redacts_what_it_finds() -> None:
    pytest.importorskip("presidio_analyzer")
    from mentalchat.testing.deid_baselines import presidio_tool

    page = "Call John Smith at 212-555-0199 or john@example.com."
    out = presidio_tool()([page])
    removed = {page[a:b] for a, b in out.removed[0]}
    assert "john@example.com" in removed and "John Smith" in removed
    assert "<PERSON>" in out.redacted[0] and "john@example.com" not in out.redacted[0]
