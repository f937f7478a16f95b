"""A study folder on disk: what ``export`` writes and ``push`` / ``import`` read.

Layout (``DIR``)::

    study.json              design parameters, counts per stratum and rater (no model names per item)
    labeling_config.xml     the rating page
    tasks/<rater>.json      each rater's tasks, Label Studio JSON, in that rater's order
    key/unblinding_key.json item id -> question and model (keep it away from the raters)

The folder is written under a temporary name and renamed, so a reader never sees half a study.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from mentalchat.core.questions import load_questions
from mentalchat.errors import InputError
from mentalchat.io import atomic_dir, atomic_path
from mentalchat.schemas import read_table

from .design import StudyDesign, design_study
from .label_config import labeling_config, tasks_for

__all__ = ["KEY_FILE", "STUDY_FILE", "export_study", "read_study", "tasks_file"]

STUDY_FILE = "study.json"
CONFIG_FILE = "labeling_config.xml"
KEY_FILE = Path("key") / "unblinding_key.json"


def tasks_file(folder: str | Path, rater: str) -> Path:
    return Path(folder) / "tasks" / f"{rater}.json"


def _dump(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def export_study(
    answers: str | Path, questions: str | Path, output: str | Path, *, raters: list[str], per_rater: int,
    overlap: float, seed: int = 0, key: str | Path | None = None, name: str | None = None,
) -> StudyDesign:
    """Design the study and write its folder (and the key, to ``key`` when given, else ``DIR/key/``)."""
    table = read_table(answers, "answers")
    design = design_study(table, load_questions(questions), raters, per_rater, overlap, seed)
    config = labeling_config()
    manifest = {
        "name": name or Path(output).name,
        "raters": design.raters, "per_rater": design.per_rater, "shared_items": design.n_shared,
        "overlap": overlap, "seed": seed, "distinct_items": len(design.items), "strata": design.strata, "left_out": design.left_out,
        "answers": str(answers), "questions": str(questions),
        "labeling_config_sha256": hashlib.sha256(config.encode()).hexdigest(),
        "key": str(key) if key else str(KEY_FILE),
    }
    with atomic_dir(output) as tmp:
        _dump(tmp / STUDY_FILE, manifest)
        (tmp / CONFIG_FILE).write_text(config, encoding="utf-8")
        for rater in design.raters:
            _dump(tasks_file(tmp, rater), tasks_for(design, rater))
        if key is None:
            _dump(tmp / KEY_FILE, design.key())
    if key is not None:
        with atomic_path(key) as tmp_key:
            _dump(tmp_key, design.key())
    return design


def read_study(folder: str | Path) -> dict[str, Any]:
    """The study manifest plus its labeling config; an error names what is missing."""
    folder = Path(folder)
    path = folder / STUDY_FILE
    if not path.is_file():
        raise InputError(f"{folder}: not a study folder (no {STUDY_FILE}; make one with `human_study.py export`)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: not JSON: {exc.msg}") from None
    manifest["label_config"] = (folder / CONFIG_FILE).read_text(encoding="utf-8")
    return manifest
