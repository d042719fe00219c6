"""Resource preflight across nodes, without a multi-node cluster: the autoscaler's node types, and waiting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from proselflc.config import ConfigError
from proselflc.tuning.preflight import NodeType, autoscaler_node_types, node_wait_s, wait_for_placeable

CLUSTER = {
    "cluster_name": "gpus",
    "max_workers": 3,
    "head_node_type": "head",
    "available_node_types": {
        "head": {"resources": {"CPU": 4, "GPU": 0}, "max_workers": 0},
        "gpu_worker": {"resources": {"CPU": 8, "GPU": 1}, "min_workers": 0, "max_workers": 10},
        "cpu_worker": {"resources": {"CPU": 16}, "max_workers": 2},
        "cloud_default": {"node_config": {"InstanceType": "g5.xlarge"}},
    },
}


def test_node_types_come_from_the_cluster_launcher_s_config(tmp_path: Path) -> None:
    path = tmp_path / "ray_bootstrap_config.yaml"
    assert autoscaler_node_types(path) == []
    path.write_text(yaml.safe_dump(CLUSTER))
    types = {t.name: t for t in autoscaler_node_types(path)}
    assert set(types) == {"gpu_worker", "cpu_worker", "cloud_default"}  # the head is already up
    assert types["gpu_worker"] == NodeType("gpu_worker", {"CPU": 8.0, "GPU": 1.0}, 3)  # capped by max_workers
    assert types["gpu_worker"].holds(4, 1) and not types["gpu_worker"].holds(4, 2)
    assert not types["cpu_worker"].holds(1, 1) and types["cpu_worker"].holds(16, 0)
    assert types["cloud_default"].holds(1, 8), "a type whose resources Ray fills in at launch might hold it"
    assert not NodeType("off", {"CPU": 8, "GPU": 8}, 0).holds(1, 1)
    path.write_text("a: &x 1\nb: *x\n")
    with pytest.raises(ConfigError, match="cannot be read"):
        autoscaler_node_types(path)


def test_how_long_a_sweep_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    types = [NodeType("gpu_worker", {"CPU": 8, "GPU": 1}, 2)]
    monkeypatch.delenv("PROSELFLC_NODE_WAIT_S", raising=False)
    assert node_wait_s(types, 1, 1) == 1800 and node_wait_s(types, 1, 2) == 0 and node_wait_s([], 1, 0) == 0
    monkeypatch.setenv("PROSELFLC_NODE_WAIT_S", "60")
    assert node_wait_s([], 1, 1) == 60  # e.g. KubeRay: no launcher config on the head
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv("PROSELFLC_NODE_WAIT_S", bad)
        with pytest.raises(ConfigError, match=r"PROSELFLC_NODE_WAIT_S=.*number of seconds >= 0"):
            node_wait_s(types, 1, 1)


@pytest.mark.ray
def test_no_node_type_holds_the_trial_is_refused_at_once_naming_them(ray_session: Any, monkeypatch) -> None:
    monkeypatch.delenv("PROSELFLC_NODE_WAIT_S", raising=False)
    types = [NodeType("gpu_worker", {"CPU": 8, "GPU": 1}, 2)]
    lines: list[str] = []
    with pytest.raises(ConfigError) as refused:
        wait_for_placeable(1, 4, log=lines.append, node_types=types)
    assert "resources.gpu = 4" in str(refused.value)
    assert "node types: 'gpu_worker' (CPU 8, GPU 1, up to 2)" in str(refused.value)
    assert lines == []


@pytest.mark.ray
def test_a_wait_that_runs_out_is_refused_saying_how_long(ray_session: Any, monkeypatch) -> None:
    monkeypatch.setenv("PROSELFLC_NODE_WAIT_S", "0.3")
    lines: list[str] = []
    with pytest.raises(ConfigError, match=r"Waited 0.3 s for one to start \(PROSELFLC_NODE_WAIT_S"):
        wait_for_placeable(1, 4, log=lines.append, node_types=[], poll_s=0.05)
    assert lines and "PROSELFLC_NODE_WAIT_S is set: asked the autoscaler for one" in lines[0]
    assert wait_for_placeable(1, 2, log=lines.append, node_types=[]), "the session's node holds this trial"


@pytest.mark.ray
def test_node_groups_reported_to_the_gcs_count_as_node_types(ray_session: Any, monkeypatch) -> None:
    """A platform that reports its node groups to Ray's GCS (autoscaler ClusterConfig) lets the sweep wait for
    them as for the launcher's config; the report is removed again (the session's Ray is shared)."""
    from ray._private.state import state
    from ray._raylet import GCS_AUTOSCALER_CLUSTER_CONFIG_KEY, GCS_AUTOSCALER_STATE_NAMESPACE
    from ray.core.generated import autoscaler_pb2
    from ray.experimental.internal_kv import _internal_kv_del, _internal_kv_put

    from proselflc.tuning.preflight import reported_node_types

    assert state.get_cluster_config() is None and reported_node_types() == []
    config = autoscaler_pb2.ClusterConfig()
    config.node_group_configs.add(name="gpu-group", resources={"CPU": 8, "GPU": 8}, min_count=0, max_count=2)
    config.node_group_configs.add(name="cpu-group", resources={"CPU": 32}, min_count=0, max_count=-1)
    key, namespace = GCS_AUTOSCALER_CLUSTER_CONFIG_KEY.encode(), GCS_AUTOSCALER_STATE_NAMESPACE.encode()
    _internal_kv_put(key, config.SerializeToString(), overwrite=True, namespace=namespace)
    try:
        types = {t.name: t for t in reported_node_types()}
        assert types["gpu-group"] == NodeType("gpu-group", {"CPU": 8.0, "GPU": 8.0}, 2)
        assert types["cpu-group"].max_workers == 1 << 30
        monkeypatch.setenv("PROSELFLC_NODE_WAIT_S", "0.3")
        lines: list[str] = []
        with pytest.raises(ConfigError, match="Waited 0.3 s"):
            wait_for_placeable(1, 4, log=lines.append, poll_s=0.05)
        assert "the autoscaler can start node type 'gpu-group' (CPU 8, GPU 8, up to 2)" in lines[0]
    finally:
        _internal_kv_del(key, namespace=namespace)
    assert reported_node_types() == []
