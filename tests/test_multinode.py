"""Sweeps on a real multi-node Ray cluster: several raylets on 127.0.0.1, each with its own CPUs and fake GPUs.

Each scenario runs in a subprocess (tests/multinode_driver.py) that builds a `ray.cluster_utils.Cluster`,
connects to it, runs the sweep and prints what happened as JSON: a process can join only one Ray, and the
test session's (tests/conftest.py) stays untouched. The subprocess keeps Ray in local-only mode, so every
node is 127.0.0.1 and listens on loopback, with its own HOME (no ~/.ray auth token) and a short temp dir.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import TINY_SWEEP
from sweep_files import config, results, study_trial_dirs, trial_dirs

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

DRIVER = Path(__file__).with_name("multinode_driver.py")
BIN = Path(sys.executable).parent
GPU_NODE = {"num_cpus": 1, "num_gpus": 1}


@contextmanager
def cluster_environment(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a cluster's processes: local-only Ray, its own HOME and short temp dir."""
    home = tmp_path / "home"
    home.mkdir()
    ray_tmp = tempfile.mkdtemp(prefix="rm", dir="/tmp")  # Unix socket paths under it must stay < 108 chars
    # The nodes' temp dir is $RAY_TMPDIR/ray: Ray writes the cluster's address there, and a job's driver finds
    # its cluster by it (without it, Ray would look for any GCS process on the machine, maybe someone else's).
    (Path(ray_tmp) / "ray").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(home), RAY_TMPDIR=ray_tmp, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", PYTHONUNBUFFERED="1")
    try:
        yield env
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.fixture
def cluster_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    with cluster_environment(tmp_path) as env:
        yield env


def spec_for(tmp_path: Path, env: dict[str, str], **parts: Any) -> dict[str, Any]:
    return {"temp_dir": str(Path(env["RAY_TMPDIR"]) / "ray"), "records": str(tmp_path / "records"), **parts}


