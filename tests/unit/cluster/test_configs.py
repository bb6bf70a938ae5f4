"""The cluster configs in cluster/: the launcher YAML passes Ray's own validation, the KubeRay
manifests carry the fields KubeRay requires, and all of them keep the safe defaults (token
authentication on, UIs on 127.0.0.1, nothing exposed publicly)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

LAUNCHER = ROOT / "cluster" / "aws-gpu.yaml"
RAYCLUSTER = ROOT / "cluster" / "kuberay" / "raycluster.yaml"
RAYJOB = ROOT / "cluster" / "kuberay" / "rayjob.yaml"


def _launcher() -> dict:
    return yaml.safe_load(LAUNCHER.read_text())


def _validate(config: dict) -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


# -- cluster launcher -------------------------------------------------------------------------

def test_launcher_yaml_passes_rays_validation():
    prepared = _validate(_launcher())
    workers = prepared["available_node_types"]["gpu_worker"]
    assert workers["resources"]["GPU"] >= 2  # multi-GPU workers
    assert workers["min_workers"] < workers["max_workers"] <= prepared["max_workers"]  # autoscaling
    assert prepared["head_node_type"] == "head"


def test_rays_validation_rejects_a_broken_launcher_yaml():
    import jsonschema

    broken = _launcher()
    broken["available_node_types"]["gpu_worker"]["resources"]["GPU"] = 0.5  # must be an integer
    with pytest.raises(jsonschema.ValidationError):
        _validate(broken)
    broken = _launcher()
    broken["head_node_type"] = "no_such_type"
    with pytest.raises(ValueError, match="head_node_type"):
        _validate(broken)


def test_launcher_keeps_token_auth_and_loopback_uis():
    config = _launcher()
    head = " ".join(config["head_start_ray_commands"])
    workers = " ".join(config["worker_start_ray_commands"])
    assert "RAY_AUTH_MODE=token ray start --head" in head
    assert "RAY_AUTH_MODE=token ray start --address" in workers
    assert "--dashboard-host=127.0.0.1" in head
    assert "mlflow server --host 127.0.0.1" in head
    # Every node gets the same token file, where Ray looks for it by default.
    assert config["file_mounts"]["/home/ray/.ray/auth_token"] == "~/.ray/auth_token"
    assert "0.0.0.0" not in LAUNCHER.read_text()
    # stepsize is installed on every node; PostgreSQL and MLflow run on the head.
    setup = " ".join(config["setup_commands"])
    assert "pip install" in setup and "~/stepsize" in setup and "torch<=2.13.0" in setup
    assert "postgresql" in " ".join(config["head_setup_commands"])


# -- KubeRay ----------------------------------------------------------------------------------

def _docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _check_pod_template(template: dict, where: str) -> list[dict]:
    containers = template["spec"]["containers"]
    assert containers, f"{where}: a pod template needs containers"
    for container in containers:
        assert container.get("name") and container.get("image"), f"{where}: containers need name and image"
    return containers


def _check_ray_cluster_spec(spec: dict, where: str) -> None:
    """The fields RayClusterSpec requires (ray.io/v1: no omitempty) and our safe defaults."""
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict), f"{where}: headGroupSpec.rayStartParams is required"
    _check_pod_template(head["template"], f"{where}.headGroupSpec")
    assert head["rayStartParams"].get("dashboard-host") == "127.0.0.1"
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"
    assert not head.get("enableIngress")
    groups = spec["workerGroupSpecs"]
    assert groups
    for group in groups:
        name = group["groupName"]
        assert re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", name)
        assert isinstance(group["rayStartParams"], dict)
        assert 0 <= group["minReplicas"] <= group.get("replicas", 0) <= group["maxReplicas"]
        _check_pod_template(group["template"], f"{where}.workerGroupSpecs[{name}]")
    gpu = [int(c["resources"]["limits"].get("nvidia.com/gpu", 0)) for g in groups
           for c in g["template"]["spec"]["containers"]]
    assert max(gpu) >= 2, f"{where}: a GPU worker group with several GPUs per pod"
    # Token authentication through the operator (KubeRay 1.5.1+, Ray 2.52+).
    assert spec["authOptions"]["mode"] == "token"
    major, minor = (int(x) for x in spec["rayVersion"].split(".")[:2])
    assert (major, minor) >= (2, 52)


def test_raycluster_manifest_has_the_fields_kuberay_requires():
    (cluster,) = _docs(RAYCLUSTER)
    assert cluster["apiVersion"] == "ray.io/v1" and cluster["kind"] == "RayCluster"
    assert re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", cluster["metadata"]["name"])
    _check_ray_cluster_spec(cluster["spec"], "RayCluster")
    assert cluster["spec"]["enableInTreeAutoscaling"] is True


def test_rayjob_manifest_runs_stepsize_launch_on_its_cluster():
    docs = {doc["kind"]: doc for doc in _docs(RAYJOB)}
    job = docs["RayJob"]
    assert job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]
    assert spec["entrypoint"].startswith("stepsize launch ") and "--address auto" in spec["entrypoint"]
    assert spec["submissionMode"] in ("K8sJobMode", "HTTPMode", "SidecarMode")
    assert spec["shutdownAfterJobFinishes"] is True
    _check_ray_cluster_spec(spec["rayClusterSpec"], "RayJob.rayClusterSpec")
    # The study file it mounts is a valid stepsize study, and the volumes it names exist.
    study_path = spec["entrypoint"].split()[2]
    config_map = docs["ConfigMap"]
    head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in head["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in head["volumes"]}
    assert study_path.startswith(mounts["study"] + "/")
    assert volumes["study"]["configMap"]["name"] == config_map["metadata"]["name"]
    assert volumes["results"]["persistentVolumeClaim"]["claimName"] == docs["PersistentVolumeClaim"]["metadata"]["name"]
    assert "ReadWriteMany" in docs["PersistentVolumeClaim"]["spec"]["accessModes"]

    from orchestrator.spec import spec_from_mapping

    study = spec_from_mapping(yaml.safe_load(config_map["data"][Path(study_path).name]))
    assert study.storage.startswith("postgresql") and "@" in study.storage
    assert ":" not in study.storage.split("://", 1)[1].split("@", 1)[0], "no password in the storage URL"
    assert study.results_dir == mounts["results"]


def _walk(node):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_manifests_expose_nothing_publicly():
    for path in (RAYCLUSTER, RAYJOB):
        for doc in _docs(path):
            assert doc["kind"] not in ("Ingress", "Service"), f"{path.name}: no Service or Ingress of our own"
            for node in _walk(doc):
                assert node.get("serviceType", "ClusterIP") == "ClusterIP"
                assert node.get("type") not in ("LoadBalancer", "NodePort")
                assert not node.get("enableIngress")
                assert "hostNetwork" not in node and "hostPort" not in node
                for key, value in node.items():
                    assert value != "0.0.0.0", f"{path.name}: {key} binds every interface"
