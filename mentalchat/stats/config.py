"""Settings of the statistics stage (the ``stats:`` section of a config file)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from mentalchat.config import StrictModel
from mentalchat.core.model_names import ModelMapConfig
from mentalchat.core.rubric import ALL_SCORE_NAMES, MEAN_OF_7, OVERALL

__all__ = ["StatsConfig"]


class StatsConfig(StrictModel):
    """How means, gains, wins and agreement are computed and reported."""

    bootstrap: int = Field(1000, ge=0, description="resamples of questions per CI; 0: no CIs")
    ci_level: float = Field(0.95, gt=0.5, lt=1.0)
    seed: int = Field(0, description="seed of the bootstrap resamples (shared by all tables)")
    correction: Literal["holm", "bonferroni", "fdr_bh", "fdr_by", "none"] = Field(
        "holm", description="multiple-comparison correction of the gains' Wilcoxon p-values"
    )
    correction_family: Literal["all", "judge", "judge_metric"] = Field(
        "judge", description="which tests are corrected together"
    )
    wilcoxon_zero_method: Literal["wilcox", "pratt", "zsplit"] = "wilcox"
    mean_of_7_min_metrics: int = Field(
        7, ge=1, le=7, description="metric scores a judgment needs for its mean_of_7"
    )
    fine_tuned_configs: list[str] = Field(
        default_factory=lambda: ["synthetic", "interview", "combined"],
        description="data configurations compared with their base model, in report order",
    )
    model_map: ModelMapConfig = Field(
        default_factory=ModelMapConfig,
        description="name → (base, configuration) for rows that lack them (defaults: the paper's)",
    )
    mixed_effects: bool = Field(True, description="fit the mixed-effects gains model (statsmodels MixedLM)")
    mixed_effects_metrics: list[str] = Field(
        default_factory=lambda: list(ALL_SCORE_NAMES),
        description="score names the mixed-effects model is fitted for (one fit per judge and name)",
    )
    length_control_metrics: list[str] = Field(
        default_factory=lambda: [MEAN_OF_7, OVERALL],
        description="score names of the length-controlled analysis (needs answers)",
    )
    figures: bool = True
    report_title: str = "MentalChat16K evaluation"

    @field_validator("mixed_effects_metrics", "length_control_metrics")
    @classmethod
    def _known_scores(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in ALL_SCORE_NAMES]
        if unknown:
            raise ValueError(f"unknown score names {unknown}; expected some of {list(ALL_SCORE_NAMES)}")
        return names
