"""The dataset card: counts, topic distribution, length histograms and the crisis audit.

Written as ``README.md`` beside the tables, with PNG figures under ``figures/``. It holds
aggregates only (no example pairs from interview transcripts), so it can be shared with the data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mentalchat.dataset.filters import word_count

__all__ = ["decontamination_lines", "dialogue_lines", "hub_header", "write_card", "write_histograms"]

#: The tables a dataset folder may hold, in the order the card's ``configs`` list them
#: (``qa_pairs`` first: what ``load_dataset(folder)`` opens).
HUB_TABLES = ("qa_pairs", "dialogues", "rejects", "pages")

BUILT_BY = "built by `mentalchat` (`jobs/build_dataset.py`)"


def write_histograms(qa: Sequence[Mapping[str, Any]], folder: Path, *, bins: int = 30) -> dict[str, str]:
    """``figures/input_lengths.png`` and ``figures/output_lengths.png``: words per text, by source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for column in ("input", "output"):
        fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
        by_source: dict[str, list[int]] = {}
        for row in qa:
            by_source.setdefault(row["source"], []).append(word_count(row[column]))
        for source, lengths in sorted(by_source.items()):
            ax.hist(lengths, bins=bins, alpha=0.6, label=f"{source} (n={len(lengths)})")
        if not by_source:
            ax.text(0.5, 0.5, "no pairs", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(f"{column} length (words)")
        ax.set_ylabel("pairs")
        ax.set_title(f"{column.capitalize()} lengths")
        if by_source:
            ax.legend()
        fig.tight_layout()
        name = f"{column}_lengths.png"
        fig.savefig(folder / name)
        plt.close(fig)
        out[column] = f"figures/{name}"
    return out


def _quantiles(values: list[int]) -> str:
    if not values:
        return "–"
    v = sorted(values)

    def q(p: float) -> int:
        return v[min(len(v) - 1, int(p * (len(v) - 1) + 0.5))]

    return f"{v[0]} / {q(0.5)} / {sum(v) / len(v):.0f} / {v[-1]}"


def _size_category(n: int) -> str:
    """The Hub's ``size_categories`` bucket for ``n`` rows."""
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def hub_header(folder: Path, n_pairs: int, *, license: str = "other") -> str:
    """The card's YAML front matter: Hub metadata and one ``configs`` entry per table in ``folder``.

    Why: the folder holds tables with different columns; without ``configs``,
    ``datasets.load_dataset(folder)`` tries to read them as one and fails. With it, the folder opens
    as ``qa_pairs`` by default and ``load_dataset(folder, "rejects")`` names another table.
    """
    present = [t for t in HUB_TABLES if (folder / f"{t}.parquet").is_file()]
    lines = ["---", f"license: {license}", "language:", "- en", "task_categories:", "- question-answering",
             "- text-generation", "size_categories:", f"- {_size_category(n_pairs)}",
             "tags:", "- mental-health", "- counseling", "- mentalchat16k", "pretty_name: Counselling QA pairs",
             "configs:"]
    for t in present:
        lines += [f"- config_name: {t}", "  data_files:", "  - split: train", f"    path: {t}.parquet"]
        if t == "qa_pairs":
            lines.append("  default: true")
    return "\n".join([*lines, "---", ""])


def write_card(
    path: Path,
    *,
    qa: Sequence[Mapping[str, Any]],
    rejects: Sequence[Mapping[str, Any]],
    stats: Mapping[str, Any],
    figures: Mapping[str, str],
    topic_weights: Mapping[str, float] | None,
    instruction: str,
    built_by: str = BUILT_BY,
) -> None:
    """The card as Markdown at ``path``; ``stats`` sections (interview, synthetic, import,
    decontamination) appear when present."""
    src = Counter(r["source"] for r in qa)
    instructions = Counter(r["instruction"] for r in qa)
    if len(instructions) > 1:
        said = (f"{len(instructions)} distinct instructions; the most common "
                f"({instructions.most_common(1)[0][1]} pairs): *{instructions.most_common(1)[0][0]}*")
    else:
        said = f"Instruction stored with every pair: *{next(iter(instructions), instruction)}*"
    lines = [
        hub_header(path.parent, len(qa)) + "# Dataset card",
        "",
        ("Counselling question-answer pairs in the MentalChat16K schema (`instruction`, `input`, "
        f"`output`) {built_by}. Load with `datasets.load_dataset(FOLDER)` (the pairs; the YAML "
        'header above names each table) or `datasets.load_dataset(FOLDER, "rejects")`.'),
        "",
        said,
        "",
        "## Counts",
        "",
        "| source | pairs |",
        "|---|---|",
        *[f"| {s} | {n} |" for s, n in sorted(src.items())],
        f"| **total** | **{len(qa)}** |",
        "",
        f"Rejected items: {len(rejects)} (see `rejects.parquet`).",
        "",
    ]
    rej = Counter((r["source"], r["filter"]) for r in rejects)
    if rej:
        lines += ["| source | filter | rejected |", "|---|---|---|"]
        lines += [f"| {s} | {f} | {n} |" for (s, f), n in sorted(rej.items())]
        lines.append("")
    inter = stats.get("interview") or {}
    if inter:
        lines += [
            "## Interview path",
            "",
            (f"- transcript files read: {inter.get('files', 0)}; transcripts: {inter.get('transcripts', 0)}; "
            f"pages: {inter.get('pages', 0)}"),
            f"- skipped files: {inter.get('skipped_files', 0)}; skipped JSONL lines: {inter.get('skipped_lines', 0)}",
            f"- paraphrase engine: `{inter.get('engine')}`; prompt version `{inter.get('prompt_version')}`",
            f"- de-identification: {inter.get('deid_method')}; replacements by type (before the model): "
            + (", ".join(f"{k} {v}" for k, v in sorted((inter.get("deid_counts") or {}).items())) or "none"),
            "- model outputs were de-identified a second time; replacements there: "
            + (", ".join(f"{k} {v}" for k, v in sorted((inter.get("output_deid_counts") or {}).items())) or "none"),
            "- tables keep a page reference (`transcript_id:page`, the id a hash of the file path), never raw text.",
            "",
        ]
    syn = stats.get("synthetic") or {}
    if syn:
        lines += [
            "## Synthetic path",
            "",
            (f"- engine: `{syn.get('engine')}`; prompt version `{syn.get('prompt_version')}`; "
            f"messages requested: {syn.get('n_messages')}"),
            f"- calls: {syn.get('calls')}; cost of new calls this run: ${syn.get('cost_usd', 0):.4f}",
            "",
        ]
    lines += dialogue_lines(stats.get("dialogues"))
    imp = stats.get("import") or {}
    if imp:
        lines += [
            "## Imported files",
            "",
            ("Rows with an empty input or output (`missing`) and repeats of an earlier (input, output) "
            "(`duplicate`) are in `rejects.parquet`; blank rows are only counted. `page_ref` is "
            "`<file>:<line>` (the line a record starts on; the row for Parquet)."),
            "",
            "| file | format | source from | rows | kept | empty | duplicate | blank | sha256 |",
            "|---|---|---|---|---|---|---|---|---|",
            *[f"| {f['file']} | {f['format']} | {f['source_from'] or '–'} "
              f"({', '.join(f'{k} {v}' for k, v in f['sources'].items()) or 'none'}) | {f['rows']} | {f['kept']} | "
              f"{f['empty']} | {f['duplicate']} | {f['blank']} | `{f['sha256'][:12]}` |" for f in imp.get("files", [])],
            "",
        ]
    lines += decontamination_lines(stats.get("decontamination"))
    topics = Counter(r["topic"] for r in qa if r.get("topic"))
    if topics:
        n = sum(topics.values())
        lines += ["## Topic distribution", "", "| topic | pairs | share | target weight |", "|---|---|---|---|"]
        names = list(topic_weights or {}) + sorted(t for t in topics if t not in (topic_weights or {}))
        for t in names:
            target = f"{topic_weights[t]:.3f}" if topic_weights and t in topic_weights else "–"
            lines.append(f"| {t} | {topics.get(t, 0)} | {topics.get(t, 0) / n:.3f} | {target} |")
        lines.append("")
    lines += [
        "## Lengths",
        "",
        "Words per text, min / median / mean / max:",
        "",
        "| source | input | output |",
        "|---|---|---|",
    ]
    for s in sorted(src):
        rows = [r for r in qa if r["source"] == s]
        lines.append(f"| {s} | {_quantiles([word_count(r['input']) for r in rows])} | "
                     f"{_quantiles([word_count(r['output']) for r in rows])} |")
    lines += ["", f"![input lengths]({figures['input']})", "", f"![output lengths]({figures['output']})", ""]
    flagged = [r for r in qa if r.get("crisis_flag")]
    missing = [r for r in flagged if r.get("crisis_escalated") is False]
    cats = Counter(c for r in flagged for c in (r.get("crisis_categories") or "").split(",") if c)
    lines += [
        "## Crisis audit",
        "",
        ("Inputs were scanned by the crisis detector (`mentalchat/safety/`, settings under `crisis_detector:`) "
        "for disclosures of suicidal thoughts, self-harm, abuse, intent to harm others, acute psychosis, a "
        "medical emergency or an overdose; for each flagged input the answer was checked for escalation "
        "(urging immediate help, naming a crisis line or emergency services). Column `crisis_flag` marks "
        "flagged rows and `crisis_escalated` whether their answer escalates. With the default layers (rules and "
        "the bundled classifier) it found about 8 in 10 crisis posts in a labelled sample of real questions, "
        "and 4 in 10 of its flags there were false (docs/safety.md): review flagged and unflagged pairs "
        "alike; this audit is a first filter, not a guarantee."),
        "",
        "| source | flagged inputs | answers without escalation |",
        "|---|---|---|",
    ]
    for s in sorted(src):
        f = [r for r in flagged if r["source"] == s]
        m = [r for r in f if r.get("crisis_escalated") is False]
        lines.append(f"| {s} | {len(f)} | {len(m)} |")
    lines += [f"| **total** | **{len(flagged)}** | **{len(missing)}** |", ""]
    if cats:
        lines += ["Flagged by category: " + ", ".join(f"{c} {n}" for c, n in sorted(cats.items())), ""]
    lines += [
        ("**Risk.** A model fine-tuned on pairs whose answers do not escalate learns not to escalate. The "
        "MentalChat16K authors' synthetic prompt told the generator not to refer people to professionals; "
        "review or drop the flagged rows without escalation before training."),
        "",
        "## Provenance",
        "",
        *([f"- config hash: `{stats['config_hash']}`"] if stats.get("config_hash") else []),
        f"- generator models: {', '.join(sorted({str(r['generator_model']) for r in qa})) or '–'}",
        f"- prompt versions: {', '.join(sorted({str(r['prompt_version']) for r in qa})) or '–'}",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def decontamination_lines(report: Mapping[str, Any] | None) -> list[str]:
    """The card's benchmark-overlap section (``mentalchat.core.decontamination.scan_pairs``'s report)."""
    lines = ["## Benchmark overlap (decontamination)", ""]
    if not report:
        return lines + ["Not checked: no benchmark questions were given.", ""]
    by_source = ", ".join(f"{s} {n}" for s, n in report["flagged_by_source"].items()) or "none"
    lines += [
        (f"Inputs near-duplicating a question of `{report['reference']}` ({report['reference_questions']} "
        f"questions, sha256 `{report['reference_sha256'][:12]}`), by word {report['ngram']}-gram "
        f"{'containment' if report['method'] == 'ngram' else 'MinHash Jaccard'} >= {report['threshold']}:"),
        "",
        (f"- pairs checked: {report['checked']}; flagged: **{report['flagged']}** ({by_source}); "
        f"benchmark questions hit: {report['questions_hit']}"),
        ("- the flagged ids are listed in `decontamination.json`; they stay in this table, and the fine-tuning "
        "stage drops them by default (`finetune.decontamination`)."),
        "",
    ]
    return lines


def dialogue_lines(st: Mapping[str, Any] | None) -> list[str]:
    """The card's section on ``dialogues.parquet`` (the build's ``stats["dialogues"]``), when built."""
    if not st:
        return []
    by_source = ", ".join(f"{s} {n}" for s, n in sorted((st.get("by_source") or {}).items())) or "none"
    turns = ", ".join(f"{k} turns: {n}" for k, n in sorted((st.get("turns") or {}).items(), key=lambda x: int(x[0])))
    rejected = ", ".join(f"{k} {n}" for k, n in sorted((st.get("by_filter") or {}).items())) or "none"
    lines = [
        "## Dialogues (multi-turn)",
        "",
        ("Multi-turn client/counsellor conversations in `dialogues.parquet` (table `dialogues`), in the chat "
         '`messages` format: `datasets.load_dataset("parquet", data_files="dialogues.parquet")`. Interview '
         "dialogues paraphrase windows of consecutive de-identified pages with the local engine (every turn "
         "de-identified again, one placeholder per person across the dialogue); synthetic ones alternate "
         "counsellor replies and client follow-ups from the synthetic engine."),
        "",
        f"- dialogues: {st.get('dialogues', 0)} ({by_source}); {turns or 'no turns'}",
        f"- rejected: {st.get('rejected', 0)} ({rejected}); exact duplicates dropped: {st.get('duplicates', 0)}",
        (f"- held out as the multi-turn benchmark (split `benchmark`, `multiturn_benchmark.jsonl`, never trained "
         f"on): {st.get('benchmark', 0)}"),
        (f"- crisis audit per client turn: {st.get('crisis_flagged', 0)} dialogues flagged, "
         f"{st.get('crisis_without_escalation', 0)} without a counsellor turn that escalates at or after the "
         "first flagged turn"),
    ]
    for src in ("interview", "synthetic"):
        sub = st.get(src) or {}
        if sub:
            lines.append(f"- {src}: engine `{sub.get('engine')}`, prompt version `{sub.get('prompt_version')}`"
                         + (f", windows {sub['windows']}" if "windows" in sub else "")
                         + (f", calls {sub['calls']}" if "calls" in sub else ""))
    return lines + [""]
