"""Human rating studies: draw a blind, stratified, overlapping sample of answers, rate it in Label
Studio, and import the ratings back as ``judgments`` rows (``human:<rater>``) for agreement."""

from .design import StudyDesign, StudyItem, design_study
from .label_config import labeling_config, tasks_for
from .labelstudio import pull_study, push_study
from .ratings import ImportedRatings, StudyImportError, read_export, read_key
from .study import export_study, read_study

__all__ = [
    "ImportedRatings",
    "StudyDesign",
    "StudyImportError",
    "StudyItem",
    "design_study",
    "export_study",
    "labeling_config",
    "pull_study",
    "push_study",
    "read_export",
    "read_key",
    "read_study",
    "tasks_for",
]
