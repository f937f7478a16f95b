"""The rating page as a Label Studio labeling config, and a study's tasks as Label Studio JSON.

Each control sits in a ``<View idAttr="ctl_<name>">`` (a stable element id for browser tests and
custom CSS; Label Studio's Rating has no hint attribute, so a Header above it carries the definition).
One page per answer: the client's message, the reply to rate, the seven metrics as required 1-10
ratings (each headed by its one-line definition from :mod:`mentalchat.core.rubric`), an overall
rating, a crisis-concern checkbox and a free comment. Control names are the metrics' short keys,
so an export maps back to metric names without guessing.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import quoteattr

from mentalchat.core.rubric import METRIC_DESCRIPTIONS, METRIC_TO_KEY, METRICS, SCORE_MAX

from .design import StudyDesign

__all__ = ["COMMENT", "CRISIS", "CRISIS_CHOICE", "OVERALL_CONTROL", "labeling_config", "tasks_for"]

OVERALL_CONTROL = "overall"
CRISIS = "crisis"
CRISIS_CHOICE = "Crisis concern"
COMMENT = "comment"


def labeling_config() -> str:
    """The labeling config XML (Label Studio validates it when a project is created)."""
    lines = [
        "<View>",
        '  <Header value="What the client wrote"/>',
        '  <Text name="question" value="$question"/>',
        '  <Header value="The reply to rate (who wrote it is hidden)"/>',
        '  <Text name="answer" value="$answer"/>',
        f'  <Header value="Rate the reply on each quality, 1 (poor) to {SCORE_MAX} (excellent)" size="4"/>',
    ]
    for metric in METRICS:
        key = METRIC_TO_KEY[metric]
        lines += [
            f'  <View idAttr="ctl_{key}">',
            f"    <Header value={quoteattr(f'{metric}: {METRIC_DESCRIPTIONS[metric]}')} size=\"5\"/>",
            (f'    <Rating name="{key}" toName="answer" maxRating="{SCORE_MAX}" required="true"'
             f" requiredMessage={quoteattr(f'Rate {metric}')}/>"),
            "  </View>",
        ]
    lines += [
        f'  <View idAttr="ctl_{OVERALL_CONTROL}">',
        '    <Header value="Overall: your rating of the reply as a whole" size="5"/>',
        (f'    <Rating name="{OVERALL_CONTROL}" toName="answer" maxRating="{SCORE_MAX}" required="true"'
         ' requiredMessage="Rate the reply overall"/>'),
        "  </View>",
        f'  <View idAttr="ctl_{CRISIS}">',
        f'    <Choices name="{CRISIS}" toName="answer" choice="multiple" showInline="true">',
        f'      <Choice value="{CRISIS_CHOICE}" hint="the message or the reply suggests risk that needs a clinician"/>',
        "    </Choices>",
        "  </View>",
        f'  <View idAttr="ctl_{COMMENT}">',
        '    <Header value="Comment (optional)" size="5"/>',
        (f'    <TextArea name="{COMMENT}" toName="answer" rows="3" placeholder="anything the scores do not say"'
         ' maxSubmissions="1" editable="true"/>'),
        "  </View>",
        "</View>",
    ]
    return "\n".join(lines) + "\n"


def tasks_for(design: StudyDesign, rater: str) -> list[dict[str, Any]]:
    """One rater's tasks in their shuffled order: only the opaque item id, the texts and the rater."""
    return [
        {"data": {"item": item_id, "rater": rater, "position": pos,
                  "question": design.items[item_id].question, "answer": design.items[item_id].answer}}
        for pos, item_id in enumerate(design.assignments[rater], start=1)
    ]
