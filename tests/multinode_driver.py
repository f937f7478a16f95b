"""Multi-node scenarios on one machine, run by ``tests/test_multinode.py`` in a subprocess.

Why a subprocess: the test session already holds one local Ray (``tests/conftest.py``), and a
``ray.cluster_utils.Cluster`` cannot share a process with it. This script starts a head and two
worker nodes whose custom resources stand in for accelerators (``accelerator_type:A100`` on one,
``accelerator_type:L4`` on the other), runs the real stages against them, and writes raw facts
(node ids, per-batch records, the fault server's request log) as JSON. The test file does every
assertion, so this script never decides what passes.

Where a stage's output does not say which node did the work, a ``worker_process_setup_hook`` (test
instrumentation only, installed in every worker of this job) adds it: each HTTP request carries an
``x-ray-node`` header (recorded by the fault server), and each engine replica, engine batch, answer
read and response-cache write appends its node (a batch its row count, the others their time) to
a log file.

Usage: ``python tests/multinode_driver.py OUT.json WORKDIR TINY_MODEL [SCENARIO ...]``
(scenarios: finetune, generate, judge; default all).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

NODE_HEADER = "x-ray-node"
BATCH_LOG_ENV = "MENTALCHAT_TEST_BATCH_LOG"

# The judge sweep's provider limits (the engine's http options) and the fault server's latency.
JUDGE_MAX_CONCURRENCY = 4
JUDGE_RPM = 360.0  # 6 requests per second
JUDGE_LATENCY_S = 0.4
JUDGE_QUESTIONS, JUDGE_MODELS = 12, 6  # 72 calls, ~12 s at 6/s
KILL_AFTER_CALLS = 16  # remove the L4 node once this many calls have reached the server ...
KILL_READ_AGE_S = 1.0  # ... and its batch in progress holds answers read at least this long ago


def _instrument() -> None:
    """Setup hook of every worker: tag HTTP requests and engine batches with this worker's node."""
    import openai
    import ray

    node = ray.get_runtime_context().get_node_id()
    prepare = openai.AsyncOpenAI._prepare_request  # the SDK's hook for mutating a built request

    async def tagged(self: openai.AsyncOpenAI, request: Any) -> None:
        await prepare(self, request)
        request.headers[NODE_HEADER] = node

    openai.AsyncOpenAI._prepare_request = tagged  # type: ignore[method-assign]

    log_path = os.environ.get(BATCH_LOG_ENV)
    if not log_path:
        return
    from mentalchat.engine import runner

    init, call = runner.EngineActor.__init__, runner.EngineActor.__call__

    def log(**fields: Any) -> None:
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"node": node, "pid": os.getpid(), "t": time.monotonic(), **fields}) + "\n")

    def logged_init(self: runner.EngineActor, *args: Any, **kw: Any) -> None:
        init(self, *args, **kw)
        log(event="replica", backend=self.cfg.backend)

    def logged_call(self: runner.EngineActor, batch: dict[str, Any]) -> dict[str, Any]:
        out = call(self, batch)
        log(event="batch", backend=self.cfg.backend, rows=len(batch[self.request_column]))
        return out

    runner.EngineActor.__init__ = logged_init  # type: ignore[method-assign]
    runner.EngineActor.__call__ = logged_call  # type: ignore[method-assign]

    from mentalchat.engine.cache import ResponseCache

    put = ResponseCache.put

    def logged_put(self: ResponseCache, *args: Any, **kw: Any) -> Any:
        out = put(self, *args, **kw)
        log(event="cached")  # time.monotonic(): one clock for every process of this machine
        return out

    ResponseCache.put = logged_put  # type: ignore[method-assign]

    from mentalchat.engine.openai_backend import OpenAIEngine

    attempt = OpenAIEngine._call

    async def logged_call_api(self: OpenAIEngine, *args: Any, **kw: Any) -> Any:
        out = await attempt(self, *args, **kw)
        log(event="answered")  # the client has read this answer
        return out

    OpenAIEngine._call = logged_call_api  # type: ignore[method-assign]


# ---------------------------------------------------------------------------------------------
# Scenarios


