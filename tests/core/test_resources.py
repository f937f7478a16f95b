"""The resource check before a stage's Ray work: fake clusters, no Ray.

What it guards: a stage asking for what no node has (an accelerator type, a GPU, more CPUs than
the largest node) used to wait forever; now it is sized down where safe or refused at once, with
the config key to change.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mentalchat.core.resources import Ask, ClusterShape, ResourceFitError, ensure_fits, fit_asks
from mentalchat.core.stage import get_stage
from mentalchat.errors import UsageError

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "configs" / "quickstart.yaml"
LAPTOP = ClusterShape.of({"CPU": 2.0, "memory": 16e9, "object_store_memory": 4e9})


def _finetune(*overrides: str):
    return get_stage("finetune").load_config(QUICKSTART, list(overrides))


def test_finetune_asking_a100_on_a_cluster_without_it_errors_in_seconds_naming_the_key() -> None:
    from mentalchat.finetune.tune import check_trial_resources

    start = time.monotonic()
    with pytest.raises(ResourceFitError) as err:
        check_trial_resources([_finetune("scaling.accelerator_type=A100")], cluster=LAPTOP)
    assert time.monotonic() - start < 5
    msg = str(err.value)
    assert "accelerator_type 'A100'" in msg
    assert "finetune.scaling.accelerator_type" in msg
    assert isinstance(err.value, UsageError)  # the CLI prints it and exits 2


def test_finetune_a100_fits_where_a_node_type_the_autoscaler_may_launch_has_it() -> None:
    from mentalchat.finetune.tune import check_trial_resources

    cluster = ClusterShape.of({"CPU": 16.0}, launchable=[({"CPU": 96.0, "GPU": 8.0, "accelerator_type:A100": 1.0}, 2)])
    check_trial_resources([_finetune("scaling.accelerator_type=A100", "scaling.use_gpu=true")], cluster=cluster)


def test_finetune_gpu_and_cpu_shortfalls_name_their_keys() -> None:
    from mentalchat.finetune.tune import check_trial_resources

    with pytest.raises(ResourceFitError, match=r"GPU.*set finetune\.scaling\.use_gpu to false"):
        check_trial_resources([_finetune("scaling.use_gpu=true")], cluster=LAPTOP)
    with pytest.raises(ResourceFitError, match=r"needs 4 CPU on one node.*largest node has 2.*finetune\.scaling\.cpus_per_worker"):
        check_trial_resources([_finetune("scaling.cpus_per_worker=4")], cluster=LAPTOP)
    # three 1-CPU workers on two 2-CPU nodes fit (PACK spreads); STRICT_PACK needs them on one node
    two = ClusterShape.of({"CPU": 2.0}, {"CPU": 2.0})
    check_trial_resources([_finetune("scaling.num_workers=3")], cluster=two)
    with pytest.raises(ResourceFitError, match="finetune.scaling.num_workers"):
        check_trial_resources([_finetune("scaling.num_workers=3", "scaling.placement_strategy=STRICT_PACK")],
                              cluster=two)


def test_quickstart_interview_pools_are_sized_to_a_two_core_node() -> None:
    """0.5 (de-id) + 2 (vLLM) + 0.5 (post) = 3 CPUs at once: used to wait forever on 2 CPUs ("pending: 2 CPU")."""
    from mentalchat.dataset.build import fit_interview

    cfg = get_stage("dataset").load_config(QUICKSTART)
    said: list[str] = []
    deid, engine_cfg, threads, post = fit_interview(cfg, cfg.paraphrase_engine_cfg(), cluster=LAPTOP, echo=said.append)
    assert deid.cpus + engine_cfg.vllm.cpus_per_replica + post.cpus <= 2.0 + 1e-9
    assert engine_cfg.vllm.cpus_per_replica >= 1.0
    assert threads == 2  # the engine keeps the two threads its config asks for
    assert len(said) == 1 and "engines.smollm2-vllm.vllm.cpus_per_replica" in said[0]
    assert "dataset.interview.deid_cpus" in said[0]
    # a bigger node: nothing changes
    deid, engine_cfg, threads, post = fit_interview(cfg, cfg.paraphrase_engine_cfg(),
                                                    cluster=ClusterShape.of({"CPU": 4.0}), echo=said.append)
    assert (deid.cpus, engine_cfg.vllm.cpus_per_replica, threads, post.cpus) == (0.5, 2.0, None, 0.5)
    assert len(said) == 1


def test_quickstart_interview_refused_on_a_one_cpu_node_and_in_error_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    from mentalchat.dataset.build import fit_interview

    cfg = get_stage("dataset").load_config(QUICKSTART)
    with pytest.raises(ResourceFitError, match=r"needs 2 CPU on one node.*engines\.smollm2-vllm\.vllm\.cpus_per_replica"):
        fit_interview(cfg, cfg.paraphrase_engine_cfg(), cluster=ClusterShape.of({"CPU": 1.0}))
    monkeypatch.setenv("MENTALCHAT_RESOURCE_CHECK", "error")
    with pytest.raises(ResourceFitError, match=r"do not fit this cluster together.*3 CPU in all.*Lower engines\.smollm2-vllm\.vllm\.cpus_per_replica or dataset\.interview\.deid_cpus"):
        fit_interview(cfg, cfg.paraphrase_engine_cfg(), cluster=LAPTOP)
    monkeypatch.setenv("MENTALCHAT_RESOURCE_CHECK", "sometimes")
    with pytest.raises(UsageError, match="MENTALCHAT_RESOURCE_CHECK"):
        fit_interview(cfg, cfg.paraphrase_engine_cfg(), cluster=LAPTOP)


def test_vllm_engine_gpu_and_accelerator_errors_name_the_engine_keys() -> None:
    from mentalchat.engine.config import EngineConfig
    from mentalchat.engine.pools import engine_pool_ask

    gpu = EngineConfig(backend="vllm", model="m", vllm={"gpus_per_replica": 1})
    with pytest.raises(ResourceFitError, match=r"set engines\.answers\.vllm\.gpus_per_replica to 0"):
        ensure_fits([engine_pool_ask(gpu, key="engines.answers")], stage="generate", cluster=LAPTOP)
    h100 = EngineConfig(backend="vllm", model="m", vllm={"gpus_per_replica": 1, "accelerator_type": "H100"})
    cluster = ClusterShape.of({"CPU": 8.0, "GPU": 1.0, "accelerator_type:A100": 1.0})
    with pytest.raises(ResourceFitError, match=r"'H100'.*it has A100.*engines\.answers\.vllm\.accelerator_type"):
        ensure_fits([engine_pool_ask(h100, key="engines.answers")], stage="generate", cluster=cluster)


def test_replicas_shrink_before_cpus_and_gpu_pools_are_never_thinned_below_one() -> None:
    from mentalchat.engine.config import EngineConfig
    from mentalchat.engine.pools import engine_pool_ask, resize_engine

    cfg = EngineConfig(backend="vllm", model="m", vllm={"replicas": 4, "gpus_per_replica": 1, "cpus_per_replica": 2})
    node = ClusterShape.of({"CPU": 8.0, "GPU": 2.0})
    fit = ensure_fits([engine_pool_ask(cfg, key="engines.x")], stage="generate", cluster=node, echo=lambda _: None)
    sized, threads = resize_engine(cfg, fit.asks[0])
    assert (sized.vllm.replicas, sized.vllm.cpus_per_replica, threads) == (2, 2.0, None)
    assert "engines.x.vllm.replicas): 4 -> 2" in fit.changes[0]


def test_http_judge_actors_shrink_to_a_sliver() -> None:
    from mentalchat.engine.config import EngineConfig
    from mentalchat.judge.config import JudgeConfig
    from mentalchat.judge.execute import fit_ray_engines

    engines = {f"j{i}": EngineConfig(backend="openai", model="gpt-4o", vllm={"replicas": 4, "cpus_per_replica": 1})
               for i in range(3)}
    cfg = JudgeConfig.model_validate({"judges": [{"engine": "j0"}], "engines": engines, "executor": "ray"})
    out = fit_ray_engines(cfg, engines, list(engines), cluster=ClusterShape.of({"CPU": 1.0}))
    total = sum(e.vllm.replicas * e.vllm.cpus_per_replica for e in out.values())
    assert total <= 1.0 + 1e-9 and all(e.vllm.replicas >= 1 for e in out.values())


def test_joint_packing_is_per_node_not_cluster_total() -> None:
    """Two 1.5-CPU actors do not fit two 1-CPU nodes, although the cluster has 2 CPUs in all."""
    asks = [Ask("a", {"CPU": 1.5}), Ask("b", {"CPU": 1.5})]
    with pytest.raises(ResourceFitError, match="largest node has 1"):
        fit_asks(asks, ClusterShape.of({"CPU": 1.0}, {"CPU": 1.0}), stage="s")
    fit_asks(asks, ClusterShape.of({"CPU": 1.5}, {"CPU": 1.5}), stage="s")
    with pytest.raises(ResourceFitError, match="do not fit this cluster together"):
        fit_asks(asks, ClusterShape.of({"CPU": 2.0}, {"CPU": 1.0}), stage="s")


def test_check_off_passes_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MENTALCHAT_RESOURCE_CHECK", "off")
    fit = ensure_fits([Ask("big", {"GPU": 8.0})], stage="s", cluster=LAPTOP)
    assert fit.asks[0].resources == {"GPU": 8.0}


def test_an_autoscaler_with_unknown_node_types_only_warns(caplog: pytest.LogCaptureFixture) -> None:
    """Ray's v1 autoscaler does not publish its node types: an A100 ask on a scaled-to-zero cluster may still come."""
    from mentalchat.finetune.tune import check_trial_resources

    growing = ClusterShape(LAPTOP.nodes, may_grow=True)
    check_trial_resources([_finetune("scaling.accelerator_type=A100")], cluster=growing)
    assert any("not refused" in r.message for r in caplog.records)


