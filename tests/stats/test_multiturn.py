"""Multi-turn judgments in the stats stage: kept out of the single-turn tables, summarised per turn
in ``turn_means``, and reported in a "Multi-turn" section only when there are any."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats as sps

from mentalchat.core.rubric import METRICS
from mentalchat.schemas import ANSWERS, JUDGMENTS, SchemaError, read_table, write_table
from mentalchat.stats.config import StatsConfig
from mentalchat.stats.data import build_cube
from mentalchat.stats.multiturn import CONVERSATION_METRICS, turn_means_table
from mentalchat.stats.run import JudgeExtras, compute_tables, run_stats
from mentalchat.testing.judgments import synthetic_judgments

MODELS = {"b1": ("b1", "base"), "b1-synthetic": ("b1", "synthetic")}
JUDGES = ("judge-x", "judge-y")
N_MT = 24  # multi-turn questions


def _multi_turn(seed: int = 7, n_q: int = N_MT) -> pa.Table:
    """Two-turn questions judged per turn (7 metrics + overall) and as a whole (turn 0), with some
    unscored items and some conversations that stopped after turn 1."""
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(1, n_q + 1):
        qid = f"mt{q}"
        for model, (base, cfg) in MODELS.items():
            lift = 1.0 if cfg == "synthetic" else 0.0
            last = 1 if (q % 7 == 0 and cfg == "base") else 2  # turn 2 never asked
            for judge in JUDGES:
                for turn in range(1, last + 1):
                    scores = np.clip(np.rint(rng.normal(5.5 + lift - 0.4 * turn, 1.6, 7)), 1, 10)
                    unscored = q % 11 == 0 and turn == 2 and judge == "judge-y"
                    overall = None if unscored else float(np.clip(np.rint(scores.mean()), 1, 10))
                    for i, metric in enumerate(METRICS):
                        drop_one = q % 5 == 0 and i == 3 and turn == 1  # one metric unread: no mean_of_7
                        score = None if unscored or drop_one else float(scores[i])
                        rows.append({"question_id": qid, "model": model, "base_model": base, "data_config": cfg,
                                     "judge": judge, "metric": metric, "score": score, "overall": overall,
                                     "parse_status": "unparsed" if unscored else "ok", "turn": turn})
                for metric in CONVERSATION_METRICS:
                    score = None if (q == 3 and metric == "memory") else float(rng.integers(3, 11))
                    rows.append({"question_id": qid, "model": model, "base_model": base, "data_config": cfg,
                                 "judge": judge, "metric": metric, "score": score, "overall": None,
                                 "parse_status": "ok" if score is not None else "partial", "turn": 0})
    return JUDGMENTS.from_rows(rows)


@pytest.fixture(scope="module")
def single() -> pa.Table:
    return synthetic_judgments(30, bases=("b1",), gains={"base": 0.0, "synthetic": 1.0}, judges=JUDGES,
                               missing_rate=0.05, seed=2)


@pytest.fixture(scope="module")
def multi() -> pa.Table:
    return _multi_turn()


def _cfg(**kw) -> StatsConfig:
    return StatsConfig(bootstrap=300, mixed_effects=False, model_map={"bases": [], "baselines": [], "rules": []},
                       **kw)


# -- the single-turn tables do not see multi-turn rows ---------------------------------------------------
def test_existing_tables_equal_those_of_the_single_turn_rows(single: pa.Table, multi: pa.Table) -> None:
    cfg = _cfg()
    mixed = pa.concat_tables([single, multi])
    ref, ref_notes, _ = compute_tables(build_cube([single]), cfg, JudgeExtras())
    got, got_notes, _ = compute_tables(build_cube([mixed]), cfg, JudgeExtras())
    assert got.keys() == ref.keys() and got_notes == ref_notes
    for name in ref:
        pd.testing.assert_frame_equal(got[name], ref[name], obj=name)
    assert len(ref["means"]) > 0 and len(ref["gains"]) > 0
    # the multi-turn question ids are not in the cube at all
    assert not any(q.startswith("mt") for q in build_cube([mixed]).questions)


def test_v1_judgments_without_a_turn_column_still_read(single: pa.Table, tmp_path: Path) -> None:
    meta = dict(JUDGMENTS.metadata)
    meta[b"mentalchat.schema_version"] = b"1"
    old = single.drop_columns(["turn"]).replace_schema_metadata(meta)
    pq.write_table(old, tmp_path / "v1.parquet")
    back = read_table(tmp_path / "v1.parquet", "judgments")
    assert back["turn"].null_count == back.num_rows
    cube = build_cube([old])
    np.testing.assert_array_equal(cube.values, build_cube([single]).values)
    assert turn_means_table([old]).empty


def _answers(single: pa.Table, multi: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Answers of the single-turn items, and the same plus one answer per turn of the multi-turn ones."""
    s = single.select(["question_id", "model"]).to_pandas().drop_duplicates()
    rows = [{"question_id": q, "model_id": m, "answer": "word " * (20 + 3 * int(q) + len(m))}
            for q, m in zip(s["question_id"], s["model"], strict=True)]
    t = multi.select(["question_id", "model", "turn"]).to_pandas()
    t = t[t["turn"] > 0].drop_duplicates()
    extra = [{"question_id": q, "model_id": m, "answer": "turn " * (5 + int(k)), "turn": int(k)}
             for q, m, k in zip(t["question_id"], t["model"], t["turn"], strict=True)]
    return ANSWERS.from_rows(rows), ANSWERS.from_rows(rows + extra)


