"""The shared core under the stages: the vocabulary every stage speaks.

Stage packages (``dataset``, ``finetune``, ``generate``, ``judge``, ``stats``) import this layer,
``engine``, ``models``, ``io``, ``schemas``, ``config`` and ``errors``, never each other
(``tests/test_layers.py`` enforces it). What lives here is what more than one stage needs:

- :mod:`.rubric`: the seven metrics, score names and the structured-judgment schema;
- :mod:`.judge_reply`: reading scores (and crisis verdicts) out of a judge's reply;
- :mod:`.model_names`: model name → (base model, data configuration);
- :mod:`.questions`: benchmark question files;
- :mod:`.decontamination`: training inputs that near-duplicate benchmark questions;
- :mod:`.released_data`: MentalChat16K-format files (instruction, input, output) as ``qa_pairs`` rows;
- :mod:`.prompt_format`: the instruction and how a model is prompted, in training and answering;
- :mod:`.crisis_rules` and :mod:`.crisis_probes`: the crisis detector and the probe set;
- :mod:`.fastchat` and :mod:`.human_ratings`: the FastChat llm_judge and ratings-CSV formats.

The public names are re-exported here and imported on first use, so ``import mentalchat.core``
stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # rubric
    "METRICS": "rubric", "METRIC_KEYS": "rubric", "OVERALL": "rubric", "MEAN_OF_7": "rubric",
    "ALL_SCORE_NAMES": "rubric", "SCORE_MIN": "rubric", "SCORE_MAX": "rubric", "DATA_CONFIGS": "rubric",
    "JUDGMENT_JSON_SCHEMA": "rubric", "judgment_json_schema": "rubric",
    # judge replies
    "ParsedJudgment": "judge_reply", "parse_judgment": "judge_reply", "resolve_metric_name": "judge_reply",
    "parse_crisis_verdict": "judge_reply", "measure_coverage": "judge_reply",
    # model names
    "ModelEntry": "model_names", "ModelMapConfig": "model_names", "ModelRule": "model_names",
    "paper_model_map": "model_names",
    # questions and prompts
    "Question": "questions", "QuestionError": "questions", "load_questions": "questions",
    "bundled_questions": "questions", "bundled_multiturn_questions": "questions",
    "DecontaminationConfig": "decontamination", "Decontaminator": "decontamination", "scan_pairs": "decontamination",
    "ReleasedDataError": "released_data", "read_released": "released_data",
    "DEFAULT_INSTRUCTION": "prompt_format", "INSTRUCTION_FORMAT_ID": "prompt_format",
    "PromptFormatter": "prompt_format",
    # crisis
    "CRISIS_CATEGORIES": "crisis_rules", "audit_pair": "crisis_rules", "flag_crisis": "crisis_rules",
    "find_escalation": "crisis_rules", "load_probes": "crisis_probes", "rule_check": "crisis_probes",
    # interchange formats
    "FastChatFormatError": "fastchat", "read_fastchat_dir": "fastchat",
    "HumanRatingsError": "human_ratings", "read_human_ratings": "human_ratings",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
