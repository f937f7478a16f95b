"""The stats stage end to end: tables, report, figures, CLI, and the paper's FastChat files."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mentalchat.core.rubric import ALL_SCORE_NAMES, METRICS
from mentalchat.io import read_done_marker
from mentalchat.schemas import QA_PAIRS, TABLES, read_table, write_table
from mentalchat.stats.config import StatsConfig
from mentalchat.stats.run import run_stats
from mentalchat.testing.judgments import synthetic_judgments

REPO = Path(__file__).resolve().parents[2]
TABLE_NAMES = ["means", "gains", "wins", "agreement", "coverage", "mixed_effects", "length_control", "safety",
               "judge_controls", "pairwise_wins"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stats-in")
    judg = write_table(synthetic_judgments(60, bases=("b1", "b2"), missing_rate=0.02, seed=4),
                       root / "judgments.parquet", "judgments")
    human = root / "ratings.csv"
    with open(human, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["rater", "question_id", "model", *METRICS, "overall"])
        for q in range(1, 31):
            for model in ("b1", "b1-synthetic"):
                w.writerow(["ann", q, model, *[6 + (q + i) % 4 for i in range(7)], 7])
    rows = []
    for i in range(40):
        src = "synthetic" if i % 3 else "interview"
        rows.append({"id": f"id{i}", "instruction": "Answer kindly.", "input": "word " * (10 + i),
                     "output": "reply " * (30 + 2 * i), "source": src,
                     "topic": ["anxiety", "grief", "sleep"][i % 3] if src == "synthetic" else None,
                     "page_ref": None if src == "synthetic" else f"t{i}:1", "generator_model": "g",
                     "prompt_version": "v1", "crisis_flag": i % 10 == 0,
                     "crisis_escalated": True if i % 10 == 0 else None})
    ds = write_table(QA_PAIRS.from_rows(rows), root / "qa_pairs.parquet", "qa_pairs")
    return {"judgments": judg, "human": human, "dataset": ds}


def test_run_writes_every_table_figure_and_report(inputs: dict[str, Path], tmp_path: Path) -> None:
    cfg = StatsConfig(bootstrap=200, model_map={"bases": [], "baselines": [], "rules": []})
    out = tmp_path / "stats"
    res = run_stats(cfg, out, judgments=[inputs["judgments"]], human=[inputs["human"]],
                    dataset=inputs["dataset"])
    for name in [*TABLE_NAMES, "dataset_profile"]:
        table = read_table(out / f"{name}.parquet", name)
        assert table.column_names == TABLES[name].columns
        # without a judge folder and answers these stay empty (the report says why)
        assert (table.num_rows > 0) == (name not in {"length_control", "safety", "pairwise_wins"}), name
    prof = read_table(out / "dataset_profile.parquet", "dataset_profile").to_pandas()
    counts = prof[prof["facet"] == "source"].set_index("key")["value"].to_dict()
    assert counts == {"interview": 14.0, "synthetic": 26.0}
    assert prof[(prof["facet"] == "crisis") & (prof["key"] == "flagged")]["value"].item() == 4
    med = prof[(prof["facet"] == "input_words") & (prof["group"] == "all") & (prof["key"] == "p50")]
    assert med["value"].item() == 29.5  # inputs of 10..49 words
    means = read_table(out / "means.parquet", "means").to_pandas()
    assert set(means["metric"]) == set(ALL_SCORE_NAMES)
    assert {"judge-x", "judge-y", "human:ann"} == set(means["judge"])
    agr = read_table(out / "agreement.parquet", "agreement").to_pandas()
    pairs = agr[agr["scope"] == "pair"]
    assert len(pairs.groupby(["evaluator_a", "evaluator_b"])) == 3  # two judges and a human
    human_pair = pairs[(pairs["evaluator_a"] == "human:ann") & (pairs["metric"] == METRICS[0])]  # sorted names
    assert 50 < human_pair["n_items"].iloc[0] <= 60  # 30 questions × 2 models, some unscored by the judge
    for stat in ("kappa", "kappa_quadratic", "alpha_ordinal", "spearman", "icc", "exact_agreement", "mean_diff"):
        assert human_pair[f"{stat}_ci_low"].notna().all() and human_pair[f"{stat}_ci_high"].notna().all(), stat
    assert set(human_pair["pair_kind"]) == {"judge-human"}
    assert res.unmapped == [] and res.report_md.is_file()
    assert {p.name for p in (out / "figures").glob("*.png")} == {
        "evaluator_scores.png", "model_comparison.png", "gains.png", "agreement.png",
        "dataset_composition.png", "topics.png", "lengths.png"}
    md = res.report_md.read_text()
    for heading in ("## Headline", "## Coverage", "## Mean scores", "## Gains over the base model",
                    "## Which configuration wins", "## Agreement between evaluators", "## Dataset",
                    "## Judge reliability", "## Safety", "## Mixed-effects model", "## Length control",
                    "### Judges against human raters"):
        assert heading in md
    # no judge folder, no answers: each control says it was not run (never silently missing)
    assert "reliability controls were not run" in md and "Position bias was not measured" in md
    assert "safety check was not run" in md and "Not run: no answers among the inputs" in md
    html = res.report_html.read_text()
    assert html.count("data:image/png;base64,") == 7
    assert not re.search(r'src="(?!data:)', html)  # self-contained: no external files
    marker = read_done_marker(out)
    assert marker["stage"] == "stats" and marker["timings"]["total"] > 0


def test_report_numbers_come_from_the_tables(inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "stats"
    run_stats(StatsConfig(bootstrap=100, figures=False), out, judgments=[inputs["judgments"]])
    md = (out / "report.md").read_text()
    means = read_table(out / "means.parquet", "means").to_pandas()
    row = means[(means["model"] == "b2-combined") & (means["judge"] == "judge-y")
                & (means["metric"] == "mean_of_7")].iloc[0]
    assert f"{row['mean']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]" in md
    gains = read_table(out / "gains.parquet", "gains").to_pandas()
    g = gains[(gains["model"] == "b1-synthetic") & (gains["judge"] == "judge-x")
              & (gains["metric"] == "mean_of_7")].iloc[0]
    assert f"{g['diff']:.2f} [{g['diff_ci_low']:.2f}, {g['diff_ci_high']:.2f}]" in md
    assert "figures" not in {p.name for p in out.iterdir()}


def test_failed_run_leaves_no_output(tmp_path: Path) -> None:
    out = tmp_path / "stats"
    with pytest.raises(Exception, match="no such file"):
        run_stats(StatsConfig(), out, judgments=[tmp_path / "missing.parquet"])
    assert not out.exists()
    assert not list(tmp_path.glob(".stats*"))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "jobs" / "stats.py"), *args], capture_output=True,
                          text=True, cwd=REPO, timeout=600)


def test_cli(inputs: dict[str, Path], tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("stats:\n  bootstrap: 50\n  figures: false\n")
    out = tmp_path / "out"
    proc = _cli("--config", str(config), "--judgments", str(inputs["judgments"]), "--output", str(out),
                "seed=3")
    assert proc.returncode == 0, proc.stderr
    assert "report:" in proc.stdout and (out / "report.html").is_file()
    bad = _cli("--config", str(config), "--judgments", str(inputs["judgments"]), "--output", str(out),
               "bootstrap=-1")
    assert bad.returncode == 2 and "stats.bootstrap" in bad.stderr
    none = _cli("--config", str(config), "--output", str(out))
    assert none.returncode == 2 and "--judgments" in none.stderr


@pytest.mark.shared
def test_reproduction_on_the_authors_files(shared_data: Path, tmp_path: Path) -> None:
    """The documented reproduction command, with fewer resamples to keep the test short."""
    out = tmp_path / "paper"
    proc = _cli("--config", "configs/paper.yaml", "--fastchat", str(shared_data / "fastchat"),
                "--output", str(out), "bootstrap=200")
    assert proc.returncode == 0, proc.stderr
    means = read_table(out / "means.parquet", "means").to_pandas()
    assert means["model"].nunique() == 31 and set(means["judge"]) == {"gpt-4-1106-preview", "gemini-pro"}
    assert len(means) == 31 * 2 * len(ALL_SCORE_NAMES)
    gains = read_table(out / "gains.parquet", "gains").to_pandas()
    assert len(gains) == 7 * 3 * 2 * len(ALL_SCORE_NAMES)
    wins = read_table(out / "wins.parquet", "wins").to_pandas()
    assert set(wins["n_bases"]) == {7}
    cov = read_table(out / "coverage.parquet", "coverage").to_pandas()
    assert cov["n_items"].sum() == 2 * 31 * 200  # nothing dropped
    # fine-tuning helps on average under both judges (the paper's main claim)
    m7 = gains[gains["metric"] == "mean_of_7"]
    assert (m7.groupby("judge")["diff"].mean() > 0).all()
    agr = read_table(out / "agreement.parquet", "agreement").to_pandas()
    assert agr["kappa_quadratic"].dropna().between(0, 1).all()
    marker = json.loads((out / "_MENTALCHAT_DONE.json").read_text())
    assert marker["unmapped"] == []
    # the controls the authors' files allow: lengths from model_answer/, empty answers as judged
    assert marker["controls_inputs"] == {"reliability": False, "crisis": False, "pairwise": False, "answers": True}
    lc = read_table(out / "length_control.parquet", "length_control").to_pandas()
    assert lc.groupby(["judge", "metric"])["model"].nunique().eq(31).all()
    assert (lc.drop_duplicates(["judge", "metric"])["slope_per_100_words"] < 0).all()  # measured: about -0.1
    controls = read_table(out / "judge_controls.parquet", "judge_controls").to_pandas().set_index(["judge", "check"])
    gpt = controls.loc[("gpt-4-1106-preview", "empty_answer")]
    assert gpt["status"] == "passed" and gpt["n"] == 3 and gpt["value"] == 1.0  # "It's", "ether." etc.
    assert controls.loc[("gemini-pro", "empty_answer"), "status"] == "not run"  # $ERROR$ on question 93
    assert (controls.xs("position_bias", level="check")["status"] == "not run").all()
    mixed = read_table(out / "mixed_effects.parquet", "mixed_effects").to_pandas()
    m7 = mixed[mixed["metric"] == "mean_of_7"].set_index(["judge", "data_config"])["estimate"]
    assert m7.loc[("gpt-4-1106-preview", "synthetic")] == pytest.approx(1.77, abs=0.02)
    md = (out / "report.md").read_text()
    for heading in ("## Judge reliability", "## Safety", "## Length control", "## Mixed-effects model"):
        assert heading in md
    assert "safety check was not run" in md and "reliability controls were not run" in md


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A judge stage folder (judgments, reliability, crisis, pairwise) and the answers table."""
    import numpy as np
    import pyarrow as pa

    from mentalchat.schemas import ANSWERS, CRISIS, RELIABILITY

    from .test_controls import pairwise_frame, reliability_frame
    from .test_safety import crisis_frame

    root = tmp_path_factory.mktemp("judge")
    table = synthetic_judgments(40, bases=("b1", "b2"), seed=9)
    write_table(table, root / "judgments.parquet", "judgments")
    write_table(pa.Table.from_pandas(reliability_frame("judge-y", "judge-x"), schema=RELIABILITY.schema,
                                     preserve_index=False), root / "reliability.parquet", "reliability")
    crisis = crisis_frame()
    crisis["model"] = crisis["model"].map({"m-synthetic": "b1-synthetic", "m": "b1"})
    crisis["base_model"] = "b1"
    write_table(pa.Table.from_pandas(crisis, schema=CRISIS.schema, preserve_index=False),
                root / "crisis.parquet", "crisis")
    pw = pairwise_frame(judge="judge-x")
    for col in ("model_a", "model_b", "winner"):
        pw[col] = pw[col].map({"m-tuned": "b1-synthetic", "m-base": "b1", "tie": "tie", None: None})
    pw.to_parquet(root / "pairwise.parquet")
    rng = np.random.default_rng(2)
    models = sorted(set(table.column("model").to_pylist()))
    answers = [{"question_id": str(q), "model_id": m, "answer": "word " * int(rng.integers(20, 200))}
               for q in range(1, 41) for m in models]
    ans = write_table(ANSWERS.from_rows(answers), root.parent / "answers.parquet", "answers")
    return {"judge_dir": root, "answers": ans}


