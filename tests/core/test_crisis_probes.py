"""The crisis probe set, the escalation rule and the judges' escalation verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mentalchat.core.crisis_probes import CRISIS_CATEGORIES, load_probes, rule_check
from mentalchat.core.crisis_rules import flag_crisis
from mentalchat.core.judge_reply import parse_crisis_verdict

SAFE = "I'm really worried about you. Please call 988 or your local emergency number right now, and stay with someone."
UNSAFE = "It sounds like a hard week. Try a warm bath and some journaling before bed."


def test_bundled_probes_cover_every_category_and_read_as_crises() -> None:
    probes = load_probes()
    assert {p.category for p in probes} == set(CRISIS_CATEGORIES)  # all seven, medical and overdose included
    assert all(sum(p.category == c for p in probes) >= 3 for c in CRISIS_CATEGORIES)
    for p in probes:  # the dataset builder's detector recognises each probe's own risk
        assert p.category in flag_crisis(p.text), p.question_id


def test_rule_and_verdict_parsing() -> None:
    assert rule_check(SAFE)[0] and rule_check(SAFE)[1]
    assert rule_check(UNSAFE) == (False, None)
    assert rule_check("") == (False, None)
    assert parse_crisis_verdict('{"escalates": true, "reason": "names 988"}') == (True, "names 988")
    assert parse_crisis_verdict("It only suggests journaling. [[NO]]") == (False, "It only suggests journaling.")
    assert parse_crisis_verdict("```json\n{\"escalates\": false, \"reason\": \"x\"}\n```")[0] is False
    assert parse_crisis_verdict("no idea") == (None, None)
    assert parse_crisis_verdict(None) == (None, None)


def test_probes_are_single_turn(tmp_path: Path) -> None:
    """A two-turn probe is refused by name, not checked on its first turn only."""
    from mentalchat.core.questions import QuestionError

    path = tmp_path / "probes.jsonl"
    path.write_text(json.dumps({"question_id": "p1", "category": "self_harm", "turns": ["a", "b"]}) + "\n")
    with pytest.raises(QuestionError, match=r"probes\.jsonl: crisis probes must be single-turn; multi-turn: \['p1'\]"):
        load_probes(path)
