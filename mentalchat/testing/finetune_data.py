"""Small fictional ``qa_pairs`` tables for fine-tuning tests and benchmarks (text written for this project)."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

from mentalchat.schemas import get_table, write_table

INSTRUCTION = "You are a caring counsellor. Answer the client kindly and briefly."

#: A long paragraph in the style the released MentalChat16K CSVs repeat on every row (our own words).
RELEASED_INSTRUCTION = (
    "You are a counselling assistant who listens before speaking. The person writing to you may be "
    "anxious, grieving, lonely, overwhelmed at work or worried about someone they love. Take in the "
    "whole message, name the feelings you notice without labelling the person, and answer in a calm "
    "and respectful voice. Offer two or three practical steps that fit their situation, keep medical "
    "claims out of it, and remind them gently that talking to people they trust can help."
)

_WORRIES = [
    "I can't sleep before exams and my heart races at night",
    "my partner and I argue about money every weekend",
    "since the move I feel lonely and skip meals",
    "my manager criticises me in meetings and I freeze",
    "I keep checking the door lock many times before leaving",
    "my teenage son stopped talking to me after school",
    "I feel guilty resting while my mother is ill",
    "I get dizzy in crowded shops and leave my basket",
    "I lost my job and I avoid calling my friends",
    "I cry in the car after visiting my father",
]
_REPLIES = [
    "That sounds exhausting. Let us notice what happens just before it starts, and try slow breathing.",
    "It makes sense to feel this way. Could you pick one small step for this week and tell me how it went?",
    "Thank you for sharing this. You are not alone; many people feel the same and it can get easier.",
    "I hear how hard this is. What helped a little last time, even for a few minutes?",
    "Your feelings are valid. Writing worries down an hour before bed may loosen their grip.",
    "Let us look at what you can control. A short walk or a call to a friend might be a start.",
]


def qa_rows(n_synthetic: int = 36, n_interview: int = 24) -> list[dict]:
    rows = []
    for source, n in (("synthetic", n_synthetic), ("interview", n_interview)):
        for i in range(n):
            worry = _WORRIES[i % len(_WORRIES)]
            detail = " and it has lasted for weeks" * (1 + i % 3)
            question = f"Lately {worry}{detail}. What can I do?"
            answer = " ".join(_REPLIES[(i + k) % len(_REPLIES)] for k in range(1 + i % 2))
            rid = hashlib.sha256(f"{source}:{i}:{question}:{answer}".encode()).hexdigest()[:16]
            rows.append(
                {
                    "id": rid,
                    "instruction": INSTRUCTION,
                    "input": question,
                    "output": answer,
                    "source": source,
                    "topic": "anxiety" if i % 2 else "relationships",
                    "page_ref": f"t{i:03d}:1" if source == "interview" else None,
                    "generator_model": "fixture",
                    "prompt_version": "fixture-v1",
                    "crisis_flag": False,
                    "crisis_escalated": None,
                }
            )
    return rows


def write_qa_pairs(path: Path, **kw: int) -> Path:
    return write_table(get_table("qa_pairs").from_rows(qa_rows(**kw)), path, "qa_pairs")


def write_released_csv(path: Path, *, n: int = 24, extra: list[tuple[str, str]] = ()) -> Path:
    """A CSV in the released layout (``instruction,input,output``; the long instruction on every row;
    answers spanning lines in quoted fields), from :func:`qa_rows`' texts plus ``extra`` pairs."""
    pairs = [(r["input"], r["output"].replace(". ", ".\n", 1)) for r in qa_rows(n_synthetic=n, n_interview=0)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["instruction", "input", "output"])
        writer.writerows([RELEASED_INSTRUCTION, i, o] for i, o in [*pairs, *extra])
    return path


_FOLLOW_UPS = [
    "I tried that for a few days and it helped a little, but the worry came back on Sunday",
    "my friend said I should just ignore it, and now I feel silly for asking",
    "it got worse after a phone call with my sister last night",
    "I wrote the worries down like you said and there were more than I expected",
]


def dialogue_rows(n_train: int = 12, n_benchmark: int = 2, *, turns: tuple[int, ...] = (2, 3)) -> list[dict]:
    """Fictional ``dialogues`` rows (client and counsellor turns alternating): ``n_train`` with split
    ``train`` then ``n_benchmark`` with split ``benchmark``; turn counts cycle through ``turns``."""
    rows = []
    for i in range(n_train + n_benchmark):
        n = turns[i % len(turns)]
        messages = []
        for k in range(n):
            client = (f"Lately {_WORRIES[(i + k) % len(_WORRIES)]}." if k == 0 else
                      f"Thank you. {_FOLLOW_UPS[(i + k) % len(_FOLLOW_UPS)].capitalize()}.")
            answer = " ".join(_REPLIES[(i + k + j) % len(_REPLIES)] for j in range(1 + (i + k) % 2))
            messages += [{"role": "user", "content": client}, {"role": "assistant", "content": answer}]
        source = "interview" if i % 2 else "synthetic"
        rid = hashlib.sha256(f"dialogue:{i}:{messages}".encode()).hexdigest()[:16]
        rows.append({
            "id": rid, "instruction": INSTRUCTION, "messages": messages, "n_turns": n, "source": source,
            "topic": "anxiety" if i % 2 else "relationships",
            "page_ref": f"t{i:03d}:1-2" if source == "interview" else None,
            "split": "train" if i < n_train else "benchmark", "generator_model": "fixture",
            "prompt_version": "fixture-v1", "crisis_flag": False,
        })
    return rows


def write_dialogues(path: Path, **kw: int) -> Path:
    return write_table(get_table("dialogues").from_rows(dialogue_rows(**kw)), path, "dialogues")
