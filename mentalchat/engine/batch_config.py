"""Batch-mode options of an API engine: ``batch: true`` or ``batch: {poll_interval_s: 60, ...}``.

Why a module of its own: the options belong to the engine config (a judge or the synthetic
generator turns batch mode on per engine), but the batch driver and its providers are separate
modules; keeping the options here lets ``engine/config.py`` name them with one field.

``batch: true`` means the defaults below; a mapping means batch mode with those options; ``false``
or absent means online calls. The providers' limits are the defaults' upper bounds (OpenAI: 50,000
requests and 200 MB per input file, a ``24h`` completion window; Gemini inline batches: 20 MB).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from mentalchat.config import StrictModel

__all__ = ["BatchOptions", "BatchSetting"]


class BatchOptions(StrictModel):
    """How an engine's calls go through a provider's batch API (see :mod:`mentalchat.engine.batch`)."""

    poll_interval_s: float = Field(30.0, gt=0, description="seconds between status checks of open batches")
    max_wait_s: float = Field(
        26 * 3600.0, gt=0,
        description="give up waiting after this long (the batches stay open; a rerun collects them)",
    )
    max_requests_per_batch: int = Field(50_000, ge=1, le=50_000, description="requests per submitted batch")
    max_bytes_per_batch: int | None = Field(
        None, ge=1024, description="payload bytes per batch; default: the provider's limit (with a margin)"
    )
    completion_window: Literal["24h"] = Field("24h", description="OpenAI completion window (only 24h exists)")
    retry: Literal["batch", "online", "none"] = Field(
        "batch", description="items that fail inside a batch (per-line errors, expiry): a follow-up batch, "
        "online calls, or not at all"
    )
    max_rounds: int = Field(3, ge=1, le=10, description="batches an item may go through (first one included)")
    price_factor: float | None = Field(
        None, ge=0, le=1, description="batch price as a share of the online price; default pricing.BATCH_PRICE_FACTOR"
    )


def _coerce(value: Any) -> Any:
    """``true`` → default options, ``false``/``null`` → online calls, a mapping → those options."""
    if value is True:
        return {}
    if value is False:
        return None
    return value


#: The type of ``EngineConfig.batch``: options, or None for online calls.
BatchSetting = Annotated[BatchOptions | None, BeforeValidator(_coerce)]
