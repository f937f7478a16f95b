"""benchmarks/run_all.py: figures read from each benchmark's output, goals, and the summary table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run_all():
    spec = importlib.util.spec_from_file_location("mc_run_all", REPO / "benchmarks" / "run_all.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["mc_run_all"] = mod  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


def test_stats_goal_sits_on_the_size_nearest_one_million() -> None:
    ra = _run_all()
    stdout = ("99,960 rows: 0.66 s\n999,992 rows: 12.50 s\n4,999,960 rows: 3.72 s\n"
              "growth 99,960 -> 999,992 rows (x10.0): time x1.5\n")
    figs, raw = ra.figures_stats_scale(stdout, None)
    goals = [f for f in figs if f.goal is not None]
    assert [f.name for f in goals] == ["all tables at 999,992 judgment rows"]
    assert goals[0].met is False  # 12.5 s > 10 s: reported as missed
    assert raw["seconds_by_rows"][4_999_960] == 3.72


def test_judge_figures_and_markdown() -> None:
    ra = _run_all()
    stdout = ("mentalchat: 1000 scored, 0 lost in 51.2 s\nbaseline (FastChat-style): 990 scored, 10 lost in 60.0 s\n"
              "RATIO mentalchat=0.973 baseline=0.838\n")
    figs, raw = ra.figures_judge_throughput(stdout, None)
    assert raw == {"mentalchat_of_ceiling": 0.973, "scored": 1000, "lost": 0, "wall_s": 51.2,
                   "baseline_of_ceiling": 0.838, "baseline_lost": 10}
    assert [f.met for f in figs if f.goal] == [True, True]
    assert figs[-1].value == round(0.973 / 0.838, 2)
    outcome = ra.Outcome("judge_throughput", "ok", 60.0, ["python", "benchmarks/judge_throughput.py"], figs)
    failed = ra.Outcome("stats_scale", "error", 1.0, error="exit status 1; last lines:\nboom")
    report = {"date": "2026-11-26", "quick": False, "commit": "abc",
              "machine": {"cpus": 2, "platform": "linux", "python": "3.11", "gpu": None}}
    md = ra.markdown(report, [outcome, failed])
    assert "| judge_throughput | judge stage, share of the endpoint's ceiling | 0.973 | >= 0.95 | yes |" in md
    assert "| stats_scale | **error** | exit status 1; last lines: | | |" in md
    assert "Goals met: 2 of 2." in md


def test_judge_batch_mode_figures() -> None:
    ra = _run_all()
    stdout = ("mentalchat: 100 scored, 0 lost in 5.7 s\nBATCH cost_ratio=0.500 identical=1 lost=0\n"
              "RATIO mentalchat=0.960\n")
    figs, raw = ra.figures_judge_throughput(stdout, None)
    assert (raw["batch_cost_ratio"], raw["batch_identical"], raw["batch_lost"]) == (0.5, 1, 0)
    batch = {f.name: f for f in figs if f.name.startswith("batch mode")}
    assert [(f.goal, f.met) for f in batch.values()] == [("<= 0.55", True), ("== 1", True), ("<= 0", True)]
    figs, _ = ra.figures_judge_throughput(stdout.replace("identical=1", "identical=0"), None)
    assert [f.met for f in figs if f.name.startswith("batch mode scores")] == [False]


def test_train_figures_include_cpu_ratio() -> None:
    ra = _run_all()
    out = {"ratio": 1.002, "cpu_ratio": 0.994, "padding_share": 0.0, "unpacked_group_by_length_padding_share": 0.063,
           "plain_tokens_per_s": 1863.6, "ray_tokens_per_s": 1896.0, "rounds": [{}]}
    figs, slim = ra.figures_train_throughput("", out)
    by_name = {f.name: f for f in figs}
    assert by_name["same, per CPU second of the training process"].value == 0.994
    assert by_name["padding share of the paper's unpacked batches"].value == 0.063
    assert "rounds" not in slim


def test_rerunning_one_benchmark_keeps_the_others(tmp_path: Path) -> None:
    import dataclasses
    import json

    ra = _run_all()
    old = [ra.Outcome("engine_overhead", "ok", 76.0, figures=[ra.Figure.check("ratio", 0.915, ">=", 0.9)]),
           ra.Outcome("train_throughput", "ok", 178.0, figures=[ra.Figure("old", 1.0)])]
    path = tmp_path / "2026-11-26.json"
    path.write_text(json.dumps({"commit": "52e7683", "finished": "2026-11-26T07:20:00+00:00",
                                "benchmarks": [dataclasses.asdict(o) for o in old]}), encoding="utf-8")
    new = [ra.Outcome("train_throughput", "ok", 170.0, figures=[ra.Figure("new", 2.0)])]
    merged = ra._merge_previous(path, new)
    assert [o.name for o in merged] == ["engine_overhead", "train_throughput"]
    assert merged[0].measured_at == "52e7683 2026-11-26T07:20:00+00:00"
    assert merged[0].figures[0].met is True and merged[0].figures[0].goal == ">= 0.9"
    assert merged[1].figures[0].name == "new" and merged[1].measured_at is None


def test_deid_external_figures_per_set_and_worst_over_sets() -> None:
    ra = _run_all()
    goals = [
        {"kind": "value_recall", "set": "presidio", "name": "mentalchat value recall, presidio", "value": 0.95,
         "goal": ">= 0.99", "met": False},
        {"kind": "vs_philter", "set": "presidio", "name": "mentalchat - philter-lite value recall, presidio",
         "value": 0.02, "goal": "> 0 (tie only at 1.0)", "met": True},
        {"kind": "nonphi", "set": "presidio", "name": "n1", "value": 0.07, "goal": "<= 0.05", "met": False},
        {"kind": "nonphi", "set": "transcripts", "name": "n2", "value": 0.001, "goal": "<= 0.05", "met": True},
        {"kind": "pages_per_cpu_s", "set": "presidio", "name": "p1", "value": 90.0, "goal": ">= 15", "met": True},
        {"kind": "pages_per_cpu_s", "set": "i2b2", "name": "p2", "value": 9.5, "goal": ">= 15", "met": False},
    ]
    out = {"goals": goals, "sets": {"presidio": {"mentalchat": {"value_recall": 0.95, "worst_leaks": [{}]}}}}
    figs, slim = ra.figures_deid_external("", out)
    by_name = {f.name: f for f in figs}
    assert by_name["mentalchat value recall, presidio"].met is False
    assert by_name["mentalchat - philter-lite value recall, presidio"].goal == "> 0 (tie only at 1.0)"
    worst = by_name["mentalchat non-PHI words removed, highest (presidio)"]
    assert worst.value == 0.07 and worst.met is False
    slow = by_name["mentalchat pages per CPU second, lowest (i2b2)"]
    assert slow.value == 9.5 and slow.met is False
    assert "worst_leaks" not in slim["sets"]["presidio"]["mentalchat"]
    assert ra.figures_deid_external("", None) == ([], None)


def test_judge_provider_scale_figures() -> None:
    figures_judge_provider_scale = _run_all().figures_judge_provider_scale
    out = {"calls": 12400, "binding": "tokens/min", "mentalchat_of_ceiling": 0.965, "mentalchat_lost": 0,
           "baseline_of_ceiling": 0.9}
    figs, _ = figures_judge_provider_scale("", out)
    assert [f.met for f in figs[:2]] == [False, True]  # 0.965 misses the 0.97 goal; nothing lost
    assert figs[2].value == 0.9
    assert figures_judge_provider_scale("", None) == ([], None)


def test_generate_throughput_figures() -> None:
    ra = _run_all()
    out = {"multi_lora": {"ratio_total_per_engine_merged": 1.6, "ratio_total_per_engine_lora": 2.4,
                          "ratio_generate_tokens_per_s_per_engine_merged": 0.28, "goal_ratio_total": 2.0},
           "ray_data_vs_bare": {"ratio": 0.97, "ratio_same_batching": 0.99, "goal": 0.95}}
    figs, raw = ra.figures_generate_throughput("", out)
    assert raw is out
    goals = {f.name.split(" (")[0]: f.met for f in figs if f.goal}
    assert goals == {"one multi-LoRA engine vs one merged model's engine per model in turn": False,
                     "vLLM in Ray Data / bare vLLM, answer-stage batches": True}
    figs, _ = ra.figures_generate_throughput("", {"multi_lora": out["multi_lora"]})  # --skip-overhead
    assert len([f for f in figs if f.goal]) == 1


def test_crisis_eval_figures_goals_and_held_out_recall() -> None:
    ra = _run_all()
    out = {"goals": [
        {"name": "held-out suicidal_ideation recall (rules)", "value": 0.63, "goal": 0.95, "met": False},
        {"name": "held-out numbers/rooms false flags (rules)", "value": 0, "goal": 0, "met": True},
    ], "messages": [
        {"split": "test", "layer": "rules", "category": "any_crisis", "recall": 0.71},
        {"split": "dev", "layer": "rules", "category": "any_crisis", "recall": 0.99},
    ], "false_flags": [{}]}
    figs, slim = ra.figures_crisis_eval("", out)
    by_name = {f.name: f for f in figs}
    assert by_name["held-out suicidal_ideation recall (rules)"].met is False
    assert by_name["held-out suicidal_ideation recall (rules)"].goal == ">= 0.95"
    assert by_name["held-out numbers/rooms false flags (rules)"].met is True
    assert by_name["held-out any-crisis recall, rules"].value == 0.71 and len(figs) == 3
    assert "false_flags" not in slim
    assert ra.figures_crisis_eval("", None) == ([], None)
