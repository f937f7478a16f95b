"""The leak gate: raw-page values found again in text to publish, the review file, the refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mentalchat.dataset.config import LeakGateConfig
from mentalchat.dataset.leak_gate import LeakGate, LeakGateError

RAW = ("Caregiver: Rosalind Okafor here, call me on four one five, five five five, zero one three two. "
       "My email is r.okafor77@mailbox.example and the member number is XK449210.")


@pytest.fixture(scope="module")
def gate() -> LeakGate:
    return LeakGate(LeakGateConfig(max_suspects=0))


def test_values_from_the_raw_page_are_found_again_in_any_form(gate: LeakGate) -> None:
    fp = {"t1:1": gate.fingerprints(RAW)}
    published = [
        ("t1:1", "input", "How can I help rosalind sleep?"),  # lowercase name from the page
        ("t1:1", "output", "Ring 415-555-0132 tonight."),  # spoken on the page, written here
        ("t1:1", "output", "Write to r.okafor77@mailbox.example."),
        ("t1:1", "output", "Give them XK449210."),
    ]
    found = gate.scan(published, fp)
    assert [(s.field, s.kind) for s in found] == [("input", "name"), ("output", "number"), ("output", "shape"),
                                                 ("output", "shape")]
    assert found[0].value == "rosalind" and "help rosalind sleep" in found[0].context


def test_what_was_never_in_the_transcript_is_not_a_leak(gate: LeakGate) -> None:
    fp = {"t1:1": gate.fingerprints(RAW)}
    clean = [
        ("t1:1", "input", "How can I help [NAME_1] sleep? Bartholomew had the same trouble."),  # invented name
        ("t1:1", "output", "Call [PHONE_1] or 212-555-0199 (another number), and rest."),
        ("t2:1", "output", "Rosalind"),  # another page: its own raw values only
    ]
    assert gate.scan(clean, fp) == []
    assert all(len(h) == 24 and "rosalind" not in h for h in fp["t1:1"])  # salted hashes, no raw values


def test_hashes_are_salted_per_build() -> None:
    a, b = LeakGate(), LeakGate()
    assert a.fingerprints(RAW) != b.fingerprints(RAW)
    shared = LeakGate(salt=a.salt)
    assert shared.fingerprints(RAW) == a.fingerprints(RAW)  # the salt travels to the workers


def test_refuses_above_the_limit_and_writes_the_review_file(gate: LeakGate, tmp_path: Path) -> None:
    suspects = gate.scan([("t1:1", "output", "rosalind okafor")], {"t1:1": gate.fingerprints(RAW)})
    assert len(suspects) == 2
    with pytest.raises(LeakGateError, match=r"2 values from the raw transcripts .*max_suspects=2") as info:
        gate.enforce(suspects, tmp_path / "work")
    review = tmp_path / "work" / "leak_review.jsonl"
    assert info.value.path == str(review)
    rows = [json.loads(line) for line in review.read_text().splitlines()]
    assert {r["value"] for r in rows} == {"rosalind", "okafor"}
    lenient = LeakGate(LeakGateConfig(max_suspects=2), salt=gate.salt)
    assert lenient.enforce(suspects, tmp_path / "w2") == tmp_path / "w2" / "leak_review.jsonl"
    assert lenient.enforce([], tmp_path / "w3") is None and not (tmp_path / "w3").exists()


def test_a_build_whose_redaction_misses_names_refuses_to_publish(ray_cluster, repo_root: Path, tmp_path: Path) -> None:
    """With the name detectors switched off, names reach the published page text: the gate stops the build."""
    from mentalchat.config import load_stage_config
    from mentalchat.dataset.build import build_dataset
    from mentalchat.dataset.config import DatasetConfig

    crippled = ["synthetic.enabled=false", "interview.keep_page_text=true", "interview.transcripts=bundled",
                "deid.ner=none", "deid.vocabulary_names=false", "deid.unknown_words=false"]
    cfg = load_stage_config(DatasetConfig, repo_root / "configs/smoke.yaml", crippled, section="dataset")
    out = tmp_path / "ds"
    with pytest.raises(LeakGateError, match="nothing was published") as info:
        build_dataset(cfg, out, echo=lambda m: None)
    assert not out.exists()  # nothing half-published
    review = Path(info.value.path)
    assert review.parent == tmp_path / ".ds.work" and review.is_file()
    rows = [json.loads(line) for line in review.read_text().splitlines()]
    assert rows and {r["field"] for r in rows} == {"text_deid"} and {r["kind"] for r in rows} >= {"name"}
    # a person cleared them: raise the limit and the same build publishes, saying how many there were
    n = len(rows)
    cfg = load_stage_config(DatasetConfig, repo_root / "configs/smoke.yaml",
                            [*crippled, f"leak_gate.max_suspects={n}"], section="dataset")
    stats = build_dataset(cfg, out, echo=lambda m: None)
    assert out.is_dir() and stats["leak_gate"]["suspects"] == n
