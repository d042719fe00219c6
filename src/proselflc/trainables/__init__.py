"""The Engine as a Ray Tune function trainable: report every epoch, checkpoint, restore exactly.

A trial's config names its study and phase and holds its dotted RunConfig params (what Ray writes to
params.json); every study's base run config and the dataset arrive through `tune.with_parameters`, so
a dataset is put into the object store once per sweep and shared by every trial of every study.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune

from proselflc import storage
from proselflc.config import build_run_config
from proselflc.data.base import Dataset
from proselflc.ray_compat import trial_storage_dir
from proselflc.search_spaces import apply_params
from proselflc.sweep_contract import PHASE, STUDY, VAL_CORRECT_FILE
from proselflc.training import Engine
from proselflc.training.process_settings import logger_levels, torch_threads

__all__ = [
    "CHECKPOINT_FILE",
    "SharedDataset",
    "TrialFunction",
    "keep_val_correct",
    "make_trainable",
    "train_engine",
    "train_study_trial",
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

    Checkpoints where the Engine's `checkpoint_due` says (every `checkpoint_every` epochs, at the last
    epoch and on divergence); a trial restored by Ray (retry, resume) continues from
    `tune.get_checkpoint()` exactly, RNG states included. A diverged run (NaN/inf loss) reports its row
    with diverged=True and ends the trial. Torch's threads (`threads` unless the config sets
    train.threads) and the quieter ray.train logger hold for the trial only.
    """
    cfg = build_run_config(apply_params(base, config), source="trial config")
    # One "checkpoint created" line per epoch is noise.
    with logger_levels({"ray.train": logging.WARNING}), torch_threads(threads):
        engine = Engine(cfg, dataset=shared.get())
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                engine.load_checkpoint(Path(directory) / CHECKPOINT_FILE)
            if engine.history:
                # Ray registers a checkpoint before it logs the row reported with it: a worker killed in between
                # leaves that epoch out of result.json. Report it again (the analysis keeps one row per epoch).
                tune.report(engine.history[-1])
        for row in engine.epochs():
            if row["epoch"] == cfg.train.epochs and not row.get("diverged"):
                keep_val_correct(engine)
            if not engine.checkpoint_due(row["epoch"], every=checkpoint_every):
                tune.report(row)
                continue
            with tempfile.TemporaryDirectory(prefix="proselflc-ckpt-") as directory:
                engine.save_checkpoint(Path(directory) / CHECKPOINT_FILE)
                tune.report(row, checkpoint=tune.Checkpoint.from_directory(directory))


def keep_val_correct(engine: Engine) -> None:
    """Write the last epoch's per-example validation correctness into the trial's directory on the sweep's
    storage (local or a URI), before the epoch is reported: the selection's certainty reads it. A failed
    write is logged, not fatal: the trial's result stands, its certainty becomes n/a."""
    try:
        fs, path = trial_storage_dir()
        trial_dir = storage.on_filesystem(fs, path)
        trial_dir.mkdir(parents=True, exist_ok=True)
        (trial_dir / VAL_CORRECT_FILE).write_text(engine.val_correct_text())
    except OSError as exc:
        logging.getLogger(__name__).warning("could not keep %s for the selection's certainty: %s", VAL_CORRECT_FILE, exc)


#: What runs one trial: (its dotted params, base run config dict, shared dataset, checkpoint_every, threads).
TrialFunction = Callable[..., None]


def train_study_trial(
    config: dict[str, Any],
    *,
    bases: dict[str, dict[str, Any]],
    shared: SharedDataset,
    checkpoint_every: int = 0,
    threads: int | None = None,
    run: TrialFunction = train_engine,
) -> None:
    """A trial of any study of the sweep: `config[STUDY]` names the study whose base config it trains.

    The rest of `config` (minus its phase) is the trial's dotted params, applied onto that base: for a
    search trial the sampled values, for a final re-run the selected values and its `train.seed`.
    """
    params = {k: v for k, v in config.items() if k not in (STUDY, PHASE)}
    study = config[STUDY]
    run(params, base=bases[study], shared=shared, checkpoint_every=checkpoint_every, threads=threads)


def make_trainable(
    bases: dict[str, dict[str, Any]],
    shared: SharedDataset,
    *,
    checkpoint_every: int = 0,
    cpu: float = 1.0,
    gpu: float = 0.0,
    run: TrialFunction = train_engine,
) -> Callable[[dict[str, Any]], None]:
    """The sweep's one trainable: `train_study_trial` bound to every study's base config ({study: base})
    and the shared dataset, reserving cpu/gpu per trial.

    Torch uses as many intra-op threads as the trial reserves CPUs, so packed trials do not
    oversubscribe. `run` replaces the Engine only in benchmarks that time the platform around it.
    """
    trainable = tune.with_parameters(
        train_study_trial,
        bases=bases,
        shared=shared,
        checkpoint_every=checkpoint_every,
        threads=max(1, int(cpu)),
        run=run,
    )
    return tune.with_resources(trainable, trial_resources(cpu, gpu))


def trial_resources(cpu: float, gpu: float) -> dict[str, float]:
    """Ray's resource request of one trial; Ray sets CUDA_VISIBLE_DEVICES to the GPU(s) it assigns."""
    return {"cpu": cpu, "gpu": gpu}
