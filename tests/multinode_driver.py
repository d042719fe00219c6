"""Run one multi-node scenario on a real Ray cluster of several raylets on 127.0.0.1; print its facts as JSON.

`python tests/multinode_driver.py SCENARIO[,SCENARIO...] SPEC.json`. A test runs this in a subprocess: one process can
`ray.init` once, and the test session's own Ray (tests/conftest.py) must stay untouched. The cluster is
`ray.cluster_utils.Cluster`: a head and worker nodes, each a separate raylet with its own CPUs and fake GPUs.
The environment the test gives this process keeps Ray in local-only mode (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0),
so every node's address is 127.0.0.1 and everything listens on loopback. The last stdout line is the JSON.

Scenarios: `spread` (trials on every node; a trial no single node holds is refused), `node_loss` (a worker node
removed mid-trial), `node_join` (a node added mid-sweep), `scale_wait` (no node holds a trial, the autoscaler's
node types do: the sweep waits for a node) and `serve` (hold a cluster with a dashboard for `ray job submit`
until a line arrives on stdin).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import ray
from ray.cluster_utils import Cluster

from proselflc.config import ConfigError
from proselflc.tuning import build_sweep_config, run_sweep
from proselflc.tuning.preflight import alive_nodes
from trial_hooks import train_engine_with_hook


def record(records: Path) -> None:
    """Write which node and process this trial runs on, and whether Ray restored it from a checkpoint."""
    from ray import tune

    ctx = tune.get_context()
    entry = {
        "trial_id": ctx.get_trial_id(),
        "node_id": ray.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
        "restored": tune.get_checkpoint() is not None,
        "time": time.time(),
    }
    (records / f"{entry['trial_id']}-{time.monotonic_ns()}.json").write_text(json.dumps(entry))


def stand_in(params: dict[str, Any], *, base: dict[str, Any], records: Path, barrier: int, epoch_s: float,
             **_: Any) -> None:
    """A trial that sleeps instead of training and checkpoints every epoch (placement is the point, not training).

    With `barrier` > 1 it first waits (at most 60 s) until that many trials have started, so they hold the
    cluster's GPUs at the same time: with one GPU per node and one per trial, each sits on its own node.
    """
    from ray import tune

    record(records)
    if barrier > 1:
        deadline = time.monotonic() + 60
        while len(list(records.glob("*.json"))) < barrier and time.monotonic() < deadline:
            time.sleep(0.05)
    level = 0.9 - base["noise"]["rate"]
    for epoch in range(1, base["train"]["epochs"] + 1):
        time.sleep(epoch_s)
        value = level + 0.01 * params.get("optim.lr", 0.1) * epoch
        row = {"epoch": epoch, "val_accuracy": value, "test_accuracy": value, "diverged": False}
        with tempfile.TemporaryDirectory(prefix="stand-in-ckpt-") as directory:
            (Path(directory) / "state.json").write_text(json.dumps(row))
            tune.report(row, checkpoint=tune.Checkpoint.from_directory(directory))


def engine_on_node(params: dict[str, Any], *, records: Path, stall_after: int = 0, **kwargs: Any) -> None:
    """The real trial (`train_engine`), after noting the node it runs on.

    With `stall_after`, a first attempt (not restored) pauses after reporting that epoch until a node has been
    removed (at most 60 s): on a fast machine the whole trial would otherwise end before its node is gone.
    Only the timing changes; the Engine, its checkpoints and its metrics are untouched.
    """
    from ray import tune

    record(records)
    removed = records.parent / "node-removed"

    def stall(metrics: dict[str, Any]) -> None:
        deadline = time.monotonic() + 60
        while metrics.get("epoch", 0) >= stall_after and not removed.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    first_attempt = stall_after and tune.get_checkpoint() is None
    train_engine_with_hook(params, stall if first_attempt else None, **kwargs)


def quiet(line: str) -> None:
    print(f"[sweep] {line}", file=sys.stderr, flush=True)


def start_cluster(spec: dict[str, Any]) -> tuple[Cluster, list[Any]]:
    """A head and the spec's worker nodes, each its own raylet; the driver connects to the head."""
    temp_dir = spec["temp_dir"]
    head = {"num_cpus": 1, "num_gpus": 0, "include_dashboard": False, "temp_dir": temp_dir,
            "node_ip_address": "127.0.0.1", **spec.get("head", {})}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    workers = [cluster.add_node(node_ip_address="127.0.0.1", **node) for node in spec.get("workers", [])]
    cluster.wait_for_nodes()
    cluster.connect()
    return cluster, workers


