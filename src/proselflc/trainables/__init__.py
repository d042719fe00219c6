"""The Engine as a Ray Tune function trainable: report every epoch, checkpoint, restore exactly.

A trial's config is the flat dict of sampled hyperparameters (dotted RunConfig paths, what Ray writes
to params.json); the study's base run config and the dataset arrive through `tune.with_parameters`,
so a dataset is put into the object store once per sweep and shared by every trial of every study.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from proselflc.config import build_run_config
from proselflc.data.base import Dataset
from proselflc.search_spaces import apply_params
from proselflc.sweep_layout import FINAL_RUN, STUDY
from proselflc.training import Engine

__all__ = [
    "CHECKPOINT_FILE",
    "SharedDataset",
    "make_final_trainable",
    "make_trainable",
    "train_engine",
    "train_final_run",
    "trial_resources",
]

#: File name of the Engine state inside a Ray Tune checkpoint directory.
CHECKPOINT_FILE = "engine.pt"


@dataclass(frozen=True)
class SharedDataset:
    """An object-store reference to a Dataset.

    `tune.with_parameters` would `ray.put` its arguments once per Tuner; wrapping a ref that the driver
    put once lets every study's Tuner share one copy (a ref nested in an object is passed in-band).
    """

    ref: ray.ObjectRef

    @classmethod
    def put(cls, dataset: Dataset) -> SharedDataset:
        return cls(ray.put(dataset))

    def get(self) -> Dataset:
        """The dataset from the object store (its numpy arrays are read-only views; the Engine copies labels)."""
        return ray.get(self.ref)


def train_engine(
    config: dict[str, Any],
    *,
    base: dict[str, Any],
    shared: SharedDataset,
    checkpoint_every: int = 0,
    threads: int | None = None,
) -> None:
    """One trial: `config`'s dotted keys applied onto `base`, trained by the Engine, reported every epoch.

    Checkpoints every `checkpoint_every` epochs, at the last epoch and on divergence; a trial restored
    by Ray (retry, resume) continues from `tune.get_checkpoint()` exactly, RNG states included. A
    diverged run (NaN/inf loss) reports its row with diverged=True and ends the trial.
    """
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # one "checkpoint created" line per epoch is noise
    cfg = build_run_config(apply_params(base, config), source="trial config")
    if threads is not None and cfg.train.threads is None:
        torch.set_num_threads(threads)
    engine = Engine(cfg, dataset=shared.get())
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            engine.load_checkpoint(Path(directory) / CHECKPOINT_FILE)
    last = cfg.train.epochs
    for row in engine.epochs():
        epoch = row["epoch"]
        due = row["diverged"] or epoch == last or (checkpoint_every > 0 and epoch % checkpoint_every == 0)
        if not due:
            tune.report(row)
        else:
            with tempfile.TemporaryDirectory(prefix="proselflc-ckpt-") as directory:
                engine.save_checkpoint(Path(directory) / CHECKPOINT_FILE)
                tune.report(row, checkpoint=tune.Checkpoint.from_directory(directory))
        if row["diverged"]:
            return


def make_trainable(
    base: dict[str, Any], shared: SharedDataset, *, checkpoint_every: int = 0, cpu: float = 1.0, gpu: float = 0.0
) -> Callable[[dict[str, Any]], None]:
    """`train_engine` bound to a study's base config and the shared dataset, reserving cpu/gpu per trial.

    Torch uses as many intra-op threads as the trial reserves CPUs, so packed trials do not oversubscribe.
    """
    return _bound(train_engine, shared, checkpoint_every, cpu, gpu, base=base)


def train_final_run(
    config: dict[str, Any],
    *,
    bases: dict[str, dict[str, Any]],
    shared: SharedDataset,
    checkpoint_every: int = 0,
    threads: int | None = None,
) -> None:
    """A final re-run of any study: `config[FINAL_RUN]` names the study (whose base it trains) and its params."""
    run = dict(config[FINAL_RUN])
    study = run.pop(STUDY)
    train_engine(run, base=bases[study], shared=shared, checkpoint_every=checkpoint_every, threads=threads)


def make_final_trainable(
    bases: dict[str, dict[str, Any]],
    shared: SharedDataset,
    *,
    checkpoint_every: int = 0,
    cpu: float = 1.0,
    gpu: float = 0.0,
) -> Callable[[dict[str, Any]], None]:
    """`train_final_run` bound to every study's base config ({study key: base}): one Tuner for all re-runs."""
    return _bound(train_final_run, shared, checkpoint_every, cpu, gpu, bases=bases)


def _bound(
    function: Callable[..., None], shared: SharedDataset, checkpoint_every: int, cpu: float, gpu: float, **study: Any
) -> Callable[[dict[str, Any]], None]:
    """`function` with the dataset, the study config(s) and its threads bound, reserving cpu/gpu per trial."""
    trainable = tune.with_parameters(
        function, shared=shared, checkpoint_every=checkpoint_every, threads=max(1, int(cpu)), **study
    )
    return tune.with_resources(trainable, trial_resources(cpu, gpu))


def trial_resources(cpu: float, gpu: float) -> dict[str, float]:
    """Ray's resource request of one trial; Ray sets CUDA_VISIBLE_DEVICES to the GPU(s) it assigns."""
    return {"cpu": cpu, "gpu": gpu}
