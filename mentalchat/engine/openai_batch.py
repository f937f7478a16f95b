"""The OpenAI Batch API as a :class:`~mentalchat.engine.batch.BatchProvider`.

Protocol: the requests are one JSONL file, each line
``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body": <chat.completions params>}``
(the body is :func:`~mentalchat.engine.openai_backend.openai_params`, exactly what an online call
sends), uploaded with ``files.create(purpose="batch")``; ``batches.create(input_file_id,
endpoint="/v1/chat/completions", completion_window="24h", metadata={"mentalchat_tag": tag})``
starts it. A batch goes ``validating → in_progress → finalizing → completed`` (or ``failed``,
``expired``, ``cancelling → cancelled``) with ``request_counts`` on the way. Its answers are in
``output_file_id`` and failed lines in ``error_file_id``, both JSONL of
``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}``; an expired or
cancelled batch still has the lines it finished. The SDK's own retries are off, as online.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import openai
import pydantic
from openai.types.chat import ChatCompletion

from mentalchat.engine.batch import BatchProvider, BatchStatus
from mentalchat.engine.capabilities import capabilities_for
from mentalchat.engine.http import RawResponse
from mentalchat.engine.openai_backend import completion_to_raw as online_completion_to_raw
from mentalchat.engine.openai_backend import openai_params
from mentalchat.engine.retry import CallError, status_error
from mentalchat.engine.types import ChatRequest, SamplingConfig

__all__ = ["ENDPOINT", "OpenAIBatchProvider", "completion_to_raw"]

ENDPOINT = "/v1/chat/completions"
TAG_KEY = "mentalchat_tag"
_TERMINAL = {"completed", "failed", "expired", "cancelled"}


def completion_to_raw(body: dict[str, Any]) -> RawResponse | CallError:
    """A ``chat.completion`` body (one output line) read by the online backend's own reader."""
    try:
        completion = ChatCompletion.model_validate(body)
    except pydantic.ValidationError as exc:
        return CallError(f"unreadable response body ({exc.error_count()} invalid fields)", retryable=True)
    return online_completion_to_raw(completion)


def line_outcome(line: dict[str, Any]) -> RawResponse | CallError:
    """One output- or error-file line: the answer, or its error classified like an online error."""
    resp = line.get("response") or {}
    err = line.get("error")
    status = resp.get("status_code")
    body = resp.get("body") if isinstance(resp.get("body"), dict) else {}
    if status == 200 and not err:
        return completion_to_raw(body)
    if status:
        detail = body.get("error", body) if isinstance(body, dict) else {}
        message = (detail.get("message") if isinstance(detail, dict) else None) or f"status {status}"
        out = status_error(int(status), message)
        if status == 429 and isinstance(detail, dict) and detail.get("code") == "insufficient_quota":
            out.retryable = False
        return out
    err = err if isinstance(err, dict) else {}
    code = str(err.get("code") or "error")
    message = f"{code}: {err.get('message') or 'no message'}"
    if code == "batch_expired":
        return CallError(message, kind="timeout", retryable=True)
    if code == "batch_cancelled":
        return CallError(message, kind="other", retryable=True)
    return CallError(message, kind="bad_response", retryable=False)


class OpenAIBatchProvider(BatchProvider):
    """``backend: openai`` with ``batch`` set."""

    name = "openai"
    max_bytes = 190 * 2**20  # the input file limit is 200 MB

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        self.client = openai.OpenAI(
            api_key=engine._api_key,  # the engine holds the key; nothing else may
            base_url=engine.base_url,
            max_retries=0,
            timeout=self.cfg.http.timeout_s,
        )

    def payload(self, request: ChatRequest, sampling: SamplingConfig) -> dict[str, Any]:
        shape = capabilities_for("openai", self.cfg.model, self.cfg.capabilities)  # as an online call starts
        return openai_params(self.cfg.model, request, sampling, shape)

    def submit(self, tag: str, entries: Sequence[tuple[str, dict[str, Any]]]) -> str:
        lines = [
            json.dumps({"custom_id": cid, "method": "POST", "url": ENDPOINT, "body": body}, ensure_ascii=False)
            for cid, body in entries
        ]
        data = ("\n".join(lines) + "\n").encode("utf-8")
        upload = self.client.files.create(file=(f"{tag}.jsonl", data, "application/jsonl"), purpose="batch")
        batch = self.client.batches.create(
            input_file_id=upload.id,
            endpoint=ENDPOINT,
            completion_window=self.cfg.batch.completion_window if self.cfg.batch else "24h",
            metadata={TAG_KEY: tag},
        )
        return batch.id

    def find(self, tag: str) -> str | None:
        for i, batch in enumerate(self.client.batches.list(limit=100)):
            if (batch.metadata or {}).get(TAG_KEY) == tag:
                return batch.id
            if i >= 2000:  # batches are listed newest first; ours is among the latest
                break
        return None

    def status(self, batch_id: str) -> BatchStatus:
        b = self.client.batches.retrieve(batch_id)
        counts = b.request_counts
        message = None
        if b.errors is not None and b.errors.data:
            message = "; ".join(f"{e.code}: {e.message}" + (f" (line {e.line})" if e.line else "") for e in b.errors.data)
        return BatchStatus(
            state=b.status,
            done=b.status in _TERMINAL,
            succeeded=b.status == "completed",
            completed=counts.completed if counts else None,
            failed=counts.failed if counts else None,
            total=counts.total if counts else None,
            message=message if b.status == "failed" else None,
            retryable=b.status != "failed",  # a batch that failed validation fails again
        )

    def results(self, batch_id: str, ids: Sequence[str]) -> dict[str, RawResponse | CallError]:
        b = self.client.batches.retrieve(batch_id)
        out: dict[str, RawResponse | CallError] = {}
        wanted = set(ids)
        # Error lines first: a line in both files (should not happen) keeps its answer.
        for file_id in (b.error_file_id, b.output_file_id):
            if not file_id:
                continue
            text = self.client.files.content(file_id).text
            for raw in text.splitlines():
                if not raw.strip():
                    continue
                try:
                    line = json.loads(raw)
                except json.JSONDecodeError:
                    continue  # an unreadable line: its request counts as unanswered and is retried
                cid = line.get("custom_id")
                if cid in wanted:
                    out[cid] = line_outcome(line)
        return out

    def cancel(self, batch_id: str) -> None:
        self.client.batches.cancel(batch_id)

    def close(self) -> None:
        self.client.close()
