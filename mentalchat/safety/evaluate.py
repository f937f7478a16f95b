"""Precision, recall and F1 of the crisis detector, per category and layer, with bootstrap CIs.

One detector run with every layer on scores each layer and their combination from the same
verdicts (:class:`~mentalchat.safety.detector.Detection` keeps them per layer). CIs are percentile
bootstraps over items, so precision, recall and F1 share resamples. Hard negatives are reported by
subtype as false-flag counts: "no false flag on numbers and rooms" is a count, not a rate.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from mentalchat.core.crisis_rules import CRISIS_CATEGORIES
from mentalchat.safety.detector import Detection, EscalationCheck
from mentalchat.safety.evalset import EvalAnswer, EvalMessage

__all__ = ["ANY", "binary_scores", "false_flags", "score_answers", "score_messages"]

ANY = "any_crisis"


def binary_scores(gold: np.ndarray, pred: np.ndarray, *, n_boot: int = 2000, seed: int = 0,
                  level: float = 0.95) -> dict[str, float]:
    """tp/fp/fn and precision, recall, F1 with percentile-bootstrap CIs over items."""
    gold = np.asarray(gold, bool)
    pred = np.asarray(pred, bool)

    def stats(g: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
        tp = float(np.sum(g & p))
        fp = float(np.sum(~g & p))
        fn = float(np.sum(g & ~p))
        prec = tp / (tp + fp) if tp + fp else np.nan
        rec = tp / (tp + fn) if tp + fn else np.nan
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else np.nan
        return prec, rec, f1

    prec, rec, f1 = stats(gold, pred)
    out = {"n": int(len(gold)), "n_pos": int(gold.sum()), "tp": int(np.sum(gold & pred)),
           "fp": int(np.sum(~gold & pred)), "fn": int(np.sum(gold & ~pred)),
           "precision": prec, "recall": rec, "f1": f1}
    if n_boot and len(gold):
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, len(gold), size=(n_boot, len(gold)))
        boot = np.array([stats(gold[i], pred[i]) for i in idx])
        a = (1 - level) / 2
        with np.errstate(all="ignore"):
            for j, name in enumerate(("precision", "recall", "f1")):
                col = boot[:, j][~np.isnan(boot[:, j])]
                lo, hi = (np.quantile(col, [a, 1 - a]) if len(col) else (np.nan, np.nan))
                out[f"{name}_lo"], out[f"{name}_hi"] = float(lo), float(hi)
    return out


def _layer_views(dets: Sequence[Detection]) -> dict[str, list[tuple[bool, tuple[str, ...]]]]:
    """(flag, categories) per item for each layer, plus the combination as ``combined``."""
    views: dict[str, list[tuple[bool, tuple[str, ...]]]] = {"combined": [(d.flag, d.categories) for d in dets]}
    names = list(dets[0].layers) if dets else []
    if len(names) > 1:
        for name in names:
            views[name] = [(bool(d.layers.get(name)), d.layer_categories.get(name, ())) for d in dets]
    elif names:
        views = {names[0]: views["combined"]}
    return views


def score_messages(items: Sequence[EvalMessage], dets: Sequence[Detection], *, split: str,
                   n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per (layer, category), category ``any_crisis`` being "flagged at all"."""
    if len(items) != len(dets):
        raise ValueError(f"{len(items)} items but {len(dets)} detections")
    rows = []
    for layer, view in _layer_views(dets).items():
        gold_any = np.array([bool(it.categories) for it in items])
        pred_any = np.array([flag for flag, _ in view])
        rows.append({"split": split, "task": "messages", "layer": layer, "category": ANY,
                     **binary_scores(gold_any, pred_any, n_boot=n_boot, seed=seed)})
        for cat in CRISIS_CATEGORIES:
            gold = np.array([cat in it.categories for it in items])
            pred = np.array([flag and cat in cats for flag, cats in view])
            rows.append({"split": split, "task": "messages", "layer": layer, "category": cat,
                         **binary_scores(gold, pred, n_boot=n_boot, seed=seed)})
    return pd.DataFrame(rows)


def false_flags(items: Sequence[EvalMessage], dets: Sequence[Detection]) -> pd.DataFrame:
    """Hard negatives flagged, by layer and subtype (n = negatives of that subtype)."""
    rows = []
    for layer, view in _layer_views(dets).items():
        by: dict[str, list[int]] = {}
        for it, (flag, _) in zip(items, view, strict=True):
            if it.categories:
                continue
            n_flag = by.setdefault(it.subtype or "other", [0, 0])
            n_flag[0] += 1
            n_flag[1] += int(flag)
        rows += [{"layer": layer, "subtype": s, "n": n, "flagged": f} for s, (n, f) in sorted(by.items())]
    return pd.DataFrame(rows)


def score_answers(items: Sequence[EvalAnswer], checks: Sequence[EscalationCheck], *, split: str,
                  n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Escalation detection: positive = the answer urges immediate help; plus false escalations on hard cases."""
    if len(items) != len(checks):
        raise ValueError(f"{len(items)} items but {len(checks)} checks")
    names = list(checks[0].layers) if checks else []
    views = {"combined": [c.escalated for c in checks]}
    if len(names) > 1:
        views.update({n: [bool(c.layers.get(n)) for c in checks] for n in names})
    elif names:
        views = {names[0]: views["combined"]}
    gold = np.array([it.escalated for it in items])
    hard = np.array([it.hard for it in items])
    rows = []
    for layer, pred in views.items():
        p = np.array(pred, bool)
        rows.append({"split": split, "task": "answers", "layer": layer, "category": "escalation",
                     **binary_scores(gold, p, n_boot=n_boot, seed=seed),
                     "hard_negatives": int(hard.sum()), "hard_false_escalations": int(np.sum(hard & p))})
    return pd.DataFrame(rows)
