"""Stage 5 end to end: load judgments, compute every table, draw figures, write the report.

:func:`compute_tables` is the in-memory part (what the benchmark times); :func:`run_stats`
adds reading the inputs and publishing the output folder atomically, so a later stage never
sees half a report.
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
from mentalchat.core.fastchat import read_model_judgments
from mentalchat.core.human_ratings import read_human_ratings
from mentalchat.errors import InputError, UsageError
from mentalchat.io import atomic_dir, write_done_marker
from mentalchat.schemas import (
    AGREEMENT,
    COVERAGE,
    DATASET_PROFILE,
    GAINS,
    MEANS,
    QA_PAIRS,
    WINS,
    TableSpec,
    read_table,
    write_table,
)
from mentalchat.stats import figures as fig
from mentalchat.stats.agreement import agreement_table
from mentalchat.stats.bootstrap import QuestionBootstrap
from mentalchat.stats.config import StatsConfig
from mentalchat.stats.data import ScoreCube, build_cube, coverage_table
from mentalchat.stats.dataset_profile import dataset_profile, word_counts
from mentalchat.stats.gains import gains_table
from mentalchat.stats.means import means_table
from mentalchat.stats.report import build_report
from mentalchat.stats.wins import wins_table

__all__ = ["StatsResult", "compute_tables", "load_judgments", "run_stats"]

log = logging.getLogger(__name__)

SPECS: dict[str, TableSpec] = {
    "means": MEANS, "gains": GAINS, "wins": WINS, "agreement": AGREEMENT, "coverage": COVERAGE,
}


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


def compute_tables(
    cube: ScoreCube, cfg: StatsConfig
) -> tuple[dict[str, pd.DataFrame], list[str], dict[str, float]]:
    """All statistics tables from a score cube; returns (tables, notes, seconds per table)."""
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
) -> StatsResult:
    """Compute every table and the report into ``output`` (replaced atomically)."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    inputs, described = load_judgments(cfg, judgments, fastchat, human)
    timings["load"] = time.perf_counter() - t0
    t = time.perf_counter()
    cube = build_cube(inputs, cfg.model_map, mean_of_7_min_metrics=cfg.mean_of_7_min_metrics)
    timings["cube"] = time.perf_counter() - t
    if cube.unmapped:
        log.warning("models with no base model/data configuration: %s", ", ".join(cube.unmapped))
    frames, notes, table_times = compute_tables(cube, cfg)
    timings.update(table_times)
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
            inputs=described, notes=notes, unmapped=cube.unmapped,
            method={k: getattr(cfg, k) for k in ("bootstrap", "ci_level", "seed", "correction",
                                                  "correction_family", "wilcoxon_zero_method",
                                                  "mean_of_7_min_metrics")},
        )
        timings["report"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t0
        write_done_marker(tmp, stage="stats", config_hash=config_hash(cfg), inputs=described,
                          unmapped=cube.unmapped, timings=timings)
    rel = {k: output / p.relative_to(tmp) for k, p in paths.items()}
    figs_out = {k: output / p.relative_to(tmp) for k, p in figs.items() if p is not None}
    return StatsResult(output, rel, output / md.name, output / html_path.name, figs_out,
                       cube.unmapped, notes, timings)
