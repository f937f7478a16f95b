"""Synthetic ``judgments`` tables with known structure, for tests and the stats benchmark.

Each (question, model) answer gets a latent quality: the model's level (its base model's level
plus a per-configuration ``gain``) plus question noise. Every judge sees that quality through
its own bias and noise, so judges agree to a controllable degree and the true gains are known.
Arrays are built with numpy and dictionary-encoded by Arrow, so millions of rows take seconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa

from mentalchat.core.rubric import METRICS
from mentalchat.schemas import JUDGMENTS

__all__ = ["synthetic_judgments"]

DEFAULT_GAINS = {"base": 0.0, "synthetic": 1.0, "interview": 0.6, "combined": 0.8}


def _strings(codes: np.ndarray, values: Sequence[str | None]) -> pa.Array:
    dictionary = pa.array(list(values), type=pa.string())
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), dictionary).cast(pa.string())


def synthetic_judgments(
    n_questions: int,
    *,
    bases: Sequence[str] = ("base-a", "base-b", "base-c"),
    gains: Mapping[str, float] = DEFAULT_GAINS,
    judges: Sequence[str] = ("judge-x", "judge-y"),
    judge_noise: float = 0.8,
    judge_bias: Sequence[float] | None = None,
    missing_rate: float = 0.0,
    seed: int = 0,
) -> pa.Table:
    """A ``judgments`` table of ``n_questions × len(bases) × len(gains) × len(judges) × 7`` rows.

    Models are named ``<base>`` (config ``base``) and ``<base>-<config>``; ``missing_rate``
    of judgments are left unscored (status ``unparsed``, all scores null).
    """
    rng = np.random.default_rng(seed)
    configs = list(gains)
    models = [(b, c, b if c == "base" else f"{b}-{c}") for b in bases for c in configs]
    Q, M, J, K = n_questions, len(models), len(judges), len(METRICS)
    base_level = {b: 6.0 + (0.5 * i) % 2.0 for i, b in enumerate(bases)}
    level = np.array([base_level[b] + gains[c] for b, c, _ in models])  # (M,)
    question_effect = rng.normal(0, 0.7, size=(Q, 1))
    quality = level[None, :] + question_effect + rng.normal(0, 0.5, size=(Q, M))  # (Q, M)
    bias = np.asarray(judge_bias if judge_bias is not None else np.zeros(J), dtype=float)
    metric_offset = np.linspace(-0.3, 0.3, K)
    raw = (quality[:, :, None, None] + bias[None, None, :, None] + metric_offset[None, None, None, :]
           + rng.normal(0, judge_noise, size=(Q, M, J, K)))
    scores = np.clip(np.rint(raw), 1, 10)
    overall = np.clip(np.rint(scores.mean(axis=-1) + rng.normal(0, 0.3, size=(Q, M, J))), 1, 10)
    missing = rng.random((Q, M, J)) < missing_rate
    scores[missing] = np.nan
    overall[missing] = np.nan

    n = Q * M * J * K
    qi, mi, ji, ki = (a.ravel() for a in np.meshgrid(np.arange(Q), np.arange(M), np.arange(J),
                                                      np.arange(K), indexing="ij"))
    status = np.where(missing[qi, mi, ji], 1, 0)
    overall_rows = overall[qi, mi, ji]
    columns = {
        "question_id": _strings(qi, [str(q + 1) for q in range(Q)]),
        "model": _strings(mi, [m for _, _, m in models]),
        "base_model": _strings(mi, [b for b, _, _ in models]),
        "data_config": _strings(mi, [c for _, c, _ in models]),
        "judge": _strings(ji, list(judges)),
        "metric": _strings(ki, list(METRICS)),
        "score": pa.array(scores.ravel(), from_pandas=True),
        "overall": pa.array(overall_rows, from_pandas=True),
        "parse_status": _strings(status, ["ok", "unparsed"]),
    }
    arrays = [columns[f.name] if f.name in columns else pa.nulls(n, f.type) for f in JUDGMENTS.schema]
    return pa.Table.from_arrays(arrays, schema=JUDGMENTS.schema.with_metadata(JUDGMENTS.metadata))
