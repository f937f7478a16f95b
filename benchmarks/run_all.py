"""Run every stage benchmark, one after the other, and summarise the figures against their goals.

    python benchmarks/run_all.py                 # the full suite (tens of minutes on 2 cores)
    python benchmarks/run_all.py --quick         # small sizes: checks that every benchmark runs
    python benchmarks/run_all.py --only judge_throughput stats_scale --timeout 900

Each benchmark runs as a subprocess with a time limit; its figures come from the JSON it writes
(``--out``) or, for those that only print, from its printed lines. Results go to
``benchmarks/results/<date>.json`` (``<date>-quick.json`` with ``--quick``) plus a Markdown summary
beside it. The exit status is non-zero only when a benchmark failed to run or produced no figures;
a missed goal is reported, not an error (goals are measured ratios on a shared machine).
``gpu_qlora`` runs only where a CUDA GPU is visible.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


@dataclass
class Figure:
    """One measured number and, where the benchmark sets one, its goal."""

    name: str
    value: float | int | None
    unit: str = ""
    goal: str | None = None  # e.g. ">= 0.90"
    met: bool | None = None

    @classmethod
    def check(cls, name: str, value: Any, op: str | None = None, target: float | None = None,
              unit: str = "") -> Figure:
        if value is None or op is None or target is None:
            return cls(name, value, unit)
        met = {">=": value >= target, "<=": value <= target, "==": value == target}[op]
        return cls(name, value, unit, f"{op} {target:g}", bool(met))


@dataclass
class Outcome:
    name: str
    status: str  # ok | error | timeout | skipped
    seconds: float = 0.0
    command: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    raw: Any = None
    error: str | None = None
    load_before: list[float] = field(default_factory=list)
    load_after: list[float] = field(default_factory=list)
    measured_at: str | None = None  # set on results kept from an earlier run (--only): "commit time"


# ---------------------------------------------------------------------------------------------
# Figures from each benchmark's output


def _last_json_object(text: str) -> dict[str, Any] | None:
    """The last JSON object that starts a line of ``text`` (a report printed at the end of stdout)."""
    decoder = json.JSONDecoder()
    starts = [m.start() for m in re.finditer(r"(?m)^\{", text)]
    for pos in reversed(starts):
        try:
            obj, _ = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj
    return None


def figures_engine_overhead(stdout: str, out: dict | None) -> tuple[list[Figure], Any]:
    rep = _last_json_object(stdout)
    if not rep or "ratio" not in rep:
        return [], rep
    return [
        Figure.check("vLLM in Ray Data / bare vLLM (requests/s)", rep["ratio"], ">=", rep.get("goal", 0.90)),
        Figure("bare vLLM", rep.get("bare_requests_per_s"), "req/s"),
        Figure("vLLM in Ray Data", rep.get("ray_requests_per_s"), "req/s"),
        Figure.check("same output tokens on both sides (1 = yes)", int(bool(rep.get("same_output_tokens"))), "==", 1),
    ], rep


def figures_generate_throughput(stdout: str, out: dict | None) -> tuple[list[Figure], Any]:
    rep = out or _last_json_object(stdout)
    if not rep or "multi_lora" not in rep:
        return [], rep
    ml = rep["multi_lora"]
    figs = [
        Figure.check("one multi-LoRA engine vs one merged model's engine per model in turn (seconds, end to end)",
                     ml.get("ratio_total_per_engine_merged"), ">=", ml.get("goal_ratio_total", 2.0)),
        Figure("same, vs one LoRA engine per model", ml.get("ratio_total_per_engine_lora")),
        Figure("generation alone, multi-LoRA / merged engines (output tokens/s)",
               ml.get("ratio_generate_tokens_per_s_per_engine_merged")),
    ]
    ray = rep.get("ray_data_vs_bare")
    if ray:
        figs.append(Figure.check("vLLM in Ray Data / bare vLLM, answer-stage batches (requests/s)",
                                 ray.get("ratio"), ">=", ray.get("goal", 0.95)))
        figs.append(Figure("same, bare fed in equal batches", ray.get("ratio_same_batching")))
    return figs, rep


def figures_dataset_throughput(stdout: str, out: dict | None) -> tuple[list[Figure], Any]:
    if not out:
        return [], out
    figs: list[Figure] = []
    if "deid" in out:
        d = out["deid"]
        figs += [Figure("de-identification recall", d.get("recall")),
                 Figure("de-identification precision", d.get("precision")),
                 Figure("de-identification", d.get("pages_per_s"), "pages/s")]
    if "build" in out:
        b = out["build"]
        figs += [Figure.check("planted identifiers in the built dataset", b.get("leaks_in_output"), "<=",
                              b.get("goal_leaks", 0)),
                 Figure("interview path end to end", b.get("pages_per_s_end_to_end"), "pages/s")]
    if "paraphrase_ratio" in out:
        r = out["paraphrase_ratio"]
        figs += [Figure.check("paraphrase in Ray Data / bare vLLM (pages/s)", r.get("ratio"), ">=", r.get("goal", 0.90)),
                 Figure("bare vLLM paraphrase", r.get("bare_pages_per_s"), "pages/s"),
                 Figure("identical outputs", r.get("identical_outputs"))]
    return figs, out


def figures_train_throughput(stdout: str, out: dict | None) -> tuple[list[Figure], Any]:
    if not out or "ratio" not in out:
        return [], out
    slim = {k: v for k, v in out.items() if k != "rounds"}
    return [
        Figure.check("Ray Train worker / plain TRL (trained tokens/s)", round(out["ratio"], 3), ">=", 0.90),
        Figure("same, per CPU second of the training process", round(out["cpu_ratio"], 3))
        if out.get("cpu_ratio") is not None else Figure("same, per CPU second of the training process", None),
        Figure.check("padding share (packed)", round(out["padding_share"], 4), "<=", 0.05),
        Figure("padding share of the paper's unpacked batches", round(out["unpacked_group_by_length_padding_share"], 4)),
        Figure("plain TRL", round(out["plain_tokens_per_s"], 1), "tokens/s"),
        Figure("Ray Train worker", round(out["ray_tokens_per_s"], 1), "tokens/s"),
    ], slim


def figures_multiturn_packing(stdout: str, out: dict | None) -> tuple[list[Figure], Any]:
    if not out or "arms" not in out:
        return [], out
    slim = {k: v for k, v in out.items() if k != "rounds"}
    arms = out["arms"]
    return [
        Figure("conversations / single-turn pairs (trained tokens/s)", round(out["multi_over_single_tokens_per_s"], 3)),
        Figure("multiturn mix / single-turn pairs (trained tokens/s)", round(out["mixed_over_single_tokens_per_s"], 3)),
        Figure.check("padding share, conversations packed", round(arms["multi"]["padding_share"], 4), "<=", 0.05),
        Figure("padding share, conversations unpacked", round(arms["multi"]["unpacked_padding_share"], 4)),
        Figure("padding share, pairs unpacked", round(arms["single"]["unpacked_padding_share"], 4)),
        Figure("trained tokens in the loss, conversations", round(arms["multi"]["loss_share"], 4)),
    ], slim


_RATIO = re.compile(r"^RATIO mentalchat=([\d.]+)(?: baseline=([\d.]+))?", re.M)
_OURS = re.compile(r"^mentalchat: (\d+) scored, (\d+) lost in ([\d.]+) s", re.M)
_BASE = re.compile(r"^baseline .*?: (\d+) scored, (\d+) lost in ([\d.]+) s", re.M)
_BATCH = re.compile(r"^BATCH cost_ratio=([\d.]+|nan) identical=([01]) lost=(\d+)", re.M)


def figures_judge_throughput(stdout: str, out: dict | None) -> tuple[list[Figure], Any]:
    m = _RATIO.search(stdout)
    ours = _OURS.search(stdout)
    if not m or not ours:
        return [], None
    raw: dict[str, Any] = {"mentalchat_of_ceiling": float(m.group(1)), "scored": int(ours.group(1)),
                           "lost": int(ours.group(2)), "wall_s": float(ours.group(3))}
    figs = [Figure.check("judge stage, share of the endpoint's ceiling", raw["mentalchat_of_ceiling"], ">=", 0.95),
            Figure.check("judgments lost", raw["lost"], "<=", 0)]
    if m.group(2):
        raw["baseline_of_ceiling"] = float(m.group(2))
        figs.append(Figure("FastChat-style loop, share of the ceiling", raw["baseline_of_ceiling"]))
        base = _BASE.search(stdout)
        if base:
            raw["baseline_lost"] = int(base.group(2))
        if raw["baseline_of_ceiling"] > 0:
            figs.append(Figure("mentalchat / FastChat-style loop", round(raw["mentalchat_of_ceiling"]
                                                                         / raw["baseline_of_ceiling"], 2), "x"))
    batch = _BATCH.search(stdout)
    if batch:
        ratio = float(batch.group(1))
        raw["batch_cost_ratio"] = None if math.isnan(ratio) else ratio  # nan: nothing was priced
        raw["batch_identical"], raw["batch_lost"] = int(batch.group(2)), int(batch.group(3))
        figs += [Figure.check("batch mode / online, cost per judgment", raw["batch_cost_ratio"], "<=", 0.55),
                 Figure.check("batch mode scores identical to online (1 = yes)", raw["batch_identical"], "==", 1),
                 Figure.check("batch mode judgments lost", raw["batch_lost"], "<=", 0)]
    return figs, raw


_ROWS = re.compile(r"^([\d,]+) rows: ([\d.]+) s", re.M)
_GROWTH = re.compile(r"^growth ([\d,]+) -> ([\d,]+) rows \(x([\d.]+)\): time x([\d.]+)", re.M)


def figures_stats_scale(stdout: str, out: dict | None) -> tuple[list[Figure], Any]:
    sizes = {int(r.replace(",", "")): float(s) for r, s in _ROWS.findall(stdout)}
    if not sizes:
        return [], None
    figs = []
    # The goal is set at ~1 M rows (the generator rounds sizes to whole cells, e.g. 999,992).
    near_1m = [r for r in sizes if abs(r - 1_000_000) <= 50_000]
    for rows, secs in sorted(sizes.items()):
        if rows in near_1m:
            figs.append(Figure.check(f"all tables at {rows:,} judgment rows", secs, "<=", 10.0, "s"))
        else:
            figs.append(Figure(f"all tables at {rows:,} judgment rows", secs, "s"))
    growth = [(float(x), float(t)) for _, _, x, t in _GROWTH.findall(stdout)]
    if growth:
        worst = max(t / x for x, t in growth)
        figs.append(Figure("worst growth of time per row (1 = linear)", round(worst, 2)))
    return figs, {"seconds_by_rows": sizes, "growth": growth}


def figures_gpu_qlora(stdout: str, out: dict | None) -> tuple[list[Figure], Any]:
    if not out:
        return [], out
    figs = [Figure("device", None, str(out.get("device")))]
    v = out.get("variants", {})
    for key, label in (("a", "paper recipe"), ("b", "mentalchat best")):
        if key in v and v[key].get("tokens_per_s") is not None:
            figs.append(Figure(f"{label}", round(v[key]["tokens_per_s"], 1), "tokens/s"))
    if "ratio_b_over_a" in out:
        figs.append(Figure.check("best / paper recipe (tokens/s)", round(out["ratio_b_over_a"], 2), ">=", 3.0))
    mfu = (v.get("b") or {}).get("mfu")
    if mfu is not None:
        figs.append(Figure.check("MFU of the best settings", round(mfu, 3), ">=", 0.30))
    return figs, out


def figures_judge_provider_scale(stdout: str, out: dict | None) -> tuple[list[Figure], Any]:
    """The paper-scale sweep against TPM/RPM limits and heavy-tailed latency: our share, lost, the baseline's."""
    if not out or "mentalchat_of_ceiling" not in out:
        return [], out
    figs = [Figure.check(f"paper-scale judge sweep ({out['calls']} calls, {out['binding']} binds), share of the ceiling",
                         out["mentalchat_of_ceiling"], ">=", 0.97),
            Figure.check("paper-scale judge sweep, judgments lost", out["mentalchat_lost"], "<=", 0)]
    if "baseline_of_ceiling" in out:
        figs.append(Figure("paper-scale, FastChat-style loop, share of the ceiling", out["baseline_of_ceiling"]))
    return figs, out


