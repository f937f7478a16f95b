"""Stage 5 end to end: load judgments, compute every table, draw figures, write the report.

:func:`compute_tables` is the in-memory part (what the benchmark times); :func:`run_stats`
adds reading the inputs and publishing the output folder atomically, so a later stage never
sees half a report.

Besides judgments, a run reads what the judge stage left beside them (``--judge-dir``: its
``reliability``, ``crisis`` and ``pairwise`` tables) and the answers (``--answers``, the generate
stage's table or FastChat ``model_answer`` folders; a ``--fastchat`` folder's own
``model_answer/``) for their lengths. Whatever is missing leaves its table empty and the report
says that the control was not run, and why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from mentalchat.config import config_hash
from mentalchat.core.fastchat import read_model_answers, read_model_judgments
from mentalchat.core.human_ratings import read_human_ratings
from mentalchat.errors import InputError, UsageError
from mentalchat.io import atomic_dir, write_done_marker
from mentalchat.schemas import (
    AGREEMENT,
    ANSWERS,
    COVERAGE,
    DATASET_PROFILE,
    GAINS,
    JUDGE_CONTROLS,
    LENGTH_CONTROL,
    MEANS,
    MIXED_EFFECTS,
    PAIRWISE_WINS,
    QA_PAIRS,
    SAFETY,
    TABLES,
    TURN_MEANS,
    WINS,
    TableSpec,
    read_table,
    write_table,
)
from mentalchat.stats import figures as fig
from mentalchat.stats.agreement import agreement_table
from mentalchat.stats.bootstrap import QuestionBootstrap
from mentalchat.stats.config import StatsConfig
from mentalchat.stats.controls import empty_answer_rows, judge_controls_table, pairwise_wins_table
from mentalchat.stats.data import ScoreCube, build_cube, coverage_table
from mentalchat.stats.dataset_profile import dataset_profile, word_counts
from mentalchat.stats.gains import gains_table
from mentalchat.stats.length_control import answer_lengths, length_control_table
from mentalchat.stats.means import means_table
from mentalchat.stats.mixed_effects import mixed_effects_table
from mentalchat.stats.multiturn import turn_means_table
from mentalchat.stats.report import build_report
from mentalchat.stats.safety import safety_table
from mentalchat.stats.wins import wins_table

__all__ = ["JudgeExtras", "StatsResult", "compute_tables", "load_answers", "load_judge_extras",
           "load_judgments", "run_stats"]

log = logging.getLogger(__name__)

SPECS: dict[str, TableSpec] = {
    "means": MEANS, "gains": GAINS, "wins": WINS, "agreement": AGREEMENT, "coverage": COVERAGE,
    "mixed_effects": MIXED_EFFECTS, "length_control": LENGTH_CONTROL, "safety": SAFETY,
    "judge_controls": JUDGE_CONTROLS, "pairwise_wins": PAIRWISE_WINS,
}
#: the judge stage's tables a stats run reads beside the judgments
JUDGE_EXTRAS = ("reliability", "crisis", "pairwise")


@dataclass
class JudgeExtras:
    """The judge folder's control tables (None: absent) and the answer lengths' sources."""

    reliability: pd.DataFrame | None = None
    crisis: pd.DataFrame | None = None
    pairwise: pd.DataFrame | None = None
    answers: list[pa.Table] = field(default_factory=list)
    sources: dict[str, list[str]] = field(default_factory=dict)

    def present(self) -> dict[str, bool]:
        """Which inputs the run had: what the report says was or was not run."""
        return {"reliability": self.reliability is not None, "crisis": self.crisis is not None,
                "pairwise": self.pairwise is not None, "answers": bool(self.answers)}


@dataclass
class StatsResult:
    """What a run produced (paths) and what it noticed."""

    output: Path
    tables: dict[str, Path]
    report_md: Path | None
    report_html: Path | None
    figures: dict[str, Path]
    unmapped: list[str]
    notes: list[str]
    timings: dict[str, float] = field(default_factory=dict)


def load_judgments(
    cfg: StatsConfig,
    judgments: Sequence[str | Path] = (),
    fastchat: Sequence[str | Path] = (),
    human: Sequence[str | Path] = (),
) -> tuple[list[pa.Table], list[str]]:
    """Read every input into ``judgments`` tables; returns (tables, input descriptions)."""
    tables: list[pa.Table] = []
    described: list[str] = []
    for path in judgments:
        tables.append(read_table(path, "judgments"))
        described.append(str(path))
    for root in fastchat:
        # statistics need only the judgments; answers and questions stay where they are
        jdirs = sorted(p for p in Path(root).glob("model_judgment*") if p.is_dir())
        if not jdirs:
            raise InputError(f"{root}: no model_judgment*/ folder with FastChat judgments", path=root)
        tables.append(read_model_judgments(jdirs, cfg.model_map, keep_text=False))
        described.append(f"{root} (FastChat: {', '.join(p.name for p in jdirs)})")
    for path in human:
        tables.append(read_human_ratings(path, cfg.model_map))
        described.append(f"{path} (human ratings)")
    if not tables:
        raise UsageError("no judgments given: pass --judgments, --fastchat or --human")
    return tables, described


def load_judge_extras(judge_dirs: Sequence[str | Path]) -> JudgeExtras:
    """Read ``reliability``, ``crisis`` and ``pairwise`` from judge folders (each optional)."""
    extras = JudgeExtras()
    for name in JUDGE_EXTRAS:
        frames = []
        for folder in judge_dirs:
            path = Path(folder) / f"{name}.parquet"
            if path.is_file():
                frames.append(_read_extra(path, name))
                extras.sources.setdefault(name, []).append(str(path))
        if frames:
            setattr(extras, name, pd.concat(frames, ignore_index=True))
    return extras


def _read_extra(path: Path, name: str) -> pd.DataFrame:
    """A judge-stage table, validated by its registered schema (read as is when this
    mentalchat does not know the table)."""
    if name in TABLES:
        return read_table(path, TABLES[name]).to_pandas()
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pandas()


def load_answers(paths: Sequence[str | Path], cfg: StatsConfig) -> list[pa.Table]:
    """``answers`` tables from Parquet files or folders, or FastChat ``model_answer`` JSONL."""
    tables = []
    for path in paths:
        path = Path(path)
        if path.suffix == ".parquet" or (path.is_dir() and any(path.glob("*.parquet"))):
            tables.append(read_table(path, ANSWERS))
        elif path.is_dir() and (path / "model_answer").is_dir():
            tables.append(read_model_answers(path / "model_answer", cfg.model_map))
        else:
            tables.append(read_model_answers(path, cfg.model_map))
    return tables


def compute_tables(
    cube: ScoreCube, cfg: StatsConfig, extras: JudgeExtras | None = None
) -> tuple[dict[str, pd.DataFrame], list[str], dict[str, float]]:
    """All statistics tables from a score cube and the judge stage's extras; returns (tables,
    notes, seconds per table)."""
    extras = extras if extras is not None else JudgeExtras()
    timings: dict[str, float] = {}
    t = time.perf_counter()
    boot = QuestionBootstrap(len(cube.questions), cfg.bootstrap, cfg.seed, cfg.ci_level)
    timings["bootstrap_weights"] = time.perf_counter() - t
    notes = list(cube.notes)
    tables: dict[str, pd.DataFrame] = {}
    t = time.perf_counter()
    tables["coverage"] = coverage_table(cube)
    timings["coverage"] = time.perf_counter() - t
    t = time.perf_counter()
    tables["means"] = means_table(cube, boot)
    timings["means"] = time.perf_counter() - t
    t = time.perf_counter()
    tables["gains"], gain_notes = gains_table(cube, boot, cfg)
    notes += gain_notes
    timings["gains"] = time.perf_counter() - t
    t = time.perf_counter()
    tables["wins"] = wins_table(tables["means"], cfg.fine_tuned_configs)
    timings["wins"] = time.perf_counter() - t
    t = time.perf_counter()
    tables["agreement"] = agreement_table(cube, boot)
    timings["agreement"] = time.perf_counter() - t
    t = time.perf_counter()
    tables["mixed_effects"] = (mixed_effects_table(cube, cfg.fine_tuned_configs, metrics=cfg.mixed_effects_metrics,
                                                   level=cfg.ci_level)
                               if cfg.mixed_effects else pd.DataFrame(columns=MIXED_EFFECTS.columns))
    timings["mixed_effects"] = time.perf_counter() - t
    t = time.perf_counter()
    words, length_notes = answer_lengths(cube, extras.answers)
    notes += length_notes
    tables["length_control"] = length_control_table(cube, words, boot, metrics=cfg.length_control_metrics)
    timings["length_control"] = time.perf_counter() - t
    t = time.perf_counter()
    tables["safety"] = safety_table(extras.crisis, cfg.ci_level)
    derived = empty_answer_rows(cube, words) if extras.reliability is None else None
    tables["judge_controls"] = judge_controls_table(cube.judges, reliability=extras.reliability,
                                                    pairwise=extras.pairwise, derived_empty=derived,
                                                    level=cfg.ci_level)
    tables["pairwise_wins"] = pairwise_wins_table(extras.pairwise, cfg.ci_level)
    timings["controls"] = time.perf_counter() - t
    return tables, notes, timings


def _to_arrow(df: pd.DataFrame, spec: TableSpec) -> pa.Table:
    df = df.reindex(columns=spec.columns)
    arrays = []
    for f in spec.schema:
        col = df[f.name]
        if pa.types.is_string(f.type):
            values = [None if (v is None or (isinstance(v, float) and np.isnan(v))) else str(v)
                      for v in col]
            arrays.append(pa.array(values, type=f.type))
        elif pa.types.is_boolean(f.type):
            arrays.append(pa.array([None if v is None or (isinstance(v, float) and np.isnan(v))
                                    else bool(v) for v in col], type=f.type))
        else:
            arrays.append(pa.array(col.to_numpy(), type=f.type, from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=spec.schema)


def run_stats(
    cfg: StatsConfig,
    output: str | Path,
    *,
    judgments: Sequence[str | Path] = (),
    fastchat: Sequence[str | Path] = (),
    human: Sequence[str | Path] = (),
    dataset: str | Path | None = None,
    judge_dirs: Sequence[str | Path] = (),
    answers: Sequence[str | Path] = (),
) -> StatsResult:
    """Compute every table and the report into ``output`` (replaced atomically).

    ``judge_dirs``: judge stage folders; their ``judgments.parquet`` joins ``judgments`` and
    their control tables feed the reliability and safety sections. ``answers``: where answer
    lengths come from (a ``--fastchat`` folder's ``model_answer/`` is read without asking).
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    judge_files = []
    for folder in judge_dirs:
        path = Path(folder) / "judgments.parquet"
        if not path.exists():
            raise InputError(f"{folder}: no judgments.parquet (not a judge stage folder?)", path=folder)
        judge_files.append(path)
    inputs, described = load_judgments(cfg, [*judgments, *judge_files], fastchat, human)
    extras = load_judge_extras(judge_dirs)
    answer_paths = [*answers, *[Path(r) / "model_answer" for r in fastchat if (Path(r) / "model_answer").is_dir()]]
    extras.answers = load_answers(answer_paths, cfg)
    if answer_paths:
        extras.sources["answers"] = [str(p) for p in answer_paths]
    for name, srcs in extras.sources.items():
        described.append(f"{', '.join(srcs)} ({name})")
    timings["load"] = time.perf_counter() - t0
    t = time.perf_counter()
    cube = build_cube(inputs, cfg.model_map, mean_of_7_min_metrics=cfg.mean_of_7_min_metrics)
    timings["cube"] = time.perf_counter() - t
    if cube.unmapped:
        log.warning("models with no base model/data configuration: %s", ", ".join(cube.unmapped))
    frames, notes, table_times = compute_tables(cube, cfg, extras)
    timings.update(table_times)
    # multi-turn questions: their own table (and report section), only when there are any, so a
    # single-turn run's folder is what it was before multi-turn judging existed
    t = time.perf_counter()
    turns = turn_means_table(inputs, cfg.model_map, n_boot=cfg.bootstrap, seed=cfg.seed, level=cfg.ci_level,
                             mean_of_7_min_metrics=cfg.mean_of_7_min_metrics)
    if not turns.empty:
        timings["turn_means"] = time.perf_counter() - t
    output = Path(output)
    dataset_frame: pd.DataFrame | None = None
    lengths: dict[str, dict[str, np.ndarray]] = {}
    if dataset is not None:
        ds = read_table(dataset, QA_PAIRS)
        dataset_frame = dataset_profile(ds)
        dfd = ds.select(["input", "output", "source"]).to_pandas()
        for fld in ("input", "output"):
            words = word_counts(dfd[fld])
            lengths[fld] = {str(s): words[(dfd["source"] == s).to_numpy()]
                            for s in sorted(dfd["source"].unique())}
        described.append(f"{dataset} (dataset)")

    with atomic_dir(output) as tmp:
        t = time.perf_counter()
        paths: dict[str, Path] = {}
        for name, spec in SPECS.items():
            paths[name] = write_table(_to_arrow(frames[name], spec), tmp / f"{name}.parquet", spec)
        if not turns.empty:
            paths["turn_means"] = write_table(_to_arrow(turns, TURN_MEANS), tmp / "turn_means.parquet", TURN_MEANS)
        if dataset_frame is not None:
            paths["dataset_profile"] = write_table(_to_arrow(dataset_frame, DATASET_PROFILE),
                                                   tmp / "dataset_profile.parquet", DATASET_PROFILE)
        timings["write"] = time.perf_counter() - t
        # the report reads what was written, so its numbers are the tables'
        t = time.perf_counter()
        back = {name: read_table(p, name).to_pandas() for name, p in paths.items()}
        figs: dict[str, Path | None] = {}
        if cfg.figures:
            fdir = tmp / "figures"
            figs["evaluator_scores"] = fig.evaluator_scores(back["means"], fdir / "evaluator_scores.png")
            figs["model_comparison"] = fig.model_comparison(back["means"], cfg.fine_tuned_configs,
                                                            fdir / "model_comparison.png")
            figs["gains"] = fig.gains_forest(back["gains"], cfg.fine_tuned_configs, fdir / "gains.png")
            figs["agreement"] = fig.agreement_heatmap(back["agreement"], fdir / "agreement.png")
            figs["reliability"] = fig.reliability_chart(back["judge_controls"], fdir / "reliability.png")
            figs["safety"] = fig.safety_chart(back["safety"], cfg.fine_tuned_configs, fdir / "safety.png")
            figs["length_control"] = fig.length_control_chart(back["length_control"],
                                                              fdir / "length_control.png")
            if "turn_means" in back:
                figs["turn_means"] = fig.turn_means_chart(back["turn_means"], fdir / "turn_means.png")
            if "dataset_profile" in back:
                prof = back["dataset_profile"]
                figs["dataset_composition"] = fig.dataset_composition(
                    prof, fdir / "dataset_composition.png")
                figs["topics"] = fig.topic_distribution(prof, fdir / "topics.png")
                figs["lengths"] = fig.length_distributions(lengths, fdir / "lengths.png")
        timings["figures"] = time.perf_counter() - t
        t = time.perf_counter()
        md, html_path = build_report(
            tmp, back, figs, title=cfg.report_title, configs=cfg.fine_tuned_configs,
            inputs=described, notes=notes, unmapped=cube.unmapped, present=extras.present(),
            method={k: getattr(cfg, k) for k in ("bootstrap", "ci_level", "seed", "correction",
                                                  "correction_family", "wilcoxon_zero_method",
                                                  "mean_of_7_min_metrics")},
        )
        timings["report"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t0
        write_done_marker(tmp, stage="stats", config_hash=config_hash(cfg), inputs=described,
                          unmapped=cube.unmapped, timings=timings, controls_inputs=extras.present())
    rel = {k: output / p.relative_to(tmp) for k, p in paths.items()}
    figs_out = {k: output / p.relative_to(tmp) for k, p in figs.items() if p is not None}
    return StatsResult(output, rel, output / md.name, output / html_path.name, figs_out,
                       cube.unmapped, notes, timings)
