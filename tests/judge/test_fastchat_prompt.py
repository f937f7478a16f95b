"""FastChat judge-prompt records: loaded by name, rendered unchanged, errors name file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mentalchat.judge.fastchat_prompt import FastChatPromptError, load_fastchat_prompt


def _write(tmp_path: Path, *records: object) -> Path:
    path = tmp_path / "judge_prompts.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_load_and_render(tmp_path: Path) -> None:
    path = _write(tmp_path, {"name": "a", "type": "pairwise", "prompt_template": "{answer_a}"},
                  {"name": "mine", "type": "single", "system_prompt": "S", "prompt_template": "Q={question} A={answer} {{x}}"})
    prompt = load_fastchat_prompt(path, "mine")
    msgs = prompt.render("why?", "because")
    assert [m.role for m in msgs] == ["system", "user"] and msgs[1].content == "Q=why? A=because {x}"
    with pytest.raises(FastChatPromptError, match=r"judge_prompts.jsonl:1: .*only 'single'"):
        load_fastchat_prompt(path, "a")
    with pytest.raises(FastChatPromptError, match=r"no judge prompt named 'zz' \(found: \['a', 'mine'\]\)"):
        load_fastchat_prompt(path, "zz")


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(FastChatPromptError, match="not found"):
        load_fastchat_prompt(tmp_path / "none.jsonl", "x")
    with pytest.raises(FastChatPromptError, match=r":2: invalid JSON"):
        load_fastchat_prompt(_write(tmp_path, {"name": "a", "prompt_template": "x"}, "{bad"), "b")
    with pytest.raises(FastChatPromptError, match=r":1: .*needs fields \['ref_answer_1'\]"):
        load_fastchat_prompt(_write(tmp_path, {"name": "m", "type": "single", "prompt_template": "{ref_answer_1}"}), "m")


def test_paper_prompt_renders(shared_data: Path) -> None:
    prompt = load_fastchat_prompt(shared_data / "eval" / "judge_prompts.jsonl", "single-mental-v1")
    user = prompt.render("QUESTION-TEXT", "ANSWER-TEXT")[-1].content
    assert "QUESTION-TEXT" in user and "ANSWER-TEXT" in user and "Holistic Approach" in user
