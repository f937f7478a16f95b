"""Crisis detection as a measured classifier: rules plus an optional model layer, one detector.

The dataset builder's audit, the judge stage's probe check and ``jobs/crisis.py`` use the same
:class:`CrisisDetector`, so a wording that one of them misses is missed everywhere and fixed once.
The evaluation set (``mentalchat/data/crisis_eval/``) has a frozen held-out split whose hash is
checked by the tests; :mod:`.evaluate` reports precision, recall and F1 with CIs per layer.
"""

from __future__ import annotations

from mentalchat.safety.config import CrisisDetectorConfig, CrisisModelConfig
from mentalchat.safety.detector import CrisisDetector, Detection, EscalationCheck

__all__ = ["CrisisDetector", "CrisisDetectorConfig", "CrisisModelConfig", "Detection", "EscalationCheck"]
