"""The fault server speaks both protocols, injects each fault as documented and records requests."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import httpx
import jsonschema
import pytest

from mentalchat.testing.fault_server import Fault, FaultServer, fill_schema

OPENAI_BODY = {"model": "m", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]}
GEMINI_PATH = "/v1beta/models/gemini-x:generateContent"
GEMINI_BODY = {
    "contents": [{"role": "user", "parts": [{"text": "hello there"}]}],
    "systemInstruction": {"parts": [{"text": "be brief"}]},
}
SCORE_SCHEMA = {
    "type": "object",
    "properties": {
        "score": {"type": "integer", "minimum": 1, "maximum": 10},
        "label": {"type": "string", "enum": ["low", "mid", "high"]},
        "reasons": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "ok": {"type": "boolean"},
    },
    "required": ["score", "label", "reasons", "ok"],
    "additionalProperties": False,
}


@pytest.fixture
def srv():
    with FaultServer() as server:
        yield server


def test_openai_answer_usage_and_record(srv: FaultServer) -> None:
    r = httpx.post(f"{srv.openai_base_url}/chat/completions", json=OPENAI_BODY, headers={"Authorization": "Bearer sk-secret-123456"})
    assert r.status_code == 200
    data = r.json()
    assert data["choices"][0]["message"]["content"] == "echo: hello there"
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
    (rec,) = srv.requests
    assert rec.protocol == "openai" and rec.status == 200 and rec.model == "m"
    assert rec.body == OPENAI_BODY
    assert "authorization" not in rec.headers and "sk-secret-123456" not in json.dumps(rec.headers)
    assert rec.t_end is not None and rec.t_end >= rec.t_start


def test_gemini_answer_and_schema(srv: FaultServer) -> None:
    r = httpx.post(srv.base_url + GEMINI_PATH, json=GEMINI_BODY, headers={"x-goog-api-key": "AIza-secret"})
    assert r.status_code == 200
    data = r.json()
    cand = data["candidates"][0]
    assert cand["content"]["parts"][0]["text"] == "echo: hello there"
    assert cand["finishReason"] == "STOP"
    assert data["usageMetadata"]["promptTokenCount"] == 4
    assert "x-goog-api-key" not in srv.requests[0].headers
    assert srv.requests[0].model == "gemini-x"

    body = dict(GEMINI_BODY, generationConfig={"responseMimeType": "application/json", "responseJsonSchema": SCORE_SCHEMA})
    text = httpx.post(srv.base_url + GEMINI_PATH, json=body).json()["candidates"][0]["content"]["parts"][0]["text"]
    jsonschema.validate(json.loads(text), SCORE_SCHEMA)


def test_openai_json_schema_and_json_mode(srv: FaultServer) -> None:
    body = dict(OPENAI_BODY, response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": SCORE_SCHEMA, "strict": True}})
    out = [httpx.post(f"{srv.openai_base_url}/chat/completions", json=body).json()["choices"][0]["message"]["content"] for _ in range(2)]
    jsonschema.validate(json.loads(out[0]), SCORE_SCHEMA)
    assert out[0] == out[1]  # deterministic per prompt
    body = dict(OPENAI_BODY, response_format={"type": "json_object"})
    assert json.loads(httpx.post(f"{srv.openai_base_url}/chat/completions", json=body).json()["choices"][0]["message"]["content"])


@pytest.mark.parametrize(
    "schema",
    [
        SCORE_SCHEMA,
        {"type": "OBJECT", "properties": {"n": {"type": "NUMBER", "minimum": 0.5, "maximum": 0.75}}},  # Gemini style
        {"$defs": {"s": {"type": "integer", "minimum": 3, "maximum": 3}}, "type": "object", "properties": {"a": {"$ref": "#/$defs/s"}}},
        {"type": "array", "items": {"anyOf": [{"type": "null"}, {"type": "string"}]}, "minItems": 3},
        {"type": ["string", "null"], "minLength": 30},
        {"const": {"x": 1}},
    ],
)
def test_fill_schema_validates(schema: dict) -> None:
    value = fill_schema(schema, "seed")
    std = json.loads(json.dumps(schema).replace('"OBJECT"', '"object"').replace('"NUMBER"', '"number"'))
    jsonschema.validate(value, std)
    assert fill_schema(schema, "seed") == value


def test_scores_vary_with_prompt() -> None:
    scores = {fill_schema(SCORE_SCHEMA, f"prompt {i}")["score"] for i in range(40)}
    assert len(scores) >= 5 and scores <= set(range(1, 11))


def test_models_endpoint_and_model_filter() -> None:
    with FaultServer(models=["a", "b"]) as srv:
        assert [m["id"] for m in httpx.get(f"{srv.openai_base_url}/models").json()["data"]] == ["a", "b"]
        r = httpx.post(f"{srv.openai_base_url}/chat/completions", json=dict(OPENAI_BODY, model="zzz"))
        assert r.status_code == 404


def test_script_order_and_match(srv: FaultServer) -> None:
    srv.script(["500", None, Fault("rate_limit", retry_after_s=0.25)])
    srv.script(["503"], match="special")
    url = f"{srv.openai_base_url}/chat/completions"
    special = dict(OPENAI_BODY, messages=[{"role": "user", "content": "a special one"}])
    assert httpx.post(url, json=special).status_code == 503  # the match queue goes first
    codes = [httpx.post(url, json=OPENAI_BODY).status_code for _ in range(4)]
    assert codes == [500, 200, 429, 200]
    r429 = srv.matching(status=429)[0]
    assert r429.retry_after_s == 0.25
    assert srv.count(match="special") == 1 and srv.count(status=200) == 2


def test_rate_limit_and_retry_after_header() -> None:
    with FaultServer(rps=1, burst=2) as srv:
        url = f"{srv.openai_base_url}/chat/completions"
        responses = [httpx.post(url, json=OPENAI_BODY) for _ in range(4)]
        assert [r.status_code for r in responses[:2]] == [200, 200]
        limited = [r for r in responses[2:] if r.status_code == 429]
        assert limited, "a burst beyond the bucket must be refused"
        ra = float(limited[0].headers["Retry-After"])
        assert 0 < ra <= 1.0 + 1e-6
        assert int(limited[0].headers["retry-after-ms"]) == round(ra * 1000)
        time.sleep(ra)
        assert httpx.post(url, json=OPENAI_BODY).status_code == 200
        assert all(r.rate_limited for r in srv.matching(status=429))


def test_gemini_error_shape_and_retry_info(srv: FaultServer) -> None:
    srv.script([Fault("rate_limit", retry_after_s=2, retry_after_header=False)])
    r = httpx.post(srv.base_url + GEMINI_PATH, json=GEMINI_BODY)
    assert r.status_code == 429 and "Retry-After" not in r.headers
    err = r.json()["error"]
    assert err["status"] == "RESOURCE_EXHAUSTED"
    assert err["details"][0]["retryDelay"] == "2s"


def test_latency_and_in_flight() -> None:
    with FaultServer(latency_s=0.5) as srv:
        import concurrent.futures as cf

        with cf.ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: httpx.post(f"{srv.openai_base_url}/chat/completions", json=OPENAI_BODY), range(4)))
        recs = srv.requests
        assert len(recs) == 4 and all(r.t_end - r.t_start >= 0.5 for r in recs)
        # The recorded peak and per-arrival counts agree with the overlap of the recorded intervals.
        overlap = [sum(1 for o in recs if o.t_start <= r.t_start < o.t_end) for r in recs]
        assert [r.in_flight for r in recs] == overlap
        assert srv.peak_in_flight == max(overlap) >= 2 and srv.in_flight == 0


@pytest.mark.parametrize("kind", ["invalid_json", "truncated_json"])
def test_broken_bodies(srv: FaultServer, kind: str) -> None:
    srv.script([kind])
    r = httpx.post(f"{srv.openai_base_url}/chat/completions", json=OPENAI_BODY)
    assert r.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.content)


def test_disconnect(srv: FaultServer) -> None:
    srv.script(["disconnect"])
    with pytest.raises(httpx.HTTPError):
        httpx.post(f"{srv.openai_base_url}/chat/completions", json=OPENAI_BODY)


def test_timeout_hangs_past_client_timeout(srv: FaultServer) -> None:
    srv.script([Fault("timeout", hang_s=30)])
    t0 = time.monotonic()
    with pytest.raises(httpx.TimeoutException):
        httpx.post(f"{srv.openai_base_url}/chat/completions", json=OPENAI_BODY, timeout=0.3)
    assert time.monotonic() - t0 < 5
    deadline = time.monotonic() + 3
    while srv.in_flight and time.monotonic() < deadline:  # the hung handler is cancelled on disconnect
        time.sleep(0.02)
    assert srv.in_flight == 0 and srv.requests[0].status == 499


def test_refusal_and_length(srv: FaultServer) -> None:
    srv.script(["refusal", "length"])
    url = f"{srv.openai_base_url}/chat/completions"
    msg = httpx.post(url, json=OPENAI_BODY).json()["choices"][0]["message"]
    assert msg["content"] is None and msg["refusal"]
    choice = httpx.post(url, json=OPENAI_BODY).json()["choices"][0]
    assert choice["finish_reason"] == "length" and choice["message"]["content"] == "echo:"
    srv.script(["refusal"])
    cand = httpx.post(srv.base_url + GEMINI_PATH, json=GEMINI_BODY).json()["candidates"][0]
    assert cand["finishReason"] == "SAFETY" and "content" not in cand
    srv.script([Fault("refusal_text", message="I won't rate that.")])
    choice = httpx.post(url, json=OPENAI_BODY).json()["choices"][0]
    assert choice["message"]["content"] == "I won't rate that." and choice["finish_reason"] == "stop"


def test_max_tokens_truncates(srv: FaultServer) -> None:
    body = dict(OPENAI_BODY, max_tokens=1)
    choice = httpx.post(f"{srv.openai_base_url}/chat/completions", json=body).json()["choices"][0]
    assert choice["finish_reason"] == "length" and choice["message"]["content"] == "echo:"


def test_api_key_required_and_echoed(srv: FaultServer) -> None:
    with FaultServer(api_key="right-key") as s:
        url = f"{s.openai_base_url}/chat/completions"
        r = httpx.post(url, json=OPENAI_BODY, headers={"Authorization": "Bearer wrong-key"})
        assert r.status_code == 401 and "wrong-key" in r.text
        assert httpx.post(url, json=OPENAI_BODY, headers={"Authorization": "Bearer right-key"}).status_code == 200
        assert "wrong-key" not in json.dumps([rec.headers for rec in s.requests])


def test_custom_responder_fault_fn_and_rates() -> None:
    seen = []

    def responder(messages, params):
        seen.append((messages, params["protocol"], params["max_tokens"]))
        return "custom answer"

    def fault_fn(rec):
        return "503" if "fail me" in rec.prompt else None

    with FaultServer(responder=responder, fault_fn=fault_fn) as srv:
        url = f"{srv.openai_base_url}/chat/completions"
        assert httpx.post(url, json=dict(OPENAI_BODY, max_tokens=7)).json()["choices"][0]["message"]["content"] == "custom answer"
        assert seen[0][0][0] == {"role": "system", "content": "be brief"} and seen[0][1:] == ("openai", 7)
        bad = dict(OPENAI_BODY, messages=[{"role": "user", "content": "fail me"}])
        assert httpx.post(url, json=bad).status_code == 503
    with FaultServer(fault_rates={"500": 0.5}, seed=1) as srv:
        codes = [httpx.post(f"{srv.openai_base_url}/chat/completions", json=OPENAI_BODY).status_code for _ in range(40)]
        assert 8 <= codes.count(500) <= 32 and codes.count(200) == 40 - codes.count(500)


def test_unknown_fault_kind_rejected() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("explode")


def test_cli_serves() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mentalchat.testing.fault_server", "--port", "0", "--latency-ms", "1", "--models", "cli-model"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        url = re.search(r"(http://\S+)", line).group(1)
        assert httpx.get(f"{url}/v1/models").json()["data"][0]["id"] == "cli-model"
        r = httpx.post(f"{url}/v1/chat/completions", json=dict(OPENAI_BODY, model="cli-model"))
        assert r.json()["choices"][0]["message"]["content"] == "echo: hello there"
    finally:
        proc.terminate()
        proc.wait(10)


def test_without_aiohttp_the_import_error_says_what_to_install() -> None:
    # In a fresh interpreter where aiohttp cannot be imported (the runtime install has no aiohttp).
    code = "import sys\nsys.modules['aiohttp'] = None\nimport mentalchat.testing.fault_server\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: mentalchat.testing.fault_server needs aiohttp")
    assert 'pip install -e ".[testing]"' in last


def test_tokens_per_minute_limit_counts_prompt_and_max_tokens() -> None:
    body = {**OPENAI_BODY, "max_tokens": 400}  # ~6 prompt tokens + 400
    with FaultServer(tpm=30_000) as srv:  # 500 tokens a second
        url = f"{srv.openai_base_url}/chat/completions"
        first, second = httpx.post(url, json=body), httpx.post(url, json=body)
        assert first.status_code == 200 and second.status_code == 429
        err = second.json()["error"]
        assert "tokens per min (TPM): Limit 30000" in err["message"] and err["code"] == "rate_limit_exceeded"
        ra = float(second.headers["Retry-After"])
        assert 0.5 < ra <= 0.85  # ~310 of 406 tokens missing at 500/s
        small = {**OPENAI_BODY, "max_tokens": 10}
        assert httpx.post(url, json=small).status_code == 200  # a smaller request fits what is left


def test_lognormal_latency_has_a_tail() -> None:
    """The drawn delays (not wall times, which a loaded CI machine distorts) carry the tail."""

    def delays(sigma: float) -> tuple[list[float], list[float]]:
        walls = []
        with FaultServer(latency_s=0.004, latency_sigma=sigma, seed=3) as srv, httpx.Client() as client:
            for _ in range(80):
                t0 = time.perf_counter()
                client.post(f"{srv.openai_base_url}/chat/completions", json=OPENAI_BODY)
                walls.append(time.perf_counter() - t0)
            drawn = sorted(r.delay_s for r in srv.requests if r.protocol == "openai")
        return drawn, walls

    (fixed, _), (tailed, walls) = delays(0.0), delays(1.2)
    assert len(fixed) == len(tailed) == 80
    assert fixed[0] == fixed[-1] == 0.004  # sigma 0: every call waits exactly the latency
    assert tailed[-2] > 3 * 0.004  # the slowest calls are far slower than the median
    assert 0.002 < tailed[40] < 0.008  # latency_s stays the median
    assert tailed[-1] <= 20 * 0.004  # capped at 20 x the median
    assert sorted(walls)[-1] >= tailed[-1]  # and the server really slept that long
