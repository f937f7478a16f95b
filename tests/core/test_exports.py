"""The core's public names resolve (they are imported lazily, so a typo would only show at use)."""

from __future__ import annotations

import mentalchat.core as core


def test_every_public_name_resolves() -> None:
    assert "METRICS" in core.__all__ and "load_questions" in core.__all__
    for name in core.__all__:
        assert getattr(core, name) is not None, name
    assert set(core.__all__) <= set(dir(core))
