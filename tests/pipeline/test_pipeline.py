"""The smoke pipeline in-process: all five stages, then reruns that must skip or resume precisely."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mentalchat.config import ConfigError
from mentalchat.io import DONE_MARKER
from mentalchat.pipeline import STAGES, load_pipeline, run_pipeline
from mentalchat.pipeline.run import STATE_FILE
from mentalchat.schemas import read_table

# In-process executors keep this file quick (one tiny vLLM engine at a time, no Ray Data start-up);
# tests/pipeline/test_job_submit.py runs the Ray executors through `ray job submit`.
LOCAL = ["dataset.interview.executor=local", "generate.executor=local", "generate.max_questions=3"]


def _run(repo_root: Path, out: Path, overrides: list[str]):
    plan = load_pipeline(repo_root / "configs" / "smoke.yaml", overrides)
    lines: list[str] = []
    result = run_pipeline(plan, out, echo=lines.append, progress=False, shutdown_ray=False)
    return result, lines


@pytest.fixture(scope="module")
def first_run(ray_cluster, repo_root: Path, smoke_overrides: list[str], tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("pipeline") / "run"
    overrides = smoke_overrides + LOCAL
    result, lines = _run(repo_root, out, overrides)
    return out, overrides, result, lines


@pytest.mark.slow
def test_every_stage_runs_and_feeds_the_next(first_run, pipeline_outputs) -> None:
    out, _, result, lines = first_run
    assert [s.stage for s in result.stages] == list(STAGES)
    assert result.ran == list(STAGES)
    facts = pipeline_outputs(out)
    assert result.stage("generate").facts["answers"] == facts["answers"]
    assert any(line.startswith("==> [5/5] stats done") for line in lines)
    assert "the numbers mean nothing" in (out / "SUMMARY.md").read_text()


@pytest.mark.slow
def test_rerun_skips_every_stage_and_touches_nothing(first_run, repo_root: Path) -> None:
    out, overrides, _, _ = first_run
    watched = [out / "answers" / "answers.parquet", out / "judgments" / "judgments.parquet",
               out / "report" / "report.md"]
    before = [p.stat().st_mtime_ns for p in watched]
    result, lines = _run(repo_root, out, overrides)
    assert result.skipped == list(STAGES) and result.ran == []
    assert [p.stat().st_mtime_ns for p in watched] == before
    assert sum("skipped (output complete" in line for line in lines) == len(STAGES)


@pytest.mark.slow
def test_changing_a_later_stage_reruns_only_it_and_what_follows(first_run, repo_root: Path,
                                                                 tmp_path: Path, pipeline_outputs) -> None:
    src, overrides, _, _ = first_run
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    manifest_before = (out / "finetune" / "manifest.parquet").stat().st_mtime_ns
    rel_before = read_table(out / "judgments" / "reliability.parquet", "reliability").to_pandas()
    result, _ = _run(repo_root, out, [*overrides, "judge.reliability.consistency_samples=1"])
    assert result.skipped == ["dataset", "finetune", "generate"]
    assert result.ran == ["judge", "stats"]
    assert (out / "finetune" / "manifest.parquet").stat().st_mtime_ns == manifest_before
    rel_after = read_table(out / "judgments" / "reliability.parquet", "reliability").to_pandas()
    n = {df_name: df[df.check == "self_consistency"].n.max()
         for df_name, df in (("before", rel_before), ("after", rel_after))}
    assert n["after"] == 1 and n["before"] == 2
    pipeline_outputs(out)

    # A stage's config change invalidates everything downstream of it, not only the stage itself.
    result, _ = _run(repo_root, out, [*overrides, "judge.reliability.consistency_samples=1",
                                      "generate.max_questions=2"])
    assert result.skipped == ["dataset", "finetune"]
    assert result.ran == ["generate", "judge", "stats"]


@pytest.mark.slow
def test_an_interrupted_stage_is_resumed_not_restarted(first_run, repo_root: Path, tmp_path: Path) -> None:
    src, overrides, _, _ = first_run
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    # What a crash in the middle of the judge stage leaves: its progress store, no done marker.
    (out / "judgments" / DONE_MARKER).unlink()
    state = json.loads((out / STATE_FILE).read_text())
    state["stages"]["judge"]["status"] = "running"
    (out / STATE_FILE).write_text(json.dumps(state))
    result, _ = _run(repo_root, out, overrides)
    # The judge stage reruns from its store; stats reruns only if the judgments it reads changed
    # (here they are identical, so its output, complete and with a matching hash, is reused).
    assert result.ran[0] == "judge" and set(result.ran) <= {"judge", "stats"}
    judge = result.stage("judge").facts
    assert judge["calls"] == 0 and judge["scored"] == judge["planned"] > 0  # every call came from the store


def test_overrides_are_dotted_from_the_root(repo_root: Path) -> None:
    with pytest.raises(ConfigError, match="from the file's root"):
        load_pipeline(repo_root / "configs" / "smoke.yaml", ["lora.r=8"])
    plan = load_pipeline(repo_root / "configs" / "smoke.yaml", ["pipeline.stages=[stats,judge,generate]",
                                                                "finetune.lora.r=4"])
    assert plan.stages == ["generate", "judge", "stats"]
    assert set(plan.configs) == {"generate", "judge", "stats"}


def test_bad_pipeline_configs_fail_before_any_stage(repo_root: Path, tmp_path: Path) -> None:
    smoke = repo_root / "configs" / "smoke.yaml"
    with pytest.raises(ConfigError, match="secrets come from the environment"):
        load_pipeline(smoke, ["pipeline.env.OPENAI_API_KEY=sk-123"])
    with pytest.raises(ConfigError, match="pipeline.questions: file not found"):
        load_pipeline(smoke, [f"pipeline.questions={tmp_path / 'nope.jsonl'}"])
    with pytest.raises(ConfigError, match="needs pipeline.dataset"):
        load_pipeline(smoke, ["pipeline.stages=[finetune]"])
    with pytest.raises(ConfigError, match="pipeline.dirs.judge"):
        load_pipeline(smoke, ["pipeline.dirs.judge=../elsewhere"])
    with pytest.raises(ConfigError, match="local or shared"):
        run_pipeline(load_pipeline(smoke), "s3://bucket/run", echo=lambda _: None)
