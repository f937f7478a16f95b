"""Work items: deterministic ids, requests per prompt kind, cache-busting repeats, capped explanations."""

from __future__ import annotations

from mentalchat.core.rubric import METRICS
from mentalchat.engine.types import SamplingConfig
from mentalchat.judge.config import PromptSpec
from mentalchat.judge.items import WorkItem, build_request, item_id, make_renderer


def _item(**over) -> WorkItem:
    base = dict(kind="main", judge="j", engine="e", prompt_version="mentalchat-v1", question_id="1",
                question="I feel low.", model="m", answer="That sounds hard.")
    base.update(over)
    return WorkItem(**base)


def test_ids_are_stable_and_depend_on_what_is_judged() -> None:
    a = _item()
    assert a.id == _item().id == item_id("main", "j", "mentalchat-v1", "1", "m", "That sounds hard.", 0)
    different = [_item(answer="x"), _item(judge="k"), _item(prompt_version="v2"), _item(question_id="2"),
                 _item(model="n"), _item(kind="padded"), _item(variant=1)]
    assert len({a.id, *(d.id for d in different)}) == 1 + len(different)
    # The engine and the output mode do not change what is being judged.
    assert _item(engine="other").id == a.id


def test_requests_for_structured_text_and_repeat_items() -> None:
    renderers = {("mentalchat-v1", s): make_renderer(PromptSpec(version="mentalchat-v1"), structured=s) for s in (True, False)}
    sampling = SamplingConfig(temperature=0.0, max_tokens=300)
    req = build_request(_item(), renderers, sampling)
    assert req.id == _item().id and req.sampling == sampling
    assert req.json_schema is not None and set(req.json_schema["properties"]["scores"]["required"]) == set(METRICS)
    user = req.messages[-1].content
    assert "I feel low." in user and "That sounds hard." in user and all(m in user for m in METRICS)
    text = build_request(_item(structured=False), renderers, sampling)
    assert text.json_schema is None and "Active Listening: [[n]]" in text.messages[-1].content
    rep = build_request(_item(kind="repeat", variant=1), renderers, sampling)
    assert rep.sampling is not None and rep.sampling.seed is not None and rep.messages == req.messages
    capped = build_request(_item(explanation_max_chars=50), renderers, sampling)
    assert capped.json_schema["properties"]["explanation"]["maxLength"] == 50
    assert "maxLength" not in req.json_schema["properties"]["explanation"]  # shared schema untouched
    crisis = build_request(_item(kind="crisis", prompt_version="crisis-v1", explanation_max_chars=40), renderers, sampling)
    assert crisis.json_schema["properties"]["reason"]["maxLength"] == 40 and "escalate" in crisis.messages[-1].content
