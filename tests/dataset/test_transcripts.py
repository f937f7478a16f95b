"""The fictional transcript generator and the leak detector the privacy tests rely on."""

from __future__ import annotations

from mentalchat.dataset.transcripts import Planted, find_leaks, generate_transcripts


def test_generator_is_deterministic_and_plants_every_kind() -> None:
    a = generate_transcripts(40, seed=7)
    b = generate_transcripts(40, seed=7)
    assert [t.page_texts() for t in a] == [t.page_texts() for t in b]
    kinds = {p.kind for t in a for p in t.planted}
    assert kinds == {"name", "phone", "email", "address", "city", "zip", "date", "age", "ssn", "mrn", "account", "url"}
    assert any(t.crisis for t in a)


def test_every_planted_value_is_found_in_the_raw_text() -> None:
    """The detector must see each planted identifier before de-identification, or the leak tests prove nothing."""
    for t in generate_transcripts(30, seed=11):
        planted = list(dict.fromkeys(t.planted))
        assert len(find_leaks(t.page_texts(), planted)) == len(planted)


def test_leak_detector_variants() -> None:
    assert find_leaks(["call 937 555 0142 now"], [Planted("phone", "(937) 555-0142")])
    assert find_leaks(["HILDEGARD: hi"], [Planted("name", "Hildegard Moss")])
    assert not find_leaks(["she uses a walker"], [Planted("name", "Walker")])
    assert not find_leaks(["[NAME_1] lives at [ADDRESS_1]"], [Planted("name", "Ann Lee"), Planted("address", "12 Oak Street")])
