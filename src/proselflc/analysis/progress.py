"""Whether a sweep is finished, from its manifest: a report of a running sweep must say it is partial.

A study is done only when the manifest says `finished` and every trial it lists still has its results
(a full disk can leave them empty); `pending`, `searching` and `searched` (and a study with no recorded
status, as in manifests of older versions) are unfinished. A partial table can
crown a different winner than the finished sweep, so `report` says so on its first line and
`report --strict` refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from proselflc.errors import ConfigError
from proselflc.sweep_contract import lost_trials, read_manifest

#: Shown for a study whose manifest entry has no status (older sweeps).
NO_STATUS = "no status recorded"


@dataclass(frozen=True)
class SweepProgress:
    """Each study's status, in manifest order, and which of them are not finished."""

    sweep_dir: str | Path  # as the user named it (a URI sweep is read from a local copy)
    sweep: str
    statuses: dict[str, str]

    @property
    def unfinished(self) -> dict[str, str]:
        return {study: status for study, status in self.statuses.items() if status != "finished"}

    @property
    def running(self) -> bool:
        return bool(self.unfinished)

    def headline(self) -> str:
        """One line: the sweep is still running and the tables are partial (empty when it is finished)."""
        if not self.running:
            return ""
        return (
            f"PARTIAL: sweep {self.sweep!r} is still running or was stopped: {len(self.unfinished)} of "
            f"{len(self.statuses)} studies unfinished; these tables are not final"
        )

    def marks(self) -> list[str]:
        """One line per unfinished study, e.g. 'unfinished: symmetric-0.4/proselflc (searching)'."""
        return [f"unfinished: {study} ({status})" for study, status in self.unfinished.items()]

    def require_finished(self) -> None:
        """ConfigError naming the unfinished studies (`report --strict`)."""
        if self.running:
            listed = ", ".join(f"{study} ({status})" for study, status in self.unfinished.items())
            raise ConfigError(
                f"sweep {str(self.sweep_dir)!r} is not finished: {listed}. Report it when `proselflc tune` "
                "has finished (resume a stopped sweep with `proselflc tune <sweep>/sweep.yaml --resume`), or "
                "drop --strict for a partial report"
            )


def read_progress(sweep_dir: str | Path, shown_as: str | Path | None = None) -> SweepProgress:
    """Every study's status from `<sweep>/manifest.json` (a ConfigError when there is no valid manifest).

    `shown_as`: the sweep as the user named it, for messages, where `sweep_dir` is a local copy of a URI sweep."""
    manifest = read_manifest(sweep_dir)
    statuses = {
        entry.study: entry.status if "status" in entry.model_fields_set else NO_STATUS for entry in manifest.studies
    }
    for entry in manifest.studies:
        lost = lost_trials(sweep_dir, entry) if entry.done else []
        if lost:  # finished on a disk that filled up: its results are not all there
            statuses[entry.study] = f"finished, but {len(lost)} trials' results are missing or empty: {', '.join(lost)}"
    return SweepProgress(sweep_dir=shown_as or Path(sweep_dir), sweep=manifest.sweep, statuses=statuses)