def scenario_finetune(work: Path, tiny_model: Path, nodes: dict[str, str]) -> dict[str, Any]:
    """A Tune trial with ``scaling.accelerator_type: A100``; which node each checkpoint came from."""
    from mentalchat.config import load_stage_config
    from mentalchat.finetune.config import FinetuneConfig
    from mentalchat.finetune.train_loop import PROGRESS_FILE
    from mentalchat.finetune.tune import run_finetune
    from mentalchat.testing.finetune_data import write_qa_pairs

    repo = Path(__file__).resolve().parents[1]
    data = write_qa_pairs(work / "qa_pairs.parquet", n_synthetic=16, n_interview=0)
    cfg = load_stage_config(FinetuneConfig, repo / "configs/smoke.yaml", [
        f"models=[{{path: '{tiny_model}', name: tiny}}]", "data_configs=[synthetic]",
        "train.max_steps=2", "train.save_steps=2", "scaling.accelerator_type=A100",
    ], section="finetune")
    manifest = run_finetune(cfg, data, work / "finetune").to_pylist()
    trials = []
    for row in manifest:
        progress = json.loads((Path(row["checkpoint_path"]) / PROGRESS_FILE).read_text(encoding="utf-8"))
        trials.append({"trial_id": row["trial_id"], "node_id": progress.get("node_id"), "steps": row["steps"]})
    import ray.util

    # Every placement group this run made (removed ones stay listed): what each bundle asked for, and where.
    groups = [{"bundles": [dict(b) for b in g["bundles"].values()], "nodes": list(g["bundles_to_node_id"].values())}
              for g in ray.util.placement_group_table().values()]
    return {"trials": trials, "placement_groups": groups}


def scenario_generate(work: Path, tiny_model: Path, nodes: dict[str, str]) -> dict[str, Any]:
    """Generate with two engine replicas that each need a whole worker node's CPUs."""
    from mentalchat.generate.config import GenerateConfig
    from mentalchat.generate.run import run_generate
    from mentalchat.schemas import read_table

    qpath = _write_questions(work / "gen-questions.jsonl", 12)
    cfg = GenerateConfig.model_validate({
        "engine": {"backend": "transformers", "model": str(tiny_model), "sampling": {"max_tokens": 8},
                   "vllm": {"replicas": 2, "cpus_per_replica": 2, "batch_size": 2}},
        "base_models": [{"path": str(tiny_model), "name": "tiny"}],
        "sampling": {"temperature": 0.0, "max_tokens": 8},
        "crisis_probes": False, "fastchat_export": False,
    })
    summary = run_generate(cfg, qpath, work / "answers", use_ray=True)
    answers = read_table(work / "answers" / "answers.parquet", "answers").to_pylist()
    log = _batch_log()
    return {"answers": len(answers), "failed": summary.failed, "requests": 12,
            "replicas": [r for r in log if r["event"] == "replica"],
            "batches": [r for r in log if r["event"] == "batch"]}


def scenario_judge(work: Path, tiny_model: Path, nodes: dict[str, str], cluster: Any) -> dict[str, Any]:
    """An HTTP judge sweep over two actors on two nodes, one of which is removed mid-sweep."""
    from mentalchat.judge.config import JudgeConfig
    from mentalchat.judge.run import run_judge
    from mentalchat.schemas import read_table
    from mentalchat.testing.fault_server import FaultServer

    qpath, apath = _write_judge_inputs(work / "judge-in", JUDGE_QUESTIONS, JUDGE_MODELS)
    http = {"max_concurrency": JUDGE_MAX_CONCURRENCY, "requests_per_minute": JUDGE_RPM, "max_retries": 2,
            "backoff_base_s": 0.05, "backoff_max_s": 0.5, "timeout_s": 30}
    kill: dict[str, Any] = {}
    with FaultServer(latency_s=JUDGE_LATENCY_S, responder=_text_judge, seed=3) as srv:
        cfg = JudgeConfig.model_validate({
            "executor": "ray", "ray_replicas": 2, "ray_cpus_per_replica": 2, "ray_batch_size": 8,
            "preflight": "never",
            "judges": [{"engine": "oa"}], "prompts": ["mentalchat-v1"],
            "engines": {"oa": {"backend": "openai", "model": "judge-a", "base_url": srv.openai_base_url,
                               "http": http}},
        })
        # The sweep runs in a thread: Ray's Cluster adds nodes from the main thread only.
        box: dict[str, Any] = {}

        def sweep() -> None:
            try:
                box["summary"] = run_judge(cfg, qpath, [apath], work / "judged", progress=False, echo=lambda s: None)
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                box["error"] = exc

        started = time.monotonic()
        thread = threading.Thread(target=sweep, daemon=True)
        thread.start()
        _kill_mid_sweep(srv, cluster, nodes, thread, kill)
        thread.join(timeout=240)
        if "error" in box:
            raise box["error"]
        summary = box["summary"]
        kill["limiter_nodes"] = _limiter_nodes()
        seconds = time.monotonic() - started
        records = [
            {"t_start": r.t_start, "t_end": r.t_end, "status": r.status, "node": r.headers.get(NODE_HEADER),
             "body": hashlib.sha256(json.dumps(r.body, sort_keys=True).encode()).hexdigest()[:16]}
            for r in srv.requests if r.protocol == "openai"
        ]
    df = read_table(work / "judged" / "judgments.parquet", "judgments").to_pandas()
    judged = df.groupby(["question_id", "model"]).apply(lambda g: bool((g.parse_status == "ok").all()))
    return {
        "planned": summary.planned, "scored": summary.scored, "seconds": seconds,
        "items_judged": int(judged.sum()), "items": int(len(judged)),
        "records": records, "kill": kill,
        "client": [r for r in _batch_log() if r["event"] in ("answered", "cached")],
        "limits": {"max_concurrency": JUDGE_MAX_CONCURRENCY, "rpm": JUDGE_RPM, "burst_s": 0.25},
    }


