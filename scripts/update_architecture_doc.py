"""Rewrite the tables section of docs/architecture.md from mentalchat.schemas (run after schema edits)."""

from __future__ import annotations

import re
from pathlib import Path

from mentalchat.schemas import render_markdown

BEGIN, END = "<!-- tables:begin -->", "<!-- tables:end -->"

if __name__ == "__main__":
    path = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
    doc = path.read_text(encoding="utf-8")
    new = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: f"{BEGIN}\n{render_markdown()}{END}", doc, flags=re.S)
    path.write_text(new, encoding="utf-8")
    print(f"updated {path}")
