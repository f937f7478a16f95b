"""Human ratings into a judge output folder: the raters' scores beside the LLM judges' rows.

The ratings CSV is read by :func:`mentalchat.core.human_ratings.read_human_ratings` (judge
``human:<rater>``); here they are kept in ``human_judgments.parquet`` and merged into
``judgments.parquet``, so a later judge run that rewrites the LLM rows keeps them and the
statistics compare raters and judges on the same items.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mentalchat.core.human_ratings import read_human_ratings
from mentalchat.core.model_names import paper_model_map
from mentalchat.schemas import get_table, read_table, write_table

__all__ = ["HUMAN_FILE", "import_human_ratings", "write_judgments"]

HUMAN_FILE = "human_judgments.parquet"


def write_judgments(llm: Any, output: Path) -> Path:
    """``judgments.parquet``: the LLM judges' rows plus any imported human ratings (judge ``human:<rater>``)."""
    import pyarrow as pa

    human_path = output / HUMAN_FILE
    table = llm
    if human_path.is_file():
        table = pa.concat_tables([llm, read_table(human_path, "judgments")])
    return write_table(table, output / "judgments.parquet", "judgments")


def import_human_ratings(csv_path: str | Path, output: str | Path) -> Path:
    """Import a ratings CSV (rater, question_id, model, metric columns) into ``output``'s judgments table.

    The ratings are kept in ``human_judgments.parquet`` too, so a later judge run that rewrites
    ``judgments.parquet`` keeps them.
    """
    import pyarrow.compute as pc

    output = Path(output)
    human = read_human_ratings(csv_path, paper_model_map())
    write_table(human, output / HUMAN_FILE, "judgments")
    main = output / "judgments.parquet"
    if main.is_file():
        existing = read_table(main, "judgments")
        llm = existing.filter(pc.invert(pc.starts_with(existing["judge"], "human:")))
    else:
        llm = get_table("judgments").empty()
    return write_judgments(llm, output)
