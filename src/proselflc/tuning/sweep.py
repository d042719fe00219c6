"""Run a sweep: one Ray Tune study (ASHA + seeded Optuna TPE) per (noise rate, method), then final seeds.

Studies run one after another, each with up to `max_concurrent_trials` trials at once: a study's
TPE sampler learns from its own finished trials, and on a small cluster one study already keeps
every CPU/GPU busy except at its tail. Every state change is written to manifest.json, so `--resume`
skips finished studies, restores an interrupted Tuner with `Tuner.restore(..., resume_errored=True)`
and starts the final re-runs from the best configuration recorded in the manifest.
"""

from __future__ import annotations

import logging
import math
import shutil
import signal
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from proselflc import data as data_lib
from proselflc import search_spaces
from proselflc.config import ConfigError
from proselflc.io import atomic_write_text
from proselflc.sweep_layout import FINAL_DIR, FINAL_RUN, STUDY
from proselflc.trainables import SharedDataset, make_final_trainable, make_trainable
from proselflc.tuning.config import MethodSpec, SweepConfig, rate_dir, validate_studies
from proselflc.tuning.manifest import SWEEP_FILE, read_manifest, study_entry, write_manifest
from proselflc.tuning.preflight import alive_nodes, check_placeable, connect

Log = Callable[[str], None]

#: Where trial dirs unknown to a restored experiment are moved (hidden from the analysis, not deleted).
ORPHANED_DIR = ".orphaned"


def echo(message: str) -> None:
    """The default log: stdout, flushed (a module function, so Tuner state that holds it pickles)."""
    print(message, flush=True)


class SweepInterrupted(KeyboardInterrupt):
    """Ray Tune caught Ctrl+C (or SIGUSR1), saved the study's state and stopped; `--resume` continues it."""


@dataclass(frozen=True)
class Study:
    """One (noise rate, method) search: where it lives and what its trials start from."""

    key: str
    rate: float
    method: MethodSpec
    base: dict[str, Any]
    space: search_spaces.SearchSpace

    @property
    def rate_dir(self) -> str:
        return self.key.split("/")[0]


def plan_studies(sweep: SweepConfig, spaces: dict[str, search_spaces.SearchSpace]) -> list[Study]:
    """Studies in run order: noise rates outermost, so the first rates' results are complete first."""
    return [
        Study(
            key=f"{rate_dir(sweep.noise.kind, rate)}/{method.name}",
            rate=rate,
            method=method,
            base=sweep.study_config(rate, method),
            space=spaces[method.name],
        )
        for rate in sweep.noise.rates
        for method in sweep.methods
    ]


def final_seeds(sweep: SweepConfig) -> list[int]:
    """Fresh seeds for the re-runs: the ones after base.train.seed, which every search trial used."""
    first = sweep.base.train.seed + 1
    return list(range(first, first + sweep.final_seeds))


def new_manifest(sweep: SweepConfig, studies: Iterable[Study]) -> dict[str, Any]:
    return {
        "sweep": sweep.name,
        "metric": sweep.metric,
        "mode": sweep.mode,
        "max_t": sweep.max_t,
        "final_seeds": final_seeds(sweep),
        "studies": [
            {
                "study": s.key,
                "dataset": sweep.base.data.name,
                "model": sweep.base.model.name,
                "noise_kind": sweep.noise.kind,
                "noise_rate": s.rate,
                "method": s.method.name,
                "loss": s.method.loss,
                "search_dir": f"{s.key}/search",
                "final_dir": FINAL_DIR if sweep.final_seeds else None,
                "status": "pending",
                "best_params": None,
            }
            for s in studies
        ],
    }