def _kill_mid_sweep(srv: Any, cluster: Any, nodes: dict[str, str], sweep: threading.Thread,
                    out: dict[str, Any]) -> None:
    """SIGKILL the L4 node mid-batch, then add a fresh node in its place.

    The moment: the node has calls in flight at the server and its batch in progress already holds
    answers read ``KILL_READ_AGE_S`` ago (long enough to be cached), so that losing finished work
    would show as repeats. The replacement stands in for an autoscaler: the sweep's actor pool has
    a fixed size, and the lost actor is restarted where there is room.
    """
    while sweep.is_alive():
        now = time.monotonic()
        recs = [r for r in srv.requests if r.protocol == "openai"]
        busy = [r for r in recs if r.t_end is None and r.headers.get(NODE_HEADER) == nodes["l4"]]
        events = [e for e in _read_log() if e["node"] == nodes["l4"]]
        batch_start = max((e["t"] for e in events if e["event"] == "batch"), default=0.0)
        old = [e for e in events if e["event"] == "answered" and batch_start < e["t"] < now - KILL_READ_AGE_S]
        if len(recs) >= KILL_AFTER_CALLS and busy and old:
            out["t_kill_begin"] = time.monotonic()
            out["in_flight_seen"] = len(busy)
            out["batch_answers_read_before"] = len(old)
            cluster.remove_node(cluster.l4, allow_graceful=False)
            out["t_dead"] = time.monotonic()
            out["calls_before"] = len(recs)
            replacement = cluster.add_node(num_cpus=2, resources={"accelerator_type:L4": 1})
            out["replacement"] = replacement.node_id
            return
        time.sleep(0.02)


def _limiter_nodes() -> list[str]:
    """The nodes the cluster-wide limiter actors live on (the GCS's actor table; no dashboard here)."""
    import ray

    table = ray._private.state.actors()  # the state API would need the dashboard
    return [a["Address"]["NodeID"] for a in table.values()
            if a.get("Name", "").startswith("mentalchat-limiter-") and a.get("State") == "ALIVE"]


# ---------------------------------------------------------------------------------------------
# Inputs and helpers


