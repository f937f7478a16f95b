"""The stages on a real multi-node Ray cluster (one machine): placement, spreading, limits, node loss.

``tests/multinode_driver.py`` starts a head (1 CPU) and two 2-CPU worker nodes whose custom
resources stand in for accelerators (``accelerator_type:A100``, ``accelerator_type:L4``) in a
subprocess (the session's own Ray, ``tests/conftest.py``, cannot share a process with a
``ray.cluster_utils.Cluster``), runs a fine-tuning trial, an answer run and a judge sweep on it,
and hands back raw facts; every check is made here. The judge sweep's limits are measured at the
fault server, from its request log (arrival and finish times, and the node each call came from).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

#: Slack on the server-side rate: a call reaches the server some time after the limiter admitted it
#: (event loop, connection set-up, two busy cores), so admissions spread evenly can arrive bunched.
#: Up to this much delay variation moves at most rate x this many extra calls into a window.
ARRIVAL_JITTER_S = 0.5
RATE_WINDOW_S = 2.0
#: An answer read this shortly before the node died may not have reached the response cache yet.
CACHE_GRACE_S = 0.5


@pytest.fixture(scope="module")
def multinode(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, repo_root: Path) -> dict[str, Any]:
    """Run every scenario once on one fresh three-node cluster; the facts it recorded."""
    folder = tmp_path_factory.mktemp("multinode")
    out = folder / "facts.json"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # never the session's cluster
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo_root), env.get("PYTHONPATH")) if p)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(repo_root / "tests" / "multinode_driver.py"), str(out), str(folder / "work"),
         str(tiny_model)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0 and out.is_file(), f"driver failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    facts = json.loads(out.read_text(encoding="utf-8"))
    walls = {name: round(s["wall_s"]) for name, s in facts["scenarios"].items()}
    print(f"\nmulti-node driver: {time.monotonic() - started:.0f} s "
          f"(cluster {facts['cluster_start_s']:.0f} s, {walls})")
    return facts


def _scenario(facts: dict[str, Any], name: str) -> dict[str, Any]:
    s = facts["scenarios"].get(name)
    assert s is not None, f"scenario {name} did not run"
    assert s["error"] is None, s["error"]
    return s


def test_finetune_trials_run_only_on_the_a100_node(multinode: dict[str, Any]) -> None:
    """``scaling.accelerator_type: A100``: the Train worker ran where that resource is, never elsewhere.

    The head and the L4 node had free CPUs for the worker too; only the resource ask keeps it off
    them. Ray places an unpinned bundle on any node with room (measured here: about half the time on
    the A100 node), so the ask itself is checked too: the worker group's placement group carried
    ``accelerator_type:A100`` in every bundle, and each such bundle was placed on the A100 node.
    """
    ft, nodes = _scenario(multinode, "finetune"), multinode["nodes"]
    assert ft["trials"]
    for trial in ft["trials"]:
        assert trial["steps"] == 2
        assert trial["node_id"] == nodes["a100"], (trial, nodes)
    pinned = [(b, n) for g in ft["placement_groups"] for b, n in zip(g["bundles"], g["nodes"], strict=True)
              if "accelerator_type:A100" in b]
    assert len(pinned) >= len(ft["trials"]), ft["placement_groups"]
    assert all(n == nodes["a100"] for _, n in pinned), (pinned, nodes)


def test_generate_replicas_spread_over_nodes(multinode: dict[str, Any]) -> None:
    """Two engine replicas of 2 CPUs each: one per worker node, and both answered questions."""
    gen, nodes = _scenario(multinode, "generate"), multinode["nodes"]
    assert gen["failed"] == 0 and gen["answers"] == gen["requests"]
    assert sorted(r["node"] for r in gen["replicas"]) == sorted([nodes["a100"], nodes["l4"]]), gen["replicas"]
    batches = gen["batches"]
    assert sum(b["rows"] for b in batches) == gen["requests"]  # every answer came from a logged batch
    rows_by_node = Counter()
    for b in batches:
        rows_by_node[b["node"]] += b["rows"]
    assert set(rows_by_node) == {nodes["a100"], nodes["l4"]}, (rows_by_node, nodes)
    assert len({b["pid"] for b in batches}) == 2


def _calls(judge: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted(judge["records"], key=lambda r: r["t_start"])


def _peak_in_flight(calls: list[dict[str, Any]]) -> int:
    """Most calls being handled at once, from the server's arrival and finish times.

    A call the server never finished (its client died) counts as in flight until the end.
    """
    end_of_time = max(c["t_end"] or c["t_start"] for c in calls) + 1.0
    events = [(c["t_start"], 1) for c in calls] + [(c["t_end"] or end_of_time, -1) for c in calls]
    now = peak = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # a finish before an arrival at the same instant
        now += step
        peak = max(peak, now)
    return peak


def _max_in_window(times: list[float], window: float) -> int:
    """Most arrivals inside any sliding window of ``window`` seconds."""
    times = sorted(times)
    best = lo = 0
    for hi, t in enumerate(times):
        while t - times[lo] > window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def test_judge_sweep_spreads_over_nodes_under_one_cluster_limit(multinode: dict[str, Any]) -> None:
    """Calls came from both worker nodes, yet the server never saw more than one limiter allows.

    Each of the two actors would run up to ``ray_batch_size`` (8) calls at once and 6/s on its own,
    so without one cluster-wide limiter the server would see up to 16 at once and ~2x the rate.
    """
    judge, nodes = _scenario(multinode, "judge"), multinode["nodes"]
    limits, calls = judge["limits"], _calls(judge)
    assert all(c["status"] == 200 for c in calls if c["status"] is not None)
    before_kill = Counter(c["node"] for c in calls if c["t_start"] < judge["kill"]["t_kill_begin"])
    assert before_kill[nodes["a100"]] > 0 and before_kill[nodes["l4"]] > 0, (before_kill, nodes)

    peak = _peak_in_flight(calls)
    rate = limits["rpm"] / 60.0
    allowed = rate * RATE_WINDOW_S + rate * limits["burst_s"] + rate * ARRIVAL_JITTER_S
    busiest = _max_in_window([c["t_start"] for c in calls], RATE_WINDOW_S)
    print(f"\nserver side: peak in flight {peak} (limit {limits['max_concurrency']}); busiest "
          f"{RATE_WINDOW_S:.0f} s window {busiest} calls (limit {rate * RATE_WINDOW_S:.0f} + burst "
          f"{rate * limits['burst_s']:.1f} + jitter slack {rate * ARRIVAL_JITTER_S:.0f} = {allowed:.1f}); "
          f"calls by node {dict(Counter(c['node'][:8] for c in calls))}")
    assert peak <= limits["max_concurrency"]
    assert busiest <= allowed


def test_a_worker_node_killed_mid_sweep_loses_nothing(multinode: dict[str, Any]) -> None:
    """The L4 node is SIGKILLed with calls in flight: every item is still judged, and only those calls repeat.

    A repeat is a request body the server saw twice (no faults are scripted, so the engine never
    retries). In flight on the node at its death, as its client saw it: calls it sent that reached
    the server before the node was gone, less the answers it had read by then (each logged with
    its time). The server's own view (answer not yet sent when the kill began) undercounts on a
    loaded machine: an answer sent but not yet read by the dying client is lost too. A call whose
    answer was read but not yet cached (the cache is what makes it durable: the limiter slot goes
    back first, a Ray call) is also repeated; those within ``CACHE_GRACE_S`` of the death count.
    Without the cache, answers read long before the death come again and the check fails.
    """
    judge, nodes = _scenario(multinode, "judge"), multinode["nodes"]
    kill, calls = judge["kill"], _calls(judge)
    assert "t_dead" in kill and kill.get("replacement"), kill
    assert judge["scored"] == judge["planned"] == judge["items"] == judge["items_judged"] == 72

    bodies = Counter(c["body"] for c in calls)
    assert len(bodies) == judge["planned"]  # every planned call reached the server
    repeated = {b: n - 1 for b, n in bodies.items() if n > 1}
    t_dead = kill["t_dead"]
    sent = [c for c in calls if c["node"] == nodes["l4"] and c["t_start"] <= t_dead]
    mine = [e for e in judge["client"] if e["node"] == nodes["l4"] and e["t"] <= t_dead]
    read = [e["t"] for e in mine if e["event"] == "answered"]
    stored = [e["t"] for e in mine if e["event"] == "cached"]
    in_flight = len(sent) - len(read)
    unsaved = min(len(read) - len(stored), sum(1 for t in read if t > t_dead - CACHE_GRACE_S))
    server_view = sum(1 for c in sent if c["t_end"] is None or c["t_end"] >= kill["t_kill_begin"])
    print(f"\nnode kill: {sum(repeated.values())} repeated call(s); in flight on the killed node {in_flight} "
          f"+ {unsaved} read but not yet cached ({len(sent)} sent, {len(read)} read, {len(stored)} cached; "
          f"{server_view} unanswered at the server); {kill['calls_before']} calls before the kill, {len(calls)} in all")
    assert in_flight > 0, "the node died with nothing in flight: the scenario did not test anything"
    assert sum(repeated.values()) <= in_flight + unsaved
    assert set(repeated) <= {c["body"] for c in sent}  # only the dead node's calls came again
    after = {c["node"] for c in calls if c["t_start"] > kill["t_dead"]}
    assert nodes["l4"] not in after and after <= {nodes["a100"], kill["replacement"]}
    # The cluster-wide limiter lives on the head: a worker node's death cannot take it along.
    assert kill["limiter_nodes"] == [nodes["head"]]
