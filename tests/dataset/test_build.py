"""End to end: transcripts → de-identification → paraphrase (real vLLM CPU engine on the session's
Ray cluster) → tables and card; bad files; the locality guard; nothing planted leaves."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mentalchat.config import load_stage_config
from mentalchat.dataset.build import BuildError, build_dataset
from mentalchat.dataset.config import REMOTE_OVERRIDE, DatasetConfig, RemoteEngineRefused
from mentalchat.dataset.transcripts import find_leaks, generate_transcripts, write_transcripts
from mentalchat.testing.fault_server import FaultServer

BAD_FILES = {
    "empty.txt": b"",
    "binary.txt": b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 64,
    "latin1.txt": "Caregiver: Jos\u00e9 visits on Sundays.".encode("latin-1"),
    "huge.txt": b"Caregiver: " + b"words " * 60_000,
    "corrupt.docx": b"PK\x03\x04 truncated zip",
}
BAD_JSONL = '{"page": 1, "text": "Caregiver: A fine line."}\n{"page": 1, "text": \n["no"]\n'


def _output_texts(folder: Path) -> list[str]:
    """Every string anywhere in the published folder: all table cells, the card, the stats."""
    texts = []
    for f in folder.rglob("*"):
        if f.suffix == ".parquet":
            t = pq.read_table(f)
            texts += [str(v) for col in t.columns for v in col.to_pylist() if v is not None]
            texts.append(str(t.schema.metadata))
        elif f.suffix in (".md", ".json"):
            texts.append(f.read_text(encoding="utf-8"))
    return texts


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("transcripts")
    gen = generate_transcripts(8, seed=424242, pages=(2, 3), crisis_rate=0.3)
    write_transcripts(gen, folder, formats=("txt", "jsonl", "docx"))
    for name, data in BAD_FILES.items():
        (folder / name).write_bytes(data)
    (folder / "partly_bad.jsonl").write_text(BAD_JSONL, encoding="utf-8")
    planted = [p for t in gen for p in t.planted]
    return folder, gen, planted


@pytest.fixture(scope="module")
def built(ray_cluster, corpus, repo_root: Path, tmp_path_factory: pytest.TempPathFactory):
    folder, gen, planted = corpus
    cfg = load_stage_config(DatasetConfig, repo_root / "configs/smoke.yaml",
                            ["synthetic.enabled=false", "interview.keep_page_text=true",
                             "interview.max_file_bytes=200000"], section="dataset")
    out = tmp_path_factory.mktemp("out") / "ds"
    stats = build_dataset(cfg, out, transcripts=folder, echo=lambda m: None)
    return out, stats


def test_no_planted_identifier_anywhere_in_the_output(built, corpus) -> None:
    out, _ = built
    _, _, planted = corpus
    texts = _output_texts(out)
    assert any("[NAME_" in t for t in texts)  # the de-identified pages are there to be checked
    assert find_leaks(texts, planted) == []


def test_tables_load_with_datasets_and_keep_provenance(built, corpus) -> None:
    import datasets

    out, stats = built
    _, gen, _ = corpus
    ds = datasets.load_dataset("parquet", data_files=str(out / "qa_pairs.parquet"), split="train")
    for col in ("instruction", "input", "output", "id", "source", "topic", "page_ref", "generator_model",
                "prompt_version", "crisis_flag", "crisis_escalated"):
        assert col in ds.column_names
    pages = pq.read_table(out / "pages.parquet").to_pandas()
    n_pages = sum(len(t.pages) for t in gen) + 1  # + the good line of partly_bad.jsonl
    assert len(pages) == n_pages == stats["interview"]["pages"]
    rejects = pq.read_table(out / "rejects.parquet").to_pandas()
    refs = {f"{r.transcript_id}:{r.page}" for r in pages.itertuples()}
    assert set(ds["page_ref"]) | set(rejects.page_ref) == refs
    assert len(ds) + len(rejects) == n_pages
    assert all(ref.startswith("t-") for ref in refs)
    assert set(ds["source"]) <= {"interview"} and len(set(ds["id"])) == len(ds)


def test_bad_files_and_lines_are_skipped_and_counted(built) -> None:
    _, stats = built
    assert stats["interview"]["skipped_files"] == len(BAD_FILES)
    assert stats["interview"]["skipped_lines"] == 2
    card = (built[0] / "README.md").read_text()
    assert f"skipped files: {len(BAD_FILES)}; skipped JSONL lines: 2" in card


def test_card_and_figures(built) -> None:
    out, stats = built
    card = (out / "README.md").read_text()
    for part in ("## Counts", "## Crisis audit", "## Lengths", "figures/input_lengths.png", stats["config_hash"]):
        assert part in card
    for png in ("input_lengths.png", "output_lengths.png"):
        assert (out / "figures" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "_MENTALCHAT_DONE.json").read_text())["stage"] == "dataset"


def test_a_failed_build_publishes_nothing(tmp_path: Path, repo_root: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "empty.txt").write_bytes(b"")
    out = tmp_path / "ds"
    out.mkdir()
    (out / "qa_pairs.parquet").write_text("previous complete output")
    cfg = load_stage_config(DatasetConfig, repo_root / "configs/smoke.yaml", ["synthetic.enabled=false"],
                            section="dataset")
    with pytest.raises(BuildError, match="no readable transcripts"):
        build_dataset(cfg, out, transcripts=src, echo=lambda m: None)
    assert (out / "qa_pairs.parquet").read_text() == "previous complete output"
    assert {p.name for p in tmp_path.iterdir()} == {"in", "ds"}  # no temporary folder left behind


def _echo_page(messages: list[dict], params: dict) -> str:
    """A paraphraser that copies the page it was sent into both fields (worst case for leaks)."""
    page = messages[-1]["content"]
    return json.dumps({"question": page, "answer": page})


def _remote_cfg(srv: FaultServer, **interview) -> DatasetConfig:
    eng = srv.engine_config(model="remote-paraphraser").model_copy(
        update={"base_url": "http://counsel-api.example.com/v1"})
    return DatasetConfig(engines={"remote": eng}, synthetic={"enabled": False},
                         interview={"paraphrase_engine": "remote", "executor": "local", "min_words": 1, **interview})


def test_non_local_paraphraser_is_refused_before_anything_is_read_or_sent(corpus, tmp_path: Path) -> None:
    folder, _, _ = corpus
    with FaultServer(responder=_echo_page) as srv:
        with pytest.raises(RemoteEngineRefused, match=REMOTE_OVERRIDE):
            build_dataset(_remote_cfg(srv), tmp_path / "ds", transcripts=folder, echo=lambda m: None)
        assert srv.requests == []
    assert not (tmp_path / "ds").exists()


def test_with_the_override_no_planted_identifier_reaches_the_remote_endpoint(
    corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The endpoint's host is not local; an HTTP proxy on loopback (the fault server) records what
    the real openai client sends to it."""
    folder, gen, planted = corpus
    with FaultServer(responder=_echo_page) as srv:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-secret")
        monkeypatch.setenv("HTTP_PROXY", srv.base_url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost,::1")
        warnings: list[str] = []
        stats = build_dataset(_remote_cfg(srv, **{REMOTE_OVERRIDE: True}), tmp_path / "ds",
                              transcripts=folder, echo=warnings.append)
        sent = [r for r in srv.requests if r.protocol == "openai"]
        assert len(sent) == stats["interview"]["pages"] > 0
        assert {r.headers.get("host") for r in sent} == {"counsel-api.example.com"}
        bodies = [m["content"] for r in sent for m in r.body["messages"]]
    assert any("not local" in w for w in warnings)
    assert any("[NAME_" in b for b in bodies)
    assert find_leaks(bodies, planted) == []
    assert find_leaks(_output_texts(tmp_path / "ds"), planted) == []


def test_job_cli_dry_run_and_errors(repo_root: Path, corpus, tmp_path: Path) -> None:
    import subprocess
    import sys

    folder, gen, _ = corpus
    job = [sys.executable, str(repo_root / "jobs/build_dataset.py"), "--config", str(repo_root / "configs/smoke.yaml")]
    ok = subprocess.run([*job, "--transcripts", str(folder), "--output", str(tmp_path / "ds"), "--dry-run",
                         "synthetic.enabled=false", "interview.max_file_bytes=200000"], capture_output=True, text=True,
                        timeout=300)
    assert ok.returncode == 0, ok.stderr
    plan = json.loads(ok.stderr[ok.stderr.index("{"):ok.stderr.rindex("}") + 1])["dry_run"]["interview"]
    assert plan["calls"] == sum(len(t.pages) for t in gen) + 1 and plan["skipped_files"] == len(BAD_FILES)
    assert "would skip:" in ok.stderr and "empty.txt: empty file" in ok.stderr
    assert not (tmp_path / "ds").exists()
    bad = subprocess.run([*job, "--transcripts", str(tmp_path / "missing"), "--output", str(tmp_path / "ds")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "transcript folder not found" in bad.stderr


def test_the_folder_opens_as_a_hugging_face_dataset(built) -> None:
    """``load_dataset(folder)`` opens the pairs (the card's YAML ``configs``), a name opens another table."""
    import datasets

    out, stats = built
    cache = str(out.parent / "hf-folder")
    pairs = datasets.load_dataset(str(out), split="train", cache_dir=cache)
    assert len(pairs) == pq.read_table(out / "qa_pairs.parquet").num_rows and "output" in pairs.column_names
    rejects = datasets.load_dataset(str(out), "rejects", split="train", cache_dir=cache)
    assert len(rejects) == pq.read_table(out / "rejects.parquet").num_rows and "filter" in rejects.column_names
    pages = datasets.load_dataset(str(out), "pages", split="train", cache_dir=cache)
    assert len(pages) == stats["interview"]["pages"]
    assert datasets.get_dataset_config_names(str(out)) == ["qa_pairs", "rejects", "pages"]
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: other\n") and "size_categories:\n- n<1K" in card