def _without_section(md: str) -> str:
    md = md.replace("[Multi-turn](#multi-turn) · ", "")  # its entry in the contents line
    return re.sub(r"## Multi-turn\n.*?(?=\n## )", "", md, flags=re.S).replace("\n\n\n", "\n\n")


def test_run_output_is_unchanged_by_multi_turn_rows_except_the_new_table_and_section(
        single: pa.Table, multi: pa.Table, tmp_path: Path) -> None:
    """Same input paths both times (the report names them): single-turn only, then mixed."""
    cfg = _cfg()
    src = tmp_path / "in"
    src.mkdir()
    answers_single, answers_mixed = _answers(single, multi)

    def run(judg: pa.Table, answers: pa.Table, out: Path) -> None:
        write_table(judg, src / "judgments.parquet", "judgments")
        write_table(answers, src / "answers.parquet", "answers")
        run_stats(cfg, out, judgments=[src / "judgments.parquet"], answers=[src / "answers.parquet"])

    run(single, answers_single, tmp_path / "single")
    run(pa.concat_tables([single, multi]), answers_mixed, tmp_path / "mixed")
    a = {p.relative_to(tmp_path / "single") for p in (tmp_path / "single").rglob("*") if p.is_file()}
    b = {p.relative_to(tmp_path / "mixed") for p in (tmp_path / "mixed").rglob("*") if p.is_file()}
    assert b - a == {Path("turn_means.parquet"), Path("figures/turn_means.png")}
    assert a - b == set()
    for rel in sorted(a):
        if rel.suffix in {".parquet", ".png"}:
            assert (tmp_path / "single" / rel).read_bytes() == (tmp_path / "mixed" / rel).read_bytes(), rel
    md_single = (tmp_path / "single" / "report.md").read_text()
    md_mixed = (tmp_path / "mixed" / "report.md").read_text()
    assert "## Multi-turn" not in md_single and "## Multi-turn" in md_mixed
    assert _without_section(md_mixed) == md_single
    html_single = (tmp_path / "single" / "report.html").read_text()
    html_mixed = (tmp_path / "mixed" / "report.html").read_text()
    assert '<h2 id="multi-turn">Multi-turn</h2>' not in html_single and '<h2 id="multi-turn">Multi-turn</h2>' in html_mixed
    assert "length control: no answers" not in md_single and "repeated" not in md_mixed


# -- turn_means against a hand computation -----------------------------------------------------------------
def _hand(multi: pa.Table) -> pd.DataFrame:
    """Per (model, judge, metric, turn) from the raw rows with numpy: mean, sd, n, n_items, and a
    percentile CI from scipy's bootstrap over the scored questions."""
    df = multi.to_pandas()
    per_turn = df[df["turn"] > 0]
    keys = ["question_id", "model", "judge", "turn"]
    wide = per_turn.set_index([*keys, "metric"])["score"].unstack("metric")
    items = per_turn.groupby(keys).agg(overall=("overall", "first")).reindex(wide.index)
    m7 = wide[list(METRICS)].to_numpy()
    long = [per_turn[["question_id", "model", "judge", "turn", "metric", "score"]],
            items.reset_index().rename(columns={"overall": "score"}).assign(metric="overall"),
            items.reset_index().assign(metric="mean_of_7",
                                       score=np.where(np.isnan(m7).any(axis=1), np.nan, m7.mean(axis=1)))
            .drop(columns="overall"),
            df[df["turn"] == 0][["question_id", "model", "judge", "turn", "metric", "score"]]]
    rows = []
    for (model, judge, metric, turn), d in pd.concat(long).groupby(["model", "judge", "metric", "turn"]):
        x = d["score"].dropna().to_numpy(dtype=float)
        ci = sps.bootstrap((x,), np.mean, n_resamples=4000, method="percentile", confidence_level=0.95,
                           random_state=np.random.default_rng(1), vectorized=True).confidence_interval
        rows.append({"model": model, "judge": judge, "metric": metric, "turn": turn, "mean": float(np.mean(x)),
                     "sd": float(np.std(x, ddof=1)), "n": len(x), "n_items": len(d), "lo": ci.low, "hi": ci.high})
    return pd.DataFrame(rows)


