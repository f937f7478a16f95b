"""The event loop thread every HTTP engine of a process shares.

Why one loop: the SDK clients, limiters and budgets of the API engines are asyncio objects bound
to the loop that created them. Running every engine's calls on one background loop thread lets
:meth:`~mentalchat.engine.http.HTTPEngine.chat_batch` be called from plain threads (the judge's
worker pool) and from inside a running event loop (a Ray async actor, through
:func:`run_on_loop`) alike. The thread is restarted after a fork.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["background_loop", "run_on_loop", "run_sync"]

T = TypeVar("T")


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.pid = os.getpid()
        self.thread = threading.Thread(target=self._run, name="mentalchat-http-loop", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()


_LOOP: _LoopThread | None = None
_LOOP_LOCK = threading.Lock()


def background_loop() -> asyncio.AbstractEventLoop:
    """The event loop thread shared by every HTTP engine of this process (started on first use)."""
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None or _LOOP.pid != os.getpid() or not _LOOP.thread.is_alive():
            _LOOP = _LoopThread()
        return _LOOP.loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the background loop and wait for it (from any thread but that loop's own)."""
    loop = background_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coro.close()
        raise RuntimeError("a blocking engine call was made from the engine loop itself; use `await engine.achat_batch(...)`")
    fut = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return fut.result()
    except BaseException:
        fut.cancel()  # e.g. KeyboardInterrupt in the caller: stop the calls too
        raise


async def run_on_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` on the background loop from any running loop without blocking it."""
    loop = background_loop()
    if asyncio.get_running_loop() is loop:
        return await coro
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))