def figures_deid_external(stdout: str, out: dict | None) -> tuple[list[Figure], Any]:
    """Per set: mentalchat's value recall, its lowest key-category recall and its margin over
    philter-lite; over all sets: the most non-PHI words removed and the fewest pages per CPU second."""
    if not out or not out.get("goals"):
        return [], out
    goals = out["goals"]
    figs = [Figure(g["name"], g["value"], "", g["goal"], bool(g["met"])) for g in goals
            if g["kind"] in ("value_recall", "key_recall", "vs_philter")]
    for kind, label, worst, unit in (("nonphi", "mentalchat non-PHI words removed, highest", max, ""),
                                     ("pages_per_cpu_s", "mentalchat pages per CPU second, lowest", min, "pages/s")):
        rows = [g for g in goals if g["kind"] == kind and g["value"] is not None]
        if rows:
            g = worst(rows, key=lambda r: r["value"])
            figs.append(Figure(f"{label} ({g['set']})", g["value"], unit, g["goal"],
                               all(r["met"] for r in rows)))
    slim = {k: v for k, v in out.items() if k != "sets"}
    slim["sets"] = {name: {tool: {k: v for k, v in d.items() if k != "worst_leaks"} for tool, d in by_tool.items()}
                    for name, by_tool in out.get("sets", {}).items()}
    return figs, slim


