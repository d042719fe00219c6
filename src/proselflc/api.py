"""The Python API, the CLI's twin for notebooks and scripts: start or open a sweep, read it, train one run.

    import proselflc
    sweep = proselflc.tune("quickstart", num_samples=2, base={"train": {"epochs": 20}})
    sweep.table()             # the paper table: rows noise rates, columns methods
    sweep.memorisation()      # noisy_fit / noisy_corrected of the selected configurations
    sweep = proselflc.load("results/quickstart")   # a sweep run earlier (a directory or a URI)
    history = proselflc.train("digits", loss={"name": "proselflc"})

Thin over the library: `tuning.load_sweep` / `build_sweep_config` and `run_sweep` to run, `analysis.*` to read,
`training.train` for one run. Keyword overrides are nested like the YAML (`base={"train": {"epochs": 5}}`);
dotted `sets=["base.train.epochs=5"]` are the CLI's `--set`. Heavy libraries are imported inside the functions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from proselflc import dotted
from proselflc.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from proselflc.analysis.report import Report
    from proselflc.analysis.tables import ResultsTable
    from proselflc.config import RunConfig
    from proselflc.tuning.config import SweepConfig

__all__ = ["History", "Sweep", "load", "train", "tune"]


def _dotted(overrides: Mapping[str, Any]) -> list[str]:
    """Nested keyword overrides as the CLI's `key=value` strings (values as JSON, which YAML reads)."""
    return [f"{key}={json.dumps(value, default=str)}" for key, value in dotted.flatten(overrides).items()]