def node_ids(cluster: Cluster) -> dict[str, Any]:
    """The head's node id and the alive worker nodes' ids."""
    return {"head": cluster.head_node.node_id, "workers": sorted(node.node_id for node in cluster.worker_nodes)}


def listening() -> list[str]:
    """The addresses the cluster's processes (this driver's descendants: raylets, GCS, workers) listen on."""
    import psutil

    found = set()
    for proc in psutil.Process().children(recursive=True):
        try:
            found.update(c.laddr.ip for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return sorted(found)


def read_records(records: Path) -> list[dict[str, Any]]:
    return sorted((json.loads(p.read_text()) for p in records.glob("*.json")), key=lambda r: r["time"])


def rows_of(sweep_dir: Path, trial_id: str) -> int:
    found = list((sweep_dir / "trials").glob(f"*_{trial_id}/result.json"))
    return len(found[0].read_text().splitlines()) if found else 0


def spread(spec: dict[str, Any], cluster: Cluster, workers: list[Any], records: Path) -> dict[str, Any]:
    """Refuse a trial that fits the cluster's sum but no single node, then run a sweep whose trials fill every node."""
    refused = ""
    try:
        run_sweep(build_sweep_config({**spec["sweep"], "name": "too-big", "resources": {"cpu": 1, "gpu": 2}}),
                  log=quiet, trial_function=partial(stand_in, records=records, barrier=0, epoch_s=0.0))
    except ConfigError as error:
        refused = str(error)
    sweep = build_sweep_config(spec["sweep"])
    nodes = len(alive_nodes())
    run_sweep(sweep, log=quiet, trial_function=partial(stand_in, records=records, barrier=nodes,
                                                      epoch_s=spec["epoch_s"]))
    return {"refused": refused, "sweep_dir": str(sweep.sweep_dir)}


def node_loss(spec: dict[str, Any], cluster: Cluster, workers: list[Any], records: Path) -> dict[str, Any]:
    """Remove the first worker node that runs a trial (SIGKILL of its raylet and workers) once that trial has
    reported `kill_after_epochs` epochs."""
    sweep = build_sweep_config(spec["sweep"])
    by_id = {node.node_id: node for node in workers}
    removed: dict[str, Any] = {}

    def killer() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            mine = [r for r in read_records(records) if r["node_id"] in by_id]
            if mine and rows_of(sweep.sweep_dir, mine[0]["trial_id"]) >= spec["kill_after_epochs"]:
                removed.update(node_id=mine[0]["node_id"], trial_id=mine[0]["trial_id"],
                               epochs_before=rows_of(sweep.sweep_dir, mine[0]["trial_id"]))
                cluster.remove_node(by_id[mine[0]["node_id"]], allow_graceful=False)
                (records.parent / "node-removed").touch()
                return
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    run_sweep(sweep, log=quiet, trial_function=partial(engine_on_node, records=records,
                                                      stall_after=spec["kill_after_epochs"]))
    thread.join(timeout=5)
    return {"removed": removed, "sweep_dir": str(sweep.sweep_dir)}


def node_join(spec: dict[str, Any], cluster: Cluster, workers: list[Any], records: Path) -> dict[str, Any]:
    """Add a GPU node once the first trial has started on the cluster the sweep began with.

    Trials wait at a barrier of two: the first holds the starting node's only GPU until a second trial runs,
    which only the new node can hold. The sweep runs in a thread: `Cluster.add_node` must run in the main
    thread (the node installs signal handlers).
    """
    sweep = build_sweep_config(spec["sweep"])
    runner = SweepThread(sweep, partial(stand_in, records=records, barrier=2, epoch_s=spec["epoch_s"]))
    deadline = time.monotonic() + 120
    while not list(records.glob("*.json")) and runner.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    node = cluster.add_node(node_ip_address="127.0.0.1", **spec["join"])
    joined = {"node_id": node.node_id, "time": time.time()}
    runner.finish()
    return {"joined": joined, "sweep_dir": str(sweep.sweep_dir)}


class SweepThread(threading.Thread):
    """`run_sweep` in a thread, re-raising its error in `finish()`."""

    def __init__(self, sweep: Any, trial_function: Any, log: Any = None) -> None:
        super().__init__(daemon=True)
        self.sweep, self.trial_function, self.log = sweep, trial_function, log or quiet
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            run_sweep(self.sweep, log=self.log, trial_function=self.trial_function)
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            self.error = error

    def finish(self) -> None:
        self.join(timeout=240)
        if self.is_alive():
            raise TimeoutError("the sweep did not finish within 240 s")
        if self.error is not None:
            raise self.error


def scale_wait(spec: dict[str, Any], cluster: Cluster, workers: list[Any], records: Path) -> dict[str, Any]:
    """No node holds a trial; the autoscaler's config says a node type does. This process plays the autoscaler:
    it starts such a node once the sweep has said it waits."""
    sweep = build_sweep_config(spec["sweep"])
    lines: list[str] = []

    def log(line: str) -> None:  # pickled with the Tuner's callbacks: a list, not a threading.Event
        lines.append(line)
        quiet(line)

    runner = SweepThread(sweep, partial(stand_in, records=records, barrier=0, epoch_s=0.0), log=log)
    deadline = time.monotonic() + 120
    while not any("waiting" in line for line in lines) and runner.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    node = cluster.add_node(node_ip_address="127.0.0.1", **spec["join"])
    runner.finish()
    return {"joined": {"node_id": node.node_id}, "lines": lines, "sweep_dir": str(sweep.sweep_dir)}


def serve(spec: dict[str, Any], cluster: Cluster, workers: list[Any], records: Path) -> dict[str, Any]:
    """Hold the cluster until stdin has a line; then the trial actors that ran and their nodes."""
    from ray.util.state import list_actors

    print(json.dumps({"ready": True, "dashboard": f"http://{cluster.webui_url}", "nodes": node_ids(cluster)}),
          flush=True)
    sys.stdin.readline()
    actors = list_actors(filters=[("class_name", "=", "ImplicitFunc")], limit=1000, raise_on_missing_output=False)
    return {"trial_actor_nodes": sorted({a.node_id for a in actors})}


SCENARIOS = {"spread": spread, "node_loss": node_loss, "node_join": node_join, "scale_wait": scale_wait,
             "serve": serve}


def main(argv: list[str]) -> int:
    """Run SCENARIO on a fresh cluster; `A,B` runs A then B on the same one (B starts from what A left), each
    with its own records dir and its `spec[name]` entries over the spec's own, and prints {name: facts}."""
    names, spec_path = argv
    spec = json.loads(Path(spec_path).read_text())
    scenarios = names.split(",")
    cluster, workers = start_cluster(spec)
    out: dict[str, Any] = {}
    try:
        for name in scenarios:
            records = Path(spec["records"]) / name if len(scenarios) > 1 else Path(spec["records"])
            records.mkdir(parents=True, exist_ok=True)
            facts = SCENARIOS[name]({**spec, **spec.get(name, {})}, cluster, workers, records)
            facts.update(nodes=node_ids(cluster), records=read_records(records), listening=listening())
            out[name] = facts
    finally:
        ray.shutdown()
        cluster.shutdown()
    print(json.dumps(out if len(scenarios) > 1 else out[scenarios[0]]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
