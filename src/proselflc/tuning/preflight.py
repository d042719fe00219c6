"""Fail fast when no trial could ever be placed (Ray would otherwise leave trials PENDING forever), and wait
instead when the cluster's autoscaler can start a node that holds one."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import ray

from proselflc import ray_compat
from proselflc.errors import ConfigError

#: Set to 0 to let a local Ray started by proselflc listen on the machine's address (Ray's default).
LOOPBACK_ENV = "PROSELFLC_RAY_LOOPBACK"


def loopback_wanted() -> bool:
    """Whether a local Ray should bind 127.0.0.1 only (the default); PROSELFLC_RAY_LOOPBACK=0 opts out."""
    value = os.environ.get(LOOPBACK_ENV, "1").strip().lower()
    if value not in ("0", "1", "true", "false", "yes", "no"):
        raise ConfigError(f"{LOOPBACK_ENV}={value!r}: use 1 (local Ray on 127.0.0.1, default) or 0 (Ray's default)")
    return value in ("1", "true", "yes")


def connect(log_to_driver: bool = True, runtime_env: dict[str, Any] | None = None) -> bool:
    """Use the Ray that is already initialised, the cluster at RAY_ADDRESS, or start a local one.

    A local Ray listens on 127.0.0.1 only unless PROSELFLC_RAY_LOOPBACK=0, and its processes are
    children of this one (Ray ends them at shutdown or when this process dies).
    `log_to_driver=False` keeps trial workers' stdout/stderr (e.g. Ray's own SIGTERM noise when it
    retires a reused actor) out of the driver's console; a failed trial is still reported, with the
    path of its error.txt. `runtime_env` (the plugin files, `plugins.runtime_env`) travels with the job to a
    cluster at RAY_ADDRESS; a local Ray's workers read the same files. Returns True when this call started a
    local Ray (the caller shuts it down).
    """
    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=log_to_driver, runtime_env=runtime_env or None)
        return False
    token = Path.home() / ".ray" / "auth_token"  # where a local ray.init() writes the token it generates
    had_token = token.exists()
    if loopback_wanted():
        ray_compat.init_on_loopback(include_dashboard=False, log_to_driver=log_to_driver)
    else:
        ray.init(include_dashboard=False, log_to_driver=log_to_driver)
    if not had_token and token.is_file() and not token.is_symlink():
        token.chmod(0o600)  # Ray writes it with the umask (0644): a token others can read authenticates them
    return True


def alive_nodes() -> list[dict[str, float]]:
    """The total resources of each alive node of the connected cluster."""
    return [dict(node.get("Resources", {})) for node in ray.nodes() if node.get("Alive")]


def _describe(node: dict[str, float]) -> str:
    return f"CPU {node.get('CPU', 0):g}, GPU {node.get('GPU', 0):g}"


def check_placeable(cpu: float, gpu: float, nodes: Sequence[dict[str, float]]) -> None:
    """Raise ConfigError unless some single node has at least `cpu` CPUs and `gpu` GPUs in total.

    A trial's resources must fit on one node, so per-node totals (not the cluster sum) decide.
    """
    if any(node.get("CPU", 0) >= cpu and node.get("GPU", 0) >= gpu for node in nodes):
        return
    have = "; ".join(f"node {i}: {_describe(n)}" for i, n in enumerate(nodes)) or "no alive nodes"
    needs = []
    if not any(node.get("CPU", 0) >= cpu for node in nodes):
        needs.append(f"resources.cpu = {cpu:g} (lower it to at most {max((n.get('CPU', 0) for n in nodes), default=0):g})")
    if not any(node.get("GPU", 0) >= gpu for node in nodes):
        most = max((n.get("GPU", 0) for n in nodes), default=0)
        hint = "set resources.gpu: 0 to train on CPU" if most == 0 else f"lower it to at most {most:g}"
        needs.append(f"resources.gpu = {gpu:g} ({hint})")
    if not needs:
        needs.append(f"resources.cpu = {cpu:g} and resources.gpu = {gpu:g} together")
    raise ConfigError(
        f"no trial can ever be placed: {' and '.join(needs)}, but the Ray cluster has {have}. "
        "Connect to a bigger cluster with RAY_ADDRESS or ask for less per trial."
    )


def trial_slots(cpu: float, gpu: float, nodes: Sequence[dict[str, float]]) -> int:
    """How many trials the cluster's alive nodes hold at once (each trial on one node); at least 1.

    The sweep's default `max_concurrent_trials`: that many trials are queued for placement at a time,
    so every free GPU gets a trial without the searcher suggesting far ahead of the results.
    """
    total = 0
    for node in nodes:
        fits = [node.get("CPU", 0.0) / cpu] if cpu > 0 else []
        if gpu > 0:
            fits.append(node.get("GPU", 0.0) / gpu)
        total += int(min(fits) + 1e-9) if fits else 0
    return max(1, total)


#: Where Ray's cluster launcher (`ray up`) leaves the cluster's config on the head node, where a job's driver runs.
#: Ray Tune reads the same file to tell an autoscaling cluster from a fixed one.
BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"
#: Seconds to wait for a node that can hold a trial; set it on clusters scaled by something without a bootstrap
#: config on the head (KubeRay's autoscaler reads the RayCluster resource instead), 0 to never wait.
NODE_WAIT_ENV = "PROSELFLC_NODE_WAIT_S"
#: How long a sweep waits for the autoscaler by default: cloud GPU nodes take minutes to boot and install.
DEFAULT_NODE_WAIT_S = 1800.0


@dataclass(frozen=True)
class NodeType:
    """A worker node type the autoscaler may start: its Ray resources (empty: unknown until it starts)."""

    name: str
    resources: dict[str, float]
    max_workers: int

    def holds(self, cpu: float, gpu: float) -> bool:
        """Whether one node of this type holds a trial; a type whose resources are unknown might."""
        if self.max_workers < 1:
            return False
        return not self.resources or (self.resources.get("CPU", 0) >= cpu and self.resources.get("GPU", 0) >= gpu)

    def describe(self) -> str:
        size = _describe(self.resources) if self.resources else "resources known once it starts"
        return f"{self.name!r} ({size}, up to {self.max_workers})"


def autoscaler_node_types(path: str | Path = BOOTSTRAP_CONFIG) -> list[NodeType]:
    """The worker node types in the cluster launcher's config (`available_node_types`); [] without one.

    The head's type is left out (it is already up), and each type's `max_workers` is capped by the
    cluster's `max_workers`.
    """
    from proselflc import safe_yaml

    file = Path(path).expanduser()
    if not file.is_file():
        return []
    try:
        config = safe_yaml.read_mapping(file)
    except ValueError as exc:
        raise ConfigError(f"the Ray cluster config {str(file)!r} cannot be read: {exc}") from exc
    cap = int(config.get("max_workers", 1 << 30))
    head = config.get("head_node_type")
    types = []
    for name, spec in (config.get("available_node_types") or {}).items():
        if name == head or not isinstance(spec, dict):
            continue
        resources = {k: float(v) for k, v in (spec.get("resources") or {}).items()}
        types.append(NodeType(str(name), resources, min(int(spec.get("max_workers", cap)), cap)))
    return types


def reported_node_types() -> list[NodeType]:
    """The node groups the cluster's platform reported to Ray's GCS (the `ClusterConfig` that Ray Data's own
    autoscaling reads through the same call); [] where none was reported. Needs a connected Ray."""
    config = ray_compat.reported_cluster_config()
    if config is None:
        return []
    return [
        NodeType(group.name, {k: float(v) for k, v in group.resources.items()},
                 group.max_count if group.max_count >= 0 else 1 << 30)  # -1: no limit
        for group in config.node_group_configs
    ]


def node_wait_s(types: Sequence[NodeType], cpu: float, gpu: float) -> float:
    """How long to wait for a node that holds a trial: PROSELFLC_NODE_WAIT_S, else the default when a node type
    of the autoscaler holds one, else 0 (refuse at once)."""
    value = os.environ.get(NODE_WAIT_ENV)
    if value is not None:
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if not seconds >= 0:
            raise ConfigError(f"{NODE_WAIT_ENV}={value!r}: use a number of seconds >= 0 (0: never wait for nodes)")
        return seconds
    return DEFAULT_NODE_WAIT_S if any(t.holds(cpu, gpu) for t in types) else 0.0


def _fits(cpu: float, gpu: float, nodes: Sequence[dict[str, float]]) -> bool:
    return any(node.get("CPU", 0) >= cpu and node.get("GPU", 0) >= gpu for node in nodes)


def wait_for_placeable(
    cpu: float,
    gpu: float,
    *,
    log: Callable[[str], None],
    node_types: Sequence[NodeType] | None = None,
    poll_s: float = 1.0,
    status_every_s: float = 30.0,
) -> list[dict[str, float]]:
    """The alive nodes once one of them holds a trial of `cpu` CPUs and `gpu` GPUs.

    Where no alive node does but the cluster can scale (a node type that holds one is in the cluster launcher's
    config on this node or in the node groups reported to the GCS, or PROSELFLC_NODE_WAIT_S is set), ask the
    autoscaler for one such node (`request_resources`), say so, and wait; otherwise, or when the wait runs out,
    refuse as `check_placeable` does.
    """
    nodes = alive_nodes()
    if _fits(cpu, gpu, nodes):
        return nodes
    types = (autoscaler_node_types() or reported_node_types()) if node_types is None else list(node_types)
    wait = node_wait_s(types, cpu, gpu)
    if wait <= 0:
        _refuse(cpu, gpu, nodes, types)
    from ray.autoscaler.sdk import request_resources

    able = [t.describe() for t in types if t.holds(cpu, gpu)]
    source = f"the autoscaler can start node type {', '.join(able)}" if able else f"{NODE_WAIT_ENV} is set"
    log(f"no alive node holds a trial (CPU {cpu:g}, GPU {gpu:g}) yet; {source}: asked the autoscaler for one, "
        f"waiting for it (at most {wait:g} s)")
    request_resources(bundles=[{"CPU": cpu, "GPU": gpu} if gpu else {"CPU": cpu}])
    start = last = time.monotonic()
    try:
        while not _fits(cpu, gpu, nodes):
            now = time.monotonic()
            if now - start >= wait:
                _refuse(cpu, gpu, nodes, types, waited=wait)
            if now - last >= status_every_s:
                last = now
                log(f"still waiting for a node that holds a trial ({now - start:.0f} s): {len(nodes)} alive")
            time.sleep(poll_s)
            nodes = alive_nodes()
    finally:
        request_resources(bundles=[])  # from here on the sweep's own trials are the autoscaler's demand
    log(f"a node that holds a trial joined after {time.monotonic() - start:.0f} s")
    return nodes


def _refuse(cpu: float, gpu: float, nodes: Sequence[dict[str, float]], types: Sequence[NodeType],
            waited: float = 0.0) -> NoReturn:
    """check_placeable's refusal, saying what the autoscaler could start and how long the sweep waited."""
    try:
        check_placeable(cpu, gpu, nodes)
    except ConfigError as exc:
        notes = [str(exc)]
        if types:
            notes.append(f"The autoscaler's node types: {'; '.join(t.describe() for t in types)}.")
        if waited:
            notes.append(f"Waited {waited:g} s for one to start ({NODE_WAIT_ENV} sets how long).")
        raise ConfigError(" ".join(notes)) from None
    raise AssertionError("unreachable: no alive node holds the trial")
