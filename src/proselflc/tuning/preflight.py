"""Fail fast when no trial could ever be placed: Ray would otherwise leave trials PENDING forever."""

from __future__ import annotations

import os
from collections.abc import Sequence

import ray

from proselflc.config import ConfigError

#: Set to 0 to let a local Ray started by proselflc listen on the machine's address (Ray's default).
LOOPBACK_ENV = "PROSELFLC_RAY_LOOPBACK"
#: Ray's own switch for local-only Ray (its default on macOS/Windows): node IP 127.0.0.1, so every
#: process it starts (GCS, raylet, workers, agents, metrics export) binds loopback.
_RAY_LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def loopback_wanted() -> bool:
    """Whether a local Ray should bind 127.0.0.1 only (the default); PROSELFLC_RAY_LOOPBACK=0 opts out."""
    value = os.environ.get(LOOPBACK_ENV, "1").strip().lower()
    if value not in ("0", "1", "true", "false", "yes", "no"):
        raise ConfigError(f"{LOOPBACK_ENV}={value!r}: use 1 (local Ray on 127.0.0.1, default) or 0 (Ray's default)")
    return value in ("1", "true", "yes")


def _init_on_loopback(**kwargs: object) -> None:
    """ray.init on 127.0.0.1 only.

    `ray.init(_node_ip_address="127.0.0.1")` is not enough: Ray replaces a loopback node IP by the
    machine's address, and its C++ servers then bind every interface. Ray's local-only mode keeps the
    node IP at 127.0.0.1; its flag is read when `ray` is imported, so it is set, for this call, in the
    driver and in the environment the processes Ray starts inherit (workers inherit the raylet's).
    """
    from ray._private import ray_constants

    saved_env = os.environ.get(_RAY_LOCAL_ONLY_ENV)
    saved = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_RAY_LOCAL_ONLY_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(_node_ip_address="127.0.0.1", dashboard_host="127.0.0.1", **kwargs)
    finally:  # the processes Ray started keep the flag; later ones in this driver need not
        ray_constants.ENABLE_RAY_CLUSTER = saved
        if saved_env is None:
            os.environ.pop(_RAY_LOCAL_ONLY_ENV, None)
        else:
            os.environ[_RAY_LOCAL_ONLY_ENV] = saved_env


def connect(log_to_driver: bool = True) -> bool:
    """Use the Ray that is already initialised, the cluster at RAY_ADDRESS, or start a local one.

    A local Ray listens on 127.0.0.1 only unless PROSELFLC_RAY_LOOPBACK=0, and its processes are
    children of this one (Ray ends them at shutdown or when this process dies).
    `log_to_driver=False` keeps trial workers' stdout/stderr (e.g. Ray's own SIGTERM noise when it
    retires a reused actor) out of the driver's console; a failed trial is still reported, with the
    path of its error.txt. Returns True when this call started a local Ray (the caller shuts it down).
    """
    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=log_to_driver)
        return False
    if loopback_wanted():
        _init_on_loopback(include_dashboard=False, log_to_driver=log_to_driver)
    else:
        ray.init(include_dashboard=False, log_to_driver=log_to_driver)
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
