"""Decontamination measured on text this project did not write: the authors' pool and synthetic pairs.

The 200 MentalChat16K benchmark questions were drawn from a pool of 7,394 questions
(``eval/question_pool.csv``), so each must be found in it: recall on the pool entries that are the
benchmark questions (same text after trimming) is an outside check of the method, and the entries
flagged beyond them are either near-copies (an excerpt, a variant) or false positives. Also:

* perturbed copies (our perturbations of the 200: 10% of words dropped, 5% replaced, sentences
  shuffled, the first half only): the recall the default settings keep under edits;
* the authors' raw GPT-3.5 synthetic pairs (``synthetic/instructions*.jsonl``, 2,359 inputs): how
  many copy a benchmark question (expected: none; they were generated, not drawn from the pool);
* time to build the index and to scan, per method.

Only counts and ids are printed, never the authors' text.

    python benchmarks/decontamination.py [--shared ../shared/mentalchat16k] [--methods ngram,minhash]
        [--ngram 5 --threshold 0.5] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mentalchat.core.decontamination import Decontaminator, load_reference


def perturb(text: str, how: str, rng: random.Random) -> str:
    """One of our edits of a question (the kinds a copy goes through before it reaches training data)."""
    words = text.split()
    if how == "drop10":
        return " ".join(w for w in words if rng.random() >= 0.10)
    if how == "replace5":
        return " ".join("something" if rng.random() < 0.05 else w for w in words)
    if how == "shuffle":
        parts = [p for p in re.split(r"(?<=[.!?])\s+", text) if p]
        if len(parts) < 2:  # the pool's texts often lack punctuation: shuffle 12-word chunks instead
            parts = [" ".join(words[i:i + 12]) for i in range(0, len(words), 12)]
        rng.shuffle(parts)
        return " ".join(parts)
    if how == "half":
        return " ".join(words[: max(1, len(words) // 2)])
    raise ValueError(how)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "mentalchat16k"))
    ap.add_argument("--methods", default="ngram,minhash")
    ap.add_argument("--ngram", type=int, default=5)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--out", help="write the figures as JSON")
    args = ap.parse_args()
    shared = Path(args.shared)
    if not (shared / "eval" / "question_pool.csv").is_file():
        print(f"skipped: {shared} holds no eval/question_pool.csv")
        return 0
    bench = load_reference(shared / "eval" / "question.jsonl")
    pool = load_reference(shared / "eval" / "question_pool.csv")
    synthetic = [json.loads(line)["instruction"]
                 for name in ("instructions_with_topics.jsonl", "instructions.jsonl")
                 for line in (shared / "synthetic" / name).read_text(encoding="utf-8").splitlines() if line.strip()]
    copies = {t.strip() for t in bench.texts}
    truth = {i for i, t in enumerate(pool.texts) if t.strip() in copies}
    rng = random.Random(13)
    variants = {how: [perturb(t, how, rng) for t in bench.texts] for how in ("drop10", "replace5", "shuffle", "half")}
    print(f"benchmark {len(bench)} questions; pool {len(pool)} (of which {len(truth)} are benchmark questions, "
          f"repeats included); synthetic inputs {len(synthetic)}")
    results: dict[str, dict] = {}
    for method in args.methods.split(","):
        t0 = time.perf_counter()
        d = Decontaminator(bench, method=method, ngram=args.ngram, threshold=args.threshold)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        hits = d.scan(pool.texts)
        pool_s = time.perf_counter() - t0
        flagged = {h.index for h in hits}
        tp = len(flagged & truth)
        extra = sorted(flagged - truth)
        found = {h.question_id for h in hits}
        t0 = time.perf_counter()
        syn_hits = d.scan(synthetic)
        syn_s = time.perf_counter() - t0
        edit_recall = {how: round(sum(1 for i, t in enumerate(texts) if (h := d.match(t, i)) is not None
                                      and h.question_id == bench.ids[i]) / len(texts), 4)
                       for how, texts in variants.items()}
        r = {
            "pool_flagged": len(flagged), "pool_true_positives": tp,
            "recall_on_benchmark_copies": round(tp / len(truth), 4),
            "precision_vs_exact_copies": round(tp / len(flagged), 4) if flagged else None,
            "flagged_beyond_exact_copies": len(extra),
            "beyond_exact": [{"pool_id": pool.ids[h.index], "question_id": h.question_id, "score": h.score,
                              "shared": h.shared} for h in hits if h.index in set(extra)],
            "false_positive_rate_upper_bound": round(len(extra) / (len(pool) - len(truth)), 6),
            "benchmark_questions_found": len(found), "recall_on_perturbed_copies": edit_recall,
            "synthetic_flagged": len(syn_hits), "build_s": round(build_s, 3), "pool_scan_s": round(pool_s, 3),
            "synthetic_scan_s": round(syn_s, 3), "pool_texts_per_s": round(len(pool) / pool_s),
        }
        results[method] = r
        print(f"\n[{method}] word {args.ngram}-grams, threshold {args.threshold}")
        print(f"  pool: {len(flagged)} flagged, {tp} of {len(truth)} benchmark copies (recall {r['recall_on_benchmark_copies']:.3f}), "
              f"{len(extra)} beyond them (precision vs exact copies {r['precision_vs_exact_copies']}); "
              f"benchmark questions found {len(found)}/{len(bench)}")
        for e in r["beyond_exact"]:
            print(f"    beyond: pool id {e['pool_id']} ~ question {e['question_id']} score {e['score']} shared {e['shared']}")
        print("  recall on perturbed copies: " + ", ".join(f"{k} {v:.3f}" for k, v in edit_recall.items()))
        print(f"  synthetic raw pairs flagged: {len(syn_hits)} of {len(synthetic)}")
        print(f"  time: index {build_s:.2f} s, pool scan {pool_s:.2f} s ({r['pool_texts_per_s']} texts/s), "
              f"synthetic scan {syn_s:.2f} s")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
