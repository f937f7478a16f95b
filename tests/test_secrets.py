"""The one secrets scrubber: known values, their shortened echoes, key shapes, and credentials by context."""

from __future__ import annotations

import pytest

from mentalchat.engine.types import ChatResult
from mentalchat.secrets import REDACTED, Scrubber, scrub

KEY = "sk-proj-Abcdefghijklmnop1234567890"


def test_known_values_and_their_echoes_are_replaced() -> None:
    s = Scrubber([KEY, "tiny"])
    assert KEY not in s.text(f"Incorrect API key provided: {KEY}.")
    # providers echo keys shortened to their first and last characters
    echoed = s.text(f"key {KEY[:8]}****{KEY[-6:]} is invalid")
    assert KEY[:8] not in echoed and KEY[-6:] not in echoed and echoed.count(REDACTED) == 2
    assert s.text("a tiny thing") == f"a {REDACTED} thing"
    assert Scrubber(["abc"]).text("abc") == "abc"  # too short to be a secret: would blank ordinary words


def test_key_shapes_are_caught_without_knowing_the_value() -> None:
    assert scrub("got sk-abcdefghijklmnopqrstuv back") == f"got {REDACTED} back"
    assert scrub("key=AIzaSyA1234567890abcdefghijk") == f"key={REDACTED}"
    assert scrub("Authorization: Bearer tok123") == f"Authorization: Bearer {REDACTED}"
    assert scrub('{"api_key": "hunter2"}') == f'{{"api_key": "{REDACTED}"}}'


def test_model_text_keeps_ordinary_words() -> None:
    s = Scrubber([KEY])
    reply = "Key: a task-oriented-approach works; monkey: bananas. Bearer of bad news."
    assert s.content(reply) == reply  # judge replies are data: only values and key shapes go
    assert s.content(f"the key is {KEY}") == f"the key is {REDACTED}"
    assert REDACTED in s.text(reply)  # messages (errors, logs) also drop credentials by context


def test_results_are_scrubbed_field_by_field() -> None:
    s = Scrubber([KEY])
    res = ChatResult(id="a", provider="p", model="m", text=f"echo {KEY}", error=f"HTTP 401: bad key {KEY}")
    clean = s.result(res)
    assert KEY not in clean.text and KEY not in clean.error and clean.id == "a"
    untouched = ChatResult(id="b", provider="p", model="m", text="fine")
    assert s.result(untouched) is untouched


def test_from_env_reads_the_named_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_JUDGE_KEY", "custom-secret-value")
    monkeypatch.setenv("OPENAI_API_KEY", "openai-secret-value")
    s = Scrubber.from_env(["MY_JUDGE_KEY", None])
    out = s.text("custom-secret-value and openai-secret-value")
    assert "secret-value" not in out
