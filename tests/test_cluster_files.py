"""``cluster/`` checked by the tools that will read it, not by eye.

The launcher YAML against Ray's autoscaler schema (after Ray fills in its AWS defaults), the KubeRay
manifests against the RayCluster/RayJob CRDs' OpenAPI v3 schemas of a KubeRay release (vendored in
``tests/data/kuberay/``, unknown fields refused as ``kubectl apply`` refuses them), the runtime env
through Ray's own ``RuntimeEnv``, and the Dockerfile's structure and pip line. Light on CPU: no
cluster, no cloud SDK, no network.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
CRDS = Path(__file__).resolve().parent / "data" / "kuberay"
MANIFESTS = sorted((CLUSTER / "kuberay").glob("ray*.yaml"))


# --------------------------------------------------------------------------------------------
# Ray cluster launcher
# --------------------------------------------------------------------------------------------
def _launcher() -> dict[str, Any]:
    return yaml.safe_load((CLUSTER / "launcher-aws-a100.yaml").read_text(encoding="utf-8"))


def _validate_launcher(config: dict[str, Any]) -> dict[str, Any]:
    """What ``ray up`` does before it calls AWS: fill in the provider defaults, then validate."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    full = prepare_config(copy.deepcopy(config))
    validate_config(full)
    return full


def test_launcher_yaml_passes_rays_autoscaler_schema() -> None:
    full = _validate_launcher(_launcher())
    types = full["available_node_types"]
    assert full["head_node_type"] in types
    a100 = types["a100_worker"]["resources"]
    assert a100.get("GPU", 0) > 0 and a100.get("accelerator_type:A100") == 1  # scale-up before the node exists
    assert types[full["head_node_type"]]["resources"].get("GPU", 0) == 0
    assert sum(t.get("max_workers", 0) for n, t in types.items() if n != full["head_node_type"]) >= full["max_workers"]


def test_launcher_schema_check_can_fail() -> None:
    bad = _launcher()
    bad["available_node_types"]["a100_worker"]["resourcez"] = {"GPU": 8}
    with pytest.raises(jsonschema.ValidationError, match="resourcez"):
        _validate_launcher(bad)
    bad = _launcher()
    bad["head_node_type"] = "gpu_head"
    with pytest.raises(ValueError, match="head_node_type"):
        _validate_launcher(bad)


