"""The report's headline sentences say what the tables say."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mentalchat.schemas import read_table, write_table
from mentalchat.stats.config import StatsConfig
from mentalchat.stats.report import _kappa_words, headline, headline_sentences
from mentalchat.stats.run import run_stats
from mentalchat.testing.judgments import synthetic_judgments


def _run(tmp_path: Path, **kw) -> tuple[dict[str, pd.DataFrame], list[str], str]:
    judg = write_table(synthetic_judgments(40, bases=("b1",), seed=5, **kw), tmp_path / "j.parquet", "judgments")
    cfg = StatsConfig(bootstrap=100, model_map={"bases": [], "baselines": [], "rules": []})
    res = run_stats(cfg, tmp_path / "out", judgments=[judg])
    tables = {n: read_table(tmp_path / "out" / f"{n}.parquet", n).to_pandas()
              for n in ("means", "gains", "wins", "agreement", "judge_controls", "safety")}
    sentences = headline_sentences(headline(tables, cfg.fine_tuned_configs), tables, cfg.fine_tuned_configs)
    return tables, sentences, res.report_md.read_text()


def test_sentences_follow_the_tables(tmp_path: Path) -> None:
    tables, sentences, md = _run(tmp_path, gains={"base": 0.0, "synthetic": 1.5, "interview": 0.3, "combined": 0.8})
    w = tables["wins"]
    w = w[~w["metric"].isin(["overall", "mean_of_7"])]
    for judge in ("judge-x", "judge-y"):
        share = w[w["judge"] == judge].groupby("data_config")["is_winner"].mean()
        assert share.idxmax() == "synthetic"
        assert any(s.startswith(f"Under `{judge}`, **synthetic** wins most often") for s in sentences)
    g = tables["gains"]
    row = g[(g["judge"] == "judge-x") & (g["data_config"] == "synthetic") & (g["metric"] == "mean_of_7")].iloc[0]
    expect = f"b1 {row['diff']:+.2f} [{row['diff_ci_low']:+.2f}, {row['diff_ci_high']:+.2f}]"
    assert any(s.startswith("`synthetic` over its base under `judge-x`") and expect in s for s in sentences)
    a = tables["agreement"]
    k = a[(a["scope"] == "pair") & (a["metric"] == "overall")]["kappa_quadratic"].iloc[0]
    assert any(f"agree {_kappa_words(k)}ly" in s and f"{k:.2f}" in s for s in sentences)
    assert any("No judge control was run" in s for s in sentences)
    assert all(f"- {s}" in md for s in sentences)  # the report opens with them


def test_no_winner_is_said_plainly(tmp_path: Path) -> None:
    # A judge that scores everything alike (the quickstart's 135M judge): every configuration ties.
    from .conftest import judgments

    items = [(q, m, "b1", c, "flat-judge", [5] * 7, 5) for q in range(1, 11)
             for m, c in (("b1", "base"), ("b1-synthetic", "synthetic"), ("b1-interview", "interview"))]
    judg = write_table(judgments(items), tmp_path / "flat.parquet", "judgments")
    cfg = StatsConfig(bootstrap=50, model_map={"bases": [], "baselines": [], "rules": []})
    md = run_stats(cfg, tmp_path / "flat", judgments=[judg]).report_md.read_text()
    assert "- Under `flat-judge` no configuration stands out: each wins 100%" in md


def test_kappa_bands() -> None:
    assert [_kappa_words(k) for k in (-0.1, 0.1, 0.3, 0.5, 0.7, 0.9, float("nan"))] == [
        "poor", "slight", "fair", "moderate", "substantial", "almost perfect", "undefined"]
