"""The leak gate: an independent second scan of what is about to be published.

Why a second scan: the de-identifier can be wrong, and a wrong redactor checking itself finds
nothing. The gate uses a different, simpler method. From each raw transcript page it takes the
values that look identifying: words that name lists know as names and web text writes
capitalised; runs of five or more digits, written or spoken; e-mail, web and handle shapes;
codes that mix letters and digits. It keeps them only as salted hashes, in memory. Then it looks
for the same values in the text derived from that page which the build is about to publish. A
value that came in with the transcript and is still there is a suspected leak. A name the
paraphrasing model invented is not one: it was never in the transcript.

Above ``max_suspects`` the build refuses to publish. The suspects go to a review file in the work
folder, never the published one, for a person to check, and the error says where it is and which
setting to change once they are cleared.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mentalchat.dataset.config import LeakGateConfig
from mentalchat.dataset.deid import spoken
from mentalchat.dataset.deid.vocab import PROPER, Vocabulary, fold, get_vocabulary
from mentalchat.errors import MentalchatError
from mentalchat.io import atomic_path

__all__ = ["LeakGate", "LeakGateConfig", "LeakGateError", "Suspect"]

_DIGIT_VALUE = {"zero": "0", "oh": "0", "o": "0", "nought": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "niner": "9"}
_SPOKEN_RUN = re.compile(rf"(?i){spoken.digit_run(5)}")
_DIGIT_RUN = re.compile(r"(?<![\w])\+?\d[\d\s().\-/]{3,}\d(?![\w])")
_SHAPES = re.compile(
    r"(?i)[a-z0-9._%+\-]+@[a-z0-9.\-]+\.[a-z]{2,}"  # e-mail
    r"|(?:https?://|www\.)[^\s<>\"']+"  # web address
    r"|(?<![\w@])@[a-z0-9_][a-z0-9_.]{2,}"  # handle
    r"|\b(?=[a-z0-9\-]*\d)(?=[a-z0-9\-]*[a-z])[a-z0-9][a-z0-9\-]{4,}[a-z0-9]\b"  # letters and digits
)
_WORD = re.compile(r"[^\W\d_][\w'’\-]*")


class LeakGateError(MentalchatError):
    """Too many suspected leaks to publish; the message names the review file and the setting."""


@dataclass(frozen=True)
class Suspect:
    """One value from a raw transcript page found again in text about to be published."""

    ref: str  # transcript:page
    field: str  # input, output, text_deid, ...
    kind: str  # name | number | shape
    value: str
    context: str


def _spoken_digits(text: str) -> str:
    out = []
    for w in re.findall(r"[a-z]+|\d", text.lower()):
        if w in ("double", "triple"):
            out.append(w)
            continue
        d = _DIGIT_VALUE.get(w, w if w.isdigit() else "")
        if out and out[-1] in ("double", "triple"):
            times = 2 if out.pop() == "double" else 3
            out.extend([d] * times)
        elif d:
            out.append(d)
    return "".join(out)


@dataclass
class _Found:
    kind: str
    key: str
    start: int
    end: int


@dataclass
class LeakGate:
    """Collects raw-page fingerprints, then scans published text against them."""

    cfg: LeakGateConfig = field(default_factory=LeakGateConfig)
    #: shared by the processes that fingerprint raw pages and the one that scans (make one per build)
    salt: bytes = field(default_factory=lambda: secrets.token_bytes(16), repr=False)
    vocab: Vocabulary = field(default_factory=get_vocabulary, repr=False)

    # -- what looks identifying --------------------------------------------------------------
    def _candidates(self, text: str) -> list[_Found]:
        v = self.vocab
        out: list[_Found] = []
        for m in _WORD.finditer(text):
            low = re.sub(r"['’]s$", "", m.group().lower())
            if len(low) >= 3 and v.name_like(low) and v.cap_share(low) >= PROPER:
                out.append(_Found("name", fold(low), m.start(), m.end()))
        for m in _DIGIT_RUN.finditer(text):
            digits = re.sub(r"\D", "", m.group())
            if len(digits) >= 5:
                out.append(_Found("number", digits[-10:], m.start(), m.end()))
        for m in _SPOKEN_RUN.finditer(text):
            digits = _spoken_digits(m.group())
            if len(digits) >= 5:
                out.append(_Found("number", digits[-10:], m.start(), m.end()))
        for m in _SHAPES.finditer(text):
            out.append(_Found("shape", m.group().lower().strip(".,;:"), m.start(), m.end()))
        return out

    def _hash(self, kind: str, key: str) -> str:
        return hashlib.sha256(self.salt + f"{kind}\0{key}".encode()).hexdigest()[:24]

    # -- the two passes ----------------------------------------------------------------------
    def fingerprints(self, raw_text: str) -> list[str]:
        """Salted hashes of the identifying-looking values of one raw page (no raw value kept)."""
        return sorted({self._hash(f.kind, f.key) for f in self._candidates(raw_text)})

    def scan(self, items: Iterable[tuple[str, str, str | None]], fingerprints: Mapping[str, Iterable[str]]) -> list[Suspect]:
        """``items``: (page ref, field, text to publish); a suspect is a value whose hash its raw page had."""
        keys = {ref: set(fp) for ref, fp in fingerprints.items()}
        out: list[Suspect] = []
        for ref, name, text in items:
            if not text or ref not in keys:
                continue
            for f in self._candidates(text):
                if self._hash(f.kind, f.key) in keys[ref]:
                    ctx = text[max(0, f.start - 40): f.end + 40].replace("\n", " ")
                    out.append(Suspect(ref, name, f.kind, text[f.start:f.end], ctx))
        return out

    def enforce(self, suspects: list[Suspect], work_dir: Path) -> Path | None:
        """Write the review file when there are suspects; refuse (raise) above ``max_suspects``."""
        if not suspects:
            return None
        review = Path(work_dir) / self.cfg.review_file
        with atomic_path(review) as tmp:
            tmp.write_text("".join(json.dumps(asdict(s), ensure_ascii=False) + "\n" for s in suspects),
                           encoding="utf-8")
        if len(suspects) > self.cfg.max_suspects:
            kinds = sorted({s.kind for s in suspects})
            raise LeakGateError(
                f"leak gate: {len(suspects)} values from the raw transcripts are still in the text to publish "
                f"({', '.join(kinds)}); nothing was published. A person should check {review}; once they are "
                f"cleared, rerun with dataset.leak_gate.max_suspects={len(suspects)} (or fix the de-identification)",
                path=review,
            )
        return review
