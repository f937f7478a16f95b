"""``mentalchat inspect-logs`` / ``jobs/inspect_logs.py``: judged answers -> Inspect AI eval logs."""

from __future__ import annotations

import argparse

from mentalchat.core.cli import ErrorPolicy

__all__ = ["InspectLogsCommand"]


class InspectLogsCommand:
    name = "inspect-logs"
    summary = "write answers and their judgments as Inspect AI eval logs (one per model) for `inspect view`"
    usage = """\
examples:
  python jobs/inspect_logs.py --answers runs/quickstart/answers/answers.parquet \\
      --judgments runs/quickstart/judgments/judgments.parquet --questions runs/quickstart/questions.jsonl \\
      --output runs/inspect-logs
  inspect view --log-dir runs/inspect-logs

Each question is a sample (the client's message, the answer) with one score per judge: the seven
metrics and the overall rating as the score's value, the judge's explanation beside it; human
raters ('human:<rater>') are judges too. Single-turn rows only."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--answers", required=True, help="answers Parquet")
        parser.add_argument("--judgments", required=True, nargs="+", help="judgments Parquet file(s)")
        parser.add_argument("--questions", required=True, help="the questions (JSONL/Parquet)")
        parser.add_argument("--task", default="mentalchat16k", help="the task name the logs carry")
        parser.add_argument("--output", required=True, help="log folder")

    def run(self, args: argparse.Namespace, policy: ErrorPolicy) -> int:
        import pyarrow as pa

        from mentalchat.core.inspect_logs import write_inspect_logs
        from mentalchat.core.questions import load_questions
        from mentalchat.schemas import read_table

        judgments = pa.concat_tables([read_table(p, "judgments") for p in args.judgments])
        questions = {q.question_id: q.text for q in load_questions(args.questions)}
        for path in write_inspect_logs(read_table(args.answers, "answers"), judgments, questions, args.output,
                                       task=args.task):
            print(path)
        return 0
