"""Report figures (PNG), drawn only from the statistics tables (and the dataset for lengths).

Each function returns the path it wrote, or ``None`` when its table has nothing to draw.
"""

from __future__ import annotations

import functools
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mentalchat.core.rubric import MEAN_OF_7, METRICS, OVERALL  # noqa: E402
from mentalchat.stats.controls import CHECKS  # noqa: E402
from mentalchat.stats.data import config_rank  # noqa: E402

__all__ = [
    "agreement_heatmap",
    "dataset_composition",
    "evaluator_scores",
    "gains_forest",
    "length_control_chart",
    "length_distributions",
    "model_comparison",
    "reliability_chart",
    "safety_chart",
    "topic_distribution",
    "turn_means_chart",
]

CONFIG_COLORS = {"base": "#9e9e9e", "synthetic": "#1f77b4", "interview": "#2ca02c",
                 "combined": "#d62728", "baseline": "#ff7f0e"}
DPI = 110
F = TypeVar("F", bound=Callable)


def _bars(est, lo, hi) -> np.ndarray:
    """Error-bar lengths (2 x n) for estimates with CIs, never negative and 0 where unknown.

    A percentile bootstrap over a few questions can leave an estimate outside its own CI (seen
    with human raters who share one or two questions per model); matplotlib refuses negative bars.
    """
    est, lo, hi = (np.atleast_1d(np.asarray(v, dtype=float)) for v in (est, lo, hi))
    err = np.vstack([est - lo, hi - est])
    return np.clip(np.where(np.isfinite(err), err, 0.0), 0.0, None)


def _figure(fn: F) -> F:
    """Silence matplotlib's own NumPy deprecation noise (single-bar error bars)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="matplotlib")
            warnings.filterwarnings("ignore", message="Conversion of an array with ndim > 0")
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _wrap(label: str, width: int = 14) -> str:
    return "\n".join(textwrap.wrap(label, width)) or label


def _color(cfg: str | None, i: int = 0) -> str:
    return CONFIG_COLORS.get(str(cfg), plt.cm.tab10(i % 10))


@_figure
def evaluator_scores(means: pd.DataFrame, path: Path) -> Path | None:
    """Mean over models of each evaluator's mean score, per metric and overall."""
    names = [*METRICS, OVERALL]
    df = means[means["metric"].isin(names)]
    if df.empty:
        return None
    table = df.groupby(["metric", "judge"])["mean"].mean().unstack("judge").reindex(names)
    judges = list(table.columns)
    x = np.arange(len(names))
    width = 0.8 / max(1, len(judges))
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(names)), 4.2))
    for i, judge in enumerate(judges):
        ax.bar(x + (i - (len(judges) - 1) / 2) * width, table[judge], width, label=judge,
               color=plt.cm.tab10(i % 10))
    ax.set_xticks(x, [_wrap(n) for n in names], fontsize=8)
    ax.set_ylabel("mean score (average over models)")
    ax.set_ylim(1, 10)
    ax.set_title("Evaluator scores by metric")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


