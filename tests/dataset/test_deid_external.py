"""De-identification measured on text the project did not write, side by side with philter-lite.

A guard against regressions, not the measurement: ``benchmarks/deid_external.py`` reports the full
sets. Here 400 presidio-evaluator sentences (seed 7, a seed the rules were never tuned on; the
benchmark and the tuning use seed 0), their speech-to-text form and the i2b2 sample notes inside
philter-lite. The floors sit a little under what the benchmark measured on its test split, so a
change that loses real recall goes red.
"""

from __future__ import annotations

import importlib.util

import pytest

from mentalchat.testing.deid_metrics import evaluate, mentalchat_tool
from mentalchat.testing.deid_sets import asr_variant, i2b2_notes, presidio_sentences

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("presidio_evaluator") is None, reason="presidio-evaluator not installed"),
    pytest.mark.skipif(importlib.util.find_spec("philter_lite") is None, reason="philter-lite not installed"),
]


@pytest.fixture(scope="module")
def tool():
    return mentalchat_tool()


@pytest.fixture(scope="module")
def sentences():
    return presidio_sentences(400, seed=7, split="test")


def test_presidio_sentences_ahead_of_philter(tool, sentences) -> None:
    from mentalchat.testing.deid_baselines import philter_tool

    ours = evaluate(tool, sentences, tool_name="mentalchat")
    theirs = evaluate(philter_tool(), sentences, tool_name="philter-lite")
    assert ours.value_recall() >= 0.975, ours.value_recall()
    assert ours.value_recall() > theirs.value_recall(), (ours.value_recall(), theirs.value_recall())
    assert ours.nonphi_removed <= 0.05
    assert ours.value_recall(["NAME"]) >= 0.98 and ours.value_recall(["EMAIL"]) == 1.0


def test_speech_to_text_sentences(tool, sentences) -> None:
    ours = evaluate(tool, asr_variant(sentences), tool_name="mentalchat")
    assert ours.value_recall() >= 0.96, ours.value_recall()
    assert ours.nonphi_removed <= 0.05


def test_i2b2_sample_notes(tool) -> None:
    """Held out: counts only (the notes are never read to write rules)."""
    ours = evaluate(tool, i2b2_notes(), tool_name="mentalchat", examples=False)
    assert ours.value_recall() >= 0.92, ours.value_recall()
    assert ours.nonphi_removed <= 0.12
