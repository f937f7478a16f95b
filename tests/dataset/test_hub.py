"""--push-to-hub: refused without a passed leak gate on interview text; otherwise private, up to the upload call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mentalchat.dataset.hub import LeakGateRefusal, check_publishable, push_to_hub
from mentalchat.errors import InputError, UsageError


class RecordingHub:
    """Stands where huggingface_hub.HfApi would: records the two calls a push makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def create_repo(self, repo_id: str, **kw) -> None:
        self.calls.append(("create_repo", {"repo_id": repo_id, **kw}))

    def upload_folder(self, **kw) -> None:
        self.calls.append(("upload_folder", kw))


def _folder(tmp_path: Path, stats: dict) -> Path:
    out = tmp_path / "ds"
    out.mkdir()
    (out / "qa_pairs.parquet").write_bytes(b"PAR1")
    (out / "build_stats.json").write_text(json.dumps(stats))
    return out


@pytest.mark.parametrize(("stats", "match"), [
    ({"interview": {"pages": 12}}, "leak gate off"),
    ({"interview": {"pages": 12}, "leak_gate": {"scanned": 40, "suspects": 3, "max_suspects": 0}}, "3 suspected"),
])
def test_interview_text_without_a_passed_gate_is_refused(tmp_path: Path, stats: dict, match: str) -> None:
    hub = RecordingHub()
    with pytest.raises(LeakGateRefusal, match=match):
        push_to_hub(_folder(tmp_path, stats), "lab/counselling", api=hub)
    assert hub.calls == []  # nothing created, nothing uploaded


def test_a_gated_build_goes_up_private(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"interview": {"pages": 12}, "leak_gate": {"scanned": 40, "suspects": 0,
                                                                          "max_suspects": 0}})
    hub = RecordingHub()
    url = push_to_hub(folder, "lab/counselling", api=hub)
    assert url == "https://huggingface.co/datasets/lab/counselling"
    (c1, a1), (c2, a2) = hub.calls
    assert c1 == "create_repo" and a1["private"] is True and a1["repo_type"] == "dataset"
    assert c2 == "upload_folder" and a2["folder_path"] == str(folder) and "*.parquet" in a2["allow_patterns"]
    assert ".done.json" not in a2["allow_patterns"]


def test_synthetic_only_needs_no_gate_and_public_is_asked_for(tmp_path: Path) -> None:
    hub = RecordingHub()
    push_to_hub(_folder(tmp_path, {"synthetic": {"pairs": 5}}), "lab/syn", private=False, api=hub)
    assert hub.calls[0][1]["private"] is False


def test_token_only_from_the_environment_and_a_non_dataset_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    folder = _folder(tmp_path, {"synthetic": {"pairs": 5}})
    with pytest.raises(UsageError, match=r"\$HF_TOKEN"):
        push_to_hub(folder, "lab/syn")
    with pytest.raises(InputError, match="not a built dataset folder"):
        check_publishable(tmp_path)
