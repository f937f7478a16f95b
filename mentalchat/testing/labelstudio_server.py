"""A real Label Studio server for tests: its own venv, SQLite, 127.0.0.1, a free port, stopped after.

Label Studio pins Django and friends that do not fit our venv, so it runs from
``.venv-labelstudio`` (``scripts/install_labelstudio.sh``). The admin user and its legacy API
token are created at first start from the environment (no prompt), and everything that would
reach the internet (the PyPI version check, Sentry, analytics) is switched off, so a start on a
closed network neither waits nor phones home. A cold start (migrations) took 23 s on 2 cores.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from mentalchat.engine.vllm_server import free_port

__all__ = ["LabelStudioServer", "default_venv"]


def default_venv() -> Path:
    """``<repo>/.venv-labelstudio`` (or ``$MENTALCHAT_LABEL_STUDIO_VENV``)."""
    env = os.environ.get("MENTALCHAT_LABEL_STUDIO_VENV")
    return Path(env) if env else Path(__file__).resolve().parents[2] / ".venv-labelstudio"


@dataclass
class LabelStudioServer:
    """``with LabelStudioServer(data_dir) as ls: ls.url, ls.token`` — a started server, stopped on exit."""

    data_dir: Path
    venv: Path = field(default_factory=default_venv)
    email: str = "admin@mentalchat.test"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    token: str = field(default_factory=lambda: secrets.token_hex(20))
    port: int = 0
    startup_timeout_s: float = 180.0
    proc: subprocess.Popen | None = None
    started_in_s: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.data_dir / "label-studio.log"

    def start(self) -> LabelStudioServer:
        exe = self.venv / "bin" / "label-studio"
        if not exe.is_file():
            raise FileNotFoundError(
                f"{exe} is missing: run scripts/install_labelstudio.sh (make test does) to create the server's venv"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        env = self._env()
        cmd = [str(exe), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(self.port),
               "--data-dir", str(self.data_dir), f"--username={self.email}", f"--password={self.password}",
               f"--user-token={self.token}"]
        t0 = time.monotonic()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = t0 + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Label Studio exited with {self.proc.returncode} before it answered; "
                                   f"log {self.log}:\n{self._tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        self.started_in_s = time.monotonic() - t0
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"Label Studio did not answer /health on {self.url} within {self.startup_timeout_s:.0f} s; "
                           f"log {self.log}:\n{self._tail()}")

    def invite_url(self) -> str:
        """The organisation's sign-up link, the way an admin invites raters (sign-up without one is off)."""
        req = urllib.request.Request(f"{self.url}/api/invite", headers={"Authorization": f"Token {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return self.url + json.loads(resp.read())["invite_url"]

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "DJANGO_"))}
        env.update({
            "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir), "DJANGO_DB": "sqlite",
            "LABEL_STUDIO_USERNAME": self.email, "LABEL_STUDIO_PASSWORD": self.password,
            "LABEL_STUDIO_USER_TOKEN": self.token, "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true", "LATEST_VERSION_CHECK": "false",
            "COLLECT_ANALYTICS": "false", "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",
            "FEATURE_FLAGS_OFFLINE": "true", "PYTHONUNBUFFERED": "1",
        })
        env.pop("VIRTUAL_ENV", None)
        return env

    def _tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass

    def __enter__(self) -> LabelStudioServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
