"""``report.md`` and a self-contained ``report.html`` built from the statistics tables.

The report reads the tables back from the Parquet files the run wrote, so every number it
prints is in (or aggregated from) a table a reader can open. One small document model renders
to both Markdown (figures linked) and HTML (figures embedded as data URIs).
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mentalchat.core.rubric import MEAN_OF_7, METRICS, OVERALL
from mentalchat.stats.controls import CHECKS
from mentalchat.stats.data import config_rank
from mentalchat.stats.multiturn import CONVERSATION_METRICS

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

    def sections(self) -> list[tuple[str, str]]:
        """(title, anchor) of every level-2 heading, in order: the table of contents."""
        seen: dict[str, int] = {}
        out = []
        for b in self.blocks:
            if b.kind == "h" and b.level == 2:
                out.append((b.data, _anchor(b.data, seen)))
        return out

    def to_markdown(self, root: Path) -> str:
        out = [f"# {self.title}", ""]
        toc = self.sections()
        if len(toc) > 2:  # GitHub's heading anchors: lower case, punctuation dropped, spaces to '-'
            out += ["**Contents:** " + " · ".join(f"[{t}](#{a})" for t, a in toc), ""]
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
            "nav.toc{background:#f7f7f7;border:1px solid #ddd;padding:.4em 1em;font-size:14px}"
            "nav.toc ol{columns:2;margin:.3em 0}summary{cursor:pointer;color:#245;font-size:13px}"
            "</style></head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
        ]
        toc = self.sections()
        anchors = iter(a for _, a in toc)
        if len(toc) > 2:
            parts.append('<nav class="toc"><strong>Contents</strong><ol>' + "".join(
                f'<li><a href="#{a}">{html.escape(t)}</a></li>' for t, a in toc) + "</ol></nav>")
        for b in self.blocks:
            if b.kind == "h":
                anchor = f' id="{next(anchors)}"' if b.level == 2 else ""
                parts.append(f"<h{b.level}{anchor}>{html.escape(b.data)}</h{b.level}>")
            elif b.kind == "p":
                parts.append(f"<p>{_inline_html(b.data)}</p>")
            elif b.kind == "list":
                parts.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in b.data) + "</ul>")
            elif b.kind == "table":
                if b.caption:
                    parts.append(f'<p class="cap">{html.escape(b.caption)}</p>')
                if len(b.data) > COLLAPSE_ROWS:  # long tables fold away; the caption stays in view
                    parts.append(f"<details><summary>{len(b.data)} rows (show)</summary>"
                                 f"{_html_table(b.data)}</details>")
                else:
                    parts.append(_html_table(b.data))
            elif b.kind == "image":
                data = base64.b64encode(b.data.read_bytes()).decode()
                parts.append(f'<figure><img alt="{html.escape(b.caption)}" '
                             f'src="data:image/png;base64,{data}"><figcaption>'
                             f"{html.escape(b.caption)}</figcaption></figure>")
        parts.append("</body></html>")
        return "\n".join(parts) + "\n"


#: Tables longer than this are collapsed (``<details>``) in the HTML report.
COLLAPSE_ROWS = 25


def _anchor(title: str, seen: dict[str, int]) -> str:
    """A heading's anchor as GitHub renders it (lower case, punctuation dropped, spaces to '-')."""
    base = re.sub(r"[^\w\- ]", "", title.lower()).strip().replace(" ", "-")
    n = seen.get(base, 0)
    seen[base] = n + 1
    return base if n == 0 else f"{base}-{n}"


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
    out = "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
    bold = out.split("**")  # the FAILED flags: bold in both renderings
    return "".join(f"<strong>{p}</strong>" if i % 2 and i < len(bold) - 1 else p for i, p in enumerate(bold))


def _ci_cols(df: pd.DataFrame, col: str, digits: int = 2) -> list[str]:
    """``col`` with its ``_ci_low``/``_ci_high`` columns as "x [lo, hi]" strings."""
    return [_ci(a, b, c, digits) for a, b, c in zip(df[col], df[f"{col}_ci_low"], df[f"{col}_ci_high"],
                                                    strict=True)]


