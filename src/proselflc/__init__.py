"""proselflc: find, with Ray Tune, the hyperparameters that make deep networks robust to noisy labels.

    import proselflc
    sweep = proselflc.tune("quickstart")        # or a sweep file, or a dict; returns a Sweep
    sweep.table(); sweep.memorisation(); sweep.best_configs(); sweep.trials(); sweep.report()
    sweep = proselflc.load("results/quickstart")
    history = proselflc.train("digits")

The names are imported on first use (`proselflc.api`), so `import proselflc` loads neither torch nor Ray.
"""

from __future__ import annotations

from typing import Any

_API = ("History", "Sweep", "load", "train", "tune")
__all__ = ["History", "Sweep", "__version__", "load", "train", "tune"]


def __getattr__(name: str) -> Any:
    if name in _API:
        from proselflc import api

        return getattr(api, name)
    if name == "__version__":
        from importlib import metadata

        try:
            return metadata.version("proselflc")
        except metadata.PackageNotFoundError:
            return "unknown"
    raise AttributeError(f"module 'proselflc' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
