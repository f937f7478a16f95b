"""FastChat model_judgment interop for two-turn questions: ``"turn": 1`` / ``"turn": 2`` round-trip."""

from __future__ import annotations

import json
from pathlib import Path

from mentalchat.core.fastchat import read_model_judgments, write_model_judgments
from mentalchat.core.rubric import CONVERSATION_METRICS, METRICS
from mentalchat.schemas import get_table


def _rows(qid: str, turn: int | None, metrics: tuple[str, ...] = METRICS) -> list[dict]:
    return [{"question_id": qid, "model": "m-a", "judge": "gpt-4", "metric": m, "score": 5.0 + (turn or 0),
             "overall": None if turn == 0 else 6.0, "parse_status": "ok", "prompt_version": "mentalchat-v1",
             "turn": turn} for m in metrics]


def test_turns_round_trip_through_fastchat_judgment_files(tmp_path: Path) -> None:
    rows = _rows("1", None) + _rows("mt1", 1) + _rows("mt1", 2) + _rows("mt1", 0, CONVERSATION_METRICS)
    files = write_model_judgments(get_table("judgments").from_rows(rows), tmp_path)
    recs = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    turns = sorted((str(r["question_id"]), r["turn"]) for r in recs)
    assert turns == [("1", 1), ("mt1", 1), ("mt1", 2)]  # turn 0 has no FastChat record
    back = read_model_judgments(files).to_pandas()
    got = back.groupby("question_id").turn.apply(lambda s: sorted(s.dropna().astype(int).unique().tolist()))
    assert got["mt1"] == [1, 2]
    assert back[back.question_id == "1"].turn.isna().all()  # a single-turn question stays single-turn
    t2 = back[(back.question_id == "mt1") & (back.turn == 2)].set_index("metric").score
    assert (t2 == 7.0).all() and len(t2) == len(METRICS)


def test_fastchat_multi_turn_judgment_record_is_read(tmp_path: Path) -> None:
    """Records as FastChat's llm_judge writes them for a two-turn question (single-v1 and single-v1-multi-turn)."""
    path = tmp_path / "gpt-4_single.jsonl"
    base = {"question_id": 81, "model": "vicuna-13b-v1.3", "user_prompt": "", "tstamp": 0.0}
    lines = [
        {**base, "judge": ["gpt-4", "single-v1"], "judgment": "Fine.\nRating: [[7]]", "score": 7, "turn": 1},
        {**base, "judge": ["gpt-4", "single-v1-multi-turn"], "judgment": "Weaker.\nRating: [[4]]", "score": 4, "turn": 2},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    df = read_model_judgments(path).to_pandas()
    assert sorted(df.turn.unique().tolist()) == [1, 2]
    assert df.groupby("turn").overall.first().to_dict() == {1: 7.0, 2: 4.0}
