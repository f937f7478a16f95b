"""``mentalchat human-study`` / ``jobs/human_study.py``: export, push, pull and import a rating study."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mentalchat.core.cli import ErrorPolicy
from mentalchat.errors import UsageError

__all__ = ["HumanStudyCommand"]


def _raters(value: str) -> list[str]:
    """``3`` -> r1, r2, r3; ``ana,ben`` -> those names."""
    value = value.strip()
    if value.isdigit():
        return [f"r{i}" for i in range(1, int(value) + 1)]
    names = [n.strip() for n in value.split(",") if n.strip()]
    bad = [n for n in names if not n.replace("-", "").replace("_", "").isalnum()]
    if bad:
        raise argparse.ArgumentTypeError(f"rater names may hold letters, digits, - and _ only: {bad}")
    return names


class HumanStudyCommand:
    name = "human-study"
    summary = "blind, stratified rating studies in Label Studio: export, push, pull, import"
    usage = """\
examples:
  python jobs/human_study.py export --answers runs/gen/answers.parquet --questions runs/q.jsonl \\
      --raters 3 --per-rater 40 --overlap 0.25 --output runs/study
  LABEL_STUDIO_API_KEY=... python jobs/human_study.py push --study runs/study --url http://127.0.0.1:8080
  LABEL_STUDIO_API_KEY=... python jobs/human_study.py pull --study runs/study
  python jobs/human_study.py import --study runs/study --output runs/study-ratings
  python jobs/stats.py --config C --judgments runs/judge/judgments.parquet \\
      runs/study-ratings/human_judgments.parquet --output runs/stats

export draws single-turn answers stratified by (base model, data configuration); a share --overlap
of each rater's items is rated by every rater (for agreement); each rater's order is shuffled and
items carry opaque ids, the key to which is written to DIR/key/ (or --key) only. push makes one
Label Studio project per rater; pull downloads them to DIR/export/; import (also offline, from
any Label Studio JSON export) unblinds them into judgments rows 'human:<rater>' and human_flags
(crisis concern, comment, time spent)."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        exp = sub.add_parser("export", help="draw the study: tasks, labeling config, unblinding key")
        exp.add_argument("--answers", required=True, help="answers Parquet (generate's output)")
        exp.add_argument("--questions", required=True, help="the questions the answers were made for (JSONL/Parquet)")
        exp.add_argument("--raters", required=True, type=_raters, help="a number (r1..rN) or comma-separated names")
        exp.add_argument("--per-rater", required=True, type=int, help="answers each rater scores")
        exp.add_argument("--overlap", type=float, default=0.2, help="share of each rater's items every rater scores")
        exp.add_argument("--seed", type=int, default=0)
        exp.add_argument("--key", help="where the unblinding key goes (default DIR/key/unblinding_key.json)")
        exp.add_argument("--name", help="study name (default: the folder's name)")
        exp.add_argument("--output", required=True, help="study folder DIR")
        for action, text in (("push", "create the projects and import the tasks"),
                             ("pull", "download every rater's annotations to DIR/export/")):
            p = sub.add_parser(action, help=text)
            p.add_argument("--study", required=True, help="study folder DIR")
            p.add_argument("--url", help="Label Studio URL (default $LABEL_STUDIO_URL, or the one push used)")
            p.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
            if action == "push":
                p.add_argument("--force", action="store_true", help="push again (new projects)")
        imp = sub.add_parser("import", help="Label Studio JSON export(s) -> judgments + human_flags")
        imp.add_argument("--study", help="study folder: exports from DIR/export/, key from DIR/key/")
        imp.add_argument("--export", nargs="+", default=[], help="Label Studio JSON export file(s)")
        imp.add_argument("--key", help="unblinding key (default the study's)")
        imp.add_argument("--rater-from", choices=["task", "annotator"], default="task",
                         help="name raters by the task's rater (one project each) or by who annotated")
        imp.add_argument("--output", required=True)

    def run(self, args: argparse.Namespace, policy: ErrorPolicy) -> int:
        if args.action == "export":
            from .study import export_study

            design = export_study(args.answers, args.questions, args.output, raters=args.raters,
                                  per_rater=args.per_rater, overlap=args.overlap, seed=args.seed,
                                  key=args.key, name=args.name)
            left = "; left out: " + ", ".join(f"{n} ({why})" for why, n in design.left_out.items()) \
                if design.left_out else ""
            print(f"{len(design.items)} answers ({design.n_shared} shared) for {len(design.raters)} raters x "
                  f"{design.per_rater}, {len(design.strata)} strata -> {args.output}{left}")
            return 0
        if args.action == "push":
            from .labelstudio import push_study

            out = push_study(args.study, args.url, force=args.force, timeout_s=args.timeout)
            for rater, pid in out["projects"].items():
                print(f"{rater}: {out['url']}/projects/{pid}/data")
            return 0
        if args.action == "pull":
            from .labelstudio import pull_study

            for rater, path in pull_study(args.study, args.url, timeout_s=args.timeout).items():
                print(f"{rater}: {path}")
            return 0
        return self._import(args)

    def _import(self, args: argparse.Namespace) -> int:
        from mentalchat.io import atomic_dir
        from mentalchat.schemas import write_table

        from .ratings import read_export, read_key
        from .study import KEY_FILE

        exports = [Path(p) for p in args.export]
        if args.study and not exports:
            exports = sorted((Path(args.study) / "export").glob("*.json"))
        if not exports:
            raise UsageError("import needs --export FILE(s) or a --study folder that `pull` filled")
        key_path = args.key or (Path(args.study) / KEY_FILE if args.study else None)
        if key_path is None:
            raise UsageError("import needs the unblinding key: --key FILE or --study DIR")
        got = read_export(exports, read_key(key_path), rater_from=args.rater_from)
        with atomic_dir(args.output) as tmp:
            write_table(got.judgments, tmp / "human_judgments.parquet", "judgments")
            write_table(got.flags, tmp / "human_flags.parquet", "human_flags")
        raters = ", ".join(f"{r} {n}" for r, n in sorted(got.annotated.items())) or "none"
        print(f"annotations by rater: {raters}; {got.unannotated} tasks not rated yet, {got.cancelled} skipped "
              f"-> {args.output}", file=sys.stderr)
        return 0
