"""Data-parallel training on CPU (gloo): two Ray Train workers against one, on one global batch.

One module-scoped Tune run holds two trials of the tiny model that differ only in
``scaling.num_workers`` (1: micro-batch 2 x accumulation 2; 2: micro-batch 2 per rank, no
accumulation), so every optimizer step sees 4 packed sequences either way. Checkpoints go to a
``storage_path`` outside the output folder (standing in for a folder every node mounts). Rank 1 of
the 2-worker trial exits abruptly after step ``KILL_STEP`` of its first attempt (the test-only
``MENTALCHAT_TEST_KILL_RANK_AT_STEP`` hook), so Ray Train restarts the worker group, which must
resume from the checkpoint at ``SAVE_STEPS``.

Why the curves can be compared step by step: accelerate hands rank r the r-th micro-batch of a
global step from the same seeded sampler order, which is exactly the pair of micro-batches one
worker accumulates; the loss is normalised by the token count of the whole global batch
(``average_tokens_across_devices``); LoRA dropout is 0 because each rank draws its own dropout
masks; compute is float32; the 4-bit base keeps one weight format all run (bitsandbytes would
repack it for its CPU inference kernel at the first evaluation and unpack it at each save, which
moved later losses by up to 1e-3, differently per rank). What remains is the order of the gradient
sum (two addends in gloo's allreduce): we allow ``LOSS_TOL`` = 1e-5 absolute (measured: 0.0, with
and without the restart).
Past the first epoch the curves
part (a partial last batch: one worker trains on fewer sequences, while accelerate pads the idle
rank's with the epoch's first ones), so the run stays inside epoch one (8 of 9 steps).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from mentalchat.config import load_stage_config
from mentalchat.finetune.config import FinetuneConfig
from mentalchat.finetune.train_loop import ADAPTER_META, KILL_ENV, PROGRESS_FILE
from mentalchat.finetune.tune import plan_experiment, run_finetune
from mentalchat.testing.finetune_data import write_qa_pairs

pytestmark = pytest.mark.slow

MAX_STEPS, SAVE_STEPS, KILL_STEP = 8, 4, 6
LOSS_TOL = 1e-5
ONE, TWO = "tiny__synthetic__num_workers=1", "tiny__synthetic__num_workers=2"
ADAPTER = {"adapter_config.json", "adapter_model.safetensors", ADAPTER_META, PROGRESS_FILE}


def _losses(checkpoint: Path) -> list[tuple[int, float]]:
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return [(int(e["step"]), float(e["loss"])) for e in state["log_history"] if "loss" in e]


@pytest.fixture(scope="module")
def dp_run(ray_cluster, repo_root: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("ft-dp")
    data = write_qa_pairs(root / "qa.parquet", n_synthetic=36, n_interview=0)
    shared = root / "shared-storage"
    cfg = load_stage_config(FinetuneConfig, repo_root / "configs/smoke.yaml", [
        f"models=[{{path: '{tiny_model}', name: tiny}}]", "data_configs=[synthetic]", "lora.dropout=0",
        "train.micro_batch_size=2", "train.effective_batch_size=4", f"train.max_steps={MAX_STEPS}",
        f"train.save_steps={SAVE_STEPS}", "grid={scaling.num_workers: [1, 2]}", "failure.max_failures=1",
        f"storage_path={shared}",
    ], section="finetune")
    out = root / "out"
    plan = plan_experiment(cfg, data, out)
    os.environ[KILL_ENV] = f"1:{KILL_STEP}"  # read by worker_env(): reaches the Train workers only
    started = time.monotonic()
    try:
        manifest = run_finetune(cfg, data, out)
    finally:
        os.environ.pop(KILL_ENV, None)
    rows = {r["trial_id"]: r for r in manifest.to_pylist()}
    print(f"\n1 + 2 worker trials with one restart: {time.monotonic() - started:.0f} s")
    return {"cfg": cfg, "out": out, "plan": plan, "rows": rows, "shared": shared}


def test_two_workers_follow_the_one_worker_loss_curve(dp_run: dict) -> None:
    rows = dp_run["rows"]
    one, two = (_losses(Path(rows[k]["checkpoint_path"])) for k in (ONE, TWO))
    assert [s for s, _ in one] == [s for s, _ in two] == list(range(1, MAX_STEPS + 1))
    diffs = [abs(a - b) for (_, a), (_, b) in zip(one, two, strict=True)]
    print(f"\nper-step |loss(1 worker) - loss(2 workers)|: max {max(diffs):.2e}; "
          f"final {one[-1][1]:.6f} vs {two[-1][1]:.6f}")
    assert max(diffs) <= LOSS_TOL, list(zip(one, two, strict=True))
    assert one[-1][1] < one[0][1]  # it trains
    assert rows[ONE]["num_workers"] == 1 and rows[TWO]["num_workers"] == 2
    # same sequences seen: token counts are global sums over ranks (the restart's carried over)
    assert rows[TWO]["tokens_trained"] == rows[ONE]["tokens_trained"] > 0


def test_only_rank_zero_writes_the_adapter_and_shared_files(dp_run: dict) -> None:
    plan, shared = dp_run["plan"], dp_run["shared"]
    assert plan.storage_path == str(shared)
    assert not (dp_run["out"] / "ray_results").exists()  # everything went to the shared storage
    ckpts = sorted((Path(plan.train_storage) / TWO).glob("checkpoint-*"))
    assert ckpts, "no checkpoint in the shared storage"
    for ckpt in ckpts:
        progress = json.loads((ckpt / PROGRESS_FILE).read_text())
        ranks = {r["rank"]: r for r in progress["ranks"]}
        assert sorted(ranks) == [0, 1] and progress["pid"] == ranks[0]["pid"]
        assert ADAPTER | {"optimizer.pt", "trainer_state.json", "rng_state_0.pth"} <= set(ranks[0]["files"])
        assert ranks[1]["files"] == ["rng_state_1.pth"], ckpt.name  # its RNG state, nothing shared
        on_disk = {str(p.relative_to(ckpt)) for p in ckpt.rglob("*") if p.is_file()}
        assert on_disk == set(ranks[0]["files"]) | set(ranks[1]["files"])  # every file has one writer
    adapter = Path(dp_run["rows"][TWO]["adapter_path"])
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in adapter.iterdir()}


def test_a_killed_rank_resumes_from_the_last_checkpoint(dp_run: dict) -> None:
    from ray.train import Result

    plan, rows = dp_run["plan"], dp_run["rows"]
    metrics = Result.from_path(f"{plan.train_storage}/{TWO}").metrics
    print(f"\nrestarts {metrics['restarts']}, resumed at step {metrics['resumed_from_step']}, "
          f"final step {metrics['step']}")
    assert metrics["restarts"] == 1 and rows[TWO]["restarts"] == 1
    assert metrics["resumed_from_step"] == SAVE_STEPS  # the checkpoint before the kill, not step 0
    assert metrics["step"] == rows[TWO]["steps"] == MAX_STEPS
    # the final checkpoint was written by the second worker group (rank 1 is a new process)
    first, last = (json.loads((Path(plan.train_storage) / TWO / f"checkpoint-{s:06d}" / PROGRESS_FILE).read_text())
                   for s in (SAVE_STEPS, MAX_STEPS))
    assert first["resumed_from_step"] == 0 and last["resumed_from_step"] == SAVE_STEPS
    assert first["ranks"][1]["pid"] != last["ranks"][1]["pid"]
    # the one-worker trial was left alone
    assert Result.from_path(f"{plan.train_storage}/{ONE}").metrics["restarts"] == 0
    assert (Path(rows[TWO]["adapter_path"]) / "adapter_model.safetensors").is_file()
