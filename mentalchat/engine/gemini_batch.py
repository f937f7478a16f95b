"""Gemini batch mode (``google-genai`` ``client.batches``) as a :class:`~mentalchat.engine.batch.BatchProvider`.

Protocol: ``client.batches.create(model=..., src=[InlinedRequest...], config={"display_name": tag})``
posts ``v1beta/models/{model}:batchGenerateContent`` with every request inlined (contents plus the
``GenerateContentConfig`` an online call would send, :func:`~mentalchat.engine.gemini_backend.gemini_config`;
the SDK moves the system instruction into the request). The answer is a long-running operation
``batches/{id}``; ``client.batches.get(name=...)`` (``GET v1beta/batches/{id}``) reports its state
(``JOB_STATE_PENDING → RUNNING → SUCCEEDED``, or ``FAILED``, ``CANCELLED``, ``EXPIRED``) and, once
done, ``dest.inlined_responses``: one per request *in request order*, each a response or an
``error`` (a google.rpc status). The service does not always echo a request's ``metadata``, so the
answers are matched by position, by metadata key where it is present. Inline batches are capped
at 20 MB per request; larger runs are split (``batch.max_requests_per_batch`` /
``max_bytes_per_batch``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google import genai
from google.genai import types

from mentalchat.engine.batch import BatchProvider, BatchStatus
from mentalchat.engine.capabilities import capabilities_for
from mentalchat.engine.gemini_backend import gemini_config, gemini_contents, response_to_raw
from mentalchat.engine.http import RawResponse
from mentalchat.engine.retry import CallError, status_error
from mentalchat.engine.types import ChatRequest, SamplingConfig

__all__ = ["GeminiBatchProvider", "response_to_raw"]

_TERMINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED",
             "JOB_STATE_PARTIALLY_SUCCEEDED"}
# google.rpc codes as the HTTP statuses the retry rules know.
_GRPC_HTTP = {1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400, 10: 409, 11: 400,
              12: 501, 13: 500, 14: 503, 15: 500, 16: 401}


def error_to_call_error(err: types.JobError) -> CallError:
    """A per-request ``error`` (google.rpc status) classified like the HTTP error it stands for."""
    code = int(err.code or 2)
    status = code if code >= 100 else _GRPC_HTTP.get(code, 500)
    return status_error(status, err.message or f"error code {code}")


class GeminiBatchProvider(BatchProvider):
    """``backend: gemini`` with ``batch`` set."""

    name = "gemini"
    max_bytes = 19 * 2**20  # inline batch requests are capped at 20 MB

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        http_options = types.HttpOptions(
            base_url=engine.base_url,
            timeout=int(self.cfg.http.timeout_s * 1000),
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        self.client = genai.Client(api_key=engine._api_key, vertexai=False, http_options=http_options)

    def payload(self, request: ChatRequest, sampling: SamplingConfig) -> dict[str, Any]:
        shape = capabilities_for("gemini", self.cfg.model, self.cfg.capabilities)  # as an online call starts
        system, contents = gemini_contents(request, shape)
        config = gemini_config(self.cfg.model, request, sampling, system, shape)
        return {
            "contents": [c.model_dump(mode="json", exclude_none=True) for c in contents],
            # automatic function calling is a client-side switch; a batch has no client loop
            "config": config.model_dump(mode="json", exclude_none=True, exclude={"automatic_function_calling"}),
        }

    def submit(self, tag: str, entries: Sequence[tuple[str, dict[str, Any]]]) -> str:
        src = [
            types.InlinedRequest(contents=p["contents"], config=types.GenerateContentConfig(**p["config"]),
                                 metadata={"key": cid})
            for cid, p in entries
        ]
        job = self.client.batches.create(model=self.cfg.model, src=src, config={"display_name": tag})
        if not job.name:
            raise CallError("batch create returned no name", retryable=False)
        return job.name

    def find(self, tag: str) -> str | None:
        for i, job in enumerate(self.client.batches.list(config={"page_size": 100})):
            if job.display_name == tag:
                return job.name
            if i >= 2000:
                break
        return None

    def status(self, batch_id: str) -> BatchStatus:
        job = self.client.batches.get(name=batch_id)
        state = getattr(job.state, "name", str(job.state)) if job.state is not None else "JOB_STATE_UNSPECIFIED"
        n_ok = n_err = None
        total = None
        if job.dest is not None and job.dest.inlined_responses is not None:
            total = len(job.dest.inlined_responses)
            n_err = sum(1 for r in job.dest.inlined_responses if r.error is not None)
            n_ok = total - n_err
        return BatchStatus(
            state=state,
            done=state in _TERMINAL,
            succeeded=state == "JOB_STATE_SUCCEEDED",
            completed=n_ok,
            failed=n_err,
            total=total,
            message=(job.error.message if job.error is not None else None) if state == "JOB_STATE_FAILED" else None,
            retryable=state != "JOB_STATE_FAILED",
        )

    def results(self, batch_id: str, ids: Sequence[str]) -> dict[str, RawResponse | CallError]:
        job = self.client.batches.get(name=batch_id)
        responses = (job.dest.inlined_responses if job.dest is not None else None) or []
        out: dict[str, RawResponse | CallError] = {}
        known = set(ids)
        for pos, item in enumerate(responses):
            key = (item.metadata or {}).get("key")
            cid = key if key in known else (ids[pos] if pos < len(ids) else None)
            if cid is None:
                continue
            if item.error is not None:
                out[cid] = error_to_call_error(item.error)
            elif item.response is not None:
                out[cid] = response_to_raw(item.response)
        return out

    def cancel(self, batch_id: str) -> None:
        self.client.batches.cancel(name=batch_id)

    def close(self) -> None:
        self.client.close()
