"""Small judgments tables built by hand for the statistics tests."""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from mentalchat.core.rubric import METRICS
from mentalchat.schemas import JUDGMENTS


def judgments(items: Iterable[tuple], *, status: str = "ok") -> pa.Table:
    """Rows from (question_id, model, base_model, data_config, judge, scores[7] | None, overall)."""
    rows = []
    for qid, model, base, cfg, judge, scores, overall in items:
        for i, metric in enumerate(METRICS):
            score = None if scores is None else scores[i]
            rows.append({"question_id": str(qid), "model": model, "base_model": base, "data_config": cfg,
                         "judge": judge, "metric": metric, "score": score, "overall": overall,
                         "parse_status": status if scores is not None else "unparsed"})
    return JUDGMENTS.from_rows(rows)
