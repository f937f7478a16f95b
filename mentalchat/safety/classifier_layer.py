"""The classifier layer: a linear model over word and character n-grams, trained on the dev splits.

Why beside the rules: a rule only matches the wordings someone wrote down, while a linear model
over n-grams generalises a little past them ("tablets" and "lined up" near "tonight"), costs
microseconds a message and needs no GPU. It is trained on the tuning splits only (``dev`` and
``dev2``; the held-out split is never seen) and shipped as a JSON file of vocabulary, IDF weights
and one logistic regression per category, so loading it runs no pickled code. Its threshold per
category is chosen on out-of-fold predictions of the training text.

    python -m mentalchat.safety.classifier_layer train --out mentalchat/data/crisis_classifier.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from mentalchat.core.crisis_rules import CRISIS_CATEGORIES, normalise
from mentalchat.errors import InputError
from mentalchat.io import atomic_path

__all__ = ["CrisisClassifier", "default_classifier_path", "train_classifier"]

ANY = "any_crisis"
FORMAT = "mentalchat-crisis-classifier-v1"


def default_classifier_path() -> Path:
    return Path(str(resources.files("mentalchat") / "data" / "crisis_classifier.json"))


def _prepare(text: str) -> str:
    """Normalised text with every digit run as one token: numbers say nothing about risk."""
    return re.sub(r"\d+(?:[.,:]\d+)*", " 0 ", normalise(text))


def _vectorizers(word_vocab: dict[str, int] | None = None, char_vocab: dict[str, int] | None = None) -> tuple[Any, Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    word = TfidfVectorizer(preprocessor=_prepare, ngram_range=(1, 2), min_df=2, sublinear_tf=True,
                           token_pattern=r"(?u)\b[\w']+\b", vocabulary=word_vocab)
    char = TfidfVectorizer(preprocessor=_prepare, analyzer="char_wb", ngram_range=(3, 5), min_df=2,
                           sublinear_tf=True, max_features=20000, vocabulary=char_vocab)
    return word, char


@dataclass
class CrisisClassifier:
    """Loaded weights: ``predict`` gives per-category probabilities and the thresholded flags."""

    word_vocab: dict[str, int]
    word_idf: np.ndarray
    char_vocab: dict[str, int]
    char_idf: np.ndarray
    labels: list[str]
    coef: np.ndarray  # (labels, features)
    intercept: np.ndarray
    thresholds: np.ndarray
    meta: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path | None = None) -> CrisisClassifier:
        path = Path(path) if path else default_classifier_path()
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: not a crisis classifier file ({exc})", path=path) from None
        if doc.get("format") != FORMAT:
            raise InputError(f"{path}: format {doc.get('format')!r}, expected {FORMAT!r}", path=path)
        return cls(doc["word_vocab"], np.asarray(doc["word_idf"]), doc["char_vocab"], np.asarray(doc["char_idf"]),
                   doc["labels"], np.asarray(doc["coef"]), np.asarray(doc["intercept"]),
                   np.asarray(doc["thresholds"]), doc.get("meta", {}))

    def _features(self, texts: Sequence[str]) -> Any:
        from scipy.sparse import hstack

        word, char = _vectorizers(self.word_vocab, self.char_vocab)
        word.idf_ = self.word_idf
        char.idf_ = self.char_idf
        return hstack([word.transform(texts), char.transform(texts)]).tocsr()

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.labels)))
        z = self._features(texts) @ self.coef.T + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def predict(self, texts: Sequence[str]) -> list[tuple[bool, tuple[str, ...]]]:
        """(flag, categories) per text: a flag from the any-crisis model or any category above its threshold."""
        p = self.probabilities(texts)
        above = p >= self.thresholds
        out = []
        any_i = self.labels.index(ANY)
        for row in above:
            cats = tuple(c for c in CRISIS_CATEGORIES if c in self.labels and row[self.labels.index(c)])
            out.append((bool(cats), cats))
        return out


def _fit_one(x: Any, y: np.ndarray, c: float) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, class_weight="balanced", max_iter=2000, solver="liblinear").fit(x, y)


def _threshold(y: np.ndarray, p: np.ndarray, min_precision: float) -> float:
    """The highest-recall threshold whose out-of-fold precision stays at ``min_precision``; 0.5 when none does."""
    best = 0.5
    best_recall = -1.0
    for t in np.unique(np.round(p, 4)):
        pred = p >= t
        tp = float(np.sum(pred & y))
        if not pred.any() or tp / pred.sum() < min_precision:
            continue
        recall = tp / max(1.0, float(y.sum()))
        if recall > best_recall or (recall == best_recall and t > best):
            best, best_recall = float(t), recall
    return best


def train_classifier(texts: Sequence[str], categories: Sequence[Sequence[str]], *, c: float = 4.0,
                     folds: int = 5, min_precision: float = 0.8, seed: int = 0,
                     meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit the vectorizers and one model per label; thresholds from ``folds``-fold out-of-fold predictions."""
    from scipy.sparse import hstack
    from sklearn.model_selection import StratifiedKFold

    texts = list(texts)
    labels = [ANY, *[c_ for c_ in CRISIS_CATEGORIES if sum(c_ in cs for cs in categories) >= folds]]
    y = {lab: np.array([bool(cs) if lab == ANY else lab in cs for cs in categories]) for lab in labels}
    word, char = _vectorizers()
    x = hstack([word.fit_transform(texts), char.fit_transform(texts)]).tocsr()
    coef, intercept, thresholds = [], [], []
    for lab in labels:
        oof = np.zeros(len(texts))
        for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y[lab]):
            oof[te] = _fit_one(x[tr], y[lab][tr], c).predict_proba(x[te])[:, 1]
        thresholds.append(_threshold(y[lab], oof, min_precision))
        model = _fit_one(x, y[lab], c)
        coef.append(model.coef_[0].tolist())
        intercept.append(float(model.intercept_[0]))
    return {
        "format": FORMAT, "labels": labels,
        "word_vocab": {k: int(v) for k, v in word.vocabulary_.items()}, "word_idf": word.idf_.round(4).tolist(),
        "char_vocab": {k: int(v) for k, v in char.vocabulary_.items()}, "char_idf": char.idf_.round(4).tolist(),
        "coef": np.round(np.asarray(coef), 4).tolist(), "intercept": intercept, "thresholds": thresholds,
        "meta": {"c": c, "folds": folds, "min_precision": min_precision, "seed": seed, "n": len(texts), **(meta or {})},
    }


def main(argv: Sequence[str] | None = None) -> int:
    from mentalchat.safety.evalset import load_messages

    ap = argparse.ArgumentParser(prog="python -m mentalchat.safety.classifier_layer")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train on the tuning splits (never the held-out one)")
    t.add_argument("--splits", nargs="+", default=["dev", "dev2"], choices=["dev", "dev2"])
    t.add_argument("--out", type=Path, default=default_classifier_path())
    t.add_argument("--c", type=float, default=4.0)
    t.add_argument("--min-precision", type=float, default=0.8)
    args = ap.parse_args(argv)
    msgs = [m for s in args.splits for m in load_messages(s)]
    doc = train_classifier([m.text for m in msgs], [m.categories for m in msgs], c=args.c,
                           min_precision=args.min_precision, meta={"splits": args.splits})
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")
    print(f"{len(msgs)} messages from {', '.join(args.splits)} -> {args.out} "
          f"({len(doc['word_vocab']) + len(doc['char_vocab'])} features; thresholds "
          + ", ".join(f"{lab} {th:.2f}" for lab, th in zip(doc["labels"], doc["thresholds"], strict=True)) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
