"""The backend interface and the registry that maps ``EngineConfig.backend`` to a class.

Backends implement :meth:`Engine.chat_batch` (a list of requests in, one result per request out,
never raising for a single failed call). Stages call :func:`mentalchat.engine.run_requests`,
which picks in-process or Ray Data execution; they never import a backend directly.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable
from typing import Any, ClassVar

from mentalchat.config import ConfigError
from mentalchat.engine.config import EngineConfig
from mentalchat.engine.types import ChatRequest, ChatResult, SamplingConfig

__all__ = ["BACKENDS", "Engine", "backend_class", "create_engine", "register_backend"]


class Engine(abc.ABC):
    """An LLM backend bound to one model."""

    provider: ClassVar[str]
    supports_json_schema: ClassVar[bool] = False
    supports_lora: ClassVar[bool] = False
    #: The environment variable an API backend reads its endpoint from when the config has no base_url.
    base_url_env: ClassVar[str | None] = None

    def __init__(self, cfg: EngineConfig) -> None:
        self.cfg = cfg

    @classmethod
    def resolve_base_url(cls, cfg: EngineConfig) -> str | None:
        """The endpoint this backend would call for ``cfg`` (None for in-process backends)."""
        env = os.environ.get(cls.base_url_env) if cls.base_url_env else None
        return cfg.base_url or env or None

    def sampling_for(self, request: ChatRequest) -> SamplingConfig:
        return request.sampling or self.cfg.sampling

    @abc.abstractmethod
    def chat_batch(self, requests: list[ChatRequest]) -> list[ChatResult]:
        """Answer every request; failures come back as results with ``error`` set."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release engines, clients and threads."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


BACKENDS: dict[str, type[Engine]] = {}


def register_backend(name: str) -> Callable[[type[Engine]], type[Engine]]:
    def deco(cls: type[Engine]) -> type[Engine]:
        BACKENDS[name] = cls
        return cls

    return deco


def _load_builtin(name: str) -> None:
    # Imported lazily: vLLM and transformers are heavy and absent from some installs.
    import importlib

    modules = {
        "openai": "mentalchat.engine.openai_backend",
        "gemini": "mentalchat.engine.gemini_backend",
        "vllm": "mentalchat.engine.vllm_backend",
        "transformers": "mentalchat.engine.transformers_backend",
    }
    if name in modules:
        importlib.import_module(modules[name])


def backend_class(name: str) -> type[Engine]:
    """The class registered for backend ``name`` (built-in backends are imported on first use)."""
    if name not in BACKENDS:
        _load_builtin(name)
    try:
        return BACKENDS[name]
    except KeyError:
        raise ConfigError(f"unknown engine backend {name!r}; known: {sorted(BACKENDS)}") from None


def create_engine(cfg: EngineConfig, **options: Any) -> Engine:
    """Instantiate the backend named by ``cfg.backend``; ``options`` go to its constructor
    (e.g. ``budget=`` for the API backends). An API engine with ``batch`` set becomes a
    :class:`~mentalchat.engine.batch.BatchEngine` (its batches kept in memory: stages that own a
    run folder call the batch driver with a journal there instead)."""
    if cfg.batch is not None and cfg.is_http:
        from mentalchat.engine.batch import BatchEngine

        return BatchEngine(cfg, **options)
    return backend_class(cfg.backend)(cfg, **options)
