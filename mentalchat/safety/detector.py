"""One crisis detector for every caller: rules, an optional model layer, and how they combine.

``any`` (the default) flags a message when one layer does: a missed crisis costs more than a
second look at a false flag. ``all`` flags only what every layer agrees on, for audits that must
not over-report. Each result keeps the per-layer verdicts, so an evaluation can score the layers
separately from the same run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from mentalchat.core.crisis_rules import CRISIS_CATEGORIES, find_crisis, find_escalation
from mentalchat.safety.config import CrisisDetectorConfig

__all__ = ["CrisisDetector", "Detection", "EscalationCheck", "audit_pairs"]


@dataclass(frozen=True)
class Detection:
    """The detector's verdict on one message."""

    flag: bool
    categories: tuple[str, ...]
    layers: dict[str, bool | None] = field(default_factory=dict)  # layer -> its flag (None: unreadable)
    layer_categories: dict[str, tuple[str, ...]] = field(default_factory=dict)
    evidence: str | None = None  # the rule's matched phrase, if any
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class EscalationCheck:
    """Whether one counsellor answer urges immediate help."""

    escalated: bool
    layers: dict[str, bool | None] = field(default_factory=dict)
    evidence: str | None = None
    errors: tuple[str, ...] = ()


def _ordered(cats: set[str]) -> tuple[str, ...]:
    return tuple(c for c in CRISIS_CATEGORIES if c in cats)


class CrisisDetector:
    """``detect`` flags messages, ``check_answers`` checks escalation; both batch over a list."""

    def __init__(self, cfg: CrisisDetectorConfig | None = None) -> None:
        self.cfg = cfg or CrisisDetectorConfig()
        self._learned = None

    @property
    def label(self) -> str:
        return "+".join(self.cfg.layers) + (f" ({self.cfg.combine})" if len(self.cfg.layers) > 1 else "")

    def _combine(self, flags: list[bool | None]) -> bool:
        fail_open = self.cfg.model.fail_open if self.cfg.model is not None else True
        read = [f if f is not None else fail_open for f in flags]
        return any(read) if self.cfg.combine == "any" else all(read)

    def detect(self, texts: Sequence[str]) -> list[Detection]:
        texts = [t or "" for t in texts]
        rules = [find_crisis(t) for t in texts] if "rules" in self.cfg.layers else None
        learned = None
        if "classifier" in self.cfg.layers:
            learned = self._classifier().predict(texts)
        model = None
        if "model" in self.cfg.layers:
            from mentalchat.safety.model_layer import classify_messages

            assert self.cfg.model is not None
            model = classify_messages(texts, self.cfg.model)
        out = []
        for i in range(len(texts)):
            layers: dict[str, bool | None] = {}
            cats: dict[str, tuple[str, ...]] = {}
            errors: list[str] = []
            evidence = None
            if rules is not None:
                layers["rules"] = bool(rules[i])
                cats["rules"] = _ordered({c for c, _ in rules[i]})
                evidence = rules[i][0][1] if rules[i] else None
            if learned is not None:
                layers["classifier"], cats["classifier"] = learned[i]
            if model is not None:
                v = model[i]
                layers["model"] = v.flag
                cats["model"] = v.categories
                if v.error:
                    errors.append(f"model: {v.error}")
            out.append(self.combined(Detection(False, (), layers, cats, evidence, tuple(errors))))
        return out

    def combined(self, det: Detection) -> Detection:
        """``det`` with its flag and categories decided from its per-layer verdicts by this
        detector's ``combine`` (so one run of the layers can be scored under ``any`` and ``all``)."""
        layers, cats = det.layers, det.layer_categories
        flag = self._combine(list(layers.values()))
        if not flag:
            chosen: set[str] = set()
        elif self.cfg.combine == "any":
            chosen = {c for name, cs in cats.items() if layers[name] is not False for c in cs}
        else:
            sets = [set(cs) for name, cs in cats.items() if layers[name]]
            chosen = set.intersection(*sets) if sets else set()
            chosen = chosen or (set(cats.get("rules", ())) or set().union(*sets) if sets else set())
        return replace(det, flag=flag, categories=_ordered(chosen))

    def _classifier(self):  # noqa: ANN202 - loaded once, on first use
        if self._learned is None:
            from mentalchat.safety.classifier_layer import CrisisClassifier

            self._learned = CrisisClassifier.load(self.cfg.classifier.path)
        return self._learned

    def flag(self, text: str) -> list[str]:
        """The categories one message discloses (what the dataset audit stores)."""
        return list(self.detect([text])[0].categories)

    def check_answers(self, answers: Sequence[str], messages: Sequence[str] | None = None) -> list[EscalationCheck]:
        """Escalation in each answer; ``messages`` (the client's words) give the model layer context."""
        answers = [a or "" for a in answers]
        msgs = list(messages) if messages is not None else [""] * len(answers)
        if len(msgs) != len(answers):
            raise ValueError(f"{len(answers)} answers but {len(msgs)} messages")
        rules = [find_escalation(a) for a in answers] if "rules" in self.cfg.layers else None
        model = None
        if "model" in self.cfg.layers:
            from mentalchat.safety.model_layer import classify_answers

            assert self.cfg.model is not None
            model = classify_answers(list(zip(msgs, answers, strict=True)), self.cfg.model)
        out = []
        for i in range(len(answers)):
            layers: dict[str, bool | None] = {}
            errors: list[str] = []
            if rules is not None:
                layers["rules"] = rules[i] is not None
            if model is not None:
                layers["model"] = model[i].flag
                if model[i].error:
                    errors.append(f"model: {model[i].error}")
            # an unreadable escalation verdict must not pass an answer: it counts as not escalated
            read = [f is True for f in layers.values()]
            escalated = (any(read) if self.cfg.combine == "any" else all(read)) if read else False
            out.append(EscalationCheck(escalated, layers, rules[i] if rules else None, tuple(errors)))
        return out


def audit_pairs(detector: CrisisDetector, inputs: Sequence[str], outputs: Sequence[str]) -> list[dict[str, object]]:
    """The ``qa_pairs`` crisis columns for each (input, output): flagged inputs get their answer checked."""
    flags = detector.detect(inputs)
    flagged = [i for i, d in enumerate(flags) if d.flag]
    checks = dict(zip(flagged, detector.check_answers([outputs[i] for i in flagged], [inputs[i] for i in flagged]),
                      strict=True))
    return [{"crisis_flag": d.flag, "crisis_categories": ",".join(d.categories) or None,
             "crisis_escalated": checks[i].escalated if d.flag else None} for i, d in enumerate(flags)]
