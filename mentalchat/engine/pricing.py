"""USD prices per million tokens, so every API call carries its cost and budgets can be enforced.

Source and assumptions: the providers' public list prices for standard (non-batch, non-cached,
short-context) text calls as published on openai.com/api/pricing and ai.google.dev/pricing during
2024-2025. Prices change; a config's ``price_in_per_mtok``/``price_out_per_mtok`` override this
table, and calls to a local endpoint (localhost, 127.0.0.1, ::1) cost 0 unless overridden.
Gemini models with long-context tiers are priced at their short-context (<=128k/200k) rate; output
includes "thinking" tokens, which Google bills as output.

Before a call, its size is estimated (:func:`estimate_tokens`) the same way everywhere: the HTTP
engines reserve budget with it, and the stages' dry runs print costs from it.

Batch APIs (OpenAI Batch, Gemini batch mode) bill half the online list price for the same tokens:
:data:`BATCH_PRICE_FACTOR`, overridden per engine by ``batch.price_factor``; :func:`engine_price`
returns the batch price for an engine with ``batch`` set, so estimates and budgets follow it.
"""

from __future__ import annotations

import logging
import math
from urllib.parse import urlparse

from mentalchat.engine.config import EngineConfig
from mentalchat.engine.types import ChatRequest

__all__ = [
    "BATCH_PRICE_FACTOR",
    "PRICES",
    "SCHEMA_TOKENS",
    "Price",
    "batch_price",
    "call_cost",
    "engine_price",
    "engine_price_known",
    "admission_tokens",
    "estimate_tokens",
    "is_local_url",
    "price_for",
    "price_is_known",
    "resolve_price",
]

log = logging.getLogger(__name__)

Price = tuple[float, float]  # (USD per 1M input tokens, USD per 1M output tokens)

