"""What a run leaves on disk: the resolved config, per-epoch metrics.csv, TensorBoard events, checkpoints."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import yaml

from proselflc.config import RunConfig
from proselflc.io import atomic_write_text
from proselflc.training.metrics import METRIC_KEYS


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
