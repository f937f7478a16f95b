"""Stage 2: QLoRA fine-tuning on Ray Train, one Ray Tune experiment over models × data configurations.

``run_finetune(cfg, dataset, output)`` is the entry point (``jobs/finetune.py`` wraps it);
:class:`~mentalchat.core.prompt_format.PromptFormatter` renders prompts exactly as training saw them.
Heavy imports (Ray, torch, TRL) happen inside the functions that need them.
"""

from mentalchat.finetune.config import FinetuneConfig

__all__ = ["FinetuneConfig", "run_finetune"]


def __getattr__(name: str):  # lazy: the driver imports Ray Tune
    if name == "run_finetune":
        from mentalchat.finetune.tune import run_finetune

        return run_finetune
    raise AttributeError(name)
