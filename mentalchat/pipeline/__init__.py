"""The end-to-end driver: every stage in order, resumable (``jobs/pipeline.py``)."""

from mentalchat.pipeline.config import STAGES, PipelineConfig
from mentalchat.pipeline.run import PipelinePlan, PipelineResult, StageResult, load_pipeline, run_pipeline
from mentalchat.pipeline.summary import format_summary

__all__ = [
    "STAGES",
    "PipelineConfig",
    "PipelinePlan",
    "PipelineResult",
    "StageResult",
    "format_summary",
    "load_pipeline",
    "run_pipeline",
]