def test_launcher_bootstrap_config_gives_the_node_types(tmp_path: Path) -> None:
    """On a `ray up` head the driver reads the worker types from ~/ray_bootstrap_config.yaml."""
    import shutil

    from mentalchat.core.resources import _launcher_node_types
    from mentalchat.finetune.tune import check_trial_resources

    config = tmp_path / "ray_bootstrap_config.yaml"
    shutil.copy(REPO / "cluster" / "launcher-aws-a100.yaml", config)
    types = _launcher_node_types(str(config))
    assert {t.name for t in types} == {"type a100_worker", "type cpu_worker"}
    cluster = ClusterShape((LAPTOP.nodes[0], *types))
    check_trial_resources([_finetune("scaling.accelerator_type=A100", "scaling.use_gpu=true")], cluster=cluster)
    assert _launcher_node_types(str(tmp_path / "absent.yaml")) == []


def test_may_grow_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from mentalchat.core.resources import _may_grow

    monkeypatch.delenv("RAY_CLUSTER_NAME", raising=False)
    monkeypatch.delenv("MENTALCHAT_CLUSTER_MAY_GROW", raising=False)
    assert not _may_grow()
    monkeypatch.setenv("RAY_CLUSTER_NAME", "mentalchat")  # a KubeRay pod
    assert _may_grow()
    monkeypatch.setenv("MENTALCHAT_CLUSTER_MAY_GROW", "0")
    assert not _may_grow()