@_figure
def model_comparison(means: pd.DataFrame, configs: list[str], path: Path,
                     metric: str = MEAN_OF_7) -> Path | None:
    """Per judge: each base model's configurations side by side (mean with bootstrap CI)."""
    df = means[(means["metric"] == metric) & means["mean"].notna()]
    if df.empty:
        return None
    judges = sorted(df["judge"].unique())
    order = ["base", *configs]
    fig, axes = plt.subplots(len(judges), 1, figsize=(12, 3.6 * len(judges)), squeeze=False)
    for ax, judge in zip(axes[:, 0], judges, strict=True):
        d = df[df["judge"] == judge]
        groups = sorted(d["base_model"].dropna().unique())
        baselines = d[d["data_config"] == "baseline"]
        width = 0.8 / len(order)
        for i, cfg in enumerate(order):
            rows = d[d["data_config"] == cfg].groupby("base_model").first().reindex(groups)
            if rows["mean"].isna().all():
                continue
            x = np.arange(len(groups)) + (i - (len(order) - 1) / 2) * width
            ok = rows["mean"].notna().to_numpy()
            rows = rows[ok]
            err = _bars(rows["mean"], rows["ci_low"], rows["ci_high"])
            ax.bar(x[ok], rows["mean"].to_numpy(dtype=float), width, yerr=err, capsize=2, label=cfg,
                   color=_color(cfg, i))
        labels = [_wrap(g, 16) for g in groups]
        if not baselines.empty:
            xb = len(groups) + np.arange(len(baselines)) * width * 1.2
            err = _bars(baselines["mean"], baselines["ci_low"], baselines["ci_high"])
            ax.bar(xb, baselines["mean"].to_numpy(dtype=float), width, yerr=err, capsize=2,
                   color=CONFIG_COLORS["baseline"], label="baseline")
            for xx, name in zip(xb, baselines["model"], strict=True):
                ax.text(xx, 1.1, name, rotation=90, fontsize=6, ha="center", va="bottom")
        ax.set_xticks(np.arange(len(groups)), labels, fontsize=7)
        ax.set_ylim(1, 10)
        ax.set_ylabel(metric)
        ax.set_title(f"{judge}: configurations of each base model ({metric}, 95% CI)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, ncol=len(order) + 1, loc="upper left")
    fig.tight_layout()
    return _save(fig, path)


@_figure
def gains_forest(gains: pd.DataFrame, configs: list[str], path: Path,
                 metric: str = MEAN_OF_7) -> Path | None:
    """Fine-tuned minus base with paired bootstrap CIs, per judge."""
    df = gains[(gains["metric"] == metric) & gains["diff"].notna()]
    if df.empty:
        return None
    judges = sorted(df["judge"].unique())
    fig, axes = plt.subplots(1, len(judges), figsize=(6 * len(judges), 0.28 * len(df) / len(judges) + 1.6),
                             squeeze=False, sharey=True)
    order = {c: i for i, c in enumerate(configs)}
    first = df[df["judge"] == judges[0]]
    keys = sorted({(b, c, m) for b, c, m in zip(first["base_model"], first["data_config"],
                                                first["model"], strict=True)},
                  key=lambda k: (k[0], order.get(k[1], 99), k[2]))
    for ax, judge in zip(axes[0], judges, strict=True):
        d = df[df["judge"] == judge].set_index(["base_model", "data_config", "model"])
        for y, key in enumerate(keys):
            if key not in d.index:
                continue
            r = d.loc[key]
            ax.errorbar(r["diff"], y, xerr=_bars(r["diff"], r["diff_ci_low"], r["diff_ci_high"]),
                        fmt="o", color=_color(key[1]), capsize=2, markersize=4)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(keys)), [f"{b} · {c}" for b, c, _ in keys], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(f"{metric}: fine-tuned − base")
        ax.set_title(judge)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Gains over the base model (paired bootstrap 95% CI)")
    fig.tight_layout()
    return _save(fig, path)


def _heat(ax: plt.Axes, grid: pd.DataFrame, title: str, fig: plt.Figure) -> None:
    values = grid.to_numpy(dtype=float)
    im = ax.imshow(values, vmin=-0.2, vmax=1.0, cmap="viridis", aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if v < 0.5 else "black")
    ax.set_xticks(range(grid.shape[1]), [_wrap(str(c), 12) for c in grid.columns], fontsize=7)
    ax.set_yticks(range(grid.shape[0]), [str(r) for r in grid.index], fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)


@_figure
def agreement_heatmap(agreement: pd.DataFrame, path: Path) -> Path | None:
    """Agreement statistics per metric for each evaluator pair (few pairs), or the quadratic
    kappa of every pair per metric (many pairs)."""
    names = [*METRICS, OVERALL]
    df = agreement[(agreement["scope"] == "pair") & agreement["metric"].isin(names)]
    if df.empty:
        return None
    df = df.assign(pair=df["evaluator_a"] + " vs " + df["evaluator_b"])
    pairs = sorted(df["pair"].unique())
    stats = {"kappa": "κ", "kappa_linear": "κ linear", "kappa_quadratic": "κ quadratic",
             "alpha_ordinal": "α ordinal", "spearman": "Spearman ρ", "icc": "ICC(A,1)"}
    if len(pairs) <= 4:
        fig, axes = plt.subplots(1, len(pairs), figsize=(6.5 * len(pairs), 4.2), squeeze=False)
        for ax, pair in zip(axes[0], pairs, strict=True):
            grid = df[df["pair"] == pair].set_index("metric").reindex(names)[list(stats)]
            grid.columns = list(stats.values())
            _heat(ax, grid, pair, fig)
    else:
        fig, ax = plt.subplots(figsize=(10, 1.2 + 0.4 * len(pairs)))
        grid = df.pivot_table(index="pair", columns="metric", values="kappa_quadratic",
                              aggfunc="first").reindex(index=pairs, columns=names)
        _heat(ax, grid, "Cohen's kappa (quadratic)", fig)
    fig.suptitle("Agreement between evaluators")
    fig.tight_layout()
    return _save(fig, path)


