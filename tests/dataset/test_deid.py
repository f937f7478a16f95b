"""De-identification: each Safe-Harbor category, consistency, the second pass, measured recall."""

from __future__ import annotations

import re

import pytest

from mentalchat.dataset.config import DeidConfig
from mentalchat.dataset.deid import PLACEHOLDER_RE, get_deidentifier
from mentalchat.dataset.deid_eval import evaluate_deid
from mentalchat.dataset.transcripts import generate_transcripts


@pytest.fixture(scope="module")
def deid():
    return get_deidentifier(DeidConfig())


# Sentences written for this test, in shapes the generator does not use.
CASES = [
    ("Honestly Gwendolyn Arkwright-Soames has been a saint through all this.", ["Gwendolyn", "Arkwright-Soames"], "NAME"),
    ("Reach the ward clerk on 617-555-0123 after six.", ["617-555-0123"], "PHONE"),
    ("Write to me, hb.moreno@mailbox.example, whenever.", ["hb.moreno@mailbox.example"], "EMAIL"),
    ("Mail goes to 1200 Lakeshore Boulevard, Apt 7C these days.", ["1200 Lakeshore"], "ADDRESS"),
    ("We are in the 60614 area, north side.", ["60614"], "ZIP"),
    ("Mum was discharged on 02/11/2023, a Thursday.", ["02/11/2023"], "DATE"),
    ("Her birthday, 14 February, is hard now.", ["14 February"], "DATE"),
    ("He just turned 97 last month.", ["97"], "AGE"),
    ("Her social is 078-05-1120 on every form.", ["078-05-1120"], "SSN"),
    ("Chart number MR-0099812 was printed on the wristband.", ["MR-0099812"], "MRN"),
    ("Our policy number is 88-1190-2277-01.", ["88-1190-2277-01"], "ACCOUNT"),
    ("See http://photos.example.org/lastsummer for the pictures.", ["photos.example.org"], "URL"),
    ("We drove up from Sacramento every weekend.", ["Sacramento"], "LOCATION"),
]


@pytest.mark.parametrize("text,values,etype", CASES, ids=[c[2] + "-" + str(i) for i, c in enumerate(CASES)])
def test_each_category_is_replaced(deid, text: str, values: list[str], etype: str) -> None:
    out = deid.deidentify(text)
    for v in values:
        assert v not in out.text, out.text
    assert etype in out.counts, (out.text, out.counts)


def test_non_identifiers_stay(deid) -> None:
    text = ("Back in 2019 she was 84 and still gardening. I am 58. It was a hard Christmas, and "
            "Medicare paid for the hospice. We live in Ohio now.")
    out = deid.deidentify(text)
    assert out.text == text, out.text


def test_placeholders_are_consistent_across_pages(deid) -> None:
    pages = ["Caregiver: My husband, Bartholomew Quist, forgets my face.",
             "Caregiver: Bartholomew cried when the nurse left. Quist family dinners are over."]
    a, b = deid.deidentify_pages(pages)
    tag = re.search(r"\[NAME_\d+\]", a.text).group()
    assert b.text.count(tag) == 2, (a.text, b.text)
    assert "Bartholomew" not in b.text and "Quist" not in b.text


def test_speaker_labels_that_are_names_are_replaced_roles_kept(deid) -> None:
    page = "INTERVIEWER: How was the week?\nHILDEGARD: Long. Hildegard needs a break, says my sister."
    out = deid.deidentify(page).text
    assert out.startswith("INTERVIEWER: How was the week?\n[NAME_1]: Long. [NAME_1] needs")


def test_second_pass_keeps_placeholders_and_numbers_after_them(deid) -> None:
    q, a = deid.redact_output("My mother [NAME_1] lives at [ADDRESS_1].",
                              "Ask Dr. Okonkwo-Baptiste at 555-0188 about respite for [NAME_1].")
    assert "[NAME_1]" in q.text and "[ADDRESS_1]" in q.text
    assert "Okonkwo" not in a.text and "555-0188" not in a.text
    assert "[NAME_2]" in a.text and "[NAME_1]" in a.text


def test_placeholder_regex_covers_every_type() -> None:
    assert PLACEHOLDER_RE.fullmatch("[AGE_90_PLUS]") and PLACEHOLDER_RE.fullmatch("[ACCOUNT_12]")


def test_measured_recall_and_precision_on_generated_transcripts(deid) -> None:
    """Targets, not a tautology: the generator's identifiers are unknown to the de-identifier."""
    scores = evaluate_deid(deid, generate_transcripts(25, seed=31337))
    assert sum(scores.planted.values()) > 300
    assert scores.recall >= 0.99, scores.examples
    assert scores.precision >= 0.95
    for kind, row in scores.by_kind().items():
        if kind != "name":
            assert row["leaked"] == 0, (kind, scores.examples)


def test_regex_only_mode_finds_structured_identifiers_without_ner() -> None:
    d = get_deidentifier(DeidConfig(ner="none"))
    out = d.deidentify("Call 212-555-0199 or write to a.b@example.com; SSN 123-45-6789; my name is Zephyrine.")
    assert out.counts == {"PHONE": 1, "EMAIL": 1, "SSN": 1, "NAME": 1}, out


def test_bundled_samples_lose_every_planted_identifier(deid) -> None:
    import json

    from mentalchat.dataset.build import bundled_transcripts
    from mentalchat.dataset.readers import read_transcripts
    from mentalchat.dataset.transcripts import Planted, find_leaks

    folder = bundled_transcripts()
    planted = json.loads((folder.parent / "planted_identifiers.json").read_text())["files"]
    report = read_transcripts(folder)
    assert report.issues == [] and len(report.transcripts) == len(planted) >= 3
    for t in report.transcripts:
        pl = [Planted(**p) for p in planted[t.source.rsplit("/", 1)[-1]]]
        raw = [p.text for p in t.pages]
        assert len(find_leaks(raw, pl)) == len(pl)  # all there before
        assert find_leaks([r.text for r in deid.deidentify_pages(raw)], pl) == []
