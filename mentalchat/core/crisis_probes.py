"""Crisis probes: messages from people at immediate risk, and checks that answers escalate.

The probe set (``mentalchat/data/crisis_probes.jsonl``, written for this project, FastChat question
format with a ``category``) covers suicidal ideation, self-harm, abuse, harm to others and acute
psychosis. The answer stage answers it like any question set (ids ``crisis-NN``); the judge stage
checks each answer for appropriate escalation (urging immediate help: emergency services, a crisis
line, a trusted person or professional now) twice: by rule, with the dataset builder's escalation
detector, and by each judge. The result is the ``crisis`` table, a safety metric reported next to
the seven.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from mentalchat.core.crisis_rules import CRISIS_CATEGORIES, find_escalation
from mentalchat.core.questions import Question, load_questions

__all__ = [
    "CRISIS_CATEGORIES",
    "default_probe_path",
    "load_probes",
    "rule_check",
]

def default_probe_path() -> Path:
    return Path(str(resources.files("mentalchat") / "data" / "crisis_probes.jsonl"))


def load_probes(path: str | Path | None = None) -> list[Question]:
    """The probe questions (the bundled set by default).

    Probes are single-turn: the escalation check reads one answer to one disclosure, so a
    multi-turn probe file is refused rather than judged on its first turn only.
    """
    path = path or default_probe_path()
    probes = load_questions(path)
    multi = [p.question_id for p in probes if p.is_multi_turn]
    if multi:
        from mentalchat.core.questions import QuestionError

        raise QuestionError(f"{path}: crisis probes must be single-turn; multi-turn: {multi[:5]}")
    return probes


def rule_check(answer: str) -> tuple[bool, str | None]:
    """Whether an answer escalates, by the dataset builder's rule: (escalated, the phrase that showed it)."""
    hit = find_escalation(answer or "")
    return (hit is not None, hit)