def figures_crisis_eval(stdout: str, out: dict | None) -> tuple[list[Figure], Any]:
    """The held-out goals (recall and precision for suicidal ideation and self-harm, zero false flags
    on numbers, zero false escalations) and the any-crisis recall of each detector on the test split."""
    if not out or not out.get("goals"):
        return [], out
    figs = []
    for g in out["goals"]:
        op = "==" if g["goal"] == 0 else ">="
        figs.append(Figure.check(g["name"], g["value"], op, float(g["goal"])))
    for row in out.get("messages", []):
        if row.get("split") == "test" and row.get("category") == "any_crisis":
            figs.append(Figure(f"held-out any-crisis recall, {row['layer']}", row.get("recall")))
    slim = {k: v for k, v in out.items() if k in ("model", "bootstrap", "goals", "timings")}
    return figs, slim


# ---------------------------------------------------------------------------------------------
# The suite


@dataclass
class Bench:
    name: str
    full: list[str]
    quick: list[str]
    figures: Callable[[str, dict | None], tuple[list[Figure], Any]]
    out_flag: bool = False  # takes --out FILE (JSON)
    ok_codes: tuple[int, ...] = (0,)  # exit codes that still mean "measured" (judge: 1 = goal missed)
    needs_gpu: bool = False


SUITE = [
    Bench("engine_overhead", [], ["--requests", "64", "--batch-size", "16", "--max-tokens", "16", "--rounds", "1"],
          figures_engine_overhead),
    Bench("generate_throughput", [], ["--questions", "16", "--max-tokens", "32", "--overhead-requests", "192",
                                      "--overhead-batch-size", "64", "--overhead-rounds", "1"],
          figures_generate_throughput, out_flag=True),
    Bench("dataset_throughput", [], ["--transcripts", "8", "--ratio-pages", "32", "--rounds", "1",
                                     "--max-tokens", "64"], figures_dataset_throughput, out_flag=True),
    Bench("train_throughput", [], ["--steps", "6", "--warmup", "2", "--rounds", "1", "--rows", "64"],
          figures_train_throughput, out_flag=True),
    Bench("multiturn_packing", [], ["--exchanges", "40", "--steps", "5", "--warmup", "1", "--rounds", "1"],
          figures_multiturn_packing, out_flag=True),
    Bench("judge_throughput", [], ["--items", "100", "--rps", "20", "--latency-ms", "200"],
          figures_judge_throughput, ok_codes=(0, 1)),
    Bench("judge_provider_scale", [], ["--models", "8", "--questions", "50", "--skip-baseline"],
          figures_judge_provider_scale, out_flag=True, ok_codes=(0, 1)),
    Bench("stats_scale", [], ["--rows", "50000", "200000", "--bootstrap", "200"], figures_stats_scale),
    Bench("deid_external", [], ["--quick"], figures_deid_external, out_flag=True),
    Bench("crisis_eval", [], ["--no-model", "--bootstrap", "200"], figures_crisis_eval, out_flag=True),
    Bench("gpu_qlora", [], ["--steps", "2", "--steps-b", "4", "--warmup", "1"], figures_gpu_qlora,
          out_flag=True, needs_gpu=True),
]


