"""Session-wide fixtures: one local Ray cluster, one tiny model, offline settings.

Ray costs ~10 s and ~1 GB per cluster, so every test that needs Ray shares ``ray_cluster``.
The environment is set before anything imports vLLM or transformers so that nothing reaches a hub.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_TMP = Path(tempfile.mkdtemp(prefix="mentalchat-tests-"))
for key, value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_CACHE_ROOT": str(_TMP / "vllm-cache"),
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "TOKENIZERS_PARALLELISM": "false",
    "TQDM_DISABLE": "1",
    # Two cores shared by pytest, Ray workers and vLLM: OpenMP spinning made in-process vLLM ~20x
    # slower under contention (measured), one thread each keeps them out of each other's way.
    "OMP_NUM_THREADS": "1",
}.items():
    os.environ.setdefault(key, value)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "mentalchat16k"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The authors' artefacts in ../shared/mentalchat16k; tests using it skip where it is absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared/mentalchat16k is absent")
    return SHARED


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster for the whole session (logical CPUs oversubscribed on purpose)."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address="local",  # a fresh cluster, even where another one on this machine is "current"
            num_cpus=4,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            runtime_env={"env_vars": {k: os.environ[k] for k in ("HF_HUB_OFFLINE", "VLLM_NO_USAGE_STATS")}},
        )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama with a trained BPE tokenizer and a chat template (built in seconds)."""
    from mentalchat.models.kit import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_lora(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PEFT LoRA adapter for ``tiny_model`` with random non-zero weights (it changes outputs)."""
    from mentalchat.models.kit import build_random_lora

    return build_random_lora(tiny_model, tmp_path_factory.mktemp("adapters") / "tiny-lora")
