"""``mentalchat fastchat`` / ``jobs/fastchat.py``: FastChat llm_judge files <-> our Parquet tables."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mentalchat.core.cli import ErrorPolicy
from mentalchat.errors import UsageError

__all__ = ["FastChatCommand"]


class FastChatCommand:
    name = "fastchat"
    summary = "convert between FastChat llm_judge files and mentalchat's Parquet tables"
    usage = """\
examples:
  python jobs/fastchat.py import --fastchat ../shared/mentalchat16k/fastchat --output runs/fc-import
  python jobs/fastchat.py export --answers runs/gen/answers.parquet \\
      --judgments runs/judge/judgments.parquet --output runs/fc-export

import writes answers.parquet and judgments.parquet (scores parsed metric by metric from the
judges' texts; base model and data configuration from the paper's name mapping) and copies
question.jsonl when there is one. A second judgment of the same (question, model, judge) is an
error listing the repeats, unless --on-duplicate first|last keeps one (the count dropped is printed). export writes FastChat's layout: model_answer/<model>.jsonl
and model_judgment/<judge>_single.jsonl, whose score is the overall rating."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="direction", required=True)
        imp = sub.add_parser("import", help="FastChat folder -> Parquet tables")
        imp.add_argument("--fastchat", required=True, help="folder with model_answer/, model_judgment*/")
        imp.add_argument("--output", required=True)
        imp.add_argument("--no-text", action="store_true", help="drop judge texts (smaller tables)")
        imp.add_argument("--on-duplicate", choices=["error", "first", "last"], default="error",
                         help="a second judgment of the same (question, model, judge): refuse (default, "
                         "listing them), or keep the first or the last and report how many were dropped")
        exp = sub.add_parser("export", help="Parquet tables -> FastChat folder")
        exp.add_argument("--answers", help="answers Parquet")
        exp.add_argument("--judgments", help="judgments Parquet")
        exp.add_argument("--questions", help="FastChat question.jsonl to copy alongside")
        exp.add_argument("--output", required=True)

    def run(self, args: argparse.Namespace, policy: ErrorPolicy) -> int:
        from mentalchat.core import fastchat
        from mentalchat.core.model_names import paper_model_map
        from mentalchat.io import atomic_dir
        from mentalchat.schemas import read_table, write_table

        if args.direction == "export" and not (args.answers or args.judgments):
            raise UsageError("export needs --answers and/or --judgments")
        with atomic_dir(args.output) as tmp:
            if args.direction == "import":
                data = fastchat.read_fastchat_dir(args.fastchat, paper_model_map(), keep_text=not args.no_text,
                                                  on_duplicate=args.on_duplicate)
                if data.duplicates:
                    print(f"dropped {len(data.duplicates)} repeated judgments of the same (question, model, judge), "
                          f"kept the {args.on_duplicate} of each (e.g. {data.duplicates[0].where})", file=sys.stderr)
                if data.questions is not None:
                    fastchat.write_questions(data.questions, tmp / "question.jsonl")
                if data.answers is not None:
                    write_table(data.answers, tmp / "answers.parquet", "answers")
                if data.judgments is not None:
                    write_table(data.judgments, tmp / "judgments.parquet", "judgments")
            else:
                if args.questions:
                    fastchat.write_questions(fastchat.read_questions(args.questions), tmp / "question.jsonl")
                if args.answers:
                    fastchat.write_model_answers(read_table(args.answers, "answers"), tmp / "model_answer")
                if args.judgments:
                    fastchat.write_model_judgments(read_table(args.judgments, "judgments"), tmp / "model_judgment")
        for path in sorted(Path(args.output).rglob("*")):
            if path.is_file():
                print(path)
        return 0
