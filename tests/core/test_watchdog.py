"""The stall watchdog: no progress while Ray has unmet demands becomes an error (fakes; one slow test on real Ray)."""

from __future__ import annotations

import _thread
import threading
import time

import pytest

from mentalchat.core.watchdog import ResourceStallError, StallWatchdog, stall_timeout
from mentalchat.errors import StageError, UsageError


def _blocked_until(event: threading.Event, limit_s: float = 10.0) -> None:
    """Stand-in for a Ray Data iterator that never yields: waits until 'interrupted'."""
    event.wait(limit_s)
    if event.is_set():
        raise KeyboardInterrupt


def test_no_progress_while_resources_are_pending_raises_naming_them() -> None:
    interrupted = threading.Event()
    start = time.monotonic()
    dog = StallWatchdog("dataset", hint="Check dataset.interview.deid_cpus.", timeout_s=0.3, poll_s=0.05,
                        probe=lambda: "1 x {CPU: 2}", interrupt=interrupted.set)
    with pytest.raises(ResourceStallError) as err, dog:
        _blocked_until(interrupted)
    assert time.monotonic() - start < 5
    msg = str(err.value)
    assert "pending: 1 x {CPU: 2}" in msg and "dataset.interview.deid_cpus" in msg
    assert "MENTALCHAT_STALL_TIMEOUT_S" in msg
    assert isinstance(err.value, StageError)


def test_slow_work_with_nothing_pending_is_left_alone() -> None:
    interrupted = threading.Event()
    with StallWatchdog("generate", timeout_s=0.2, poll_s=0.05, probe=lambda: "", interrupt=interrupted.set):
        time.sleep(0.6)
    assert not interrupted.is_set()


def test_unknown_demands_do_not_fire() -> None:
    interrupted = threading.Event()
    with StallWatchdog("generate", timeout_s=0.2, poll_s=0.05, probe=lambda: None, interrupt=interrupted.set):
        time.sleep(0.6)
    assert not interrupted.is_set()


def test_progress_keeps_it_quiet_even_with_demands_pending() -> None:
    interrupted = threading.Event()
    with StallWatchdog("judge", timeout_s=0.3, poll_s=0.05, probe=lambda: "4 x {CPU: 1}",
                       interrupt=interrupted.set) as dog:
        for _ in dog.watch(range(12)):
            time.sleep(0.1)  # 1.2 s in all, a tick every 0.1 s
    assert not interrupted.is_set()


def test_timeout_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MENTALCHAT_STALL_TIMEOUT_S", "42")
    assert stall_timeout() == 42.0
    monkeypatch.setenv("MENTALCHAT_STALL_TIMEOUT_S", "0")
    assert StallWatchdog("s").timeout_s == 0  # off: no thread
    monkeypatch.setenv("MENTALCHAT_STALL_TIMEOUT_S", "soon")
    with pytest.raises(UsageError, match="MENTALCHAT_STALL_TIMEOUT_S"):
        stall_timeout()


@pytest.mark.slow
def test_a_ray_data_pool_that_never_fits_fails_instead_of_hanging(ray_cluster) -> None:
    """Real Ray: an actor asking for more CPUs than any node has (the check bypassed) → the error."""
    import ray.data

    class Echo:
        def __call__(self, batch):
            return batch

    total = ray_cluster.cluster_resources().get("CPU", 1.0)
    ds = ray.data.range(4).map_batches(Echo, compute=ray.data.ActorPoolStrategy(size=1), num_cpus=total + 4)
    start = time.monotonic()
    guard = threading.Timer(120, _thread.interrupt_main)  # should the watchdog not fire: fail, do not hang
    guard.start()
    try:
        with pytest.raises(ResourceStallError, match=r"pending: .*CPU"), StallWatchdog(
                "test", timeout_s=6, poll_s=1) as dog:
            for _ in dog.watch(ds.iter_rows()):
                pass
    finally:
        guard.cancel()
    assert time.monotonic() - start < 60
    # the cluster is usable afterwards
    assert ray.data.range(3).map_batches(Echo, compute=ray.data.ActorPoolStrategy(size=1), num_cpus=0.1).count() == 3


def test_outside_the_main_thread_it_only_logs(caplog: pytest.LogCaptureFixture) -> None:
    """interrupt_main would hit the main thread, not the stalled one: no interrupt, no error."""
    outcome: list[object] = []

    def stage() -> None:
        try:
            with StallWatchdog("judge", timeout_s=0.2, poll_s=0.05, probe=lambda: "1 x {CPU: 8}"):
                time.sleep(0.8)
            outcome.append("finished")
        except BaseException as exc:  # noqa: BLE001
            outcome.append(exc)

    worker = threading.Thread(target=stage)
    worker.start()
    worker.join(10)
    assert outcome == ["finished"]
    assert any("no progress" in r.message for r in caplog.records)


def test_default_timeout_is_longer_where_an_autoscaler_may_be_adding_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MENTALCHAT_STALL_TIMEOUT_S", raising=False)
    monkeypatch.delenv("MENTALCHAT_CLUSTER_MAY_GROW", raising=False)
    monkeypatch.setenv("HOME", "/nonexistent-home")  # no ~/ray_bootstrap_config.yaml
    monkeypatch.delenv("RAY_CLUSTER_NAME", raising=False)
    assert stall_timeout() == 300.0
    monkeypatch.setenv("RAY_CLUSTER_NAME", "mentalchat")
    assert stall_timeout() == 1800.0