class Sweep:
    """A sweep directory (local path or URI), read through the analysis: what `proselflc report` shows.

    Every method re-reads the directory, so a sweep that is still running shows its latest trials.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"Sweep({str(self.path)!r})"

    def _repr_markdown_(self) -> str:
        from proselflc.analysis import summary

        return summary(self.path)

    def trials(self) -> pd.DataFrame:
        """The tidy frame: one row per (study, phase, trial, epoch), as `analysis.load_sweep` reads it."""
        from proselflc.analysis import load_sweep

        return load_sweep(self.path)

    def best_configs(
        self, select_by: str | None = None, mode: Literal["max", "min"] | None = None,
        scope: Literal["last", "all"] = "last",
    ) -> pd.DataFrame:
        """Per study: the configuration selected on the noisy validation split (default: the sweep's metric), the
        oracle beside it, and its final re-runs."""
        from proselflc.analysis import best_configs
        from proselflc.analysis.select import selection_mode

        df = self.trials()
        select_by = select_by or df.attrs.get("metric", "val_accuracy")
        return best_configs(df, select_by=select_by, mode=selection_mode(df, select_by, mode), scope=scope)

    def table(self, source: Literal["auto", "final", "selected", "selected_end", "oracle"] = "auto") -> ResultsTable:
        """The paper table (rows noise rates, columns methods) of clean test accuracy; see `results_table`."""
        from proselflc.analysis import results_table

        return results_table(self.best_configs(), source=source)

    def memorisation(self) -> pd.DataFrame:
        """'noisy_fit / noisy_corrected' (%) of each selected configuration; see `memorisation_table`."""
        from proselflc.analysis import memorisation_table

        return memorisation_table(self.best_configs())

    def report(self, out: str | Path | None = None, formats: tuple[str, ...] | None = None,
               figures: bool = True) -> Report:
        """Write the report (Markdown, CSV, LaTeX, Excel, HTML, figures) to `out` (default <sweep>/report)."""
        from proselflc.analysis import FORMATS, write_report

        return write_report(self.path, out, formats=formats or FORMATS, figures=figures)


def load(path: str | Path) -> Sweep:
    """Open the sweep at `path` (a directory `proselflc tune` wrote, or a URI such as s3://bucket/prefix/name)."""
    from proselflc import storage
    from proselflc.sweep_contract import MANIFEST_FILE

    if not (isinstance(path, str) and storage.is_uri(path)) and not (Path(path) / MANIFEST_FILE).is_file():
        raise ConfigError(f"{str(path)!r} is not a sweep directory (no {MANIFEST_FILE}); run proselflc.tune first")
    return Sweep(path)


def _sweep_config(sweep: str | Path | Mapping[str, Any] | SweepConfig, sets: list[str]) -> SweepConfig:
    from proselflc.config import deep_merge, parse_overrides
    from proselflc.tuning.config import SweepConfig, build_sweep_config, load_sweep

    if isinstance(sweep, SweepConfig):
        if sets:
            raise ConfigError("overrides apply to a sweep file or dict, not to an already validated SweepConfig")
        return sweep
    if isinstance(sweep, Mapping):
        updates = parse_overrides(sets)
        base_updates = updates.pop("base", None)
        raw = deep_merge(dict(sweep), updates)
        if base_updates:  # as `--set base.x=...`: onto the base, even when the base is a file
            raw["overrides"] = deep_merge(dict(raw.get("overrides") or {}), base_updates)
        return build_sweep_config(raw, source="sweep dict")
    return load_sweep(sweep, sets)


def tune(
    sweep: str | Path | Mapping[str, Any] | SweepConfig,
    *,
    resume: bool = False,
    sets: list[str] | None = None,
    verbose: int | None = None,
    **overrides: Any,
) -> Sweep:
    """Run (or `resume`) a sweep and return it: a sweep file, a shipped sweep's name (`quickstart`), or a dict.

    `overrides` are nested like the sweep file (`num_samples=2, base={"train": {"epochs": 5}}`); `sets` are
    dotted `key=value` strings as the CLI's `--set`. Ray: the one already initialised, RAY_ADDRESS, or a
    local one started here and left running for the next call. Progress: in a notebook, Ray Tune's own
    (verbose=1); elsewhere proselflc's status lines (verbose=0), as `proselflc tune`.
    """
    from proselflc import plugins
    from proselflc.ray_compat import quiet_tune_console
    from proselflc.training.progress import in_notebook
    from proselflc.tuning.preflight import connect
    from proselflc.tuning.sweep import run_sweep

    config = _sweep_config(sweep, [*(sets or []), *_dotted(overrides)])
    verbose = (1 if in_notebook() else 0) if verbose is None else verbose
    if not verbose:
        quiet_tune_console()
    connect(log_to_driver=bool(verbose), runtime_env=plugins.runtime_env(config.base.plugins))
    return Sweep(run_sweep(config, resume=resume, verbose=verbose))


class History(list):
    """The per-epoch metric rows of one run (a list of dicts, as the Engine reports them), and where it lives."""

    def __init__(self, rows: list[dict[str, Any]], run_dir: Path | None, config: RunConfig) -> None:
        super().__init__(rows)
        self.run_dir = run_dir
        self.config = config

    def frame(self) -> pd.DataFrame:
        """The rows as a DataFrame, one per evaluated epoch."""
        import pandas as pd

        return pd.DataFrame(list(self))

    @property
    def last(self) -> dict[str, Any]:
        """The last epoch's metrics."""
        return self[-1]


def train(
    run: str | Path | Mapping[str, Any] | RunConfig,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    sets: list[str] | None = None,
    **overrides: Any,
) -> History:
    """Train one run in this process (no Ray): a run file, a shipped run's name (`digits`), a dict or a RunConfig.

    `out` is its run directory (metrics.csv, checkpoint, TensorBoard); None keeps nothing on disk.
    """
    from proselflc.config import RunConfig, build_run_config, deep_merge, load_run_config, parse_overrides
    from proselflc.training import train as train_run

    sets = [*(sets or []), *_dotted(overrides)]
    if isinstance(run, RunConfig):
        cfg = build_run_config(deep_merge(run.to_dict(), parse_overrides(sets))) if sets else run
    elif isinstance(run, Mapping):
        cfg = build_run_config(deep_merge(dict(run), parse_overrides(sets)), source="run dict")
    else:
        cfg = load_run_config(run, sets)
    run_dir = Path(out) if out is not None else None
    return History(train_run(cfg, run_dir=run_dir, resume=resume), run_dir, cfg)
