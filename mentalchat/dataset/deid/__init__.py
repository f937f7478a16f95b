"""De-identification of transcripts and model outputs (HIPAA Safe Harbor's 18 categories as the floor).

:mod:`.deidentifier` is the entry point (:func:`get_deidentifier`); :mod:`.vocab` holds what it
knows about the language.
"""

from mentalchat.dataset.deid.deidentifier import (
    ENTITY_TYPES,
    PLACEHOLDER_RE,
    DeidContext,
    Deidentifier,
    DeidResult,
    Span,
    get_deidentifier,
)

__all__ = ["ENTITY_TYPES", "PLACEHOLDER_RE", "DeidContext", "DeidResult", "Deidentifier", "Span", "get_deidentifier"]
