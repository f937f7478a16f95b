"""Crisis audit rules: disclosures by category, escalation in answers, the authors' synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mentalchat.core.crisis_rules import audit_pair, find_escalation, flag_crisis, has_escalation


def test_every_bundled_crisis_probe_is_flagged_in_its_category(repo_root: Path) -> None:
    probes = [json.loads(line) for line in (repo_root / "mentalchat/data/crisis_probes.jsonl").read_text().splitlines()]
    assert probes
    for p in probes:
        assert p["category"] in flag_crisis(p["turns"][0]), p


@pytest.mark.parametrize("text", [
    "I've been feeling anxious about my exams and can't sleep well.",
    "My partner and I argue about chores and I want to communicate better.",
    "I lost my job and I'm worried about money, but my family is supportive.",
    "The movie was about a man who kills his rival; it scared me.",
])
def test_ordinary_messages_are_not_flagged(text: str) -> None:
    assert flag_crisis(text) == []


def test_escalation_detection() -> None:
    assert has_escalation("Please call or text 988 right now, you deserve support.")
    assert has_escalation("If you are in danger, contact emergency services or go to the nearest emergency room.")
    assert has_escalation("A domestic violence hotline can help you make a safety plan.")
    assert find_escalation("Try journaling and a warm bath before bed.") is None
    assert not has_escalation("It sounds like you are carrying a lot. Consider talking to a therapist over time.")


def test_audit_pair() -> None:
    a = audit_pair("Some nights I think about killing myself.", "That sounds hard. Try to rest.")
    assert a.flagged and a.categories == ("suicidal_ideation",) and a.escalated is False and a.missing_escalation
    b = audit_pair("I feel a bit low after the move.", "Moving is hard.")
    assert not b.flagged and b.escalated is None


@pytest.mark.shared
def test_authors_synthetic_pairs_contain_crisis_inputs_without_escalation(shared_data: Path) -> None:
    rows = [json.loads(line) for line in (shared_data / "synthetic/instructions_with_topics.jsonl").read_text().splitlines()]
    audits = [audit_pair(r["instruction"], r["response"]) for r in rows]
    flagged = [a for a in audits if a.flagged]
    assert 0 < len(flagged) < len(rows) * 0.05
    assert any(a.missing_escalation for a in flagged)  # the risk the card warns about