def drive(scenario: str, spec: dict[str, Any], env: dict[str, str], tmp_path: Path, timeout: float = 240) -> dict:
    """Run one scenario of the driver script; the JSON it printed last."""
    spec_file = tmp_path / f"{scenario}.json"
    spec_file.write_text(json.dumps(spec))
    done = subprocess.run([sys.executable, str(DRIVER), scenario, str(spec_file)], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{scenario} failed:\n{done.stdout[-4000:]}\n{done.stderr[-8000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def stand_in_sweep(tmp_path: Path, name: str, **changes: Any) -> dict[str, Any]:
    """Two studies, stand-in trials of one GPU each: what matters is where trials run, not what they learn."""
    return {
        **TINY_SWEEP,
        "name": name,
        "storage_path": str(tmp_path / "results"),
        "noise": {"kind": "symmetric", "rates": [0.0, 0.6]},
        "methods": {"crossentropy": TINY_SWEEP["methods"]["crossentropy"]},
        "resources": {"cpu": 1, "gpu": 1},
        "max_concurrent_trials": None,
        "num_samples": 2,
        "final_seeds": 1,
        **changes,
    }


def by_trial(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {}
    for entry in records:
        runs.setdefault(entry["trial_id"], []).append(entry)
    return runs


EPOCHS = 8
#: A real digits trial; the first attempt pauses after epoch 3 until a node is removed (see the driver).
ENGINE_BASE: dict[str, Any] = {
    "data": {"name": "digits"},
    "model": {"name": "mlp", "hidden": 64},
    "optim": {"lr": 0.1, "schedule": "constant"},
    "train": {"epochs": EPOCHS, "batch_size": 64, "seed": 0},
}


def node_loss_sweep(tmp_path: Path) -> dict[str, Any]:
    """A 2-point grid of real digits trials of one GPU each, checkpointing every epoch, retried once."""
    return {
        "name": "node-loss",
        "base": ENGINE_BASE,
        "noise": {"kind": "symmetric", "rates": [0.4]},
        "methods": {"crossentropy": {"search": {"optim.lr": {"type": "choice", "values": [0.05, 0.1]}}}},
        "searcher": {"name": "grid", "seed": 0},
        "scheduler": {"name": "fifo"},
        "num_samples": 2,
        "resources": {"cpu": 1, "gpu": 1},
        "max_concurrent_trials": 2,
        "storage_path": str(tmp_path / "results"),
        "final_seeds": 0,
        "checkpoint_every": 1,
        "max_failures": 1,
    }


@pytest.fixture(scope="module")
def three_gpu_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Scenarios `spread` then `node_loss` on ONE cluster of three 1-GPU nodes (a cluster start-up is seconds):
    the facts of each, and the node-loss sweep."""
    tmp_path = tmp_path_factory.mktemp("three-gpu-nodes")
    sweep = node_loss_sweep(tmp_path)
    with cluster_environment(tmp_path) as env:
        spec = spec_for(tmp_path, env, head=GPU_NODE, workers=[GPU_NODE, GPU_NODE],
                        spread={"epoch_s": 0.05, "sweep": stand_in_sweep(tmp_path, "spread")},
                        node_loss={"kill_after_epochs": 3, "sweep": sweep})
        yield drive("spread,node_loss", spec, env, tmp_path, timeout=480), sweep


def test_trials_are_placed_on_every_node_and_results_checkpoints_and_analysis_are_complete(three_gpu_nodes):
    """Three nodes of one GPU each, trials of one GPU: the first three trials meet at a barrier, so each holds
    a node's GPU at once. Before that, a trial the cluster's sum could hold (2 GPUs of 3) but no single node
    can is refused up front, naming every node. Every process of the cluster listens on loopback only."""
    from proselflc import analysis
    from proselflc.sweep_contract import read_manifest

    facts = three_gpu_nodes[0]["spread"]

    assert "no trial can ever be placed: resources.gpu = 2 (lower it to at most 1)" in facts["refused"]
    assert facts["refused"].count("CPU 1, GPU 1") == 3, facts["refused"]
    nodes = {facts["nodes"]["head"], *facts["nodes"]["workers"]}
    assert len(nodes) == 3
    assert facts["listening"] and set(facts["listening"]) <= {"127.0.0.1", "::ffff:127.0.0.1"}, facts["listening"]
    runs = by_trial(facts["records"])
    assert {entry["node_id"] for entry in facts["records"]} == nodes, "some node never ran a trial"
    first_three = sorted(facts["records"], key=lambda r: r["time"])[:3]
    assert {entry["node_id"] for entry in first_three} == nodes

    sweep_dir = Path(facts["sweep_dir"])
    manifest = read_manifest(sweep_dir)
    assert manifest.finished
    dirs = trial_dirs(sweep_dir / "trials")
    assert len(dirs) == len(runs) == 2 * (2 + 1)
    for study in ("symmetric-0/crossentropy", "symmetric-0.6/crossentropy"):
        assert len(study_trial_dirs(sweep_dir, study)) == 2 and len(study_trial_dirs(sweep_dir, study, "final")) == 1
    for trial in dirs:
        rows = results(trial)
        assert rows and config(trial)["study"] in {s.study for s in manifest.studies}
        assert rows[-1]["epoch"] == rows[-1]["training_iteration"] == len(rows)
        checkpoints = sorted(trial.glob("checkpoint_*/state.json"))
        assert checkpoints, f"{trial.name} kept no checkpoint"
        assert json.loads(checkpoints[-1].read_text())["epoch"] == rows[-1]["epoch"]
    table = analysis.load_sweep(sweep_dir)
    assert len(table) == sum(len(results(trial)) for trial in dirs)
    assert set(table["trial_id"]) == set(runs)


def uninterrupted(sweep: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The last row of the same trial trained in this process without Ray, on one thread as the trial was."""
    import torch

    from proselflc.config import build_run_config
    from proselflc.search_spaces import apply_params
    from proselflc.training import Engine
    from proselflc.tuning import build_sweep_config

    built = build_sweep_config(sweep)
    run_cfg = apply_params(built.study_config(sweep["noise"]["rates"][0], built.methods[0]), params)
    run_cfg["train"]["threads"] = 1
    threads = torch.get_num_threads()
    try:
        return Engine(build_run_config(run_cfg)).run()[-1]
    finally:
        torch.set_num_threads(threads)


def metrics(row: dict[str, Any]) -> dict[str, Any]:
    from proselflc.training import METRIC_KEYS

    return {k: row[k] for k in METRIC_KEYS if k != "samples_per_s"}


def test_a_removed_node_s_trial_is_retried_on_a_surviving_node_and_ends_identical(three_gpu_nodes):
    """Three nodes of one GPU, a 2-point grid of real digits trials: a worker node that runs a trial is removed
    (raylet and trial worker SIGKILLed) after the trial reported 3 epochs (first attempts pause there until a
    node is gone, so the kill lands mid-trial however fast the machine). Ray retries that trial on a surviving
    node from its last checkpoint (checkpoint_every: 1), the sweep ends with exactly its two trials, and the
    interrupted one ends with the metrics of an uninterrupted run."""
    facts, sweep = three_gpu_nodes[0]["node_loss"], three_gpu_nodes[1]

    removed = facts["removed"]
    assert removed and removed["epochs_before"] >= 3, f"the node was never removed while its trial ran: {removed}"
    assert removed["node_id"] not in facts["nodes"]["workers"]
    survivors = {facts["nodes"]["head"], *facts["nodes"]["workers"]}
    runs = by_trial(facts["records"])
    assert len(runs) == 2
    first, retry = runs[removed["trial_id"]]
    assert (first["node_id"], first["restored"]) == (removed["node_id"], False)
    assert retry["node_id"] in survivors and retry["restored"], runs

    sweep_dir = Path(facts["sweep_dir"])
    dirs = trial_dirs(sweep_dir / "trials")
    assert len(dirs) == 2 and sorted(config(d)["optim.lr"] for d in dirs) == [0.05, 0.1]
    for trial in dirs:
        epochs = [r["epoch"] for r in results(trial)]
        assert sorted(set(epochs)) == list(range(1, EPOCHS + 1)) and epochs.count(1) == 1, f"{trial.name}: {epochs}"
    (interrupted,) = [d for d in dirs if d.name.endswith(removed["trial_id"])]
    rows = results(interrupted)
    assert rows[-1]["iterations_since_restore"] < EPOCHS, "no restore was recorded"
    params = {k: v for k, v in config(interrupted).items() if k not in ("study", "phase")}
    assert metrics(rows[-1]) == metrics(uninterrupted(sweep, params))


def test_a_node_that_joins_mid_sweep_receives_trials(growing_cluster):
    """The sweep starts on one GPU worker; a second joins once the first trial runs (which waits at a barrier
    until a second trial runs beside it) and takes trials (max_concurrent_trials is set: its default is what
    the cluster holds when the sweep starts)."""
    facts = growing_cluster["node_join"]
    assert len(facts["nodes"]["workers"]) == 2  # the one it started on (scale_wait's) and the one that joined
    joined = facts["joined"]["node_id"]
    assert joined in facts["nodes"]["workers"]
    on_new = [r for r in facts["records"] if r["node_id"] == joined]
    assert on_new, f"no trial ran on the node that joined: {facts['records']}"
    assert all(r["time"] >= facts["joined"]["time"] - 1 for r in on_new)
    sweep_dir = Path(facts["sweep_dir"])
    assert len(study_trial_dirs(sweep_dir, "symmetric-0.2/crossentropy")) == 6
    assert len({r["trial_id"] for r in facts["records"]}) == 6


def test_ray_job_submit_runs_a_sweep_across_the_cluster_s_nodes(cluster_env, tmp_path):
    """`ray job submit -- proselflc tune sweep.yaml` against a 3-node cluster's dashboard: the job's driver runs
    on the head (no GPU), its real trials on both GPU workers, and the sweep finishes."""
    from test_job_submit import free_port

    workdir = tmp_path / "job"
    workdir.mkdir()
    sweep = {**TINY_SWEEP, "name": "job", "noise": {"kind": "symmetric", "rates": [0.2]},
             "methods": {"crossentropy": TINY_SWEEP["methods"]["crossentropy"]}, "num_samples": 2,
             "final_seeds": 0, "resources": {"cpu": 1, "gpu": 1}, "max_concurrent_trials": None,
             "storage_path": str(tmp_path / "results")}
    (workdir / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    head = {"num_cpus": 1, "num_gpus": 0, "include_dashboard": True, "dashboard_host": "127.0.0.1",
            "dashboard_port": free_port(), "dashboard_agent_listen_port": free_port()}
    spec_file = tmp_path / "serve.json"
    spec_file.write_text(json.dumps(spec_for(tmp_path, cluster_env, head=head, workers=[GPU_NODE, GPU_NODE])))
    holder = subprocess.Popen([sys.executable, str(DRIVER), "serve", str(spec_file)], env=cluster_env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        ready = json.loads(holder.stdout.readline() or "{}")
        assert ready.get("ready"), f"the cluster did not come up (exit {holder.poll()})"
        # No --working-dir: these nodes share one machine and one session dir, so a worker node's runtime-env
        # agent would delete the unpacked working dir (the driver's cwd) when its own trials no longer use it.
        command = [str(BIN / "ray"), "job", "submit", "--address", ready["dashboard"], "--", "proselflc", "tune",
                   str(workdir / "sweep.yaml")]
        submit = subprocess.run(command, env=cluster_env, capture_output=True, text=True, timeout=240, check=False)
        output = submit.stdout + submit.stderr
        assert submit.returncode == 0 and "succeeded" in output.lower(), output
        holder.stdin.write("stop\n")
        holder.stdin.flush()
        facts = json.loads(holder.stdout.read().strip().splitlines()[-1])
        assert holder.wait(timeout=60) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()

    assert set(facts["trial_actor_nodes"]) == set(ready["nodes"]["workers"]), facts
    sweep_dir = tmp_path / "results" / "job"
    manifest = json.loads((sweep_dir / "manifest.json").read_text())
    assert [(s["study"], s["status"]) for s in manifest["studies"]] == [("symmetric-0.2/crossentropy", "finished")]
    assert len(study_trial_dirs(sweep_dir, "symmetric-0.2/crossentropy")) == 2


@pytest.fixture(scope="module")
def growing_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Scenarios `scale_wait` then `node_join` on ONE cluster that grows: a head without GPU; scale_wait adds a
    GPU node (as the autoscaler would), and node_join starts from that one GPU worker and adds a second."""
    tmp_path = tmp_path_factory.mktemp("growing")
    with cluster_environment(tmp_path) as env:
        (Path(env["HOME"]) / "ray_bootstrap_config.yaml").write_text(yaml.safe_dump({
            "cluster_name": "test", "max_workers": 2, "head_node_type": "head",
            "available_node_types": {"head": {"resources": {"CPU": 1}, "node_config": {}, "max_workers": 0},
                                     "gpu_worker": {"resources": {"CPU": 1, "GPU": 1}, "node_config": {},
                                                    "min_workers": 0, "max_workers": 2}},
        }))
        scale = stand_in_sweep(tmp_path, "scale", noise={"kind": "symmetric", "rates": [0.2]}, num_samples=2,
                               final_seeds=0)
        join = stand_in_sweep(tmp_path, "join", noise={"kind": "symmetric", "rates": [0.2]}, num_samples=6,
                              final_seeds=0, max_concurrent_trials=2,
                              base={**TINY_SWEEP["base"], "train": {**TINY_SWEEP["base"]["train"], "epochs": 3}})
        spec = spec_for(tmp_path, env, join=GPU_NODE, scale_wait={"sweep": scale},
                        node_join={"epoch_s": 0.3, "sweep": join})
        yield drive("scale_wait,node_join", spec, env, tmp_path, timeout=480)


def test_a_sweep_waits_for_a_node_the_autoscaler_can_start(growing_cluster):
    """The head has no GPU and the cluster launcher's config (~/ray_bootstrap_config.yaml, as `ray up` leaves it
    on the head) has a GPU worker type: the sweep says it waits, asks the autoscaler for a node, and runs once
    one joins (the driver adds it, standing in for the autoscaler's node provider)."""
    facts = growing_cluster["scale_wait"]
    waiting = [line for line in facts["lines"] if "waiting" in line]
    assert waiting and "the autoscaler can start node type 'gpu_worker' (CPU 1, GPU 1, up to 2)" in waiting[0]
    assert any(line.startswith("a node that holds a trial joined after") for line in facts["lines"])
    assert {r["node_id"] for r in facts["records"]} == {facts["joined"]["node_id"]}
    assert len(study_trial_dirs(Path(facts["sweep_dir"]), "symmetric-0.2/crossentropy")) == 2


def test_cluster_utilisation_compares_one_node_with_three_sharing_its_gpus(cluster_env):
    """`python -m benchmarks cluster_utilisation --nodes 3` at its smallest: both layouts finish the same sweep."""
    argv = ["--quick", "--gpus", "3", "--nodes", "3", "--rates", "1", "--methods", "1", "--samples", "2",
            "--max-t", "2", "--epoch-s", "0.05", "--final-seeds", "1"]
    done = subprocess.run([sys.executable, "-m", "benchmarks", "cluster_utilisation", *argv], cwd=DRIVER.parents[1],
                          env=cluster_env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"\| 1 node +\| 1 +\| 3 +\|", done.stdout), done.stdout
    assert re.search(r"\| 3 nodes \(1\+1\+1 GPUs\) +\| 1 +\| 3 +\|", done.stdout), done.stdout
    assert re.search(r"3 nodes \(1\+1\+1 GPUs\) vs\. one node: GPU busy \d+% vs\. \d+% \(\d+\.\d\dx\)", done.stdout)