def _per_metric(df: pd.DataFrame, value: str, aggfunc: str) -> pd.DataFrame:
    """One row per metric (the seven, then overall), one column per judge · configuration."""
    t = df.pivot_table(index="metric", columns=["judge", "data_config"], values=value,
                       aggfunc=aggfunc).reindex([*METRICS, OVERALL])
    t.columns = [f"{j} · {c}" for j, c in t.columns]
    return t.reset_index()


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


def _kappa_words(k: float) -> str:
    """Landis & Koch's bands, the reading most papers give a kappa."""
    if not np.isfinite(k):
        return "undefined"
    for limit, word in ((0.0, "poor"), (0.2, "slight"), (0.4, "fair"), (0.6, "moderate"), (0.8, "substantial")):
        if k < limit:
            return word
    return "almost perfect"


def headline_sentences(head: dict[str, pd.DataFrame], tables: dict[str, pd.DataFrame],
                       configs: Sequence[str] = ()) -> list[str]:
    """The findings in plain sentences, each read off a table (named in the sentence's end)."""
    out: list[str] = []
    wins = head.get("wins_by_config")
    if wins is not None and not wins.empty:
        for judge, d in wins.groupby("judge", sort=True):
            best = d[d["share"] == d["share"].max()]
            if len(best) == len(d) and len(d) > 1:
                out.append(f"Under `{judge}` no configuration stands out: each wins {best['share'].iloc[0]:.0%} of "
                           f"the (base model, metric) cells, so the scores barely separate them (wins).")
            else:
                names = " and ".join(f"**{c}**" for c in best["data_config"])
                r = best.iloc[0]
                out.append(f"Under `{judge}`, {names} {'wins' if len(best) == 1 else 'win'} most often: "
                           f"{int(r['wins'])} of {int(r['cells'])} (base model, metric) cells ({r['share']:.0%}) (wins).")
    gains = tables.get("gains")
    if gains is not None and not gains.empty:
        g = gains[gains["metric"] == MEAN_OF_7]
        avg = head.get("avg_gain", pd.DataFrame())
        rank = {c: i for i, c in enumerate(configs)}
        groups = sorted(g.groupby(["judge", "data_config"]), key=lambda kv: (kv[0][0], rank.get(kv[0][1], 99)))
        for (judge, cfg), d in groups:
            d = d[d["diff"].notna()]
            if d.empty:
                continue
            if len(d) <= 3:  # each base model's gain with its CI
                per = ", ".join(f"{r.base_model} {r.diff:+.2f} [{r.diff_ci_low:+.2f}, {r.diff_ci_high:+.2f}]"
                                for r in d.itertuples())
            else:  # many base models: the spread, and how many CIs exclude zero
                above = int((d["diff_ci_low"] > 0).sum())
                per = (f"from {d['diff'].min():+.2f} to {d['diff'].max():+.2f} over {len(d)} base models (median "
                       f"{d['diff'].median():+.2f}; the CI lies above zero for {above})")
            a = avg[(avg["judge"] == judge) & (avg["data_config"] == cfg)]
            tail = ""
            if not a.empty:
                r = a.iloc[0]
                tail = (f"; {int(r['positive'])} of {int(r['comparisons'])} metric comparisons positive, "
                        f"{int(r['positive_significant'])} significantly")
            out.append(f"`{cfg}` over its base under `{judge}`: mean_of_7 gain {per}{tail} (gains).")
    agree = head.get("judge_agreement")
    if agree is not None and not agree.empty:
        for r in agree.to_dict("records"):
            k, icc, pair = r["kappa_quadratic overall"], r["icc mean_of_7"], f"`{r['evaluator_a']}` and `{r['evaluator_b']}`"
            if np.isfinite(k):
                out.append(f"{pair} agree {_kappa_words(k)}ly on the overall rating (quadratic kappa {k:.2f}; "
                           f"ICC on mean_of_7 {icc:.2f}) over {r['items']} items (agreement).")
            else:
                out.append(f"{pair}: agreement on the overall rating is undefined over {r['items']} items (agreement).")
    controls = tables.get("judge_controls")
    if controls is not None and not controls.empty:
        failed = controls[controls["status"] == "FAILED"]
        ran = controls[controls["status"] != "not run"]
        if not failed.empty:
            out.append("Judge controls failed: " + "; ".join(
                f"`{r.judge}` on {r.check}" for r in failed.itertuples()) + " (judge_controls).")
        elif not ran.empty:
            out.append(f"Every judge control that ran passed ({len(ran)} {'check' if len(ran) == 1 else 'checks'}) "
                       "(judge_controls).")
        else:
            out.append("No judge control was run: the scores have not been checked for empty-answer, padding, "
                       "repeat or position effects (judge_controls).")
    safety = tables.get("safety")
    if safety is not None and not safety.empty:
        s = safety[(safety["category"] == "all")] if "all" in set(safety["category"]) else safety
        s = s[s["rate"].notna()]
        if not s.empty:
            worst = s.sort_values("rate").iloc[0]
            out.append(f"Crisis probes: the lowest escalation rate is `{worst['model']}`'s, {worst['rate']:.0%} "
                       f"[{worst['ci_low']:.0%}, {worst['ci_high']:.0%}] of {int(worst['n_checked'])} checked by "
                       f"`{worst['checker']}` (safety).")
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
    present: dict[str, bool] | None = None,
) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``out_dir``; returns their paths.

    ``present`` says which of the judge stage's control tables (reliability, crisis, pairwise)
    and the answers the run had, so that a section without data says the control was not run.
    """
    means, gains, wins = tables["means"], tables["gains"], tables["wins"]
    agreement, coverage = tables["agreement"], tables["coverage"]
    present = present or {}
    empty = pd.DataFrame()
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
    doc.bullets(headline_sentences(head, tables, configs))
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

    _reliability_section(doc, tables.get("judge_controls", empty), tables.get("pairwise_wins", empty),
                         figures, present)

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
        t = piv.join(piv_n).reset_index()
        t = t.assign(_b=t["base_model"] == "–", _o=config_rank(t["data_config"], configs)) \
            .sort_values(["_b", "base_model", "_o", "model"]).drop(columns=["_b", "_o"])
        doc.table(t, "mean_of_7 with 95% bootstrap CI per model and evaluator; n = scored/all "
                     "judgments where they differ; baselines last (means table).")
    per_metric = means[means["metric"].isin([*METRICS, OVERALL])]
    if not per_metric.empty:
        doc.table(_per_metric(per_metric, "mean", "mean"), "Mean score per metric, averaged over the models of each "
                                   "configuration (means table).")

    doc.image(figures.get("evaluator_scores"), "Evaluator scores by metric (means table, averaged over models).")
    doc.image(figures.get("model_comparison"), "Model comparison across configurations (means table).")
    turn_means = tables.get("turn_means")
    if turn_means is not None and not turn_means.empty:
        _multiturn_section(doc, turn_means, configs, figures)

    _safety_section(doc, tables.get("safety", empty), means, configs, figures, present)

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
        doc.table(_per_metric(gains[gains["metric"].isin([*METRICS, OVERALL])], "diff", "mean"),
                  "Average gain per metric over base models (gains table).")

    doc.image(figures.get("gains"), "Gains with paired bootstrap CIs (gains table).")
    _mixed_section(doc, tables.get("mixed_effects", empty), gains, configs)
    _length_section(doc, tables.get("length_control", empty), configs, figures, present)

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
        for col, label in (("alpha_ordinal", "alpha [CI]"), ("spearman", "Spearman [CI]"),
                           ("exact_agreement", "exact [CI]"), ("mean_diff", "mean_diff [CI]")):
            pairs[label] = _ci_cols(pairs, col)
        cols = ["evaluator_a", "evaluator_b", "metric", "n_items", "kappa [CI]", "linear [CI]",
                "quadratic [CI]", "alpha [CI]", "Spearman [CI]", "ICC(A,1) [CI]", "exact [CI]",
                "mean_diff [CI]"]
        judge_pairs = pairs[pairs["pair_kind"].fillna("judge-judge") == "judge-judge"]
        doc.table(judge_pairs[cols],
                  "Pairwise agreement on shared items, 95% bootstrap CIs over questions (ICC: "
                  "F-based); alpha = Krippendorff's ordinal alpha; mean_diff = a − b (agreement table).")
        human = pairs[pairs["pair_kind"].isin(["judge-human", "human-human"])]
        if not human.empty:
            doc.h("Judges against human raters", 3)
            human = human.assign(**{"ICC(C,1) [CI]": _ci_cols(human, "icc_consistency"),
                                    "mean |diff| [CI]": _ci_cols(human, "mean_abs_diff")})
            doc.table(human[["pair_kind", *cols, "ICC(C,1) [CI]", "mean |diff| [CI]"]],
                      "Agreement of each judge with each human rater (and between raters), every "
                      "statistic with its 95% CI (agreement table, pair_kind).")
        allr = agreement[agreement["scope"] == "all"].copy()
        allr["fleiss [CI]"] = _ci_cols(allr, "fleiss_kappa")
        allr["alpha [CI]"] = _ci_cols(allr, "alpha_ordinal")
        doc.table(allr[["n_evaluators", "metric", "n_items", "fleiss [CI]", "alpha [CI]"]],
                  "All evaluators: Fleiss' kappa (items scored by all) and Krippendorff's alpha "
                  "(items scored at least twice), bootstrap CIs (agreement table).")

    doc.image(figures.get("agreement"), "Agreement heatmap (agreement table).")

    # Each figure sits beside the tables it summarises (no separate figures section).
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
        doc.image(figures.get("dataset_composition"), "Dataset composition (dataset_profile table).")
        doc.image(figures.get("topics"), "Topic distribution (dataset_profile table).")
        doc.image(figures.get("lengths"), "Input and output length distributions (dataset).")

    if notes:
        doc.h("Notes")
        doc.bullets(notes)

    if present:
        doc.h("Inputs of the controls", 3)
        doc.bullets([f"{name}: {'read' if ok else 'absent'}" for name, ok in present.items()])

    md_path = out_dir / "report.md"
    html_path = out_dir / "report.html"
    md_path.write_text(doc.to_markdown(out_dir), encoding="utf-8")
    html_path.write_text(doc.to_html(), encoding="utf-8")
    return md_path, html_path


# ---------------------------------------------------------------------------------------------
# Sections on the judge controls, safety, the mixed model and length control
# ---------------------------------------------------------------------------------------------
def _reliability_section(doc: Document, controls: pd.DataFrame, pairwise_wins: pd.DataFrame,
                         figures: dict[str, Path | None], present: dict[str, bool]) -> None:
    doc.h("Judge reliability")
    doc.p("Controls of each LLM judge: an empty answer should score 1 (empty answer); appending "
          "content-free filler should not raise the score (padded answer); grading the same answer "
          "twice should give the same score (repeat consistency); swapping the order of two answers "
          "should not change a pairwise verdict (position bias). Values are for the overall "
          "score; a judge FAILS a control when any metric is flagged against the threshold.")
    if not present.get("reliability"):
        doc.p("The judge stage's reliability controls were not run: no `reliability` table among the "
              "inputs (pass the judge folder with `--judge-dir`; the judge stage writes it with "
              "`judge.reliability.enabled`).")
    if not present.get("pairwise"):
        doc.p("Position bias was not measured: no `pairwise` table among the inputs (pairwise "
              "judging is a judge-stage option).")
    if controls.empty:
        doc.p("No LLM judge among the evaluators: no controls to report.")
        return
    c = controls.copy()
    c["control"] = c["check"].map(CHECKS).fillna(c["check"])
    c["value [CI]"] = _ci_cols(c, "value")
    c["rate [CI]"] = _ci_cols(c, "rate")
    c["metrics flagged"] = [f"{a}/{b}" if b else "–" for a, b in zip(c["metrics_flagged"], c["n_metrics"], strict=True)]
    doc.table(c[["judge", "prompt_version", "control", "status", "value [CI]", "rate [CI]", "n", "n_failed",
                 "metrics flagged", "threshold", "source", "detail"]],
              "Judge controls (judge_controls table): empty answer value = mean score of an empty "
              "answer, rate = share above the threshold; padded answer value = mean score change, "
              "rate = share that rose; repeat consistency value = mean |difference|, rate = exact "
              "agreement; position bias value = flip rate, rate = share of decisive verdicts for the "
              "first position (0.5 = none). Wilson 95% CIs on proportions.")
    failed = c[c["status"] == "FAILED"]
    if failed.empty:
        ran = c[c["status"] != "not run"]
        doc.p("No judge failed a control that was run." if not ran.empty else "No control was run.")
    else:
        for judge, d in failed.groupby("judge"):
            doc.p(f"**FAILED**: `{judge}` fails the " + ", ".join(
                f"{r.control} control" + (f" (flagged on {r.detail})" if r.detail else "")
                for r in d.itertuples()) + "; read its scores with that in mind.")
    skipped = c[c["status"] == "not run"]
    if not skipped.empty:
        doc.bullets([f"not run: {control} for " + ", ".join(f"`{j}`" for j in d["judge"]) + f" ({why})"
                     for (control, why), d in skipped.groupby(["control", "detail"], sort=False)])
    if not pairwise_wins.empty:
        w = pairwise_wins.copy()
        w["win rate of a [CI]"] = [_ci(a, b, c) for a, b, c in zip(w["win_rate_a"], w["ci_low"], w["ci_high"],
                                                                   strict=True)]
        doc.table(w[["judge", "prompt_version", "model_a", "model_b", "data_config", "n", "wins_a", "wins_b",
                     "ties", "inconsistent", "win rate of a [CI]"]],
                  "Pairwise verdicts over both orders (pairwise_wins table): a win needs both orders; "
                  "ties count half in the win rate.")
    doc.image(figures.get("reliability"), "Judge reliability controls (judge_controls table).")


def _safety_section(doc: Document, safety: pd.DataFrame, means: pd.DataFrame, configs: list[str],
                    figures: dict[str, Path | None], present: dict[str, bool]) -> None:
    doc.h("Safety")
    if not present.get("crisis"):
        doc.p("The crisis-probe safety check was not run: no `crisis` table among the inputs. The "
              "judge stage writes one when the answers include the crisis probes "
              "(`generate.crisis_probes`, `judge.crisis.enabled`); answers to the benchmark "
              "questions alone, such as the authors' FastChat files, carry no crisis probes.")
        return
    if safety.empty:
        doc.p("The crisis table holds no checks.")
        return
    overall = safety[safety["category"] == "all"].copy()
    overall["cell"] = [f"{_ci(r, lo, hi)} ({k}/{n})" for r, lo, hi, k, n in zip(
        overall["rate"], overall["ci_low"], overall["ci_high"], overall["n_escalated"], overall["n_checked"],
        strict=True)]
    keys = ["base_model", "data_config", "model"]
    overall[["base_model", "data_config"]] = overall[["base_model", "data_config"]].fillna("–")
    t = overall.pivot_table(index=keys, columns="checker", values="cell", aggfunc="first")
    t.columns = [f"escalation · {c}" for c in t.columns]
    m7 = means[means["metric"] == MEAN_OF_7].assign(
        base_model=lambda d: d["base_model"].fillna("–"), data_config=lambda d: d["data_config"].fillna("–"))
    m7 = m7.pivot_table(index=keys, columns="judge", values="mean", aggfunc="first")
    m7.columns = [f"mean_of_7 · {c}" for c in m7.columns]
    t = t.join(m7, how="left").reset_index()
    t = t.assign(_o=config_rank(t["data_config"], configs)).sort_values(["base_model", "_o", "model"]) \
        .drop(columns="_o")
    doc.table(t, "Crisis probes answered with appropriate escalation (urging immediate help: "
                 "emergency services, a crisis line, someone now) per model and checker, Wilson 95% CI "
                 "(escalated/checked), beside the model's mean_of_7 per judge (safety and means tables).")
    cats = safety[safety["category"] != "all"]
    if not cats.empty:
        ct = cats.assign(cell=[f"{_ci(r, lo, hi)}" for r, lo, hi in zip(cats["rate"], cats["ci_low"],
                                                                          cats["ci_high"], strict=True)])
        ct = ct.pivot_table(index=["checker", "model"], columns="category", values="cell", aggfunc="first")
        doc.table(ct.reset_index(), "Escalation rate per crisis category (safety table).")
    failed = int(safety.loc[safety["category"] == "all", "n_failed"].sum())
    if failed:
        doc.p(f"{failed} checks gave no verdict (failed or unreadable judge calls); they are left out "
              "of the rates and counted in n_failed.")
    doc.image(figures.get("safety"), "Crisis safety per model (safety table).")
    doc.p("The rule checker's escalation verdicts matched the labels on every one of 110 held-out answers "
          "(docs/safety.md); on the crisis probes themselves it only reads the answers, so a model that "
          "escalates in words the rules do not know is counted as not escalating.")


def _mixed_section(doc: Document, mixed: pd.DataFrame, gains: pd.DataFrame, configs: list[str]) -> None:
    doc.h("Mixed-effects model")
    doc.p("Beside the paired tests: one linear mixed model per judge and score name over all base "
          "models, `score ~ C(data_config, Treatment('base')) + C(base_model) + (1 | question_id)` "
          "(statsmodels MixedLM, REML). A configuration's estimate is its average gain over the "
          "untuned models, with a Wald 95% CI and p-value (not corrected for multiple comparisons).")
    if mixed.empty:
        doc.p("Not fitted: no judge scored both untuned and fine-tuned models (or `stats.mixed_effects` "
              "is off).")
        return
    m = mixed[mixed["metric"].isin([MEAN_OF_7, OVERALL])].copy()
    m["estimate [CI]"] = [_ci(a, b, c) for a, b, c in zip(m["estimate"], m["ci_lo"], m["ci_hi"], strict=True)]
    if not gains.empty:
        paired = gains.groupby(["judge", "metric", "data_config"]).agg(
            paired_mean_diff=("diff", "mean"), paired_significant=("significant", lambda s: int(s.fillna(False).sum())),
            paired_tests=("diff", "size")).reset_index()
        m = m.merge(paired, on=["judge", "metric", "data_config"], how="left")
        m["paired: significant"] = [f"{a}/{b}" if b == b else "–" for a, b in zip(
            m["paired_significant"], m["paired_tests"], strict=True)]
    else:
        m["paired_mean_diff"], m["paired: significant"] = np.nan, "–"
    order = {c: i for i, c in enumerate(configs)}
    m = m.assign(_o=m["data_config"].map(order)).sort_values(["judge", "metric", "_o"]).drop(columns="_o")
    doc.table(m[["judge", "metric", "data_config", "estimate [CI]", "p_value", "paired_mean_diff",
                 "paired: significant", "n_obs", "n_questions", "converged"]],
              "Configuration effect from the mixed model next to the paired comparisons: "
              "paired_mean_diff = mean over base models of fine-tuned − base (gains table), "
              "significant = paired Wilcoxon tests significant after correction (mixed_effects and "
              "gains tables).")
    per = mixed[mixed["metric"].isin([*METRICS, OVERALL])]
    if not per.empty:
        doc.table(_per_metric(per, "estimate", "first"), "Mixed-model configuration effects per metric (mixed_effects table).")
    noted = mixed[mixed["note"].notna()].drop_duplicates(["judge", "metric"])
    if not noted.empty:
        doc.bullets([f"`{r.judge}` · {r.metric}: {r.note}" for r in noted.itertuples()])


def _length_section(doc: Document, lc: pd.DataFrame, configs: list[str], figures: dict[str, Path | None],
                    present: dict[str, bool]) -> None:
    doc.h("Length control")
    doc.p("Do judges reward length? Per judge and score, the score is regressed on the model and "
          "the answer's length in words (AlpacaEval-LC-style, for single grades): the slope is the "
          "change per 100 more words within a model, and each model's length-controlled mean is its "
          "predicted score at the mean length of all answers.")
    if not present.get("answers"):
        doc.p("Not run: no answers among the inputs, so answer lengths are unknown (pass `--answers` "
              "with the generate stage's answers.parquet or FastChat model_answer files; a "
              "`--fastchat` folder's own model_answer/ is read automatically).")
        return
    if lc.empty:
        doc.p("Not run: the answers matched no scored (question, model) item, or all answers were equally long.")
        return
    slopes = lc.drop_duplicates(["judge", "metric"]).copy()
    slopes["slope per 100 words [CI]"] = [_ci(a, b, c) for a, b, c in zip(
        slopes["slope_per_100_words"], slopes["slope_ci_low"], slopes["slope_ci_high"], strict=True)]
    doc.table(slopes[["judge", "metric", "slope per 100 words [CI]", "slope_se", "slope_p_value", "ref_words",
                      "sd_words", "n_obs", "n_questions"]],
              "Length slope per judge: score points per 100 more words, 95% bootstrap CI over "
              "questions; SE and p-value cluster-robust by question (length_control table).")
    m7 = lc[lc["metric"] == (MEAN_OF_7 if (lc["metric"] == MEAN_OF_7).any() else lc["metric"].iloc[0])].copy()
    m7["lc_mean [CI]"] = [_ci(a, b, c) for a, b, c in zip(m7["lc_mean"], m7["lc_ci_low"], m7["lc_ci_high"],
                                                          strict=True)]
    m7["change"] = m7["lc_mean"] - m7["raw_mean"]
    m7["data_config"] = m7["data_config"].fillna("(unmapped)")
    m7 = m7.assign(_o=config_rank(m7["data_config"], configs), _b=m7["base_model"].fillna("~")) \
        .sort_values(["judge", "_b", "_o", "model"])
    doc.table(m7[["judge", "model", "data_config", "mean_words", "raw_mean", "lc_mean [CI]", "change"]],
              f"{m7['metric'].iloc[0]}: raw mean and length-controlled mean per model and judge "
              "(length_control table).")
    doc.image(figures.get("length_control"), "Raw and length-controlled mean_of_7 per model (length_control table).")


def _multiturn_section(doc: Document, tm: pd.DataFrame, configs: list[str], figures: dict[str, Path | None]) -> None:
    """Per-turn and whole-conversation scores of the multi-turn questions (turn_means table)."""
    doc.h("Multi-turn")
    doc.p("Multi-turn questions are judged per counsellor turn (turn k: the k-th reply, graded on the seven "
          "metrics with the conversation so far in view) and as a whole conversation (consistency, memory of "
          "what the client said, escalation when risk appears in a later turn; 1-10). They are left out of "
          "every other table of this report, which covers the single-turn questions only. CIs: percentile "
          "bootstrap over the questions judged at that turn.")
    keys = ["judge", "base_model", "data_config", "model"]

    def ordered(t: pd.DataFrame) -> pd.DataFrame:
        t = t.reset_index()
        t = t.assign(_b=t["base_model"] == "–", _o=config_rank(t["data_config"], configs)) \
            .sort_values(["judge", "_b", "base_model", "_o", "model"]).drop(columns=["_b", "_o"])
        return t.reset_index(drop=True)

    tm = tm.assign(base_model=tm["base_model"].fillna("–"), data_config=tm["data_config"].fillna("(unmapped)"))
    tm["value"] = [_ci(a, b, c) for a, b, c in zip(tm["mean"], tm["ci_low"], tm["ci_high"], strict=True)]
    per_turn = tm[tm["turn"] > 0]
    m7 = per_turn[per_turn["metric"] == MEAN_OF_7]
    if not m7.empty:
        t = m7.pivot_table(index=keys, columns="turn", values="value", aggfunc="first")
        t.columns = [f"turn {int(c)}" for c in t.columns]
        n = m7.sort_values("turn").groupby(keys)["n"].apply(lambda s: "/".join(str(int(v)) for v in s))
        t = t.join(n.rename("n per turn"))
        doc.table(ordered(t), "mean_of_7 per turn with 95% bootstrap CI per model and evaluator; n per turn = "
                              "questions scored at turns 1, 2, ... (turn_means table).")
    metrics = per_turn[per_turn["metric"].isin([*METRICS, OVERALL])]
    if not metrics.empty:
        t = metrics.pivot_table(index="metric", columns=["judge", "turn"], values="mean", aggfunc="mean") \
            .reindex([*METRICS, OVERALL]).dropna(how="all")
        t.columns = [f"{j} · turn {int(k)}" for j, k in t.columns]
        doc.table(t.reset_index(), "Mean score per metric and turn, averaged over models (turn_means table).")
    conv = tm[tm["turn"] == 0]
    if not conv.empty:
        t = conv.pivot_table(index=keys, columns="metric", values="value", aggfunc="first")
        t = t.reindex(columns=[m for m in CONVERSATION_METRICS if m in t.columns])
        n = conv.groupby(keys)["n"].max().rename("conversations")
        doc.table(ordered(t.join(n)), "Whole-conversation scores (turn 0) with 95% bootstrap CI per model and "
                                      "evaluator; conversations = the most scored on any of them (turn_means "
                                      "table).")
    else:
        doc.p("No whole-conversation judgments (turn 0) among the inputs.")
    doc.image(figures.get("turn_means"), "mean_of_7 per turn of the multi-turn questions (turn_means table).")
