"""What a run leaves on disk: the resolved config, per-epoch metrics.csv, TensorBoard events, checkpoints."""

from __future__ import annotations

import csv
import io
import math
import shutil
from pathlib import Path
from typing import Any

import yaml

from proselflc.config import RunConfig
from proselflc.io import atomic_write_text
from proselflc.training.metrics import METRIC_KEYS

#: What a run directory holds: any of them there means a run was written to it before.
RUN_FILES = ("config.yaml", "metrics.csv", "checkpoint.pt", "tensorboard")


def claim(run_dir: str | Path, resume: bool, overwrite: bool) -> None:
    """Make sure a new run does not write over an earlier one in `run_dir`.

    An earlier run is kept unless `resume` (continue it) or `overwrite` (its files are removed first, so
    metrics.csv, the checkpoint and TensorBoard hold the new run only); otherwise a ConfigError names it.
    """
    from proselflc.errors import ConfigError

    if resume and overwrite:
        raise ConfigError("--resume continues the run in --out and --overwrite replaces it: give one of them")
    path = Path(run_dir)
    found = [name for name in RUN_FILES if (path / name).exists() or (path / name).is_symlink()]
    if not found or resume:
        return
    if not overwrite:
        raise ConfigError(
            f"--out {str(path)!r} already holds a run ({', '.join(found)}); training into it would mix the two runs. "
            "Continue it with --resume, replace it with --overwrite, or choose another --out"
        )
    for name in found:
        old = path / name
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()


class RunDirWriter:
    """Writes a run directory; metrics.csv is rewritten atomically each epoch so it is never half a row."""

    def __init__(self, run_dir: str | Path, cfg: RunConfig) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.path = Path(run_dir)
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        self.tensorboard = SummaryWriter(log_dir=str(self.path / "tensorboard"))

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.pt"

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        """Rewrite metrics.csv from the full history and log the newest row to TensorBoard."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(METRIC_KEYS), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
        atomic_write_text(self.path / "metrics.csv", buffer.getvalue())
        if history:
            row = history[-1]
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)) and not math.isnan(float(value)):
                    self.tensorboard.add_scalar(key, float(value), global_step=int(row["epoch"]))
            self.tensorboard.flush()

    def write_text(self, name: str, text: str) -> None:
        """Replace the run directory's file `name` atomically (e.g. the last epoch's validation correctness)."""
        atomic_write_text(self.path / name, text)

    def close(self) -> None:
        self.tensorboard.close()
