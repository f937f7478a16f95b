"""The crisis evaluation set: sizes the issue asks for, every category covered, the held-out split frozen."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from mentalchat.core.crisis_rules import CRISIS_CATEGORIES
from mentalchat.errors import InputError
from mentalchat.safety.evalset import default_folder, load_answers, load_messages, verify_frozen


def test_sizes_and_coverage() -> None:
    msgs = {s: load_messages(s) for s in ("dev", "test")}
    answers = {s: load_answers(s) for s in ("dev", "test")}
    assert sum(map(len, msgs.values())) >= 300 and sum(map(len, answers.values())) >= 150
    for split in ("dev", "test"):
        cats = Counter(c for m in msgs[split] for c in m.categories)
        assert set(cats) == set(CRISIS_CATEGORIES), split
        negatives = Counter(m.subtype for m in msgs[split] if not m.categories)
        assert {"figurative", "past_resolved", "third_party", "numbers"} <= set(negatives), split
        esc = Counter(a.escalated for a in answers[split])
        assert esc[True] >= 40 and esc[False] >= 40 and sum(a.hard for a in answers[split]) >= 12
    ids = [m.id for s in msgs.values() for m in s] + [a.id for s in answers.values() for a in s]
    assert len(ids) == len(set(ids))  # no case is in both splits
    dev_texts = {m.text for m in msgs["dev"]}
    assert not dev_texts & {m.text for m in msgs["test"]}


def test_held_out_split_is_frozen(tmp_path: Path) -> None:
    verify_frozen()
    copy = tmp_path / "crisis_eval"
    shutil.copytree(default_folder(), copy)
    verify_frozen(copy)
    path = copy / "test_messages.jsonl"
    path.write_text(path.read_text(encoding="utf-8").replace("\n", " \n", 1), encoding="utf-8")
    with pytest.raises(InputError, match="frozen held-out split changed"):
        verify_frozen(copy)


def test_bad_lines_name_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "dev_messages.jsonl").write_text(
        '{"id": "a", "text": "fine", "categories": []}\n{"id": "b", "text": "x", "categories": ["sadness"]}\n',
        encoding="utf-8")
    with pytest.raises(InputError, match=r"dev_messages.jsonl:2: unknown category 'sadness'"):
        load_messages("dev", tmp_path)
