"""The bundled numbers-only table of the paper's judge scores, as a ``judgments`` table.

Why bundled: a first report from the quickstart's tiny models is all ties; beside it, the same
statistics over the authors' published GPT-4 and Gemini scores show what the tables look like
when models differ. ``mentalchat/data/paper_scores/README.md`` says where the numbers come from.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mentalchat.core.rubric import METRICS, OVERALL
from mentalchat.schemas import JUDGMENTS

__all__ = ["PAPER_REPORT_TITLE", "bundled_paper_scores", "read_paper_scores"]

PAPER_REPORT_TITLE = ("The paper's evaluation, recomputed from the authors' published judge scores "
                      "(MentalChat16K, Xu et al. 2025; bundled numbers only)")


def bundled_paper_scores() -> Path:
    return Path(__file__).resolve().parents[1] / "data" / "paper_scores" / "scores.parquet"


def read_paper_scores(path: str | Path | None = None) -> pa.Table:
    """One ``judgments`` row per (question, model, judge, metric); the overall rating in ``overall``."""
    rows = pq.read_table(path or bundled_paper_scores()).to_pylist()
    overall = {(r["question_id"], r["model"], r["judge"]): r["score"] for r in rows if r["metric"] == OVERALL}
    out = []
    for r in rows:
        if r["metric"] not in METRICS:
            continue
        out.append({**r, "overall": overall.get((r["question_id"], r["model"], r["judge"])),
                    "prompt_version": "paper"})
    return JUDGMENTS.from_rows(out)
