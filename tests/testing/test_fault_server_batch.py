"""The fault server's batch endpoints as the plain SDKs see them (no mentalchat engine in between)."""

from __future__ import annotations

import json
import time
from typing import Any

import openai
import pytest
from google import genai
from google.genai import types

from mentalchat.testing.fault_server import FaultServer
from mentalchat.testing.fault_server.batch_jobs import BatchSettings

SETTINGS = BatchSettings(validate_s=0.05, process_s=0.2, finalize_s=0.05)


def _line(cid: str, text: str, url: str = "/v1/chat/completions") -> str:
    body = {"model": "fault-model", "messages": [{"role": "user", "content": text}], "max_tokens": 50}
    return json.dumps({"custom_id": cid, "method": "POST", "url": url, "body": body})


def _wait(get: Any, states: set[str], timeout: float = 10.0) -> Any:
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obj = get()
        state = getattr(obj, "status", None) or obj.state.name
        if not seen or seen[-1] != state:
            seen.append(state)
        if state in states:
            return obj, seen
        time.sleep(0.01)
    raise AssertionError(f"never reached {states}: {seen}")


def test_openai_batch_lifecycle_files_counts_and_output_lines() -> None:
    with FaultServer(batch=SETTINGS) as srv:
        srv.script(["500"], match="two")
        client = openai.OpenAI(base_url=srv.openai_base_url, api_key="k", max_retries=0)
        data = "\n".join([_line("a", "one"), _line("b", "two"), _line("c", "three")]).encode()
        f = client.files.create(file=("in.jsonl", data), purpose="batch")
        assert f.purpose == "batch" and f.bytes == len(data)
        assert client.files.content(f.id).content == data
        b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h",
                                  metadata={"k": "v"})
        assert b.status == "validating" and b.request_counts.total == 3 and b.metadata == {"k": "v"}
        done, seen = _wait(lambda: client.batches.retrieve(b.id), {"completed"})
        assert seen[0] == "validating" and "in_progress" in seen and seen[-1] == "completed"
        assert (done.request_counts.completed, done.request_counts.failed) == (2, 1)
        assert done.completed_at is not None and done.in_progress_at is not None
        out = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
        err = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
        assert sorted(x["custom_id"] for x in out) == ["a", "c"]
        assert out[0]["response"]["status_code"] == 200
        assert out[0]["response"]["body"]["choices"][0]["message"]["content"] == "echo: one"
        assert err[0]["custom_id"] == "b" and err[0]["response"]["status_code"] == 500
        assert [x.id for x in client.batches.list(limit=1)] == [b.id]


def test_openai_batch_create_errors_and_failed_validation() -> None:
    with FaultServer(batch=SETTINGS) as srv:
        client = openai.OpenAI(base_url=srv.openai_base_url, api_key="k", max_retries=0)
        with pytest.raises(openai.BadRequestError, match="File not found"):
            client.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h")
        other = client.files.create(file=("x.jsonl", b"{}"), purpose="user_data")
        with pytest.raises(openai.BadRequestError, match="purpose"):
            client.batches.create(input_file_id=other.id, endpoint="/v1/chat/completions", completion_window="24h")
        bad = "\n".join([_line("a", "one"), "not json", _line("a", "again"), _line("d", "x", url="/v1/embeddings")])
        f = client.files.create(file=("bad.jsonl", bad.encode()), purpose="batch")
        b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
        failed, _ = _wait(lambda: client.batches.retrieve(b.id), {"failed"})
        codes = sorted(e.code for e in failed.errors.data)
        assert codes == ["duplicate_custom_id", "invalid_json_line", "invalid_request"]
        assert failed.output_file_id is None
        with pytest.raises(openai.NotFoundError):
            client.batches.retrieve("batch_nope")


def test_openai_batch_cancel_and_expiry_write_error_lines() -> None:
    with FaultServer(batch=BatchSettings(validate_s=0.02, process_s=5.0, finalize_s=0.05)) as srv:
        client = openai.OpenAI(base_url=srv.openai_base_url, api_key="k", max_retries=0)
        f = client.files.create(file=("in.jsonl", "\n".join(_line(c, c) for c in "abcd").encode()), purpose="batch")
        b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
        time.sleep(0.05)
        assert client.batches.cancel(b.id).status == "cancelling"
        done, _ = _wait(lambda: client.batches.retrieve(b.id), {"cancelled"})
        err = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
        assert {x["error"]["code"] for x in err} == {"batch_cancelled"} and len(err) == 4
        srv.batches.script_jobs([BatchSettings(validate_s=0.02, process_s=0.4, expire_after_s=0.25)])
        b2 = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
        exp, _ = _wait(lambda: client.batches.retrieve(b2.id), {"expired"})
        assert exp.request_counts.completed == 2 and exp.request_counts.failed == 2
        err = [json.loads(x) for x in client.files.content(exp.error_file_id).text.splitlines()]
        assert [x["custom_id"] for x in err] == ["c", "d"] and err[0]["error"]["code"] == "batch_expired"


def _inlined(text: str) -> types.InlinedRequest:
    return types.InlinedRequest(
        contents=[types.Content(role="user", parts=[types.Part(text=text)])],
        config=types.GenerateContentConfig(max_output_tokens=50, system_instruction="be kind"),
    )


def test_gemini_batch_lifecycle_with_the_sdk() -> None:
    with FaultServer(batch=SETTINGS) as srv:
        srv.script(["429"], match="two")
        client = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=srv.base_url))
        job = client.batches.create(model="fault-model", src=[_inlined("one"), _inlined("two")],
                                    config={"display_name": "my-tag"})
        assert job.name.startswith("batches/") and job.state.name == "JOB_STATE_PENDING"
        assert job.display_name == "my-tag"
        done, seen = _wait(lambda: client.batches.get(name=job.name), {"JOB_STATE_SUCCEEDED"})
        assert seen[0] == "JOB_STATE_PENDING" and "JOB_STATE_RUNNING" in seen
        first, second = done.dest.inlined_responses
        assert first.response.text == "echo: one" and first.error is None
        assert second.response is None and second.error.code == 8  # RESOURCE_EXHAUSTED
        inlined = srv.batches.jobs[job.name].items[0].body
        assert inlined["systemInstruction"]["parts"][0]["text"] == "be kind"
        assert [j.name for j in client.batches.list()] == [job.name]
        job2 = client.batches.create(model="fault-model", src=[_inlined("three")])
        assert client.batches.get(name=job2.name).name == job2.name  # v1 paths shared with OpenAI's
        with pytest.raises(genai.errors.ClientError):
            client.batches.get(name="batches/nope")


def test_gemini_batch_cancel() -> None:
    with FaultServer(batch=BatchSettings(validate_s=0.02, process_s=5.0, finalize_s=0.02)) as srv:
        client = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=srv.base_url))
        job = client.batches.create(model="fault-model", src=[_inlined("one"), _inlined("two")])
        client.batches.cancel(name=job.name)
        done, _ = _wait(lambda: client.batches.get(name=job.name), {"JOB_STATE_CANCELLED"})
        assert all(r.error is not None for r in done.dest.inlined_responses)
