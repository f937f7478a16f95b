"""Against a real Label Studio server: push, annotate through its API, pull, import, agreement.

The raters' scores are planted: a synthetic judgments table holds an LLM judge and three
"raters" scoring the same answers. The raters' scores travel through Label Studio (annotations
posted to its API, exported by ``pull``, unblinded by ``import``) and the agreement the stats
stage then reports must equal the agreement of the planted scores computed without Label Studio:
any mix-up in blinding, ordering, export parsing or unblinding changes the numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from mentalchat.cli import job_main
from mentalchat.core.rubric import METRICS
from mentalchat.errors import UsageError
from mentalchat.human_study.labelstudio import LabelStudioError, push_study
from mentalchat.schemas import ANSWERS, read_table, write_table
from mentalchat.stats.config import StatsConfig
from mentalchat.stats.run import run_stats
from mentalchat.testing.judgments import synthetic_judgments

from .conftest import ls_result

pytestmark = pytest.mark.slow
RATERS = ("r1", "r2", "r3")


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Answers for 16 questions x 4 models and everyone's planted scores for them."""
    root = tmp_path_factory.mktemp("planted")
    table = synthetic_judgments(16, bases=("b1",), judges=("judge-x", *RATERS), judge_noise=1.0, seed=11)
    keys = {(r["question_id"], r["model"], r["base_model"], r["data_config"]) for r in table.to_pylist()}
    answers = ANSWERS.from_rows([{"question_id": q, "model_id": m, "base_model": b, "data_config": c,
                                  "answer": f"reply {i}"} for i, (q, m, b, c) in enumerate(sorted(keys))])
    questions = root / "questions.jsonl"
    questions.write_text("".join(json.dumps({"question_id": q, "turns": [f"message {q}"]}) + "\n"
                                 for q in sorted({k[0] for k in keys}, key=int)))
    return {"root": root, "table": table, "answers": write_table(answers, root / "answers.parquet", "answers"),
            "questions": questions}


def _scores(table: pa.Table) -> dict[tuple[str, str, str], tuple[list[int], int]]:
    """(judge, question, model) -> (7 metric scores in rubric order, overall)."""
    out: dict = {}
    for r in table.to_pylist():
        scores, _ = out.setdefault((r["judge"], r["question_id"], r["model"]), ([None] * 7, r["overall"]))
        if r["score"] is not None:
            scores[METRICS.index(r["metric"])] = int(r["score"])
    return out


def _agreement(path: Path) -> pd.DataFrame:
    df = read_table(path / "agreement.parquet", "agreement").to_pandas()
    df = df[df["scope"] == "pair"].copy()
    a, b = (df[c].str.removeprefix("human:") for c in ("evaluator_a", "evaluator_b"))
    # Pairs in name order on both sides ("human:r1" sorts before "judge-x", "r1" after it); the
    # statistics compared below are symmetric in the pair.
    df["evaluator_a"], df["evaluator_b"] = a.where(a < b, b), b.where(a < b, a)
    return df.set_index(["evaluator_a", "evaluator_b", "metric"]).sort_index()


