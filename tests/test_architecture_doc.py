"""docs/architecture.md embeds the table registry's rendering; this keeps the two in step."""

from __future__ import annotations

import re
from pathlib import Path

from mentalchat.schemas import TABLES, render_markdown

BEGIN, END = "<!-- tables:begin -->", "<!-- tables:end -->"


def _embedded(doc: str) -> str:
    match = re.search(re.escape(BEGIN) + r"\n(.*?)" + re.escape(END), doc, re.S)
    assert match, "docs/architecture.md lacks the tables markers"
    return match.group(1)


def test_architecture_doc_lists_current_tables(repo_root: Path) -> None:
    doc = (repo_root / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert _embedded(doc) == render_markdown(), (
        "docs/architecture.md is out of date: run `python scripts/update_architecture_doc.py`"
    )
    for name in TABLES:
        assert f"`{name}`" in doc


def test_architecture_doc_names_every_module(repo_root: Path) -> None:
    """The map stays true: a module added to the package must be named in docs/architecture.md."""
    doc = (repo_root / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`([A-Za-z_][\w./]*)`", doc))
    stems = {Path(n).stem for n in named} | {n.split(".")[0] for n in named}
    package = repo_root / "mentalchat"
    missing = sorted(
        str(p.relative_to(repo_root))
        for p in package.rglob("*.py")
        if p.name != "__init__.py" and p.stem not in stems
    )
    assert not missing, f"docs/architecture.md does not name: {missing}"