def _write_questions(path: Path, n: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(1, n + 1):
            fh.write(json.dumps({"question_id": i, "category": "generic",
                                 "turns": [f"q{i}: I have felt low and tired for weeks ({i})."]}) + "\n")
    return path


def _write_judge_inputs(folder: Path, n_questions: int, n_models: int) -> tuple[Path, Path]:
    from mentalchat.schemas import get_table, write_table

    qpath = _write_questions(folder / "question.jsonl", n_questions)
    rows = [{"question_id": str(i), "model_id": f"m-{m}", "base_model": "tiny", "data_config": "base",
             "answer": f"answer to q{i} by m-{m}: that sounds hard; talking to someone you trust may help."}
            for i in range(1, n_questions + 1) for m in range(n_models)]
    apath = folder / "answers.parquet"
    write_table(get_table("answers").from_rows(rows), apath, "answers")
    return qpath, apath


def _text_judge(messages: list[dict[str, str]], params: dict[str, Any]) -> str:
    """A FastChat-style text judgment: every metric scored, the score from the graded answer's length."""
    from mentalchat.core.rubric import METRICS

    m = re.search(r"<assistant_reply>\n(.*?)\n</assistant_reply>", messages[-1]["content"], re.S)
    base = min(10, 2 + len(m.group(1) if m else "") // 60)
    lines = ["The reply is supportive but brief."]
    lines += [f"**{name}:** [[{base}]]" for name in METRICS]
    lines.append(f"Rating: [[{base}]]")
    return "\n".join(lines)


def _read_log() -> list[dict[str, Any]]:
    path = Path(os.environ[BATCH_LOG_ENV])
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:  # a line being appended right now
            pass
    return out


def _batch_log() -> list[dict[str, Any]]:
    """The instrumentation log so far, emptied for the next scenario."""
    rows = _read_log()
    Path(os.environ[BATCH_LOG_ENV]).unlink(missing_ok=True)
    return rows


def _start_cluster(cluster_cls: Any, attempts: int = 2) -> Any:
    """Head (1 CPU: no 2-CPU engine replica fits there) + the A100 and L4 stand-ins (2 CPUs each).

    A dead node is noticed after ~5 missed 1 s health checks (Ray's default waits ~3x longer). A
    start that times out (a GCS starved of CPU on a loaded 2-core machine) is tried once more.
    """
    for attempt in range(attempts):
        cluster = None
        try:
            cluster = cluster_cls(initialize_head=True, head_node_args={
                "num_cpus": 1, "include_dashboard": False,
                "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 5},
            })
            cluster.a100 = cluster.add_node(wait=False, num_cpus=2, resources={"accelerator_type:A100": 1})
            cluster.l4 = cluster.add_node(wait=False, num_cpus=2, resources={"accelerator_type:L4": 1})
            cluster.wait_for_nodes(timeout=120)
            return cluster
        except Exception:
            if cluster is not None:
                cluster.shutdown()
            if attempt == attempts - 1:
                raise
            traceback.print_exc()
    raise AssertionError("unreachable")


def main(argv: list[str]) -> int:
    out_path, work, tiny_model = Path(argv[0]), Path(argv[1]), Path(argv[2])
    scenarios = argv[3:] or ["finetune", "generate", "judge"]
    work.mkdir(parents=True, exist_ok=True)
    os.environ[BATCH_LOG_ENV] = str(work / "batches.jsonl")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("MENTALCHAT_RAY_LOG_TO_DRIVER", "0")

    import ray
    import ray.data
    from ray.cluster_utils import Cluster

    t0 = time.monotonic()
    cluster = _start_cluster(Cluster)
    nodes = {"head": cluster.head_node.node_id, "a100": cluster.a100.node_id, "l4": cluster.l4.node_id}
    env = {k: os.environ[k] for k in ("HF_HUB_OFFLINE", "VLLM_NO_USAGE_STATS", BATCH_LOG_ENV) if k in os.environ}
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False,
             runtime_env={"worker_process_setup_hook": _instrument, "env_vars": env})
    # Ray Data hands batches to the first replica that is up; waiting for the whole pool makes
    # "both replicas answered" a property of placement rather than of which one loaded first.
    ray.data.DataContext.get_current().wait_for_min_actors_s = 180
    result: dict[str, Any] = {"nodes": nodes, "cluster_start_s": time.monotonic() - t0, "scenarios": {}}
    try:
        for name in scenarios:
            started = time.monotonic()
            try:
                if name == "judge":
                    facts = scenario_judge(work, tiny_model, nodes, cluster)
                else:
                    facts = globals()[f"scenario_{name}"](work, tiny_model, nodes)
                facts["error"] = None
            except Exception:  # noqa: BLE001 - reported to the test, which fails on it
                facts = {"error": traceback.format_exc()}
            facts["wall_s"] = time.monotonic() - started
            result["scenarios"][name] = facts
            out_path.write_text(json.dumps(result), encoding="utf-8")
    finally:
        ray.shutdown()
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