PRICES: dict[str, Price] = {
    # OpenAI
    "gpt-4-1106-preview": (10.00, 30.00),  # the paper's GPT-4 Turbo judge
    "gpt-4-0125-preview": (10.00, 30.00),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4-32k": (60.00, 120.00),
    "gpt-4": (30.00, 60.00),
    "gpt-4o-2024-05-13": (5.00, 15.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-3.5-turbo-16k": (3.00, 4.00),
    "gpt-3.5-turbo-0125": (0.50, 1.50),
    "gpt-3.5-turbo": (0.50, 1.50),
    "o1-mini": (1.10, 4.40),
    "o1": (15.00, 60.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
    "gpt-5.6-sol": (2.00, 10.00),
    "gpt-6-sol": (2.00, 10.00),
    "gpt-6.1-sol": (2.00, 10.00),
    "gpt-6.2-sol": (2.00, 10.00),  # the current profile's judge (developers.openai.com, Dec 2026)
    # Google
    "gemini-pro": (0.50, 1.50),  # Gemini 1.0 Pro, the paper's Gemini judge
    "gemini-1.0-pro": (0.50, 1.50),
    "gemini-1.5-flash-8b": (0.0375, 0.15),
    "gemini-1.5-flash": (0.075, 0.30),
    "gemini-1.5-pro": (1.25, 5.00),
    "gemini-2.0-flash-lite": (0.075, 0.30),
    "gemini-2.0-flash": (0.10, 0.40),
    "gemini-2.5-flash-lite": (0.10, 0.40),
    "gemini-2.5-flash": (0.30, 2.50),
    "gemini-2.5-pro": (1.25, 10.00),
    # the current profile's Gemini judge; list price from 2027-01-01 (half that as a promotion in Dec 2026):
    # a budget then errs on the safe side
    "gemini-3.8-flash": (1.50, 7.50),
}

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}
_warned: set[str] = set()


def is_local_url(url: str | None) -> bool:
    """True for loopback endpoints (a local vLLM server, the fault server): those calls are free."""
    if not url:
        return False
    host = urlparse(url if "://" in url else f"http://{url}").hostname or ""
    return host in _LOCAL_HOSTS or host.startswith("127.")


def _normalise(model: str) -> str:
    name = model.strip().lower()
    for prefix in ("models/", "openai/", "google/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name


def price_for(model: str) -> Price | None:
    """Longest table key that prefixes the model name (``gpt-4o-mini-2024-07-18`` → gpt-4o-mini)."""
    name = _normalise(model)
    best: str | None = None
    for key in PRICES:
        if (name == key or name.startswith(key + "-") or name.startswith(key + "@")) and (
            best is None or len(key) > len(best)
        ):
            best = key
    return PRICES[best] if best else None


def price_is_known(cfg: EngineConfig, base_url: str | None) -> bool:
    """Whether an engine's calls can be costed: a local endpoint, both prices configured, or a table entry.

    A paid model priced at $0 would make any budget cap meaningless, so engines refuse to start
    with a budget when this is False.
    """
    if cfg.served or is_local_url(base_url):
        return True
    if cfg.price_in_per_mtok is not None and cfg.price_out_per_mtok is not None:
        return True
    return price_for(cfg.model) is not None


def resolve_price(cfg: EngineConfig, base_url: str | None) -> Price:
    """The (in, out) price for an engine: config override, else 0 for local, else the table."""
    table = price_for(cfg.model)
    local = cfg.served or is_local_url(base_url)
    p_in = cfg.price_in_per_mtok if cfg.price_in_per_mtok is not None else (0.0 if local else (table or (0.0, 0.0))[0])
    p_out = cfg.price_out_per_mtok if cfg.price_out_per_mtok is not None else (0.0 if local else (table or (0.0, 0.0))[1])
    if table is None and not local and (cfg.price_in_per_mtok is None or cfg.price_out_per_mtok is None):
        if cfg.model not in _warned:
            _warned.add(cfg.model)
            log.warning(
                "no price known for model %r: its calls are counted as $0; set price_in_per_mtok and "
                "price_out_per_mtok in the engine config to account for them",
                cfg.model,
            )
    return p_in, p_out


#: Batch-API price as a share of the online price (OpenAI and Google both bill batches at 50%).
BATCH_PRICE_FACTOR: dict[str, float] = {"openai": 0.5, "gemini": 0.5}


def batch_price(cfg: EngineConfig, online: Price) -> Price:
    """What a batch call of ``cfg`` costs given its online price: ``batch.price_factor`` or the provider's."""
    factor = cfg.batch.price_factor if cfg.batch is not None else None
    if factor is None:
        factor = BATCH_PRICE_FACTOR.get(cfg.backend, 1.0)
    return (online[0] * factor, online[1] * factor)


def call_cost(price: Price, tokens_in: int, tokens_out: int) -> float:
    return (tokens_in * price[0] + tokens_out * price[1]) / 1_000_000


#: What a JSON schema adds to a prompt once the provider has turned it into instructions or a grammar.
SCHEMA_TOKENS = 60


def estimate_tokens(request: ChatRequest) -> int:
    """A provider-neutral guess at a prompt's size before the provider reports usage.

    About 4 characters per token, 4 tokens of overhead per message, and :data:`SCHEMA_TOKENS` for a
    structured-output schema.
    """
    chars = sum(len(m.content) for m in request.messages)
    return math.ceil(chars / 4) + 4 * len(request.messages) + (SCHEMA_TOKENS if request.json_schema else 0)


def admission_tokens(request: ChatRequest, max_tokens: int) -> int:
    """What a provider counts against a tokens-per-minute limit when a call arrives.

    OpenAI documents its rule as the prompt estimated from its characters plus ``max_tokens``;
    the limiter charges the same, so it paces at the provider's own count (not the budget's
    more cautious :func:`estimate_tokens`).
    """
    return math.ceil(sum(len(m.content) for m in request.messages) / 4) + max_tokens


def engine_price(cfg: EngineConfig) -> Price:
    """The (in, out) price an engine's calls are charged at (see :func:`resolve_price`; batch price with ``batch``).

    Local backends (vLLM, transformers) cost what the config says, else nothing; API backends
    resolve their endpoint as the engine would (``base_url`` or the provider's base-URL variable).
    """
    if not cfg.is_http:
        return (cfg.price_in_per_mtok or 0.0, cfg.price_out_per_mtok or 0.0)
    from mentalchat.engine.base import backend_class

    online = resolve_price(cfg, backend_class(cfg.backend).resolve_base_url(cfg))
    return batch_price(cfg, online) if cfg.batch is not None else online


def engine_price_known(cfg: EngineConfig) -> bool:
    """:func:`price_is_known` for an engine config, its endpoint resolved as the engine would."""
    if not cfg.is_http:
        return True
    from mentalchat.engine.base import backend_class

    return price_is_known(cfg, backend_class(cfg.backend).resolve_base_url(cfg))
