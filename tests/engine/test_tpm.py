"""Tokens per minute counted the way the provider counts them: at admission (prompt ~chars/4 plus
max_tokens, as OpenAI documents), against the fault server's TPM limit."""

from __future__ import annotations

import time

import pytest

from mentalchat.engine.base import create_engine
from mentalchat.engine.types import ChatRequest, SamplingConfig
from mentalchat.testing.fault_server import FaultServer

TPM = 60_000  # 1,000 tokens a second
PROMPT = "I have been sleeping badly for weeks and I worry about work all evening. " * 8  # ~150 tokens


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-secret")


def _run(counted: str) -> tuple[int, float, int]:
    with FaultServer(tpm=TPM) as srv:
        cfg = srv.engine_config(http={"tokens_per_minute": TPM, "tokens_counted": counted, "max_concurrency": 8,
                                      "backoff_base_s": 0.05, "backoff_max_s": 0.2})
        reqs = [ChatRequest.from_prompt(f"r{i}", f"{i}: {PROMPT}", sampling=SamplingConfig(max_tokens=250))
                for i in range(24)]
        t0 = time.perf_counter()
        with create_engine(cfg) as engine:
            results = engine.chat_batch(reqs)
        wall = time.perf_counter() - t0
        assert all(r.ok for r in results)
        return srv.count(status=429), wall, sum(r.attempts for r in results)


def test_admission_counting_paces_at_the_providers_rate() -> None:
    refused, wall, attempts = _run("admission")
    assert refused == 0 and attempts == 24
    # 24 calls x ~400 tokens = ~9,600 tokens at 1,000/s with a 1,000-token bucket: ~8.6 s
    assert wall > 7.0
