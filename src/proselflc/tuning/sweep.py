"""Run a sweep: every (noise rate, method) study side by side in ONE Ray Tune Tuner, then nothing else.

Each study searches with its own seeded Optuna sampler and early-stops with its own ASHA
(`tuning.studies`), and its final re-runs (best configuration x final seeds, full length) start in
the same Tuner as soon as its search ends. One Tuner keeps a cluster busy: no study waits for
another's ASHA tail, and the trial actors start once for the whole sweep. `max_concurrent_studies: 1`
runs the studies one after another instead.

The Tuner's experiment is `<sweep>/trials/`. Ray Tune saves the searcher (every study's sampler and
progress) with it, so `--resume` restores the one Tuner with `Tuner.restore(..., resume_errored=True)`;
`manifest.json` mirrors the studies' progress for people and for the analysis.

The sweep directory may be a URI (`storage_path: s3://bucket/prefix`): Ray Tune writes the trials there and
proselflc writes its own files (sweep.yaml, manifest.json, .lock) there through `proselflc.storage`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from ray import tune

from proselflc import data as data_lib
from proselflc import ray_compat, safe_yaml, search_spaces, storage
from proselflc.errors import ConfigError
from proselflc.sweep_contract import (
    CURRENT_VERSION,
    EXPERIMENT_DIR,
    MANIFEST_FILE,
    ONE_TUNER_VERSION,
    PHASE,
    STUDY,
    SWEEP_FILE,
    Manifest,
    StudyEntry,
    StudyKey,
    lost_trials,
    read_manifest,
    trial_dirname,
    write_manifest,
)
from proselflc.trainables import SharedDataset, TrialFunction, make_trainable, train_engine
from proselflc.training.process_settings import logger_levels
from proselflc.tuning import search, state_guard
from proselflc.tuning.config import MethodSpec, SweepConfig, build_sweep_config
from proselflc.tuning.lock import SweepLock
from proselflc.tuning.loggers import build_callbacks
from proselflc.tuning.monitor import Log, SweepMonitor, echo
from proselflc.tuning.preflight import connect, trial_slots, wait_for_placeable
from proselflc.tuning.stall_watch import StallWatch
from proselflc.tuning.studies import StudyPlan, StudyScheduler, StudySearcher


class SweepInterrupted(KeyboardInterrupt):
    """Ray Tune caught Ctrl+C (or SIGUSR1), saved the sweep's state and stopped; `--resume` continues it."""


def study_key(sweep: SweepConfig, rate: float, method: str, label_set: str | None = None) -> str:
    """The contract's name of the study (rate, method) of `sweep`, e.g. 'symmetric-0.4/proselflc'
    (with a CIFAR-N label set, e.g. 'human_aggre-0/proselflc')."""
    kind = sweep.noise.kind if label_set is None else f"{sweep.noise.kind}_{label_set}"
    return str(StudyKey(kind=kind, rate=rate, method=method))


def studies(sweep: SweepConfig) -> list[tuple[str, float, MethodSpec, str | None]]:
    """(study key, noise rate, method, label set) of every study, label sets then noise rates outermost:
    the sweep's run order."""
    return [
        (study_key(sweep, rate, method.name, label_set), rate, method, label_set)
        for _, label_set in sweep.noise.settings()
        for rate in sweep.noise.rates
        for method in sweep.methods
    ]


def check_label_files(sweep: SweepConfig, labels: np.ndarray, num_classes: int) -> None:
    """A human-noise label file that does not fit the dataset (or lacks a label set) fails here, before Ray."""
    if sweep.base.noise.file is None:
        return
    from proselflc.cifar_n import human_labels

    for _, label_set in sweep.noise.settings():
        human_labels(sweep.base.noise.file, label_set or sweep.base.noise.label_set, labels, num_classes)


def final_seeds(sweep: SweepConfig) -> list[int]:
    """Fresh seeds for the re-runs: the ones after base.train.seed, which every search trial used."""
    first = sweep.base.train.seed + 1
    return list(range(first, first + sweep.final_seeds))


