"""Bootstrap over questions, vectorised as matrix products with resample-count weights.

A resample of Q questions is a vector of counts (how often each question was drawn); a
statistic that is a ratio of sums over questions (a mean over the scored items, a mean
difference over paired items, a confusion matrix) is then ``W @ X`` for a (B × Q) count
matrix ``W`` and a (Q × G) matrix of per-question sums for G groups at once. One ``W`` is
drawn per run and shared by every table, so all CIs of a run use the same resamples (paired
comparisons stay paired). ``W`` is kept in float32 blocks of bounded size.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = ["QuestionBootstrap"]

_BLOCK_BYTES = 64 * 2**20


class QuestionBootstrap:
    """``n_boot`` resamples of ``n_questions`` questions with replacement (seeded)."""

    def __init__(self, n_questions: int, n_boot: int, seed: int = 0, level: float = 0.95) -> None:
        self.n_questions = n_questions
        self.n_boot = n_boot
        self.level = level
        rng = np.random.default_rng(seed)
        rows = max(1, min(n_boot, _BLOCK_BYTES // max(1, 4 * n_questions)))
        self._blocks: list[np.ndarray] = []
        done = 0
        while done < n_boot:
            b = min(rows, n_boot - done)
            draws = rng.integers(0, n_questions, size=(b, n_questions))
            draws += (np.arange(b) * n_questions)[:, None]
            counts = np.bincount(draws.ravel(), minlength=b * n_questions)
            self._blocks.append(counts.reshape(b, n_questions).astype(np.float32))
            done += b

    def blocks(self) -> Iterator[np.ndarray]:
        yield from self._blocks

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Resampled column sums: (Q × G) → (B × G), float64."""
        x32 = np.ascontiguousarray(x, dtype=np.float32)
        if not self.n_boot:
            return np.empty((0, x.shape[1]))
        return np.concatenate([(w @ x32).astype(np.float64) for w in self._blocks], axis=0)

    def interval(self, boot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Percentile interval per column of (B × G) resampled statistics (NaN-aware)."""
        if boot.shape[0] == 0:
            nan = np.full(boot.shape[1], np.nan)
            return nan, nan.copy()
        alpha = (1.0 - self.level) / 2
        finite = np.isfinite(boot)
        if finite.all():
            lo, hi = np.quantile(boot, [alpha, 1 - alpha], axis=0)
            return lo, hi
        boot = np.where(finite, boot, np.nan)
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                lo, hi = np.nanquantile(boot, [alpha, 1 - alpha], axis=0)
        return lo, hi

    def ratio_interval(self, num: np.ndarray, den: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """CI of sum(num)/sum(den) per column, both (Q × G) per-question sums."""
        if not self.n_boot:
            nan = np.full(num.shape[1], np.nan)
            return nan, nan.copy()
        with np.errstate(invalid="ignore", divide="ignore"):
            boot = self.apply(num) / self.apply(den)
        return self.interval(boot)
