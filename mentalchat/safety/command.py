"""``mentalchat crisis`` / ``jobs/crisis.py``: audit any text with the crisis detector the stages use.

Why: a clinical team wants to see what the detector flags on its own messages (or whether its
counsellors' answers escalate) before trusting the dataset audit or the judge stage's safety
metric. Input lines are ``{"id": ..., "text": ...}``; with ``--answers`` the text is a counsellor's
answer and an optional ``"message"`` field holds what the client wrote (context for the model
layer). The whole file is validated first (errors name the file and line) and the output appears
in one rename.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from mentalchat.core.cli import ErrorPolicy, add_config_arguments
from mentalchat.errors import InputError, InputNotFoundError

__all__ = ["CrisisCommand", "read_records"]


def read_records(path: str | Path, *, answers: bool = False) -> list[dict[str, Any]]:
    """Every record of a JSONL file, validated: ids unique, ``text`` a string (``message`` too if given)."""
    from mentalchat.io import check_id_text, iter_jsonl

    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"input not found: {path}", path=path)
    seen: dict[str, int] = {}
    out: list[dict[str, Any]] = []
    for line, rec in iter_jsonl(path):
        check_id_text(rec, path, line, seen)
        if answers and rec.get("message") is not None and not isinstance(rec["message"], str):
            raise InputError.at(path, line, "'message' must be a string (what the client wrote)")
        out.append(rec)
    if not out:
        raise InputError(f"{path}: no records", path=path)
    return out


class CrisisCommand:
    name = "crisis"
    summary = "flag crisis disclosures in messages, or check that counsellor answers escalate"
    usage = """\
examples:
  python jobs/crisis.py --input messages.jsonl --output flagged.jsonl
  python jobs/crisis.py --answers --input answers.jsonl --output checked.jsonl
  python jobs/crisis.py --input messages.jsonl --output out.jsonl --config configs/crisis-model.yaml \\
      crisis_detector.combine=all

Input lines are {"id": ..., "text": ...} (with --answers, text is the answer and an optional
"message" is the client's words). Output lines keep every input field and add "flag" and
"categories" (messages) or "escalated" (answers), plus "layers" (each layer's verdict) and
"evidence" (the rule's matched phrase). Without --config the rules alone run; a config's
crisis_detector section can add the model layer (an engine under engines:)."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--input", required=True, help="JSONL file, {'id', 'text'} per line")
        parser.add_argument("--output", required=True, help="JSONL file to write (replaced atomically)")
        parser.add_argument("--answers", action="store_true", help="the texts are counsellor answers: check escalation")
        parser.add_argument("--config", help="config whose crisis_detector (and engines) sections to use")
        add_config_arguments(parser, config_required=False)

    def run(self, args: argparse.Namespace, policy: ErrorPolicy) -> int:
        from mentalchat.config import apply_overrides, load_config_dict, validate_section
        from mentalchat.engine.config import EngineConfig
        from mentalchat.io import atomic_path
        from mentalchat.safety.config import CrisisDetectorConfig
        from mentalchat.safety.detector import CrisisDetector

        doc = load_config_dict(args.config) if args.config else {}
        doc = apply_overrides(doc, args.overrides, section="crisis_detector")
        doc.setdefault("crisis_detector", {})
        cfg = validate_section(CrisisDetectorConfig, doc, "crisis_detector", source=args.config or "<defaults>")
        engines = {k: EngineConfig.model_validate(v) for k, v in (doc.get("engines") or {}).items()}
        detector = CrisisDetector(cfg.resolve(engines))
        records = read_records(args.input, answers=args.answers)
        counts: Counter = Counter()
        rows: list[dict[str, Any]] = []
        if args.answers:
            checks = detector.check_answers([r["text"] for r in records], [r.get("message") or "" for r in records])
            for rec, c in zip(records, checks, strict=True):
                rows.append({**rec, "escalated": c.escalated, "layers": c.layers, "evidence": c.evidence,
                             **({"errors": list(c.errors)} if c.errors else {})})
                counts["escalated" if c.escalated else "not escalated"] += 1
        else:
            dets = detector.detect([r["text"] for r in records])
            for rec, d in zip(records, dets, strict=True):
                rows.append({**rec, "flag": d.flag, "categories": list(d.categories), "layers": d.layers,
                             "evidence": d.evidence, **({"errors": list(d.errors)} if d.errors else {})})
                counts["flagged" if d.flag else "not flagged"] += 1
                counts.update(d.categories)
        with atomic_path(args.output) as tmp:
            with tmp.open("w", encoding="utf-8") as fh:
                for row in rows:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"{len(rows)} {'answers' if args.answers else 'messages'} checked by {detector.label} -> {args.output}")
        width = max((len(k) for k in counts), default=4)
        for key, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"  {key:<{width}}  {n}")
        return 0