def test_turn_means_match_a_hand_computation(multi: pa.Table, single: pa.Table) -> None:
    got = turn_means_table([single, multi], n_boot=4000, seed=3)
    assert list(got.columns) == ["model", "base_model", "data_config", "judge", "metric", "turn", "mean", "sd",
                                 "n", "n_items", "ci_low", "ci_high"]
    hand = _hand(multi)
    assert len(got) == len(hand) == 2 * 2 * (2 * 9 + 3)  # models × judges × (turns × 9 score names + 3)
    assert list(got["turn"].drop_duplicates()) == [1, 2, 0]
    m = got.merge(hand, on=["model", "judge", "metric", "turn"], validate="one_to_one")
    np.testing.assert_allclose(m["mean_x"], m["mean_y"], rtol=1e-12)
    np.testing.assert_allclose(m["sd_x"], m["sd_y"], rtol=1e-12)
    assert (m["n_x"] == m["n_y"]).all() and (m["n_items_x"] == m["n_items_y"]).all()
    # unscored items stay in n_items: a stopped conversation is not judged at all at turn 2
    row = m.set_index(["model", "judge", "metric", "turn"])
    assert row.loc[("b1", "judge-y", "overall", 2), "n_items_x"] == N_MT - 3  # q 7, 14, 21 stopped
    assert row.loc[("b1", "judge-y", "overall", 2), "n_x"] == N_MT - 3 - 2  # q 11, 22 unscored
    assert row.loc[("b1", "judge-x", "memory", 0), "n_x"] == N_MT - 1
    assert row.loc[("b1", "judge-x", "mean_of_7", 1), "n_x"] == N_MT - 4  # q 5, 10, 15, 20 lack a metric
    # bootstrap CIs (ours: over the judged questions; scipy: over the scored ones) agree closely
    np.testing.assert_allclose(m["ci_low"], m["lo"], atol=0.12)
    np.testing.assert_allclose(m["ci_high"], m["hi"], atol=0.12)
    assert (m["ci_low"] < m["mean_x"]).all() and (m["mean_x"] < m["ci_high"]).all()
    assert set(zip(got["model"], got["base_model"], got["data_config"], strict=True)) == {
        ("b1", "b1", "base"), ("b1-synthetic", "b1", "synthetic")}


def test_turn_means_empty_without_multi_turn_rows_and_strict_on_bad_rows(single: pa.Table, multi: pa.Table) -> None:
    assert turn_means_table([single]).empty
    df = multi.to_pandas()
    renamed = df.assign(metric=df["metric"].replace({"consistency": "Consistency"}))
    got = turn_means_table([pa.Table.from_pandas(renamed, preserve_index=False)], n_boot=0)
    assert set(got.loc[got["turn"] == 0, "metric"]) == set(CONVERSATION_METRICS)
    assert got["ci_low"].isna().all()  # no resamples: no CIs
    bad = df.assign(metric=df["metric"].replace({"memory": "recall"}))
    with pytest.raises(SchemaError, match="recall"):
        turn_means_table([pa.Table.from_pandas(bad, preserve_index=False)])
    with pytest.raises(SchemaError, match="repeated turn-0 rows"):
        turn_means_table([multi, multi.filter(pa.compute.equal(multi["turn"], 0))])


def test_report_section_only_with_multi_turn_rows(single: pa.Table, multi: pa.Table, tmp_path: Path) -> None:
    cfg = _cfg()
    write_table(pa.concat_tables([single, multi]), tmp_path / "j.parquet", "judgments")
    res = run_stats(cfg, tmp_path / "out", judgments=[tmp_path / "j.parquet"])
    tm = read_table(tmp_path / "out" / "turn_means.parquet", "turn_means").to_pandas()
    assert "turn_means" in res.tables and "turn_means" in res.figures
    md = res.report_md.read_text()
    section = md[md.index("## Multi-turn"):md.index("## Safety")]
    # the report's numbers are the table's: mean_of_7 of turn 2 for one model, and a conversation metric
    r = tm[(tm["model"] == "b1-synthetic") & (tm["judge"] == "judge-x") & (tm["metric"] == "mean_of_7")
           & (tm["turn"] == 2)].iloc[0]
    assert f"{r['mean']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]" in section
    c = tm[(tm["model"] == "b1") & (tm["judge"] == "judge-y") & (tm["metric"] == "risk_escalation")].iloc[0]
    assert f"{c['mean']:.2f} [{c['ci_low']:.2f}, {c['ci_high']:.2f}]" in section
    for text in ("| turn 1 | turn 2 |", "| consistency | memory | risk_escalation |", "judge-x · turn 2",
                 "figures/turn_means.png"):
        assert text in section, text
    assert "## Multi-turn" not in md.replace(section, "")
    shutil.rmtree(tmp_path / "out")
    write_table(single, tmp_path / "j.parquet", "judgments")
    res = run_stats(cfg, tmp_path / "out", judgments=[tmp_path / "j.parquet"])
    assert "Multi-turn" not in res.report_md.read_text() and "Multi-turn" not in res.report_html.read_text()
    assert not (tmp_path / "out" / "turn_means.parquet").exists() and "turn_means" not in res.tables