# --------------------------------------------------------------------------------------------
# KubeRay manifests
# --------------------------------------------------------------------------------------------
def _strict(schema: Any) -> Any:
    """The CRD schema with unknown fields refused (kubectl's strict field validation; the API
    server would otherwise prune them silently), except where the schema preserves them."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _crd_validator(kind: str) -> jsonschema.Validator:
    doc = json.loads((CRDS / f"{kind.lower()}-v1.schema.json").read_text(encoding="utf-8"))
    assert doc["kind"] == kind and doc["version"] == "v1"
    schema = _strict(doc["openAPIV3Schema"])
    # metadata is the API server's business (the CRD says only "object"): check the usual fields
    schema["properties"]["metadata"] = {
        "type": "object", "required": ["name"], "additionalProperties": False,
        "properties": {"name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
                       "namespace": {"type": "string"}, "labels": {"type": "object"},
                       "annotations": {"type": "object"}},
    }
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata", "spec"})
    return jsonschema.Draft7Validator(schema)


def _errors(manifest: dict[str, Any]) -> list[str]:
    validator = _crd_validator(manifest.get("kind", "?"))
    return sorted(f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
                  for e in validator.iter_errors(manifest))


def _manifests(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_kuberay_manifest_matches_the_crd_schema(path: Path) -> None:
    for manifest in _manifests(path):
        assert manifest["apiVersion"] == "ray.io/v1", path.name
        errors = _errors(manifest)
        assert not errors, f"{path.name} does not match KubeRay v1.7.0's {manifest['kind']} CRD:\n  " + "\n  ".join(errors)


def test_kuberay_schema_check_can_fail() -> None:
    manifest = _manifests(CLUSTER / "kuberay" / "raycluster.yaml")[0]
    bad = copy.deepcopy(manifest)
    bad["spec"]["workerGroupSpecs"][0]["maxReplica"] = 8  # a typo kubectl would refuse
    bad["spec"]["workerGroupSpecs"][0]["minReplicas"] = "0"  # a string where an integer belongs
    errors = "\n".join(_errors(bad))
    assert "maxReplica" in errors and "minReplicas" in errors
    job = copy.deepcopy(_manifests(CLUSTER / "kuberay" / "rayjob-finetune.yaml")[0])
    job["spec"]["shutdownAfterJobFinishes"] = "yes"
    assert any("shutdownAfterJobFinishes" in e for e in _errors(job))


def test_kuberay_manifests_agree_with_the_launcher() -> None:
    """Same Ray version, the A100 marker resource advertised, API keys from the Secret only."""
    from ray import __version__ as ray_version

    for path in MANIFESTS:
        for manifest in _manifests(path):
            spec = manifest["spec"]
            cluster = spec.get("rayClusterSpec", spec)
            assert cluster["rayVersion"] == ray_version, path.name
            text = path.read_text(encoding="utf-8")
            assert "accelerator_type:A100" in text, path.name
            assert not re.search(r"(OPENAI|GEMINI)_API_KEY\s*[:=]\s*\S", text), path.name
            env_yaml = spec.get("runtimeEnvYAML")
            if env_yaml:
                _runtime_env(yaml.safe_load(env_yaml))


# --------------------------------------------------------------------------------------------
# runtime_env and Dockerfile
# --------------------------------------------------------------------------------------------
def _runtime_env(doc: dict[str, Any]) -> Any:
    from ray.runtime_env import RuntimeEnv

    return RuntimeEnv(**doc)


def test_runtime_env_yaml_is_accepted_by_ray() -> None:
    doc = yaml.safe_load((CLUSTER / "runtime_env.yaml").read_text(encoding="utf-8"))
    env = _runtime_env(doc)
    assert env.env_vars()["HF_HUB_OFFLINE"] == "1"
    assert not any(k.endswith(("_KEY", "_TOKEN")) for k in env.env_vars())  # secrets travel elsewhere
    with pytest.raises((TypeError, ValueError)):
        _runtime_env({**doc, "env_vars": {"N": 1}})  # Ray refuses non-string values: the check can fail


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) per logical line, continuations joined, comments dropped."""
    lines, buf = [], ""
    for raw in (CLUSTER / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if not buf and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        buf += raw.rstrip("\\").strip() + " "
        if not raw.rstrip().endswith("\\"):
            word, _, rest = buf.strip().partition(" ")
            lines.append((word.upper(), rest.strip()))
            buf = ""
    return lines


def test_dockerfile_structure() -> None:
    """A structural lint (hadolint is not packaged for Debian here): the rules that bite this image."""
    steps = _dockerfile()
    assert steps[0][0] == "FROM"
    from ray import __version__ as ray_version

    image = steps[0][1].split()[0]
    assert image.startswith(f"rayproject/ray:{ray_version}-"), "the image's Ray must match the job's Ray"
    assert ":latest" not in image
    copied = [a.split()[-2] for i, a in steps if i == "COPY"]
    for src in copied:
        assert (REPO / src).exists(), f"COPY {src}: not in the repository"
    pip = [a for i, a in steps if i == "RUN" and " pip install" in f" {a}"]
    assert len(pip) == 1 and "--no-cache-dir" in pip[0]
    target = shlex.split(pip[0])[-1]
    match = re.fullmatch(r"\.\[([a-z,]+)\]", target)
    assert match, f"pip installs {target!r}; expected the project with extras"
    import tomllib

    extras = set(tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
                 .get("optional-dependencies", {}))
    unknown = set(match.group(1).split(",")) - extras
    assert not unknown, f"Dockerfile installs extras pyproject.toml does not define: {sorted(unknown)}"
    # the project must be copied before it is installed
    first_pip = next(n for n, (i, a) in enumerate(steps) if i == "RUN" and "pip install" in a)
    assert any(i == "COPY" and "pyproject.toml" in a for i, a in steps[:first_pip])
    assert any(i == "COPY" and a.split()[-2] == "mentalchat" for i, a in steps[:first_pip])


# --------------------------------------------------------------------------------------------
# The paper's settings fit the clusters these files describe (the resource check, offline)
# --------------------------------------------------------------------------------------------
def _launcher_shape() -> Any:
    from mentalchat.core.resources import ClusterShape, NodeShape

    full = _validate_launcher(_launcher())
    nodes = []
    for name, t in full["available_node_types"].items():
        res = {k: float(v) for k, v in t.get("resources", {}).items()}
        if name == full["head_node_type"]:
            nodes.append(NodeShape(name, res))
        elif t.get("max_workers", 0):
            nodes.append(NodeShape(name, res, launchable=True, max_count=int(t["max_workers"])))
    return ClusterShape(tuple(nodes))


def _quantity(value: Any) -> float:
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _group_resources(group: dict[str, Any]) -> dict[str, float]:
    """What Ray on a KubeRay pod advertises: CPU/GPU from the container limits, plus rayStartParams."""
    params = group.get("rayStartParams") or {}
    limits = group["template"]["spec"]["containers"][0].get("resources", {}).get("limits", {})
    res = {"CPU": _quantity(params.get("num-cpus", limits.get("cpu", 0))),
           "GPU": _quantity(params.get("num-gpus", limits.get("nvidia.com/gpu", 0)))}
    if "resources" in params:
        res.update({k: float(v) for k, v in json.loads(json.loads(params["resources"])).items()})
    res.update({k: _quantity(v) for k, v in (group.get("resources") or {}).items()})
    return res


def _kuberay_shape(path: Path) -> Any:
    from mentalchat.core.resources import ClusterShape, NodeShape

    spec = _manifests(path)[0]["spec"]
    spec = spec.get("rayClusterSpec", spec)
    nodes = [NodeShape("head", _group_resources(spec["headGroupSpec"]))]
    nodes += [NodeShape(g["groupName"], _group_resources(g), launchable=True, max_count=int(g["maxReplicas"]))
              for g in spec.get("workerGroupSpecs", [])]
    return ClusterShape(tuple(nodes))


SHAPES = {"launcher-aws-a100.yaml": _launcher_shape,
          **{p.name: (lambda p=p: _kuberay_shape(p)) for p in MANIFESTS}}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_paper_config_fits_the_cluster(name: str) -> None:
    from mentalchat.core.resources import ensure_fits
    from mentalchat.core.stage import get_stage
    from mentalchat.dataset.build import fit_interview
    from mentalchat.engine.pools import engine_pool_ask
    from mentalchat.finetune.tune import check_trial_resources

    cluster = SHAPES[name]()
    paper = REPO / "configs" / "paper.yaml"
    check_trial_resources([get_stage("finetune").load_config(paper)], cluster=cluster)
    dataset = get_stage("dataset").load_config(paper)
    said: list[str] = []
    fit_interview(dataset, dataset.paraphrase_engine_cfg(), cluster=cluster, echo=said.append)
    generate = get_stage("generate").load_config(paper)
    ensure_fits([engine_pool_ask(generate.engine, key="generate.engine")], stage="generate", cluster=cluster,
                echo=said.append)
    assert not said, f"{name}: the paper's pools had to be sized down: {said}"


def _job_command(entrypoint: str) -> tuple[str, list[str]]:
    """``python jobs/X.py ARGS`` → (the command X's script runs, ARGS)."""
    argv = shlex.split(entrypoint)
    assert argv[0] == "python" and argv[1].startswith("jobs/"), entrypoint
    script = REPO / argv[1]
    assert script.is_file(), f"{argv[1]}: no such job script"
    match = re.search(r"job_main\(\s*[\"']([\w-]+)[\"']", script.read_text(encoding="utf-8"))
    assert match, f"{argv[1]} does not call job_main"
    return match.group(1), argv[2:]


def _entrypoints() -> list[tuple[str, str]]:
    out = [(p.name, d["spec"]["entrypoint"]) for p in MANIFESTS for d in _manifests(p) if d["kind"] == "RayJob"]
    header = (CLUSTER / "launcher-aws-a100.yaml").read_text(encoding="utf-8")
    submit = re.search(r"-- (python jobs/\S+ .*?)\n#(?:\s+(.*?)\n)?", header)
    assert submit
    out.append(("launcher-aws-a100.yaml", " ".join(filter(None, submit.groups())).replace("\\", "")))
    return out


@pytest.mark.parametrize(("name", "entrypoint"), _entrypoints(), ids=[n for n, _ in _entrypoints()])
def test_job_entrypoints_parse_and_their_configs_load(name: str, entrypoint: str) -> None:
    """The command each cluster file submits takes those options, and its config validates."""
    from mentalchat.cli import build_parser
    from mentalchat.core.stage import STAGE_MODULES, get_stage
    from mentalchat.pipeline.run import load_pipeline

    command, args = _job_command(entrypoint)
    parsed = build_parser(command).parse_args(args)
    config = REPO / parsed.config
    assert config.is_file(), f"{name}: {parsed.config} is not in the repository"
    if command == "pipeline":
        load_pipeline(config, parsed.overrides)
    else:
        stage = next(s for s in STAGE_MODULES if get_stage(s).job == Path(shlex.split(entrypoint)[1]).stem)
        get_stage(stage).load_config(config, parsed.overrides)


def test_kuberay_clusters_use_token_auth() -> None:
    """The dashboard listens on 0.0.0.0: its job API must not run code for anyone on the network.

    Ray 2.60 leaves token auth off on a fresh head unless RAY_AUTH_MODE=token or a token file exists;
    KubeRay's authOptions generates the token and puts it into every pod and the job submitter.
    """
    for path in MANIFESTS:
        for manifest in _manifests(path):
            spec = manifest["spec"]
            cluster = spec.get("rayClusterSpec", spec)
            assert (cluster.get("authOptions") or {}).get("mode") == "token", path.name
