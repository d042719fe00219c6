"""The launch recipes in deploy/: the `ray up` cluster file against the schema inside the Ray wheel, and the
KubeRay RayJob's structure (offline: YAML, required fields, the entrypoint is a valid `proselflc tune`)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import ray
import yaml

from proselflc.tuning.config import load_sweep
from proselflc.tuning.preflight import autoscaler_node_types

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def cluster_file() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "ray-cluster.yaml").read_text())


def test_the_ray_up_cluster_file_matches_ray_s_own_schema() -> None:
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = cluster_file()
    jsonschema.validate(config, schema)
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    assert types[config["head_node_type"]]["resources"]["GPU"] == 0, "the head runs the driver, not trials"
    gpu_types = [t for t in types.values() if t["resources"].get("GPU", 0) >= 1]
    assert gpu_types and all(t["max_workers"] >= 1 for t in gpu_types)
    setup = " ".join(config["setup_commands"])
    assert 'pip install -e "$HOME/proselflc[cluster]"' in setup and config["file_mounts"]["~/proselflc"] == "."
    assert "/mnt/results" in setup, "results live on storage every node mounts"
    head_start = " ".join(config["head_start_ray_commands"])
    assert "RAY_AUTH_MODE=token" in head_start and "--dashboard-host=127.0.0.1" in head_start
    assert all("RAY_AUTH_MODE=token" in " ".join(config[k]) for k in ("worker_start_ray_commands",))
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"


def test_a_sweep_on_that_cluster_knows_it_can_wait_for_gpu_workers(tmp_path: Path) -> None:
    """`ray up` leaves this file (filled in) on the head as ~/ray_bootstrap_config.yaml: the preflight reads it."""
    path = tmp_path / "ray_bootstrap_config.yaml"
    path.write_text(yaml.safe_dump(cluster_file()))
    (gpu,) = autoscaler_node_types(path)
    assert gpu.name == "gpu_worker" and gpu.holds(1, 1) and gpu.max_workers == 8


def test_the_rayjob_manifest_runs_a_valid_proselflc_sweep_on_gpu_workers() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "rayjob.yaml").read_text()))
    (job,) = [d for d in docs if d["kind"] == "RayJob"]
    (claim,) = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    assert job["apiVersion"] == "ray.io/v1" and job["metadata"]["name"]
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__, "the cluster's Ray must be the one the project pins"
    assert cluster["enableInTreeAutoscaling"] is True
    assert yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]["PROSELFLC_NODE_WAIT_S"] == "1800"

    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["proselflc", "tune"]
    image_root = Path("/home/ray/proselflc")  # deploy/Dockerfile copies the checkout there
    sweep_file = ROOT / Path(argv[2]).relative_to(image_root)
    overrides = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    sweep = load_sweep(sweep_file, overrides)
    assert sweep.resources.gpu == 1 and str(sweep.storage_path) == "/mnt/results"
    assert f"WORKDIR {image_root}" in (DEPLOY / "Dockerfile").read_text()
    assert f"FROM rayproject/ray:{ray.__version__}-" in (DEPLOY / "Dockerfile").read_text()

    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        pod = group["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == groups[0]["template"]["spec"]["containers"][0]["image"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
        assert mounts["results"] == "/mnt/results" and claims["results"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-gpus"] == "0"
    (workers,) = cluster["workerGroupSpecs"]
    assert workers["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert workers["minReplicas"] == 0 < workers["maxReplicas"]
