"""Derive mentalchat/data/paper_scores/scores.parquet from the authors' FastChat judgments.

Numbers only: question id, model, its base model and data configuration (the paper's naming),
judge, how its text parsed, score name (the seven metrics and the overall rating) and the score. No question, answer
or judge text. Run: python scripts/make_paper_scores.py ../shared/mentalchat16k/fastchat
"""

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mentalchat.core import fastchat
from mentalchat.core.model_names import paper_model_map
from mentalchat.core.rubric import OVERALL

src = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/mentalchat16k/fastchat")
out = Path(__file__).resolve().parents[1] / "mentalchat" / "data" / "paper_scores" / "scores.parquet"
j = fastchat.read_fastchat_dir(src, paper_model_map()).judgments.to_pylist()
rows, seen = [], set()
for r in j:
    base = {k: r[k] for k in ("question_id", "model", "base_model", "data_config", "judge", "parse_status")}
    rows.append({**base, "metric": r["metric"], "score": r["score"]})
    key = (r["question_id"], r["model"], r["judge"])
    if key not in seen:
        seen.add(key)
        rows.append({**base, "metric": OVERALL, "score": r["overall"]})
rows.sort(key=lambda r: (r["judge"], r["model"], int(r["question_id"]), r["metric"]))
table = pa.Table.from_pylist(rows, schema=pa.schema([
    ("question_id", pa.string()), ("model", pa.string()), ("base_model", pa.string()), ("data_config", pa.string()),
    ("judge", pa.string()), ("parse_status", pa.string()), ("metric", pa.string()), ("score", pa.float64())]))
pq.write_table(table, out, compression="zstd", compression_level=19, use_dictionary=True)
print(f"{table.num_rows} rows -> {out} ({out.stat().st_size / 1024:.0f} KiB)")
