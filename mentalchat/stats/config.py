"""Settings of the statistics stage (the ``stats:`` section of a config file)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mentalchat.config import StrictModel
from mentalchat.core.model_names import ModelMapConfig

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
    figures: bool = True
    report_title: str = "MentalChat16K evaluation"