def gpu_name() -> str | None:
    """The first CUDA device's name, without importing torch (nvidia-smi), or None."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        res = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = [n.strip() for n in res.stdout.splitlines() if n.strip()]
    return names[0] if res.returncode == 0 and names else None


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def run_bench(b: Bench, *, quick: bool, timeout_s: float, workdir: Path, log_dir: Path) -> Outcome:
    args = list(b.quick if quick else b.full)
    out_file = workdir / f"{b.name}.json"
    if b.out_flag:
        args += ["--out", str(out_file)]
    cmd = [sys.executable, str(REPO / "benchmarks" / f"{b.name}.py"), *args]
    res = Outcome(b.name, "ok", command=[os.path.relpath(c, REPO) if c.startswith(str(REPO)) else c for c in cmd],
                  load_before=_load())
    print(f"--- {b.name}: {' '.join(res.command)}", flush=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_DISABLE="1", HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"))
    t0 = time.perf_counter()
    log_path = log_dir / f"{b.name}.log"
    with log_path.open("w", encoding="utf-8") as log:
        try:
            proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log, text=True,
                                  timeout=timeout_s, start_new_session=True)
            stdout, rc = proc.stdout, proc.returncode
        except subprocess.TimeoutExpired as exc:
            stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            rc = None
        log.write("\n--- stdout ---\n" + stdout)
    res.seconds = round(time.perf_counter() - t0, 1)
    res.load_after = _load()
    out = None
    if out_file.is_file():
        try:
            out = json.loads(out_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            out = None
    try:
        res.figures, res.raw = b.figures(stdout, out)
    except (KeyError, TypeError, ValueError) as exc:
        res.error = f"could not read the figures: {exc!r}"
    if rc is None:
        res.status, res.error = "timeout", f"no result within {timeout_s:.0f} s (log: {log_path})"
    elif rc not in b.ok_codes:
        res.status, res.error = "error", f"exit status {rc}; last lines:\n" + _tail(log_path)
    elif not res.figures:
        res.status = "error"
        res.error = res.error or f"exit status {rc} but no figures found; last lines:\n" + _tail(log_path)
    print(f"    {res.status} in {res.seconds:.0f} s" + "".join(f"\n    {_fmt_fig(f)}" for f in res.figures), flush=True)
    return res


def _tail(path: Path, n: int = 15) -> str:
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-n:])


def _fmt_value(f: Figure) -> str:
    if f.value is None:
        return f.unit or "-"
    v = f"{f.value:,.3f}".rstrip("0").rstrip(".") if isinstance(f.value, float) else f"{f.value:,}"
    return f"{v} {f.unit}".strip() if f.unit not in ("", "bool") else v


def _fmt_fig(f: Figure) -> str:
    goal = "" if f.goal is None else f"  (goal {f.goal}: {'met' if f.met else 'NOT met'})"
    return f"{f.name}: {_fmt_value(f)}{goal}"


def markdown(report: dict[str, Any], outcomes: list[Outcome]) -> str:
    m = report["machine"]
    lines = [
        f"# Benchmarks {report['date']}{' (quick sizes)' if report['quick'] else ''}",
        "",
        f"Machine: {m['cpus']} CPUs, {m['platform']}, GPU: {m['gpu'] or 'none'}; Python {m['python']}; "
        f"commit {report.get('commit') or 'unknown'}. Load average before each benchmark is shown: the "
        "machine may be shared, so ratios (both sides measured in one run) matter more than absolute rates.",
        "",
        "| benchmark | figure | value | goal | met |",
        "|---|---|---|---|---|",
    ]
    for o in outcomes:
        if o.status != "ok":
            lines.append(f"| {o.name} | **{o.status}** | {(o.error or '').splitlines()[0] if o.error else ''} | | |")
            continue
        for i, f in enumerate(o.figures):
            name = o.name if i == 0 else ""
            met = "" if f.met is None else ("yes" if f.met else "**no**")
            lines.append(f"| {name} | {f.name} | {_fmt_value(f)} | {f.goal or ''} | {met} |")
    lines += ["", "| benchmark | status | wall s | load before | command |", "|---|---|---|---|---|"]
    for o in outcomes:
        status = o.status if o.measured_at is None else f"{o.status} (earlier run: {o.measured_at})"
        lines.append(f"| {o.name} | {status} | {o.seconds:.0f} | {' '.join(map(str, o.load_before))} | "
                     f"`{' '.join(o.command)}` |")
    goals = [f for o in outcomes for f in o.figures if f.met is not None]
    lines += ["", f"Goals met: {sum(f.met for f in goals)} of {len(goals)}. See docs/benchmarks.md for what each "
              "figure means and how to run it on a cluster.", ""]
    return "\n".join(lines)


def _merge_previous(json_path: Path, outcomes: list[Outcome]) -> list[Outcome]:
    """With ``--only``, keep the other benchmarks' results of the same day's file (in suite order),
    each marked with the commit and time it was measured at, so a rerun of one benchmark does not
    erase the rest of the summary."""
    try:
        previous = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return outcomes
    fresh = {o.name for o in outcomes}
    kept: dict[str, Outcome] = {}
    for b in previous.get("benchmarks", []):
        if b.get("name") in fresh:
            continue
        figs = [Figure(**f) for f in b.pop("figures", [])]
        o = Outcome(**{k: v for k, v in b.items() if k in Outcome.__dataclass_fields__}, figures=figs)
        o.measured_at = o.measured_at or f"{previous.get('commit')} {previous.get('finished')}"
        kept[o.name] = o
    order = [b.name for b in SUITE]
    merged = {**kept, **{o.name: o for o in outcomes}}
    return sorted(merged.values(), key=lambda o: order.index(o.name) if o.name in order else len(order))


def _commit() -> str | None:
    try:
        res = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a check that every benchmark runs")
    ap.add_argument("--only", nargs="+", choices=[b.name for b in SUITE], help="run only these")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per benchmark (default 2400, quick 900)")
    ap.add_argument("--results", default=str(RESULTS), help="folder for <date>.json and <date>.md")
    args = ap.parse_args(argv)
    timeout_s = args.timeout or (900.0 if args.quick else 2400.0)
    gpu = gpu_name()
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    stem = f"{date}-quick" if args.quick else date
    results = Path(args.results)
    log_dir = results / f"{stem}-logs"
    log_dir.mkdir(parents=True, exist_ok=True)

    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="mc-bench-all-") as tmp:
        for b in SUITE:
            if args.only and b.name not in args.only:
                continue
            if b.needs_gpu and gpu is None:
                outcomes.append(Outcome(b.name, "skipped", error="no CUDA GPU visible (nvidia-smi)"))
                print(f"--- {b.name}: skipped (no GPU)", flush=True)
                continue
            outcomes.append(run_bench(b, quick=args.quick, timeout_s=timeout_s, workdir=Path(tmp), log_dir=log_dir))

    json_path, md_path = results / f"{stem}.json", results / f"{stem}.md"
    if args.only and json_path.is_file():
        outcomes = _merge_previous(json_path, outcomes)

    report = {
        "date": date,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "commit": _commit(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "gpu": gpu},
        "benchmarks": [asdict(o) for o in outcomes],
    }
    for path, text in ((json_path, json.dumps(report, indent=2, default=str)), (md_path, markdown(report, outcomes))):
        tmp_path = path.with_name(f".{path.name}.tmp")
        tmp_path.write_text(text, encoding="utf-8")
        os.replace(tmp_path, path)
    print(f"\n-> {json_path}\n-> {md_path} (logs in {log_dir})")
    failed = [o.name for o in outcomes if o.status in ("error", "timeout")]
    if failed:
        print(f"errors: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
