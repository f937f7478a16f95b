"""Stage 4: LLM judges score every answer on the seven metrics (``jobs/judge.py``, ``mentalchat judge``).

Read :mod:`.run` top to bottom: :mod:`.plan` (work items and requests), :mod:`.execute` (calls here
or across Ray), :mod:`.publish` (rows for every item). Prompts are in :mod:`.prompts` and
:mod:`.fastchat_prompt`, reliability controls in :mod:`.reliability`, pairwise comparisons and
position bias in :mod:`.pairwise`, human ratings in :mod:`.human`.
"""

from __future__ import annotations

from typing import Any

from mentalchat.judge.config import JudgeConfig

__all__ = ["JudgeConfig", "JudgeRunSummary", "import_human_ratings", "load_answers", "run_judge"]

_LAZY = {
    "JudgeRunSummary": "mentalchat.judge.run",
    "run_judge": "mentalchat.judge.run",
    "load_answers": "mentalchat.judge.plan",
    "import_human_ratings": "mentalchat.judge.human",
}


def __getattr__(name: str) -> Any:  # lazy: the run imports the engines
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