def test_push_annotate_pull_import_agreement(label_studio, planted, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from label_studio_sdk import LabelStudio

    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    study = tmp_path / "study"
    assert job_main("human-study", ["export", "--answers", str(planted["answers"]), "--questions",
                                    str(planted["questions"]), "--raters", ",".join(RATERS), "--per-rater", "20",
                                    "--overlap", "0.5", "--seed", "3", "--output", str(study)]) == 0
    assert job_main("human-study", ["push", "--study", str(study), "--url", label_studio.url]) == 0
    pushed = json.loads((study / "labelstudio.json").read_text())
    assert set(pushed["projects"]) == set(RATERS)
    assert label_studio.token not in json.dumps(pushed) and label_studio.token not in capsys.readouterr().out

    # The raters at work: each annotates their own project through the API, in the project's order.
    key = json.loads((study / "key" / "unblinding_key.json").read_text())["items"]
    planted_scores = _scores(planted["table"])
    client = LabelStudio(base_url=label_studio.url, api_key=label_studio.token)
    for rater, pid in pushed["projects"].items():
        tasks = list(client.tasks.list(project=pid, fields="all"))
        order = [t["data"]["item"] for t in json.loads((study / "tasks" / f"{rater}.json").read_text())]
        assert [t.data["item"] for t in tasks] == order  # the rater's shuffled order survives the import
        for t in tasks[:-1]:  # the last one stays unrated
            entry = key[t.data["item"]]
            scores, overall = planted_scores[rater, entry["question_id"], entry["model"]]
            client.annotations.create(id=t.id, result=ls_result(scores, int(overall), crisis=overall <= 3),
                                      lead_time=30.0)
    assert job_main("human-study", ["pull", "--study", str(study)]) == 0
    assert sorted(p.name for p in (study / "export").iterdir()) == [f"{r}.json" for r in RATERS]
    ratings = tmp_path / "ratings"
    assert job_main("human-study", ["import", "--study", str(study), "--output", str(ratings)]) == 0
    assert "r1 19, r2 19, r3 19; 3 tasks not rated yet" in capsys.readouterr().err

    human = read_table(ratings / "human_judgments.parquet", "judgments")
    assert human.num_rows == 3 * 19 * 7
    for r in human.to_pylist():  # every score landed on the answer it was given for
        rater = r["judge"].removeprefix("human:")
        scores, overall = planted_scores[rater, r["question_id"], r["model"]]
        assert r["score"] == scores[METRICS.index(r["metric"])] and r["overall"] == overall
    flags = read_table(ratings / "human_flags.parquet", "human_flags")
    assert flags.num_rows == 57 and pc.sum(flags["crisis_concern"]).as_py() == sum(
        planted_scores[f["judge"][6:], f["question_id"], f["model"]][1] <= 3 for f in flags.to_pylist())

    # Agreement through Label Studio == agreement of the planted scores on the same answers.
    rated = {(r["judge"].removeprefix("human:"), r["question_id"], r["model"]) for r in human.to_pylist()}
    llm = planted["table"].filter(pc.equal(planted["table"]["judge"], "judge-x"))
    direct = planted["table"].filter(pc.is_in(
        pc.binary_join_element_wise(planted["table"]["judge"], planted["table"]["question_id"],
                                    planted["table"]["model"], "|"),
        value_set=pa.array(["|".join(k) for k in rated])))
    cfg = StatsConfig(bootstrap=200, model_map={"bases": [], "baselines": [], "rules": []})
    write_table(llm, tmp_path / "llm.parquet", "judgments")
    write_table(pa.concat_tables([llm, direct]), tmp_path / "direct.parquet", "judgments")
    run_stats(cfg, tmp_path / "via-ls", judgments=[tmp_path / "llm.parquet", ratings / "human_judgments.parquet"])
    run_stats(cfg, tmp_path / "direct", judgments=[tmp_path / "direct.parquet"])
    via, ref = _agreement(tmp_path / "via-ls"), _agreement(tmp_path / "direct")
    assert set(via["pair_kind"]) == {"human-human", "judge-human"}
    hh = via[via["pair_kind"] == "human-human"]
    assert set(hh.index.get_level_values(0)) | set(hh.index.get_level_values(1)) == set(RATERS)
    shared = sum(1 for it in key.values() if it["shared"])
    assert (hh["n_items"] <= shared).all() and (hh["n_items"] >= shared - 2).all()
    cols = ["n_items", "kappa_quadratic", "icc", "spearman", "exact_agreement", "mean_abs_diff"]
    pd.testing.assert_frame_equal(via[cols], ref.loc[via.index, cols], check_exact=False, atol=1e-12)
    icc = via.xs(METRICS[0], level="metric")
    assert (icc["icc_ci_low"] <= icc["icc"]).all() and (icc["icc"] <= icc["icc_ci_high"]).all()
    report = (tmp_path / "via-ls" / "report.md").read_text()
    assert "Judges against human raters" in report and "human:r2" in report


def test_push_refuses_twice_and_a_bad_key_is_named_not_shown(label_studio, planted, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    study = tmp_path / "study"
    job_main("human-study", ["export", "--answers", str(planted["answers"]), "--questions", str(planted["questions"]),
                             "--raters", "1", "--per-rater", "2", "--output", str(study)])
    wrong = "f" * 40
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", wrong)
    with pytest.raises(LabelStudioError, match="HTTP 401") as info:
        push_study(study, label_studio.url)
    assert wrong not in str(info.value) and not (study / "labelstudio.json").exists()
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    push_study(study, label_studio.url)
    with pytest.raises(UsageError, match="pushed already"):
        push_study(study, label_studio.url)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY")
    with pytest.raises(UsageError, match="LABEL_STUDIO_API_KEY"):
        push_study(study, label_studio.url, force=True)



@pytest.mark.shared
def test_the_authors_two_judges_as_raters_through_label_studio(label_studio, shared_data: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside data: the paper's 31 models' answers, rated in Label Studio by "raters" who enter the
    paper's own GPT-4 and Gemini scores. What comes back must agree with those judges exactly as
    the judges agree with each other, computed from the authors' files without Label Studio."""
    from label_studio_sdk import LabelStudio

    from mentalchat.core import fastchat
    from mentalchat.core.model_names import paper_model_map

    data = fastchat.read_fastchat_dir(shared_data / "fastchat", paper_model_map())
    answers = write_table(data.answers, tmp_path / "answers.parquet", "answers")
    study = tmp_path / "study"
    judges = {"gpt4": "gpt-4-1106-preview", "gemini": "gemini-pro"}
    job_main("human-study", ["export", "--answers", str(answers), "--questions",
                             str(shared_data / "eval" / "question.jsonl"), "--raters", "gpt4,gemini",
                             "--per-rater", "40", "--overlap", "1", "--seed", "5", "--output", str(study)])
    key = json.loads((study / "key" / "unblinding_key.json").read_text())["items"]
    assert len(key) == 40 and len({(k["base_model"], k["data_config"]) for k in key.values()}) >= 20
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    job_main("human-study", ["push", "--study", str(study), "--url", label_studio.url])
    paper = _scores(data.judgments)
    client = LabelStudio(base_url=label_studio.url, api_key=label_studio.token)
    for rater, pid in json.loads((study / "labelstudio.json").read_text())["projects"].items():
        for t in client.tasks.list(project=pid, fields="all"):
            entry = key[t.data["item"]]
            scores, overall = paper[judges[rater], entry["question_id"], entry["model"]]
            client.annotations.create(id=t.id, result=ls_result(scores, overall))
    job_main("human-study", ["pull", "--study", str(study)])
    job_main("human-study", ["import", "--study", str(study), "--output", str(tmp_path / "ratings")])

    items = {(k["question_id"], k["model"]) for k in key.values()}
    j = data.judgments
    mask = pc.is_in(pc.binary_join_element_wise(j["question_id"], j["model"], "|"),
                    value_set=pa.array(["|".join(i) for i in items]))
    paper_rows = j.filter(mask).select(read_table(tmp_path / "ratings" / "human_judgments.parquet",
                                                  "judgments").column_names)
    # The paper's overall ratings include fractions (7.5; 5,572 of its 86,800 rows), which a 1-10
    # star control cannot hold: the "raters" enter int(overall), so the reference floors it too.
    paper_rows = paper_rows.set_column(paper_rows.schema.get_field_index("overall"), "overall",
                                       pc.floor(paper_rows["overall"]))
    write_table(paper_rows, tmp_path / "paper.parquet", "judgments")
    cfg = StatsConfig(bootstrap=100, model_map={"bases": [], "baselines": [], "rules": []})
    run_stats(cfg, tmp_path / "direct", judgments=[tmp_path / "paper.parquet"])
    run_stats(cfg, tmp_path / "both", judgments=[tmp_path / "paper.parquet",
                                                 tmp_path / "ratings" / "human_judgments.parquet"])
    both, direct = _agreement(tmp_path / "both"), _agreement(tmp_path / "direct")
    cols = ["n_items", "kappa_quadratic", "icc", "spearman", "exact_agreement", "mean_abs_diff"]
    judge_pair = direct.loc[("gemini-pro", "gpt-4-1106-preview")][cols]
    raters = both.loc[("gemini", "gpt4")][cols]
    pd.testing.assert_frame_equal(raters, judge_pair, check_exact=False, atol=1e-12)
    assert (judge_pair["n_items"] >= 36).all()  # (a few paper judgments lack a score)
    for name, judge in judges.items():  # each "rater" against the judge whose scores they entered
        self_pair = both.loc[tuple(sorted((name, judge)))]
        assert (self_pair["exact_agreement"] == 1.0).all() and (self_pair["n_items"] >= 36).all()