def new_manifest(sweep: SweepConfig) -> Manifest:
    """Every study pending, in run order (noise rates outermost, as the sweep file lists them)."""
    return Manifest(
        version=CURRENT_VERSION,
        sweep=sweep.name,
        metric=sweep.metric,
        mode=sweep.mode,
        max_t=sweep.max_t,
        final_seeds=final_seeds(sweep),
        selection_epoch=sweep.selection.epoch,
        studies=[
            StudyEntry(
                study=key,
                dataset=sweep.base.data.name,
                model=sweep.base.model.name,
                noise_kind=StudyKey.parse(key).kind,
                noise_rate=rate,
                method=method.name,
                loss=method.loss,
                search_dir=EXPERIMENT_DIR,
                final_dir=EXPERIMENT_DIR if sweep.final_seeds else None,
            )
            for key, rate, method, _ in studies(sweep)
        ],
    )


def _local_root(directory: storage.Location) -> Path:
    """What relative paths in a stored sweep.yaml are relative to (its base is inlined there, so a URI's
    directory needs none)."""
    return directory.local or Path(".")


def _dirname(trial: Any) -> str:
    """`<kind>-<rate>_<method>_<phase>_<trial id>`: a trial directory says which study it serves."""
    config = trial.config or {}
    return trial_dirname(str(config.get(STUDY, "unknown")), str(config.get(PHASE, "trial")), trial.trial_id)


