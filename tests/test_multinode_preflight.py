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
    assert "node types (~/ray_bootstrap_config.yaml): 'gpu_worker' (CPU 8, GPU 1, up to 2)" in str(refused.value)
    assert lines == []


@pytest.mark.ray
def test_a_wait_that_runs_out_is_refused_saying_how_long(ray_session: Any, monkeypatch) -> None:
    monkeypatch.setenv("PROSELFLC_NODE_WAIT_S", "0.3")
    lines: list[str] = []
    with pytest.raises(ConfigError, match=r"Waited 0.3 s for one to start \(PROSELFLC_NODE_WAIT_S"):
        wait_for_placeable(1, 4, log=lines.append, node_types=[], poll_s=0.05)
    assert lines and "PROSELFLC_NODE_WAIT_S is set: asked the autoscaler for one" in lines[0]
    assert wait_for_placeable(1, 2, log=lines.append, node_types=[]), "the session's node holds this trial"
