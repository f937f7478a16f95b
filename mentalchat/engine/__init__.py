"""One engine layer for every LLM call a stage makes.

Stages build :class:`ChatRequest` objects and call :func:`run_requests` (in-process or through Ray
Data) or :func:`run_on_dataset` (inside a Ray Data pipeline). The backend (vLLM, an
OpenAI-compatible endpoint, Gemini, transformers) comes from the :class:`EngineConfig`.
"""

from mentalchat.engine.base import Engine, create_engine, register_backend
from mentalchat.engine.config import EngineConfig, HTTPOptions, TransformersOptions, VLLMOptions
from mentalchat.engine.types import ChatMessage, ChatRequest, ChatResult, SamplingConfig

__all__ = [
    "ChatMessage",
    "ChatRequest",
    "ChatResult",
    "Engine",
    "EngineConfig",
    "HTTPOptions",
    "SamplingConfig",
    "TransformersOptions",
    "VLLMOptions",
    "create_engine",
    "register_backend",
    "run_on_dataset",
    "run_requests",
    "run_rounds",
]


def __getattr__(name: str):  # lazy: the runner imports Ray
    if name in ("run_requests", "run_rounds", "run_on_dataset"):
        from mentalchat.engine import runner

        return getattr(runner, name)
    raise AttributeError(name)
