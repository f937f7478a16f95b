"""Near-duplicate detection with MinHash LSH (``datasketch``).

LLM-generated patient messages repeat themselves; near-duplicates inflate a topic and leak
between train and test splits. Word 3-gram shingles, 128 permutations; an item is a duplicate
when its estimated Jaccard similarity with an earlier kept item reaches the threshold.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["near_duplicates"]

_TOKEN = re.compile(r"[a-z0-9']+")


def _shingles(text: str, n: int) -> set[str]:
    words = _TOKEN.findall(text.lower())
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


def near_duplicates(
    texts: Sequence[str], *, threshold: float = 0.8, num_perm: int = 128, ngram: int = 3, seed: int = 1
) -> dict[int, int]:
    """Map index of each near-duplicate → index of the earlier item it duplicates (order kept)."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    sigs: dict[int, MinHash] = {}
    dups: dict[int, int] = {}
    for i, text in enumerate(texts):
        m = MinHash(num_perm=num_perm, seed=seed)
        sh = _shingles(text, ngram)
        for s in sh:
            m.update(s.encode("utf-8"))
        hits = [int(j) for j in lsh.query(m) if sigs[int(j)].jaccard(m) >= threshold] if sh else []
        if hits:
            dups[i] = min(hits)
            continue
        lsh.insert(str(i), m)
        sigs[i] = m
    return dups
