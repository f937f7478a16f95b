"""A local, fault-injecting HTTP server that speaks the OpenAI and Gemini REST protocols.

Why: the API backends, the judges and the throughput benchmarks must be tested with the real
``openai`` and ``google-genai`` clients over real HTTP, including the failures that matter in
production (rate limits, 5xx, hangs, broken bodies, refusals, truncation), without a network or a
key. This server answers both protocols on 127.0.0.1, injects faults on demand and records every
request so tests can assert what was sent and how often. It needs ``aiohttp`` (the ``testing``
extra).

Modules
-------
:mod:`.server`
    :class:`FaultServer`: lifecycle, routing, the order faults are chosen in, rate limit, latency.
:mod:`.faults`
    :class:`Fault`: the fault kinds, their shorthands and what each one does.
:mod:`.openai_protocol`, :mod:`.gemini_protocol`
    The endpoints, and each protocol's request parsing, response payloads and error bodies.
:mod:`.schema_fill`
    :func:`default_responder`, :func:`fill_schema` (JSON that matches a requested schema) and the
    token count.
:mod:`.records`
    :class:`RequestRecord`: what is recorded of each request.
:mod:`.__main__`
    The command line.

Use
---
In tests::

    with FaultServer(latency_s=0.01) as srv:
        srv.script(["429", None, "500"])           # the next three calls
        client = openai.OpenAI(base_url=srv.openai_base_url, api_key="x")
        ...
        assert srv.count(status=429) == 1

    # or through the engine layer, with test-friendly timeouts and backoff:
    with FaultServer() as srv, create_engine(srv.engine_config("gemini")) as engine:
        results = engine.chat_batch(requests)

From a shell (for benchmarks or manual checks)::

    python -m mentalchat.testing.fault_server --port 8765 --rps 20 --latency-ms 50 --fault 503=0.05
"""

from __future__ import annotations

from typing import Any

from mentalchat.testing.fault_server.faults import Fault
from mentalchat.testing.fault_server.provider_rules import ProviderRules
from mentalchat.testing.fault_server.records import RequestRecord
from mentalchat.testing.fault_server.schema_fill import Responder, default_responder, fill_schema
from mentalchat.testing.fault_server.server import FaultServer

__all__ = [
    "Fault",
    "FaultServer",
    "ProviderRules",
    "RequestRecord",
    "Responder",
    "default_responder",
    "fill_schema",
]


def __getattr__(name: str) -> Any:
    # ``main`` was importable from the single module; importing __main__ eagerly here would make
    # ``python -m`` warn that the module was already imported, so it is loaded on first use.
    if name == "main":
        from mentalchat.testing.fault_server.__main__ import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