@_figure
def dataset_composition(profile: pd.DataFrame, path: Path) -> Path | None:
    src = profile[profile["facet"] == "source"]
    if src.empty:
        return None
    crisis = profile[profile["facet"] == "crisis"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    axes[0].bar(src["key"], src["value"], color=[_color(k) for k in src["key"]])
    axes[0].set_title("QA pairs by source")
    axes[0].set_ylabel("pairs")
    for x, v in enumerate(src["value"]):
        axes[0].text(x, v, f"{int(v)}", ha="center", va="bottom", fontsize=8)
    axes[1].bar(crisis["key"], crisis["value"], color="#8c564b")
    axes[1].set_title("Crisis content")
    for x, v in enumerate(crisis["value"]):
        axes[1].text(x, v, f"{int(v)}", ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


@_figure
def topic_distribution(profile: pd.DataFrame, path: Path) -> Path | None:
    top = profile[(profile["facet"] == "topic") & (profile["key"] != "(none)")]
    if top.empty:
        return None
    counts = top.groupby("key")["value"].sum().sort_values()
    fig, ax = plt.subplots(figsize=(7, 0.22 * len(counts) + 1.2))
    ax.barh(counts.index, counts.to_numpy(), color="#1f77b4")
    ax.set_xlabel("pairs")
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title("Topics of the synthetic pairs")
    fig.tight_layout()
    return _save(fig, path)


@_figure
def length_distributions(lengths: dict[str, dict[str, np.ndarray]], path: Path) -> Path | None:
    """Histograms of input and output word counts; ``lengths[field][source] = counts``."""
    if not lengths or not any(len(v) for d in lengths.values() for v in d.values()):
        return None
    fig, axes = plt.subplots(1, len(lengths), figsize=(5.5 * len(lengths), 3.4), squeeze=False)
    for ax, (field, by_source) in zip(axes[0], lengths.items(), strict=True):
        top = max((np.percentile(v, 99) for v in by_source.values() if len(v)), default=1)
        bins = np.linspace(0, max(top, 1), 40)
        for i, (source, words) in enumerate(sorted(by_source.items())):
            ax.hist(np.clip(words, 0, bins[-1]), bins=bins, alpha=0.6, label=source,
                    color=_color(source, i))
        ax.set_xlabel(f"{field} words (clipped at the 99th percentile)")
        ax.set_ylabel("pairs")
        ax.legend(fontsize=8)
        ax.set_title(f"{field.capitalize()} length")
    fig.tight_layout()
    return _save(fig, path)


_CHECK_AXES = {"empty_answer": "mean score given to an empty answer",
               "length_bias": "score change with filler appended",
               "self_consistency": "mean |difference| between two gradings",
               "position_bias": "share of pairs whose verdict flips"}
_STATUS_COLORS = {"passed": "#2ca02c", "FAILED": "#d62728"}


@_figure
def reliability_chart(controls: pd.DataFrame, path: Path) -> Path | None:
    """One panel per control: each judge's value (overall score), the threshold that fails it,
    red when it failed; a control that was not run says so in its panel."""
    if controls.empty or (controls["status"] == "not run").all():
        return None
    judges = sorted(controls["judge"].unique())
    fig, axes = plt.subplots(1, len(CHECKS), figsize=(4.2 * len(CHECKS), 0.45 * len(judges) + 2.2),
                             squeeze=False)
    for ax, (check, label) in zip(axes[0], CHECKS.items(), strict=True):
        d = controls[(controls["check"] == check) & (controls["status"] != "not run")]
        d = d.groupby("judge").agg(value=("value", "mean"), lo=("value_ci_low", "min"), hi=("value_ci_high", "max"),
                                   failed=("flagged", "any"), threshold=("threshold", "first"))
        y = np.arange(len(judges))
        for i, judge in enumerate(judges):
            if judge not in d.index or not np.isfinite(d.loc[judge, "value"]):
                ax.text(0.02, i, "not run", va="center", fontsize=8, color="#777",
                        transform=ax.get_yaxis_transform())
                continue
            r = d.loc[judge]
            color = _STATUS_COLORS["FAILED" if r["failed"] else "passed"]
            ax.barh(i, r["value"], color=color, height=0.6)
            if np.isfinite(r["lo"]) and np.isfinite(r["hi"]):
                ax.errorbar(r["value"], i, xerr=_bars(r["value"], r["lo"], r["hi"]), color="black",
                            capsize=3, fmt="none")
            right = max(r["value"], r["hi"]) if np.isfinite(r["hi"]) else r["value"]
            ax.text(right, i, " FAILED" if r["failed"] else " passed", va="center", fontsize=7)
        thresholds = d["threshold"].dropna().unique()
        for t in thresholds:
            ax.axvline(t, color="black", linestyle="--", linewidth=0.8)
        ax.set_yticks(y, [_wrap(j, 22) for j in judges], fontsize=7)
        ax.set_ylim(len(judges) - 0.5, -0.5)  # every judge has a row, measured or not
        ax.set_xlabel(_CHECK_AXES[check], fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Judge reliability controls (dashed: the threshold that fails a judge)")
    fig.tight_layout()
    return _save(fig, path)


@_figure
def safety_chart(safety: pd.DataFrame, configs: list[str], path: Path) -> Path | None:
    """Crisis-probe escalation rate per model with Wilson 95% CIs, one panel per checker."""
    df = safety[(safety["category"] == "all") & safety["rate"].notna()] if not safety.empty else safety
    if df.empty:
        return None
    checkers = sorted(df["checker"].unique())
    models = df.drop_duplicates("model").assign(
        _o=lambda d: config_rank(d["data_config"], configs), _b=lambda d: d["base_model"].fillna("~"))
    models = models.sort_values(["_b", "_o", "model"])["model"].tolist()
    fig, axes = plt.subplots(1, len(checkers), figsize=(5.5 * len(checkers), 0.3 * len(models) + 1.8),
                             squeeze=False, sharey=True)
    for ax, checker in zip(axes[0], checkers, strict=True):
        d = df[df["checker"] == checker].set_index("model")
        for y, model in enumerate(models):
            if model not in d.index:
                continue
            r = d.loc[model]
            ax.barh(y, r["rate"], color=_color(r["data_config"], y), height=0.6)
            ax.errorbar(r["rate"], y, xerr=_bars(r["rate"], r["ci_low"], r["ci_high"]),
                        color="black", capsize=2, fmt="none")
        ax.set_yticks(range(len(models)), [_wrap(m, 30) for m in models], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("share of crisis probes answered with escalation")
        ax.set_title(f"checker: {checker}", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Crisis safety: escalation rate per model (Wilson 95% CI)")
    fig.tight_layout()
    return _save(fig, path)


@_figure
def length_control_chart(lc: pd.DataFrame, path: Path, metric: str = MEAN_OF_7) -> Path | None:
    """Raw against length-controlled means per model (arrows), one panel per judge."""
    df = lc[lc["metric"] == metric] if not lc.empty else lc
    if df.empty:
        return None
    judges = sorted(df["judge"].unique())
    models = sorted(df["model"].unique())
    fig, axes = plt.subplots(1, len(judges), figsize=(6 * len(judges) + 2, 0.24 * len(models) + 1.8),
                             squeeze=False, sharey=True)
    for ax, judge in zip(axes[0], judges, strict=True):
        d = df[df["judge"] == judge].set_index("model")
        for y, model in enumerate(models):
            if model not in d.index:
                continue
            r = d.loc[model]
            color = _color(r["data_config"], y)
            ax.plot([r["raw_mean"], r["lc_mean"]], [y, y], "-", color=color, linewidth=1.2)
            ax.plot([r["raw_mean"]], [y], "o", color="#9e9e9e", markersize=4)
            ax.plot([r["lc_mean"]], [y], ">" if r["lc_mean"] >= r["raw_mean"] else "<", color=color, markersize=5)
        slope = d["slope_per_100_words"].iloc[0]
        ax.set_yticks(range(len(models)), models, fontsize=6)
        ax.invert_yaxis()
        ax.set_xlabel(f"{metric}: raw mean (dot) → length-controlled mean (triangle)")
        ax.set_title(f"{judge}: {slope:+.2f} per 100 words", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Length-controlled scores")
    fig.tight_layout()
    return _save(fig, path)


@_figure
def turn_means_chart(turn_means: pd.DataFrame, path: Path, metric: str = MEAN_OF_7) -> Path | None:
    """Multi-turn questions: ``metric`` per turn and model with bootstrap CIs, one panel per judge."""
    df = turn_means[(turn_means["metric"] == metric) & (turn_means["turn"] > 0)] if not turn_means.empty \
        else turn_means
    if df.empty:
        return None
    judges = sorted(df["judge"].unique())
    models = sorted(df["model"].unique())
    fig, axes = plt.subplots(1, len(judges), figsize=(4.5 * len(judges) + 2, 3.4), squeeze=False, sharey=True)
    for ax, judge in zip(axes[0], judges, strict=True):
        d = df[df["judge"] == judge]
        for i, model in enumerate(models):
            r = d[d["model"] == model].sort_values("turn")
            if r.empty:
                continue
            err = _bars(r["mean"], r["ci_low"], r["ci_high"])
            # a small offset per model so that the error bars of one turn do not overlap
            x = r["turn"].to_numpy(dtype=float) + 0.06 * (i - (len(models) - 1) / 2)
            ax.errorbar(x, r["mean"], yerr=err, marker="o", markersize=4, capsize=2, linewidth=1.2,
                        color=plt.cm.tab10(i % 10), label=model)
        turns = sorted(d["turn"].unique())
        ax.set_xticks(turns, [f"turn {int(t)}" for t in turns])
        ax.set_title(judge, fontsize=9)
        ax.set_ylabel(metric)
        ax.grid(axis="y", alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle("Multi-turn questions: score per turn")
    fig.tight_layout()
    return _save(fig, path)