def select_best(
    results: Iterable[tuple[dict[str, Any], dict[str, Any]]], metric: str, mode: str, max_t: int
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The (params, last result) to re-run: best last `metric` among trials that trained the full length.

    Trials ASHA stopped early, diverged or errored are judged only when no trial reached max_t, because
    a configuration is re-run full length and should have been seen to hold up that long.
    """
    usable = [
        (params, last)
        for params, last in results
        if last and not last.get("diverged") and isinstance(last.get(metric), int | float) and math.isfinite(last[metric])
    ]
    full = [r for r in usable if r[1].get("epoch", 0) >= max_t]
    pool = full or usable
    if not pool:
        return None
    sign = 1.0 if mode == "max" else -1.0
    return max(pool, key=lambda r: sign * r[1][metric])


class _Progress(tune.Callback):
    """One line per finished trial instead of Ray's periodic tables."""

    def __init__(self, study: str | None, metric: str, max_t: int, log: Log) -> None:
        """`study` None: each trial names its own (the final re-runs of every study share a Tuner)."""
        self.study, self.metric, self.max_t, self.log = study, metric, max_t, log

    def _label(self, trial: Any) -> str:
        if self.study is not None:
            return f"{self.study} {trial.trial_id}"
        run = (trial.config or {}).get(FINAL_RUN, {})
        return f"{run.get(STUDY, '?')} {trial.trial_id} (seed {run.get('train.seed', '?')})"

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        epoch = last.get("epoch", 0)
        note = " diverged" if last.get("diverged") else (" stopped by ASHA" if epoch < self.max_t else "")
        value = last.get(self.metric, float("nan"))
        self.log(f"  {self._label(trial)}: epoch {epoch}/{self.max_t} {self.metric} {value:.4f}{note}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.log(f"  {self._label(trial)}: ERROR (see {trial.path}/error.txt)")


def _keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _fit_noting_interrupts(tuner: tune.Tuner) -> tuple[tune.ResultGrid, bool]:
    """`tuner.fit()`, and whether Ctrl+C / SIGUSR1 stopped it.

    Tune marks every trial TERMINATED when interrupted, so the results alone cannot tell. Its
    handler, on a signal, puts back the SIGINT handler it found; finding ours back in place after
    fit() means Tune was interrupted (ours behaves as Python's default if ever called directly).
    """
    if threading.current_thread() is not threading.main_thread():
        return tuner.fit(), False
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, _keyboard_interrupt)
    try:
        grid = tuner.fit()
    finally:
        interrupted = signal.getsignal(signal.SIGINT) is _keyboard_interrupt
        signal.signal(signal.SIGINT, previous)
    return grid, interrupted


def _dirname(trial: Any) -> str:
    return f"{trial.trainable_name}_{trial.trial_id}"


class SweepRunner:
    """Runs (or resumes) a validated sweep on the connected Ray cluster."""

    def __init__(self, sweep: SweepConfig, *, log: Log = echo, verbose: int = 0) -> None:
        self.sweep = sweep
        self.log = log
        self.verbose = verbose
        self.spaces = validate_studies(sweep)
        self.studies = plan_studies(sweep, self.spaces)
        self.dir = sweep.sweep_dir
        self._shared: SharedDataset | None = None

    # -- directory ---------------------------------------------------------------------------------

    def prepare(self, resume: bool) -> dict[str, Any]:
        """Create the sweep dir (or check the one being resumed) and return its manifest."""
        resolved = self.sweep.resolved(self.spaces)
        sweep_file = self.dir / SWEEP_FILE
        if resume:
            if not sweep_file.is_file():
                raise ConfigError(f"--resume: {str(self.dir)!r} holds no sweep to resume (no {SWEEP_FILE})")
            stored = yaml.safe_load(sweep_file.read_text())
            changed = sorted(k for k in set(stored) | set(resolved) if stored.get(k) != resolved.get(k))
            if changed:
                raise ConfigError(
                    f"--resume: the sweep differs from {str(sweep_file)!r} in {', '.join(changed)}; resume with "
                    f"the same file and --set values (or `proselflc tune {sweep_file} --resume`), or change the name"
                )
            return read_manifest(self.dir)
        if sweep_file.exists():
            raise ConfigError(
                f"sweep directory {str(self.dir)!r} already exists: pass --resume to continue it, or change "
                "the sweep's name or storage_path"
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(sweep_file, yaml.safe_dump(resolved, sort_keys=False))
        manifest = new_manifest(self.sweep, self.studies)
        write_manifest(self.dir, manifest)
        return manifest

    # -- running -----------------------------------------------------------------------------------

    def run(self, resume: bool = False) -> Path:
        """Search every unfinished study, then re-run each one's best config with fresh seeds; returns the sweep dir.

        The re-runs of all studies share one Tuner after the searches: one trial actor start-up instead
        of one per study.
        """
        sweep = self.sweep
        dataset = data_lib.load(sweep.base.data)  # missing or malformed data files fail here, before Ray
        connect()
        check_placeable(sweep.resources.cpu, sweep.resources.gpu, alive_nodes())
        # Put into the object store once per sweep: every study's trials share it.
        self._shared = SharedDataset.put(dataset)
        manifest = self.prepare(resume)
        if not self.verbose:
            logging.getLogger("ray.tune").setLevel(logging.WARNING)
            optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created" once per study
        self.log(f"sweep {sweep.name}: {len(self.studies)} studies -> {self.dir}")
        for index, study in enumerate(self.studies, 1):
            entry = study_entry(manifest, study.key)
            if entry["status"] != "pending":
                self.log(f"[{index}/{len(self.studies)}] {study.key}: {entry['status']} earlier, skipped")
                continue
            self.log(f"[{index}/{len(self.studies)}] {study.key}: searching")
            grid = self._fit(self._search_tuner(study), study.key, self._num_samples(study))
            # Creation order breaks ties in select_best (the first best wins); the analysis reads it from here.
            entry["trial_order"] = [Path(result.path).name for result in grid if result.path]
            best = select_best(((r.config, r.metrics) for r in grid if r.error is None), sweep.metric,
                               sweep.mode, sweep.max_t)
            if best is None:
                # Every trial errored or diverged: record it and go on; one bad method must not sink a sweep.
                entry["status"] = "finished"
                self.log(f"    no trial reported a usable {sweep.metric} (all diverged or errored): "
                         f"no final runs; see {self.dir / study.key / 'search'}")
            else:
                entry["best_params"] = best[0]
                entry["status"] = "searched" if sweep.final_seeds else "finished"
                self.log(f"    best {sweep.metric} {best[1][sweep.metric]:.4f} with {best[0]}")
            write_manifest(self.dir, manifest)
        searched = [entry for entry in manifest["studies"] if entry["status"] == "searched"]
        if searched:
            seeds = final_seeds(sweep)
            self.log(f"final runs: the best config of {len(searched)} studies, seeds {seeds}")
            for entry in searched:
                entry["final_dir"] = FINAL_DIR  # (a sweep begun by an older version named one per study)
            self._fit(self._final_tuner(searched), "the final runs", len(searched) * len(seeds))
            for entry in searched:
                entry["status"] = "finished"
            write_manifest(self.dir, manifest)
        return self.dir

    def _fit(self, tuner: tune.Tuner, what: str, expected: int) -> tune.ResultGrid:
        """Fit, and turn Tune's graceful stop on Ctrl+C into SweepInterrupted.

        Tune returns normally when interrupted; the tell-tale is a trial left unfinished or, between
        trials, fewer trials than asked for (unless a time budget legitimately cut the search short).
        """
        grid, interrupted = _fit_noting_interrupts(tuner)
        self._set_aside_orphans(grid)
        unfinished = grid.num_terminated + grid.num_errors < len(grid)
        short = self.sweep.time_budget_s is None and len(grid) < expected
        if interrupted or unfinished or short:
            message = (
                f"sweep interrupted during {what}; its state is saved: continue with `proselflc tune "
                f"{self.dir / SWEEP_FILE} --resume`"
            )
            self.log(message)
            raise SweepInterrupted(message)
        return grid

    def _set_aside_orphans(self, grid: tune.ResultGrid) -> None:
        """Move trial dirs that the experiment does not know into `.orphaned/`.

        A driver killed between starting a trial and saving the experiment state leaves that trial's
        dir behind; the restored searcher proposes the same configuration again as a new trial, so the
        old dir would count twice. It is kept (not deleted) but out of the analysis' sight.
        """
        known = {Path(result.path).name for result in grid if result.path}
        if not known:
            return
        experiment = Path(next(iter(r.path for r in grid if r.path))).parent
        for trial_dir in sorted(experiment.glob(f"{'[!.]'}*")):
            if trial_dir.is_dir() and (trial_dir / "params.json").exists() and trial_dir.name not in known:
                target = experiment / ORPHANED_DIR / trial_dir.name
                target.parent.mkdir(exist_ok=True)
                shutil.move(str(trial_dir), target)
                self.log(f"    set aside {trial_dir.name}: started by a killed driver before Ray recorded it "
                         f"(its configuration was re-run); kept in {target.parent}")

    def _num_samples(self, study: Study) -> int:
        """Trials of a search: one when the space is empty (nothing to search, one fixed-config run)."""
        return self.sweep.num_samples if study.space else 1

    def _trainable(self, study: Study | None) -> Any:
        """A study's search trainable; for None, the final-run trainable that serves every study."""
        assert self._shared is not None, "run() puts the dataset into the object store first"
        res = self.sweep.resources
        options = {"checkpoint_every": self.sweep.checkpoint_every, "cpu": res.cpu, "gpu": res.gpu}
        if study is None:
            return make_final_trainable({s.key: s.base for s in self.studies}, self._shared, **options)
        return make_trainable(study.base, self._shared, **options)

    def _run_config(self, study: Study | None, name: str) -> tune.RunConfig:
        """Search experiments live in `<study>/search`; the shared final experiment in `FINAL_DIR`."""
        return tune.RunConfig(
            name=name,
            storage_path=str(self.dir if study is None else self.dir / study.rate_dir / study.method.name),
            failure_config=tune.FailureConfig(max_failures=self.sweep.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=[_Progress(None if study is None else study.key, self.sweep.metric, self.sweep.max_t, self.log)],
            verbose=self.verbose,
        )

    def _restored(self, path: Path, trainable: Any) -> tune.Tuner | None:
        if not tune.Tuner.can_restore(str(path)):
            if path.exists():
                # Interrupted before Ray saved any experiment state: nothing to restore, start it afresh.
                shutil.rmtree(path)
            return None
        self.log(f"    restoring the interrupted Tuner at {path}")
        return tune.Tuner.restore(str(path), trainable=trainable, resume_errored=True)

    def _search_tuner(self, study: Study) -> tune.Tuner:
        sweep = self.sweep
        trainable = self._trainable(study)  # with_parameters puts its arguments into the object store: once
        restored = self._restored(self.dir / study.key / "search", trainable)
        if restored is not None:
            return restored
        searcher = None
        if study.space:
            startup = sweep.searcher.n_startup_trials
            if startup is None:
                startup = max(2, sweep.num_samples // 3)
            sampler = optuna.samplers.TPESampler(seed=sweep.searcher.seed, n_startup_trials=startup)
            searcher = OptunaSearch(sampler=sampler)
        scheduler = ASHAScheduler(
            time_attr="epoch",
            max_t=sweep.max_t,
            grace_period=sweep.asha.grace_period,
            reduction_factor=sweep.asha.reduction_factor,
            brackets=sweep.asha.brackets,
        )
        return tune.Tuner(
            trainable,
            param_space=search_spaces.to_tune(study.space),
            tune_config=tune.TuneConfig(
                metric=sweep.metric,
                mode=sweep.mode,
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=self._num_samples(study),
                max_concurrent_trials=sweep.max_concurrent_trials,
                time_budget_s=sweep.time_budget_s,
                trial_dirname_creator=_dirname,
                reuse_actors=True,
            ),
            run_config=self._run_config(study, "search"),
        )

    def _final_tuner(self, entries: list[dict[str, Any]]) -> tune.Tuner:
        """One Tuner re-running every searched study's best config with each final seed, full length."""
        trainable = self._trainable(None)
        restored = self._restored(self.dir / FINAL_DIR, trainable)
        if restored is not None:
            return restored
        runs = [
            {STUDY: entry["study"], **entry["best_params"], "train.seed": seed}
            for entry in entries
            for seed in final_seeds(self.sweep)
        ]
        return tune.Tuner(
            trainable,
            param_space={FINAL_RUN: tune.grid_search(runs)},
            tune_config=tune.TuneConfig(
                metric=self.sweep.metric,
                mode=self.sweep.mode,
                max_concurrent_trials=self.sweep.max_concurrent_trials,
                trial_dirname_creator=_dirname,
                reuse_actors=True,
            ),
            run_config=self._run_config(None, FINAL_DIR),
        )


def run_sweep(sweep: SweepConfig, *, resume: bool = False, log: Log = echo, verbose: int = 0) -> Path:
    """Run or resume `sweep` on Ray (already initialised, RAY_ADDRESS, or a local start); returns the sweep dir."""
    return SweepRunner(sweep, log=log, verbose=verbose).run(resume=resume)
