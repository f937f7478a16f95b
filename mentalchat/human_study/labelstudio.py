"""``push`` and ``pull``: a study folder to and from a running Label Studio server (``label-studio-sdk``).

One project per rater: Label Studio Community has no per-task annotator assignment, so a
rater's own project is what assigns them their items, in their own shuffled order ("Sequential
sampling" shows tasks in import order). The API key comes from ``LABEL_STUDIO_API_KEY`` only
(a legacy token or a personal access token; the SDK handles both) and is never written to the
study folder; the server URL and project ids go to ``labelstudio.json`` so ``pull`` finds them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mentalchat.errors import InputError, UsageError
from mentalchat.io import atomic_path, write_json_atomic
from mentalchat.secrets import scrub

from .study import read_study, tasks_file

__all__ = ["API_KEY_ENV", "PROJECTS_FILE", "URL_ENV", "pull_study", "push_study"]

API_KEY_ENV = "LABEL_STUDIO_API_KEY"
URL_ENV = "LABEL_STUDIO_URL"
PROJECTS_FILE = "labelstudio.json"
EXPORT_DIR = "export"


class LabelStudioError(InputError):
    """The server refused or could not be reached; the message says which call and never the key."""


def _client(url: str | None, timeout_s: float) -> tuple[Any, str]:
    url = url or os.environ.get(URL_ENV)
    if not url:
        raise UsageError(f"no Label Studio server: pass --url or set {URL_ENV}")
    key = os.environ.get(API_KEY_ENV)
    if not key:
        raise UsageError(f"no Label Studio API key: set {API_KEY_ENV} (Account & Settings -> Access token)")
    try:
        from label_studio_sdk import LabelStudio
    except ImportError:
        raise UsageError("push/pull need label-studio-sdk: pip install 'mentalchat[humanstudy]'") from None
    return LabelStudio(base_url=url.rstrip("/"), api_key=key, timeout=timeout_s), url.rstrip("/")


def _call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001  (the SDK raises httpx's errors and its own ApiError)
        status = getattr(exc, "status_code", None)
        body = getattr(exc, "body", None)
        detail = f"HTTP {status}: {body}" if status else f"{type(exc).__name__}: {exc}"
        raise LabelStudioError(scrub(f"Label Studio {what} failed: {detail}",
                                     [os.environ.get(API_KEY_ENV, "")])) from None


def push_study(folder: str | Path, url: str | None = None, *, force: bool = False,
               timeout_s: float = 60.0) -> dict[str, Any]:
    """Create one project per rater on the server and import that rater's tasks; returns the project map."""
    folder = Path(folder)
    study = read_study(folder)
    record = folder / PROJECTS_FILE
    if record.is_file() and not force:
        raise UsageError(f"{record}: this study was pushed already (projects {json.loads(record.read_text())['projects']}); "
                         "pass --force to create new projects")
    client, base = _client(url, timeout_s)
    projects: dict[str, int] = {}
    for rater in study["raters"]:
        tasks = json.loads(tasks_file(folder, rater).read_text(encoding="utf-8"))
        project = _call(f"creating the project of rater {rater!r}", client.projects.create,
                        title=f"{study['name']} · {rater}"[:50],
                        description=(f"Rating study {study['name']!r}, rater {rater}: {len(tasks)} replies. "
                                     "Rate every quality; who wrote a reply is hidden."),
                        label_config=study["label_config"], maximum_annotations=1,
                        sampling="Sequential sampling", show_skip_button=False)
        _call(f"importing the tasks of rater {rater!r}", client.projects.import_tasks, id=project.id, request=tasks)
        projects[rater] = int(project.id)
    out = {"url": base, "projects": projects}
    write_json_atomic(record, out)
    return out


def pull_study(folder: str | Path, url: str | None = None, *, timeout_s: float = 60.0) -> dict[str, Path]:
    """Download each rater's project as Label Studio JSON (every task, rated or not) to ``DIR/export/``."""
    folder = Path(folder)
    record = folder / PROJECTS_FILE
    if not record.is_file():
        raise UsageError(f"{folder}: no {PROJECTS_FILE}; run `human_study.py push` first (or import an export file)")
    pushed = json.loads(record.read_text(encoding="utf-8"))
    client, _ = _client(url or pushed.get("url"), timeout_s)
    paths: dict[str, Path] = {}
    for rater, project_id in pushed["projects"].items():
        chunks = _call(f"exporting project {project_id} (rater {rater!r})",
                       lambda pid=project_id: b"".join(client.projects.exports.download_sync(
                           pid, export_type="JSON", download_all_tasks=True)))
        try:
            tasks = json.loads(chunks)
        except json.JSONDecodeError as exc:
            raise LabelStudioError(f"Label Studio export of project {project_id} is not JSON: {exc.msg}") from None
        path = folder / EXPORT_DIR / f"{rater}.json"
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(tasks, indent=1, ensure_ascii=False), encoding="utf-8")
        paths[rater] = path
    return paths
