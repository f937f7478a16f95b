"""Happy path through a real local vLLM OpenAI server: guided JSON from a tiny model, parsed and stored."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from mentalchat.core.rubric import METRICS, judgment_json_schema
from mentalchat.judge.config import JudgeConfig
from mentalchat.judge.run import run_judge
from mentalchat.schemas import read_table

pytestmark = pytest.mark.slow


def test_vllm_server_judge_with_guided_json(tmp_path: Path, make_inputs, ray_cluster) -> None:
    """The served judge runs in a Ray actor (as on a cluster, where the driver's node has no GPU)."""
    from mentalchat.models.kit import build_tiny_llama

    # Our judge prompt is ~1,200 tokens in the tiny tokenizer: give the model room for it.
    model = build_tiny_llama(tmp_path / "tiny-4k", max_position_embeddings=4096)
    qpath, apath = make_inputs(tmp_path / "in", n_questions=1)
    out = tmp_path / "out"
    cfg = JudgeConfig.model_validate({
        "judges": [{"engine": "local", "serve": str(model), "explanation_max_chars": 40, "serve_on": "ray"}],
        "engines": {"local": {"backend": "openai", "model": "tiny-judge",
                              "sampling": {"temperature": 0.0, "max_tokens": 400},
                              "http": {"max_concurrency": 4, "timeout_s": 120}}},
    })
    lines: list[str] = []
    summary = run_judge(cfg, qpath, [apath], out, progress=False, echo=lines.append)
    assert any("in a Ray actor" in line for line in lines), lines
    node = next(line for line in lines if "served at" in line)
    assert any(n["NodeID"].startswith(node.split("(node ")[1].rstrip(")")) for n in ray_cluster.nodes())
    assert summary.scored == summary.planned == 2
    df = read_table(out / "judgments.parquet", "judgments").to_pandas()
    assert len(df) == 2 * len(METRICS)
    # A random model's scores are arbitrary, but guided decoding makes every reply schema-valid JSON.
    assert (df.parse_status == "ok").all(), df[["parse_status", "error", "raw_text"]].head()
    schema = judgment_json_schema()
    for raw in df.raw_text.unique():
        obj = json.loads(raw)
        jsonschema.validate(obj, schema)
        assert len(obj["explanation"]) <= 40
    assert df.score.between(1, 10).all() and df.tokens_out.gt(0).all()


def test_a_served_judge_no_node_can_host_is_refused(tmp_path: Path, make_inputs, ray_cluster) -> None:
    """serve_gpus on a GPU-less cluster: an error naming the key, not an actor waiting forever."""
    from mentalchat.core.resources import ResourceFitError

    qpath, apath = make_inputs(tmp_path / "in", n_questions=1)
    cfg = JudgeConfig.model_validate({
        "judges": [{"engine": "local", "serve": "local:tiny-llama", "serve_on": "ray", "serve_gpus": 1}],
        "engines": {"local": {"backend": "openai", "model": "tiny-judge"}},
    })
    with pytest.raises(ResourceFitError, match=r"judge\.judges\[0\]\.serve_gpus"):
        run_judge(cfg, qpath, [apath], tmp_path / "out", progress=False, echo=lambda _: None)
    assert not (tmp_path / "out" / "judgments.parquet").exists()  # only the resumable _progress store