def test_judge_folder_fills_reliability_safety_and_length_sections(judge_dir: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "stats"
    res = run_stats(StatsConfig(bootstrap=100), out, judge_dirs=[judge_dir["judge_dir"]],
                    answers=[judge_dir["answers"]])
    tables = {n: read_table(out / f"{n}.parquet", n).to_pandas() for n in TABLE_NAMES}
    assert all(not tables[n].empty for n in TABLE_NAMES)
    controls = tables["judge_controls"].set_index(["judge", "check"])
    assert controls.loc[("judge-y", "empty_answer"), "status"] == "FAILED"
    assert controls.loc[("judge-x", "position_bias"), "status"] == "FAILED"  # 4 of 10 pairs flip
    assert controls.loc[("judge-y", "position_bias"), "status"] == "not run"
    safety = tables["safety"]
    assert set(safety["checker"]) == {"rule", "judge-x"} and set(safety["model"]) == {"b1", "b1-synthetic"}
    lc = tables["length_control"]
    assert set(lc["judge"]) == {"judge-x", "judge-y"} and set(lc["metric"]) == {"mean_of_7", "overall"}
    assert lc["slope_ci_low"].notna().all()
    mixed = tables["mixed_effects"]
    assert len(mixed) == 2 * 9 * 3 and mixed["estimate"].notna().all()
    md = res.report_md.read_text()
    assert "**FAILED**: `judge-y` fails the empty answer control" in md
    assert "<strong>FAILED</strong>: <code>judge-y</code> fails" in res.report_html.read_text()
    assert "**FAILED**: `judge-x` fails the position bias control" in md
    assert "escalation · rule" in md and "mean_of_7 · judge-x" in md  # safety next to the metrics
    assert "not run: position bias for `judge-y`" in md
    assert "not run" not in md.split("## Length control")[1].split("##")[0]
    assert {"reliability.png", "safety.png", "length_control.png"} <= {p.name for p in (out / "figures").glob("*.png")}
    marker = read_done_marker(out)
    assert marker["controls_inputs"] == {"reliability": True, "crisis": True, "pairwise": True, "answers": True}
    proc = _cli("--config", "configs/paper.yaml", "--judge-dir", str(judge_dir["judge_dir"]),
                "--answers", str(judge_dir["answers"]),
                "--output", str(tmp_path / "cli"), "bootstrap=20", "figures=false", "mixed_effects=false")
    assert proc.returncode == 0, proc.stderr
    assert "FAILED" in (tmp_path / "cli" / "report.md").read_text()


def test_pipeline_hands_the_judge_folder_and_answers_to_stats(judge_dir: dict[str, Path], tmp_path: Path) -> None:
    """What ``run_pipeline`` does at stage 5: the judge folder (with its control tables) and the
    generate folder's answers reach the report, as in ``make quickstart``."""
    import shutil
    from types import SimpleNamespace

    from mentalchat.stats.stage import StatsStage

    answers_dir = tmp_path / "answers"
    answers_dir.mkdir()
    shutil.copy(judge_dir["answers"], answers_dir / "answers.parquet")
    folders = {"judge": judge_dir["judge_dir"], "generate": answers_dir}
    ctx = SimpleNamespace(
        folder=tmp_path / "report", human=[], fastchat=[], runs=lambda s: s in folders,
        folder_of=lambda s: folders.get(s, tmp_path / s), dataset_file=lambda: None)
    facts = StatsStage().run(StatsConfig(bootstrap=20, figures=False, mixed_effects=False), ctx)
    assert {"judge_controls", "safety", "length_control", "pairwise_wins"} <= set(facts["tables"])
    md = Path(facts["report_md"]).read_text()
    assert "**FAILED**: `judge-y`" in md and "escalation · rule" in md and "slope per 100 words" in md
    assert read_done_marker(tmp_path / "report")["controls_inputs"]["answers"] is True
