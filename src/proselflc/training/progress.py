"""A run's progress, shown the way its output is read: a live bar on a terminal or in a notebook, and one
plain line per epoch when the output is a file or a job log (where every redraw of a bar would be kept)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, Literal, TextIO

#: The metrics each progress line shows, when the row has them.
SHOWN = ("train_loss", "val_accuracy", "test_accuracy", "noisy_fit", "mean_epsilon")

Style = Literal["bar", "lines", "off"]


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (its output is a notebook cell, which shows widgets)."""
    shell = sys.modules.get("IPython")
    ipython = getattr(shell, "get_ipython", lambda: None)() if shell is not None else None
    return ipython is not None and "IPKernelApp" in getattr(ipython, "config", {})


def style_for(stream: TextIO, enabled: bool = True) -> Style:
    """A bar where someone watches (a terminal, a notebook), lines where the output is kept (a file, a pipe)."""
    if not enabled:
        return "off"
    isatty = getattr(stream, "isatty", None)
    return "bar" if in_notebook() or (isatty is not None and isatty()) else "lines"


def _fmt(row: Mapping[str, Any]) -> str:
    return "  ".join(f"{k} {row[k]:.4f}" for k in SHOWN if isinstance(row.get(k), int | float))


class Progress:
    """Epoch progress of one run: `update(row)` after each evaluated epoch, `close()` at the end."""

    def __init__(self, name: str, total: int, initial: int = 0, *, enabled: bool = True,
                 stream: TextIO | None = None) -> None:
        self.name = name
        self.total = total
        self.stream = stream if stream is not None else sys.stdout
        self.style = style_for(self.stream, enabled)
        self.bar = None
        if self.style == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=name, unit="epoch", file=self.stream)

    def update(self, row: Mapping[str, Any]) -> None:
        if self.bar is not None:
            self.bar.update(row["epoch"] - self.bar.n)
            self.bar.set_postfix({k: f"{row[k]:.3f}" for k in SHOWN if isinstance(row.get(k), int | float)})
        elif self.style == "lines":
            print(f"{self.name}: epoch {row['epoch']}/{self.total}  {_fmt(row)}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
