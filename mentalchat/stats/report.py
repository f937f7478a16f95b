"""``report.md`` and a self-contained ``report.html`` built from the statistics tables.

The report reads the tables back from the Parquet files the run wrote, so every number it
prints is in (or aggregated from) a table a reader can open. One small document model renders
to both Markdown (figures linked) and HTML (figures embedded as data URIs).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mentalchat.core.rubric import MEAN_OF_7, METRICS, OVERALL

__all__ = ["Document", "build_report", "headline"]


# ---------------------------------------------------------------------------------------------
# A tiny document model
# ---------------------------------------------------------------------------------------------
@dataclass
class _Block:
    kind: str  # h | p | table | image | list
    data: Any
    level: int = 2
    caption: str = ""


@dataclass
class Document:
    title: str
    blocks: list[_Block] = field(default_factory=list)

    def h(self, text: str, level: int = 2) -> None:
        self.blocks.append(_Block("h", text, level))

    def p(self, text: str) -> None:
        self.blocks.append(_Block("p", text))

    def bullets(self, items: Sequence[str]) -> None:
        if items:
            self.blocks.append(_Block("list", list(items)))

    def table(self, df: pd.DataFrame, caption: str = "") -> None:
        if not df.empty:
            self.blocks.append(_Block("table", df, caption=caption))

    def image(self, path: Path | None, caption: str) -> None:
        if path is not None and Path(path).is_file():
            self.blocks.append(_Block("image", Path(path), caption=caption))

    def to_markdown(self, root: Path) -> str:
        out = [f"# {self.title}", ""]
        for b in self.blocks:
            if b.kind == "h":
                out += ["#" * b.level + " " + b.data, ""]
            elif b.kind == "p":
                out += [b.data, ""]
            elif b.kind == "list":
                out += [f"- {item}" for item in b.data] + [""]
            elif b.kind == "table":
                if b.caption:
                    out += [f"*{b.caption}*", ""]
                out += [_md_table(b.data), ""]
            elif b.kind == "image":
                rel = b.data.relative_to(root) if b.data.is_relative_to(root) else b.data
                out += [f"![{b.caption}]({rel.as_posix()})", "", f"*{b.caption}*", ""]
        return "\n".join(out).rstrip() + "\n"

    def to_html(self) -> str:
        parts = [
            "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(self.title)}</title>",
            "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;"
            "padding:0 1em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em;"
            "font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}"
            "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
            "img{max-width:100%}figcaption,.cap{font-style:italic;color:#555;font-size:13px}"
            "</style></head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
        ]
        for b in self.blocks:
            if b.kind == "h":
                parts.append(f"<h{b.level}>{html.escape(b.data)}</h{b.level}>")
            elif b.kind == "p":
                parts.append(f"<p>{_inline_html(b.data)}</p>")
            elif b.kind == "list":
                parts.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in b.data) + "</ul>")
            elif b.kind == "table":
                if b.caption:
                    parts.append(f'<p class="cap">{html.escape(b.caption)}</p>')
                parts.append(_html_table(b.data))
            elif b.kind == "image":
                data = base64.b64encode(b.data.read_bytes()).decode()
                parts.append(f'<figure><img alt="{html.escape(b.caption)}" '
                             f'src="data:image/png;base64,{data}"><figcaption>'
                             f"{html.escape(b.caption)}</figcaption></figure>")
        parts.append("</body></html>")
        return "\n".join(parts) + "\n"


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    if isinstance(v, float | np.floating):
        return f"{v:.3g}" if abs(v) < 0.01 and v != 0 else f"{v:.2f}"
    return str(v)


def _md_table(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(c.replace("|", "\\|") for c in cols) + " |",
             "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines)


def _html_table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
        for row in df.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _inline_html(text: str) -> str:
    out = html.escape(text)
    parts = out.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _ci(mean: float, lo: float, hi: float, digits: int = 2) -> str:
    if mean is None or not np.isfinite(mean):
        return "–"
    if lo is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


# ---------------------------------------------------------------------------------------------
# Headline numbers (also used by docs/reproduction.md)
# ---------------------------------------------------------------------------------------------
def headline(tables: dict[str, pd.DataFrame], configs: list[str]) -> dict[str, pd.DataFrame]:
    """The summary tables the report opens with, aggregated from the Parquet tables.

    - ``wins_by_config``: per judge and configuration, how many (base model, metric) cells of
      the seven metrics it wins, out of how many;
    - ``winner_by_metric``: per judge and score name, the win counts of each configuration;
    - ``avg_gain``: per judge and configuration, the mean over base models of the gain in
      ``mean_of_7`` and ``overall`` (absolute and relative), and how many of the 7-metric
      comparisons are positive and significant;
    - ``all7_positive``: per judge and configuration, the fine-tuned models whose gain is
      positive on all seven metrics;
    - ``judge_agreement``: per evaluator pair, kappas and correlations on key score names.
    """
    out: dict[str, pd.DataFrame] = {}
    wins, gains, agreement = tables["wins"], tables["gains"], tables["agreement"]
    order = {c: i for i, c in enumerate(["base", *configs])}
    if not wins.empty:
        w7 = wins[wins["metric"].isin(METRICS)]
        agg = w7.groupby(["judge", "data_config"]).agg(
            wins=("is_winner", "sum"), cells=("is_winner", "size")).reset_index()
        agg["share"] = agg["wins"] / agg["cells"]
        agg["_o"] = agg["data_config"].map(order)
        out["wins_by_config"] = agg.sort_values(["judge", "_o"]).drop(columns="_o") \
            .reset_index(drop=True)
        per = wins.drop_duplicates(["judge", "metric", "data_config"])
        per = per[per["win_count"] > 0].copy()
        per["_o"] = per["data_config"].map(order)
        per = per.sort_values(["judge", "metric", "win_count", "_o"], ascending=[True, True, False, True])
        cell = per.groupby(["judge", "metric"]).apply(
            lambda d: ", ".join(f"{c} {n}/{t}" for c, n, t in
                                zip(d["data_config"], d["win_count"], d["n_bases"], strict=True)),
            include_groups=False,
        )
        table = cell.unstack("judge").reindex([*METRICS, OVERALL, MEAN_OF_7]).dropna(how="all")
        out["winner_by_metric"] = table.reset_index().rename(columns={"metric": "metric"})
    if not gains.empty:
        key = gains[gains["metric"].isin([MEAN_OF_7, OVERALL])]
        avg = key.pivot_table(index=["judge", "data_config"], columns="metric",
                              values=["diff", "rel_gain"], aggfunc="mean")
        avg.columns = [f"{v} {m}" for v, m in avg.columns]
        g7 = gains[gains["metric"].isin(METRICS)]
        counts = g7.groupby(["judge", "data_config"]).agg(
            comparisons=("diff", "size"),
            positive=("diff", lambda s: int((s > 0).sum())),
            positive_significant=("significant", lambda s: int(s.fillna(False).sum())),
        )
        # significant gains in the positive direction only
        sig_pos = g7[(g7["diff"] > 0) & g7["significant"].fillna(False).astype(bool)] \
            .groupby(["judge", "data_config"]).size()
        counts["positive_significant"] = sig_pos.reindex(counts.index).fillna(0).astype(int)
        avg = avg.join(counts).reset_index()
        avg["n_bases"] = avg.apply(
            lambda r: gains[(gains["judge"] == r["judge"]) & (gains["data_config"] == r["data_config"])]
            ["base_model"].nunique(), axis=1)
        avg["_o"] = avg["data_config"].map(order)
        out["avg_gain"] = avg.sort_values(["judge", "_o"]).drop(columns="_o").reset_index(drop=True)
        pos = g7.groupby(["judge", "data_config", "model"])["diff"].apply(lambda s: bool((s > 0).all())
                                                                         and len(s) == len(METRICS))
        allp = pos.groupby(["judge", "data_config"]).agg(["sum", "size"]).reset_index()
        allp.columns = ["judge", "data_config", "all_7_positive", "models"]
        allp["_o"] = allp["data_config"].map(order)
        out["all7_positive"] = allp.sort_values(["judge", "_o"]).drop(columns="_o") \
            .reset_index(drop=True)
    if not agreement.empty:
        pairs = agreement[agreement["scope"] == "pair"]
        rows = []
        for (a, b), d in pairs.groupby(["evaluator_a", "evaluator_b"]):
            d = d.set_index("metric")
            m7 = d.loc[d.index.isin(METRICS)]

            def get(metric: str, col: str, d: pd.DataFrame = d) -> float:
                return float(d.loc[metric, col]) if metric in d.index else np.nan

            rows.append({
                "evaluator_a": a, "evaluator_b": b,
                "items": int(d["n_items"].max()),
                "kappa_quadratic overall": get(OVERALL, "kappa_quadratic"),
                "kappa_quadratic mean over 7 metrics": float(m7["kappa_quadratic"].mean()),
                "kappa (unweighted) mean over 7": float(m7["kappa"].mean()),
                "spearman mean_of_7": get(MEAN_OF_7, "spearman"),
                "icc mean_of_7": get(MEAN_OF_7, "icc"),
                "exact agreement mean over 7": float(m7["exact_agreement"].mean()),
            })
        out["judge_agreement"] = pd.DataFrame(rows)
    return out


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------
def build_report(
    out_dir: Path,
    tables: dict[str, pd.DataFrame],
    figures: dict[str, Path | None],
    *,
    title: str,
    configs: list[str],
    inputs: list[str],
    notes: list[str],
    unmapped: list[str],
    method: dict[str, Any],
) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``out_dir``; returns their paths."""
    means, gains, wins = tables["means"], tables["gains"], tables["wins"]
    agreement, coverage = tables["agreement"], tables["coverage"]
    doc = Document(title)
    judges = sorted(means["judge"].unique())
    n_models = means["model"].nunique()
    doc.p(
        f"{len(judges)} evaluator(s) ({', '.join(f'`{j}`' for j in judges)}), {n_models} models, "
        f"{int(coverage['n_items'].sum())} judgments. Inputs: " + ", ".join(f"`{i}`" for i in inputs)
        + "."
    )
    doc.p(
        f"Confidence intervals: percentile bootstrap over questions, {method['bootstrap']} "
        f"resamples, level {method['ci_level']:.0%}, seed {method['seed']}; the same resamples "
        f"serve every table. Gains are paired by question; p-values are Wilcoxon signed-rank "
        f"(zero method `{method['wilcoxon_zero_method']}`), adjusted with `{method['correction']}` "
        f"within each `{method['correction_family']}` family. `mean_of_7` is the mean of the "
        f"seven metric scores of one judgment, defined when at least "
        f"{method['mean_of_7_min_metrics']} were read."
    )

    head = headline(tables, configs)
    doc.h("Headline")
    if "wins_by_config" in head:
        doc.table(head["wins_by_config"],
                  "Wins over the seven metrics: for how many (base model, metric) cells each "
                  "configuration scores highest (ties count for each), per judge (wins table).")
    if "winner_by_metric" in head:
        doc.table(head["winner_by_metric"],
                  "Winning configuration per metric: configuration wins/base models (wins table).")
    if "avg_gain" in head:
        doc.table(head["avg_gain"],
                  "Average gain over base models per configuration (gains table): diff = "
                  "fine-tuned − base, rel_gain = fine-tuned/base − 1; comparisons over the seven "
                  "metrics × base models, how many are positive and how many positive and "
                  "significant after correction.")
    if "all7_positive" in head:
        doc.table(head["all7_positive"],
                  "Fine-tuned models that beat their base model on all seven metrics (gains table).")
    if "judge_agreement" in head:
        doc.table(head["judge_agreement"], "Agreement between evaluators (agreement table).")

    doc.h("Coverage: what could not be scored")
    cov = coverage.groupby("judge")[["n_items", "n_ok", "n_partial", "n_unparsed", "n_failed",
                                     "n_human", "n_missing_metric_scores",
                                     "n_missing_overall"]].sum().reset_index()
    doc.table(cov, "Judgments per evaluator by parse status, and missing scores (coverage table). "
                   "Missing scores stay in n_items of the means table; means use the n scored.")
    worst = coverage.assign(unscored=coverage["n_items"] - coverage["n_all_metrics"])
    worst = worst[worst["unscored"] > 0].sort_values("unscored", ascending=False).head(10)
    doc.table(worst[["model", "judge", "n_items", "unscored", "n_unparsed", "n_failed",
                     "n_missing_overall"]],
              "Models with the most judgments lacking some metric score (coverage table).")
    if unmapped:
        doc.p("Models with no base model / data configuration (reported, not guessed; they "
              "appear in means and agreement but not in gains or wins): "
              + ", ".join(f"`{u}`" for u in unmapped) + ".")

    doc.h("Mean scores")
    m7 = means[means["metric"] == MEAN_OF_7].copy()
    if not m7.empty:
        m7["value"] = [_ci(a, b, c) for a, b, c in zip(m7["mean"], m7["ci_low"], m7["ci_high"],
                                                        strict=True)]
        m7["n"] = [f"{n}/{t}" if n != t else f"{n}" for n, t in zip(m7["n"], m7["n_items"], strict=True)]
        m7["base_model"] = m7["base_model"].fillna("–")
        m7["data_config"] = m7["data_config"].fillna("(unmapped)")
        keys = ["base_model", "data_config", "model"]
        piv = m7.pivot(index=keys, columns="judge", values="value")
        piv_n = m7.pivot(index=keys, columns="judge", values="n")
        piv_n.columns = [f"n {c}" for c in piv_n.columns]
        order = {c: i for i, c in enumerate(["base", *configs, "baseline"])}
        t = piv.join(piv_n).reset_index()
        t = t.assign(_b=t["base_model"] == "–", _o=t["data_config"].map(order).fillna(99)) \
            .sort_values(["_b", "base_model", "_o", "model"]).drop(columns=["_b", "_o"])
        doc.table(t, "mean_of_7 with 95% bootstrap CI per model and evaluator; n = scored/all "
                     "judgments where they differ; baselines last (means table).")
    per_metric = means[means["metric"].isin([*METRICS, OVERALL])]
    if not per_metric.empty:
        t = per_metric.pivot_table(index="metric", columns=["judge", "data_config"], values="mean",
                                   aggfunc="mean").reindex([*METRICS, OVERALL])
        t.columns = [f"{j} · {c}" for j, c in t.columns]
        doc.table(t.reset_index(), "Mean score per metric, averaged over the models of each "
                                   "configuration (means table).")

    doc.h("Gains over the base model")
    if gains.empty:
        doc.p("No fine-tuned model could be paired with its untuned base model.")
    else:
        g = gains[gains["metric"] == MEAN_OF_7].copy()
        g["diff [95% CI]"] = [_ci(a, b, c) for a, b, c in zip(g["diff"], g["diff_ci_low"],
                                                              g["diff_ci_high"], strict=True)]
        g["rel_gain [95% CI]"] = [
            _ci(100 * a, 100 * b, 100 * c, 1) + " %" if np.isfinite(a) else "–"
            for a, b, c in zip(g["rel_gain"], g["rel_gain_ci_low"], g["rel_gain_ci_high"], strict=True)
        ]
        doc.table(g[["judge", "base_model", "data_config", "n_pairs", "mean_base", "mean_tuned",
                     "diff [95% CI]", "rel_gain [95% CI]", "p_adjusted"]],
                  "mean_of_7: fine-tuned − base on paired questions (gains table).")
        gm = gains[gains["metric"].isin([*METRICS, OVERALL])].pivot_table(
            index="metric", columns=["judge", "data_config"], values="diff", aggfunc="mean") \
            .reindex([*METRICS, OVERALL])
        gm.columns = [f"{j} · {c}" for j, c in gm.columns]
        doc.table(gm.reset_index(), "Average gain per metric over base models (gains table).")

    doc.h("Which configuration wins")
    if wins.empty:
        doc.p("No base model has both an untuned and a fine-tuned model in the judgments.")
    else:
        for judge in sorted(wins["judge"].unique()):
            w = wins[(wins["judge"] == judge) & wins["is_winner"]]
            cell = w.groupby(["base_model", "metric"])["data_config"].apply(lambda s: " = ".join(s))
            t = cell.unstack("metric").reindex(columns=[*METRICS, OVERALL, MEAN_OF_7])
            t = t.dropna(axis=1, how="all").reset_index()
            doc.table(t, f"{judge}: highest-scoring configuration per base model and metric "
                         "(wins table; '=' marks ties).")

    doc.h("Agreement between evaluators")
    if agreement.empty:
        doc.p("Only one evaluator: no agreement to compute.")
    else:
        pairs = agreement[agreement["scope"] == "pair"].copy()
        pairs["kappa [CI]"] = [_ci(a, b, c) for a, b, c in zip(pairs["kappa"], pairs["kappa_ci_low"],
                                                               pairs["kappa_ci_high"], strict=True)]
        pairs["linear [CI]"] = [_ci(a, b, c) for a, b, c in zip(
            pairs["kappa_linear"], pairs["kappa_linear_ci_low"], pairs["kappa_linear_ci_high"], strict=True)]
        pairs["quadratic [CI]"] = [_ci(a, b, c) for a, b, c in zip(
            pairs["kappa_quadratic"], pairs["kappa_quadratic_ci_low"], pairs["kappa_quadratic_ci_high"],
            strict=True)]
        pairs["ICC(A,1) [CI]"] = [_ci(a, b, c) for a, b, c in zip(
            pairs["icc"], pairs["icc_ci_low"], pairs["icc_ci_high"], strict=True)]
        doc.table(pairs[["evaluator_a", "evaluator_b", "metric", "n_items", "kappa [CI]",
                         "linear [CI]", "quadratic [CI]", "alpha_ordinal", "spearman",
                         "ICC(A,1) [CI]", "exact_agreement", "mean_diff"]],
                  "Pairwise agreement on shared items; mean_diff = a − b (agreement table).")
        allr = agreement[agreement["scope"] == "all"]
        doc.table(allr[["n_evaluators", "metric", "n_items", "fleiss_kappa", "alpha_ordinal"]],
                  "All evaluators: Fleiss' kappa (items scored by all) and Krippendorff's alpha "
                  "(items scored at least twice) (agreement table).")

    doc.h("Figures")
    captions = {
        "evaluator_scores": "Evaluator scores by metric (means table, averaged over models).",
        "model_comparison": "Model comparison across configurations (means table).",
        "gains": "Gains with paired bootstrap CIs (gains table).",
        "agreement": "Agreement heatmap (agreement table).",
        "dataset_composition": "Dataset composition (dataset_profile table).",
        "topics": "Topic distribution (dataset_profile table).",
        "lengths": "Input and output length distributions (dataset).",
    }
    for key, cap in captions.items():
        doc.image(figures.get(key), cap)

    profile = tables.get("dataset_profile")
    if profile is not None and not profile.empty:
        doc.h("Dataset")
        src = profile[profile["facet"] == "source"][["key", "value"]].rename(
            columns={"key": "source", "value": "pairs"})
        doc.table(src, "QA pairs by source (dataset_profile table).")
        lengths = profile[profile["facet"].str.endswith("_words")]
        if not lengths.empty:
            lt = lengths.pivot_table(index=["facet", "group"], columns="key", values="value",
                                     aggfunc="first").reset_index()
            doc.table(lt, "Words per input and output (dataset_profile table).")
        crisis = profile[profile["facet"] == "crisis"][["key", "value"]]
        doc.table(crisis, "Crisis-flagged pairs (dataset_profile table).")

    if notes:
        doc.h("Notes")
        doc.bullets(notes)

    md_path = out_dir / "report.md"
    html_path = out_dir / "report.html"
    md_path.write_text(doc.to_markdown(out_dir), encoding="utf-8")
    html_path.write_text(doc.to_html(), encoding="utf-8")
    return md_path, html_path