class SweepRunner:
    """Runs (or resumes) a validated sweep on the connected Ray cluster.

    `trial_function` replaces the Engine inside each trial; only the cluster-utilisation benchmark
    sets it (to time the platform around a stand-in), everything else trains for real.
    """

    def __init__(
        self,
        sweep: SweepConfig,
        *,
        log: Log = echo,
        verbose: int = 0,
        status_every_s: float = 30.0,
        trial_function: TrialFunction = train_engine,
        trust_state: bool = False,
    ) -> None:
        self.sweep = sweep
        self.trust_state = trust_state
        self.log = log
        self.verbose = verbose
        self.status_every_s = status_every_s
        self.trial_function = trial_function
        self.spaces = sweep.spaces  # validated once, when the sweep was loaded
        self.bases = {key: sweep.study_config(rate, method, ls) for key, rate, method, ls in studies(sweep)}
        self.dir: storage.Location = storage.as_dir(sweep.sweep_dir)

    # -- directory ---------------------------------------------------------------------------------

    def prepare(self, resume: bool) -> Manifest:
        """Create the sweep dir (or check the one being resumed) and return its manifest."""
        resolved = self.sweep.resolved(self.spaces)
        sweep_file = self.dir / SWEEP_FILE
        if resume:
            if not sweep_file.is_file():
                raise ConfigError(f"--resume: {str(self.dir)!r} holds no sweep to resume (no {SWEEP_FILE})")
            # The stored sweep, validated by this version (an earlier form is refused, naming `proselflc migrate`).
            stored_sweep = build_sweep_config(
                storage.read_mapping(sweep_file), source=str(sweep_file), root=_local_root(sweep_file.parent)
            )
            stored = stored_sweep.resolved(stored_sweep.spaces)
            # Where the sweep lives is not part of it: a copied or moved sweep directory resumes in place.
            moved = ("storage_path", "name")
            changed = sorted(
                k for k in set(stored) | set(resolved) if k not in moved and stored.get(k) != resolved.get(k)
            )
            if changed:
                raise ConfigError(
                    f"--resume: the sweep differs from {str(sweep_file)!r} in {', '.join(changed)}; resume with "
                    f"the same file and --set values (or `proselflc tune {sweep_file} --resume`), or change the name"
                )
            if not (self.dir / MANIFEST_FILE).is_file() and (self.dir / EXPERIMENT_DIR).is_dir():
                # A copy made without its manifest resumes in place: every study starts as unfinished here, and
                # the restored searcher writes the studies' real progress back at the first step.
                self.log(f"    {MANIFEST_FILE} is missing: rebuilt from the sweep's restored state")
                write_manifest(self.dir, new_manifest(self.sweep))
            manifest = read_manifest(self.dir)
            if manifest.version < ONE_TUNER_VERSION:
                raise ConfigError(
                    f"--resume: {str(self.dir)!r} was written by an earlier proselflc (one Tuner per study); "
                    "finish it with that version, or start it anew under another name (its results still load "
                    "in `proselflc report`)"
                )
            if manifest.version < CURRENT_VERSION:
                raise ConfigError(
                    f"--resume: {str(self.dir)!r} holds Ray's state in the form an earlier proselflc saved "
                    f"({MANIFEST_FILE} version {manifest.version}); run `proselflc migrate {self.dir}` once, which "
                    "verifies it, rewrites it in this version's form and signs it again, then resume"
                )
            return manifest
        if sweep_file.exists():
            raise ConfigError(
                f"sweep directory {str(self.dir)!r} already exists: pass --resume to continue it, or change "
                "the sweep's name or storage_path"
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        sweep_file.write_text(safe_yaml.dump_text(resolved))
        manifest = new_manifest(self.sweep)
        write_manifest(self.dir, manifest)
        return manifest

    # -- running -----------------------------------------------------------------------------------

    def run(self, resume: bool = False) -> storage.Location:
        """Search every study and re-run each one's best config with fresh seeds, all in one Tuner."""
        sweep = self.sweep
        self.dir.check_reachable()  # an unreachable store fails here, not in the trials
        dataset = data_lib.load(sweep.base.data)  # missing or malformed data files fail here, before Ray
        check_label_files(sweep, dataset.limit(sweep.base.data.limit).train_labels, dataset.num_classes)
        connect()
        # Refused at once if no node can hold a trial, unless the cluster can scale: then it waits for a node.
        nodes = wait_for_placeable(sweep.resources.cpu, sweep.resources.gpu, log=self.log)
        # Put into the object store once per sweep: every study's trials share it.
        shared = SharedDataset.put(dataset)
        # Quieter Ray Tune and Optuna ("A new study created" once per study) for this sweep only.
        quiet = {} if self.verbose else {"ray.tune": logging.WARNING, "optuna": logging.WARNING}
        with SweepLock(self.dir), logger_levels(quiet):  # one driver per sweep directory, first write to last
            self._run_locked(shared, nodes, resume)
        return self.dir

    def _run_locked(self, shared: SharedDataset, nodes: list[dict[str, float]], resume: bool) -> None:
        sweep = self.sweep
        manifest = self.prepare(resume)
        # A study finished on a disk that filled up is not done: the restored Tuner re-runs its lost trials.
        lost = {entry.study: lost_trials(self.dir, entry) for entry in manifest.studies if entry.done}
        for study, names in lost.items():
            if names:
                self.log(f"    {study}: {len(names)} trials' results are missing or empty (a full disk?): run again")
        pending = [entry for entry in manifest.studies if not entry.done or lost.get(entry.study)]
        self.log(f"sweep {sweep.name}: {len(manifest.studies)} studies ({len(pending)} to do) -> {self.dir}")
        if pending:
            slots = sweep.max_concurrent_trials or trial_slots(sweep.resources.cpu, sweep.resources.gpu, nodes)
            stacks_dir = self.dir.local  # on object storage, the stacks go to the temporary directory
            doing = "restoring the interrupted sweep's Tuner" if resume else "starting the sweep's Tuner"
            with StallWatch(self.log, stacks_dir=stacks_dir, doing=doing):
                tuner = self._tuner(shared, slots)
                self._fit(tuner)

    def _fit(self, tuner: tune.Tuner) -> None:
        """Fit, and turn Tune's graceful stop on Ctrl+C into SweepInterrupted.

        Tune returns normally when interrupted; the tell-tale (besides its signal handler) is a study
        the manifest does not have as finished.
        """
        _, interrupted = ray_compat.fit_noting_interrupts(tuner)
        manifest = read_manifest(self.dir)
        lost = [name for entry in manifest.studies if entry.done for name in lost_trials(self.dir, entry)]
        if lost and not interrupted:
            raise ConfigError(
                f"the results of {len(lost)} trials are missing or empty in {str(self.dir)!r} ({', '.join(lost)}): "
                "the storage failed to keep them. Free space (or fix the storage), then continue with "
                f"`proselflc tune {self.dir / SWEEP_FILE} --resume`, which runs them again"
            )
        if interrupted or not manifest.finished:
            message = (
                "sweep interrupted; its state is saved: continue with "
                f"`proselflc tune {self.dir / SWEEP_FILE} --resume`"
            )
            self.log(message)
            raise SweepInterrupted(message)

    def plans(self) -> list[StudyPlan]:
        """Each study's Optuna distributions (from its method's validated space) and trial count."""
        return [
            StudyPlan(
                key,
                search_spaces.to_optuna(self.spaces[method.name]),
                num_samples=search.study_samples(self.sweep.searcher, self.spaces[method.name]),
            )
            for key, _, method, _ in studies(self.sweep)
        ]

    def searcher(self) -> StudySearcher:
        sweep = self.sweep
        return StudySearcher(
            self.plans(),
            metric=sweep.metric,
            mode=sweep.mode,
            max_t=sweep.max_t,
            num_samples=sweep.num_samples,
            final_seeds=final_seeds(sweep),
            sampler=search.sampler_factory(sweep.searcher, sweep.n_startup_trials),
            per_study_concurrency=sweep.study_concurrency,
            max_concurrent_studies=sweep.max_concurrent_studies,
            time_budget_s=sweep.time_budget_s,
            # The whole noisy training set, validation split included, as the papers' final numbers use.
            final_params={"data.val_fraction": 0.0} if sweep.final_include_val else None,
        )

    def scheduler(self, searcher: StudySearcher | None = None) -> StudyScheduler:
        """The per-study schedulers; given the sweep's searcher, their state is saved and restored with it."""
        sweep = self.sweep
        return StudyScheduler(
            metric=sweep.metric, mode=sweep.mode, name=sweep.scheduler_spec.name,
            make=search.scheduler_factory(sweep.scheduler_spec, sweep.metric, sweep.mode, sweep.max_t),
            searcher=searcher,
        )

    def _tuner(self, shared: SharedDataset, slots: int) -> tune.Tuner:
        """The sweep's one Tuner: restored when an earlier run saved its state, else a new one."""
        sweep = self.sweep
        res = sweep.resources
        trainable = make_trainable(
            self.bases, shared, checkpoint_every=sweep.checkpoint_every, cpu=res.cpu, gpu=res.gpu,
            run=self.trial_function,
        )
        path = self.dir / EXPERIMENT_DIR
        restorable = tune.Tuner.can_restore(str(path))
        # Work a fresh start would lose: then the sweep is restored (from the signed snapshot where Ray's own
        # state is missing, e.g. a copy made without its .pkl files) or refused, never started over.
        kept = state_guard.has_snapshot(self.dir) or state_guard.has_results(path)
        if (restorable and self.trust_state) or kept:
            if not self.trust_state:
                for note in state_guard.verify(self.dir, path):  # also puts back state files that are missing
                    self.log(f"    {note}")
                restorable = tune.Tuner.can_restore(str(path))
            if not restorable:
                raise ConfigError(
                    f"--resume: {str(path / 'tuner.pkl')!r} is missing and no signed snapshot holds it, so Ray "
                    f"cannot restore the sweep; its trials are kept. Copy the sweep directory again with its "
                    f"state files (*.pkl, {state_guard.SNAPSHOT}/), or move {str(path)!r} away to start the "
                    "search anew"
                )
            self.log(f"restoring the interrupted sweep's Tuner at {path}")
            return tune.Tuner.restore(str(path), trainable=trainable, resume_errored=True)
        if path.exists():
            # Interrupted before Ray saved any state, or before any trial reported and its state was signed:
            # no result to lose, so start it afresh rather than load unverified pickles.
            path.remove_tree()
        searcher = self.searcher()
        scheduler = self.scheduler(searcher)
        monitor = SweepMonitor(
            searcher, metric=sweep.metric, max_t=sweep.max_t, scheduler=scheduler, log=self.log,
            status_every_s=self.status_every_s,
        )
        return tune.Tuner(
            trainable,
            param_space={},
            tune_config=tune.TuneConfig(
                metric=sweep.metric,
                mode=sweep.mode,
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=-1,  # the searcher says when the sweep is done
                max_concurrent_trials=slots,
                trial_dirname_creator=_dirname,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=EXPERIMENT_DIR,
                storage_path=str(self.dir),
                failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                # TensorBoard HParams for the whole sweep, then the sweep file's trackers (e.g. MLflow).
                callbacks=[monitor, *build_callbacks(sweep.loggers, sweep=sweep.name)],
                verbose=self.verbose,
            ),
        )


def run_sweep(
    sweep: SweepConfig,
    *,
    resume: bool = False,
    log: Log = echo,
    verbose: int = 0,
    status_every_s: float = 30.0,
    trial_function: TrialFunction = train_engine,
    trust_state: bool = False,
) -> Path | storage.Location:
    """Run or resume `sweep` on Ray (already initialised, RAY_ADDRESS, or a local start); returns the sweep dir:
    a Path when it is local (what pandas and the analysis take), else its Location.

    `trust_state` resumes without verifying Ray's pickled state against this user's signatures.
    """
    runner = SweepRunner(
        sweep, log=log, verbose=verbose, status_every_s=status_every_s, trial_function=trial_function,
        trust_state=trust_state,
    )
    where = runner.run(resume=resume)
    return where.local or where
