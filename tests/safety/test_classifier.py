"""The classifier layer: trained on the tuning splits only, reproducible, loaded from JSON, measured held out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mentalchat.errors import InputError
from mentalchat.safety import CrisisDetector, CrisisDetectorConfig
from mentalchat.safety.classifier_layer import CrisisClassifier, default_classifier_path, main, train_classifier
from mentalchat.safety.evalset import load_messages, verify_frozen
from mentalchat.safety.evaluate import score_messages


def test_bundled_weights_are_what_training_on_dev_gives(tmp_path: Path) -> None:
    """Rebuilding from the dev splits reproduces the shipped file: nothing else went into it."""
    bundled = json.loads(default_classifier_path().read_text(encoding="utf-8"))
    assert bundled["meta"]["splits"] == ["dev", "dev2"]
    out = tmp_path / "clf.json"
    assert main(["train", "--out", str(out)]) == 0
    rebuilt = json.loads(out.read_text(encoding="utf-8"))
    assert rebuilt["labels"] == bundled["labels"] and rebuilt["thresholds"] == bundled["thresholds"]
    texts = [m.text for m in load_messages("test")[:40]]
    assert np.allclose(CrisisClassifier.load(out).probabilities(texts),
                       CrisisClassifier.load().probabilities(texts), atol=1e-6)


def test_json_weights_match_the_fitted_model() -> None:
    """Loading from JSON (no pickle) gives the probabilities sklearn's own model gives."""
    from scipy.sparse import hstack
    from sklearn.linear_model import LogisticRegression

    from mentalchat.safety.classifier_layer import _vectorizers

    msgs = load_messages("dev")
    texts, cats = [m.text for m in msgs], [m.categories for m in msgs]
    doc = train_classifier(texts, cats, folds=3)
    clf = CrisisClassifier(doc["word_vocab"], np.asarray(doc["word_idf"]), doc["char_vocab"],
                           np.asarray(doc["char_idf"]), doc["labels"], np.asarray(doc["coef"]),
                           np.asarray(doc["intercept"]), np.asarray(doc["thresholds"]), doc["meta"])
    word, char = _vectorizers()
    x = hstack([word.fit_transform(texts), char.fit_transform(texts)]).tocsr()
    y = np.array([bool(c) for c in cats])
    ref = LogisticRegression(C=4.0, class_weight="balanced", max_iter=2000, solver="liblinear").fit(x, y)
    mine = clf.probabilities(texts)[:, doc["labels"].index("any_crisis")]
    assert np.allclose(mine, ref.predict_proba(x)[:, 1], atol=1e-3)


def test_held_out_floors_of_the_default_detector() -> None:
    """Rules + classifier (the default) on the frozen split: measured floors, not tuned on."""
    verify_frozen()
    msgs = load_messages("test")
    dets = CrisisDetector().detect([m.text for m in msgs])
    assert set(dets[0].layers) == {"rules", "classifier"}
    s = score_messages(msgs, dets, split="test", n_boot=0).set_index(["layer", "category"])
    assert s.loc[("combined", "any_crisis"), "recall"] >= 0.95
    assert s.loc[("combined", "suicidal_ideation"), "recall"] >= 0.9
    assert s.loc[("combined", "self_harm"), "recall"] >= 0.95
    assert s.loc[("classifier", "any_crisis"), "precision"] >= 0.9
    # the classifier adds what the rules miss
    assert s.loc[("combined", "any_crisis"), "recall"] > s.loc[("rules", "any_crisis"), "recall"] + 0.15


def test_bad_classifier_files(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"format": "other"}', encoding="utf-8")
    with pytest.raises(InputError, match="expected 'mentalchat-crisis-classifier-v1'"):
        CrisisClassifier.load(bad)
    with pytest.raises(InputError, match="not a crisis classifier file"):
        CrisisClassifier.load(tmp_path / "missing.json")
    det = CrisisDetector(CrisisDetectorConfig(layers=["classifier"], classifier={"path": str(bad)}))
    with pytest.raises(InputError):
        det.detect(["hello"])
