"""The bundled numbers-only table of the paper's scores: its shape, its agreement with the authors'
files, and the pipeline's paper-reference report."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pyarrow.parquet as pq
import pytest

from mentalchat.core.paper_scores import PAPER_REPORT_TITLE, bundled_paper_scores, read_paper_scores
from mentalchat.core.rubric import METRICS


def test_the_bundle_is_numbers_only_and_complete() -> None:
    raw = pq.read_table(bundled_paper_scores())
    assert raw.column_names == ["question_id", "model", "base_model", "data_config", "judge", "parse_status",
                                "metric", "score"]
    assert (bundled_paper_scores().parent / "README.md").read_text().count("arXiv 2503.13509") == 1
    t = read_paper_scores().to_pandas()
    assert t["model"].nunique() == 31 and set(t["judge"]) == {"gemini-pro", "gpt-4-1106-preview"}
    assert t.groupby(["model", "judge"])["question_id"].nunique().eq(200).all()
    assert set(t["metric"]) == set(METRICS) and t["explanation"].isna().all() and t["raw_text"].isna().all()
    assert set(t["data_config"]) == {"base", "synthetic", "interview", "combined", "baseline"}


@pytest.mark.shared
def test_the_bundle_equals_the_authors_files(shared_data: Path) -> None:
    from mentalchat.core import fastchat
    from mentalchat.core.model_names import paper_model_map

    cols = ["question_id", "model", "base_model", "data_config", "judge", "metric", "score", "overall", "parse_status"]
    ours = read_paper_scores().to_pandas()[cols]
    theirs = fastchat.read_fastchat_dir(shared_data / "fastchat", paper_model_map()).judgments.to_pandas()[cols]
    key = ["judge", "model", "question_id", "metric"]
    pd.testing.assert_frame_equal(ours.sort_values(key).reset_index(drop=True),
                                  theirs.sort_values(key).reset_index(drop=True))


def test_the_pipeline_renders_the_paper_reference(tmp_path: Path) -> None:
    from mentalchat.pipeline.run import PAPER_REPORT_DIR, _paper_reference
    from mentalchat.stats.config import StatsConfig

    said: list[str] = []
    plan = SimpleNamespace(configs={"stats": StatsConfig(bootstrap=20)})
    md = _paper_reference(plan, tmp_path, said.append)
    assert md == tmp_path / PAPER_REPORT_DIR / "report.md" and md.read_text().startswith(f"# {PAPER_REPORT_TITLE}")
    assert "**synthetic** wins most often" in md.read_text()  # GPT-4's verdict in the authors' scores
    assert said and "paper reference" in said[0]
