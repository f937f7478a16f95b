"""``mentalchat <command>``: one entry point for every stage, the pipeline and the tools beside them.

``jobs/<job>.py`` (what ``ray job submit`` runs) calls :func:`job_main` with its command's name, so
a job and its console script take the same options and behave the same: one argument style, one
logging set-up and one error policy (:mod:`mentalchat.core.cli`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mentalchat.core.cli import Command, ErrorPolicy, add_config_arguments, setup_logging
from mentalchat.core.stage import Stage, get_stage, stage_names

__all__ = ["build_parser", "commands", "job_main", "main"]


class _StageCommand:
    """A stage on the command line: ``--config`` plus overrides, then the stage's own options."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self.name = stage.name
        self.summary = stage.summary
        self.usage = stage.usage

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_config_arguments(parser)
        self.stage.add_arguments(parser)

    def run(self, args: argparse.Namespace, policy: ErrorPolicy) -> int:
        cfg = self.stage.load_config(args.config, args.overrides)
        policy.watch([cfg])
        return self.stage.run_command(cfg, args)


def commands() -> dict[str, Command]:
    """Every sub-command by name: the registered stages in pipeline order, then pipeline, deidentify, crisis, import-dataset, fastchat, human-study, inspect-logs."""
    from mentalchat.core.fastchat_command import FastChatCommand
    from mentalchat.core.inspect_command import InspectLogsCommand
    from mentalchat.dataset.deid_command import DeidentifyCommand
    from mentalchat.dataset.import_command import ImportDatasetCommand
    from mentalchat.human_study.command import HumanStudyCommand
    from mentalchat.pipeline.command import PipelineCommand
    from mentalchat.safety.command import CrisisCommand

    out: dict[str, Command] = {name: _StageCommand(get_stage(name)) for name in stage_names()}
    for cmd in (PipelineCommand(), DeidentifyCommand(), CrisisCommand(), ImportDatasetCommand(), FastChatCommand(),
                HumanStudyCommand(), InspectLogsCommand()):
        out[cmd.name] = cmd
    return out


def _configure(parser: argparse.ArgumentParser, cmd: Command) -> None:
    parser.description = cmd.summary
    parser.epilog = cmd.usage
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    cmd.add_arguments(parser)


def build_parser(
    command: str | None = None, prog: str | None = None, table: dict[str, Command] | None = None
) -> argparse.ArgumentParser:
    """The ``mentalchat`` parser, or with ``command`` that command's parser alone (for a job script)."""
    table = table if table is not None else commands()
    if command is not None:
        parser = argparse.ArgumentParser(prog=prog)
        _configure(parser, table[command])
        return parser
    parser = argparse.ArgumentParser(
        prog=prog or "mentalchat",
        description="MentalChat16K on Ray: build the dataset, fine-tune, answer, judge, report.",
        epilog="Each command takes --help. The jobs/<job>.py scripts run the same commands (for ray job submit).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, cmd in table.items():
        _configure(sub.add_parser(name, help=cmd.summary), cmd)
    return parser


def _run(cmd: Command, args: argparse.Namespace) -> int:
    setup_logging(verbose=getattr(args, "verbose", False))
    policy = ErrorPolicy()
    return policy.run(lambda: cmd.run(args, policy))


def main(argv: Sequence[str] | None = None) -> int:
    """The ``mentalchat`` console script."""
    table = commands()
    args = build_parser(table=table).parse_args(list(sys.argv[1:] if argv is None else argv))
    return _run(table[args.command], args)


def job_main(command: str, argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """A ``jobs/<job>.py`` script: the same command, with the job's own name in its help."""
    table = commands()
    args = build_parser(command, prog=prog, table=table).parse_args(list(sys.argv[1:] if argv is None else argv))
    return _run(table[command], args)


if __name__ == "__main__":
    sys.exit(main())
