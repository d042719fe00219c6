"""What a running sweep tells the user and the disk: a line per finished trial, a status line, the manifest.

`SweepMonitor` is a Ray Tune callback of the sweep's one Tuner. It keeps `manifest.json` in step with
the `StudySearcher`'s plan (`tuning.plan`: statuses, the selected configurations, which trial directories
belong to which study), prints one line per finished trial and, every `status_every_s`, one line saying how far the
sweep is and what share of the cluster its trials hold. It finds the sweep directory from the trials'
experiment path, so a sweep directory that was moved or copied is updated where it now lives.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.experiment import Trial

from proselflc import ray_compat, storage
from proselflc.selection_certainty import describe
from proselflc.sweep_contract import (
    LOST_DIR,
    ORPHANED_DIR,
    PHASE,
    STUDY,
    Manifest,
    SelectionCertainty,
    Status,
    read_certainty,
    read_manifest,
    write_manifest,
)
from proselflc.tuning import stall_watch
from proselflc.tuning.state_guard import StateSigner
from proselflc.tuning.studies import StudyScheduler, StudySearcher, experiment_dir

Log = Callable[[str], None]


def echo(message: str) -> None:
    """The default log: stdout, flushed (a module function, so Tuner state that holds it pickles)."""
    print(message, flush=True)


class SweepMonitor(tune.Callback):
    """Manifest, per-trial lines and a periodic status line for the sweep's one Tuner."""

    def __init__(
        self,
        searcher: StudySearcher,
        *,
        metric: str,
        max_t: int,
        scheduler: StudyScheduler | None = None,
        log: Log = echo,
        status_every_s: float = 30.0,
    ) -> None:
        self.searcher = searcher
        self.scheduler = scheduler
        self.metric, self.max_t, self.log = metric, max_t, log
        self.status_every_s = status_every_s
        self._written = -1
        self._last_status = 0.0
        self._sweep_dir: storage.Location | None = None
        self._manifest: Manifest | None = None  # read once per fit: only this monitor writes it meanwhile
        self._signer = StateSigner()
        self._write_failures: list[OSError] = []

    def setup(self, **info: Any) -> None:
        """Called by every fit, fresh or restored, after Ray restored the trials and before it starts any: the one
        moment a restored experiment is recovered (`StudyScheduler.recover`)."""
        self._written = -1
        self._manifest = None
        self._last_status = time.monotonic()
        self._write_failures = ray_compat.watch_storage_writes()
        if self.scheduler is not None:
            recovery = self.scheduler.recover()
            for name, iteration in recovery.replay.items():
                self.log(f"    {name}: its results were lost (a full disk?): run again from its start to "
                         f"iteration {iteration}, its directory kept in {LOST_DIR}/")
            for name in recovery.set_aside:
                self.log(f"    set aside {name}: started by a killed driver before Ray recorded it "
                         f"(its study dealt the trial again); kept in {ORPHANED_DIR}/")

    # -- Tune's hooks ------------------------------------------------------------------------------

    def on_step_begin(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        stall_watch.beat()

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        self._sync(trials)
        self._sign(trials)
        self._stop_on_failed_writes(trials)
        now = time.monotonic()
        if self.status_every_s > 0 and now - self._last_status >= self.status_every_s:
            self._last_status = now
            self.log(self.status_line(trials))

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        last = trial.last_result or {}
        epoch = last.get("epoch", 0)
        if last.get("diverged"):
            note = " diverged"
        elif epoch < self.max_t:
            note = " stopped early"
        else:
            note = ""
        value = last.get(self.metric, float("nan"))
        self.log(f"  {_label(trial)}: epoch {epoch}/{self.max_t} {self.metric} {value:.4f}{note}")

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.log(f"  {_label(trial)}: ERROR (see {trial.path}/error.txt)")

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self._sync(trials)
        self._sign(trials)
        self._stop_on_failed_writes(trials)

    def _sign(self, trials: list[Trial]) -> None:
        """Sign Ray's saved state as it changes, so `--resume` can verify it before Ray unpickles it."""
        trial = next(iter(trials), None)
        if trial is None or not Path(trial.local_experiment_path).is_dir():
            return
        experiment = experiment_dir(trial)
        try:
            self._signer.sign(experiment.parent, Path(trial.local_experiment_path), experiment)
        except OSError as exc:  # the last signed snapshot stays; --resume starts from it
            self._write_failures.append(exc)

    def _stop_on_failed_writes(self, trials: list[Trial]) -> None:
        """Stop the sweep at the first write to storage that failed (Ray's copy of the trials' results, or the
        signed state): going on would report a table built from empty files. The error names the sweep
        directory; the last signed state stays, and `--resume` re-runs the trials whose results were lost."""
        if not self._write_failures:
            return
        first = self._write_failures[0]
        where = next((experiment_dir(t).parent for t in trials), self._sweep_dir)
        raise OSError(
            first.errno,
            f"could not write the sweep's results into {str(where)!r} ({first.strerror or first}); the sweep is "
            "stopped rather than report results that were not saved",
            None if where is None else str(where),
        ) from first

    # -- what it does ------------------------------------------------------------------------------

    def _sync(self, trials: list[Trial]) -> None:
        """Print the searcher's notes and rewrite the manifest when the searcher's state moved."""
        for note in self.searcher.notes:
            self.log(f"    {note}")
        self.searcher.notes.clear()
        if self.searcher.revision == self._written:
            return
        sweep_dir = next((experiment_dir(t).parent for t in trials), self._sweep_dir)
        if sweep_dir is None:
            return
        if self._manifest is None or sweep_dir != self._sweep_dir:
            self._manifest = read_manifest(sweep_dir)
        self._sweep_dir = sweep_dir
        manifest = self._manifest
        for entry in manifest.studies:
            study = self.searcher.studies.get(entry.study)
            if study is None:
                continue
            study.to_entry(entry)
            if entry.best_trial is not None and entry.certainty is None:
                entry.certainty = read_certainty(sweep_dir, entry)
                self.log(f"    {entry.study}: {_describe(entry.certainty)}")
        write_manifest(sweep_dir, manifest)
        self._written = self.searcher.revision

    def status_line(self, trials: list[Trial]) -> str:
        """'status: 3/12 studies finished, 8 running; 6 trials running, holding 6/8 GPUs (75%), 6/16 CPUs (38%)'."""
        studies = self.searcher.studies.values()
        finished = sum(s.status == Status.FINISHED for s in studies)
        running = [t for t in trials if t.status == Trial.RUNNING]
        held: dict[str, float] = {"CPU": 0.0, "GPU": 0.0}
        for trial in running:
            for name, amount in trial.placement_group_factory.required_resources.items():
                if name in held:
                    held[name] += amount
        total = ray.cluster_resources() if ray.is_initialized() else {}
        shares = [
            f"{held[name]:g}/{total[name]:g} {name}s ({held[name] / total[name]:.0%})"
            for name in ("GPU", "CPU")
            if total.get(name)
        ]
        holding = f", holding {', '.join(shares)}" if shares else ""
        active = sum(s.active for s in studies)
        return (
            f"status: {finished}/{len(self.searcher.studies)} studies finished, {active} running; "
            f"{len(running)} trials running{holding}"
        )


def _describe(found: SelectionCertainty) -> str:
    """'selection P(beats runner-up) 0.93, n_eff 24 of 202' for the console."""
    return "selection " + describe(found.p_beats_runner_up, found.reason, found.n_val, found.n_eff)


def _label(trial: Trial) -> str:
    config = trial.config or {}
    phase = config.get(PHASE, "?")
    seed = f", seed {config['train.seed']}" if phase == "final" and "train.seed" in config else ""
    return f"{config.get(STUDY, '?')} {phase} {trial.trial_id}{seed}"
