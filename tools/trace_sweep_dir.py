"""How many proselflc modules a sweep directory passes through, from the CLI to the trials (a structure measure).

Runs `proselflc tune` in this process on a one-trial sweep (digits, one noise rate, one method, one epoch, one
final re-run) under a profiler, and counts every call of a proselflc function that is handed the sweep directory:
an argument equal to it (a path, a URI or proselflc's storage object, by its text), or `self` holding it as an
attribute. It prints the modules in call order with their call counts, then the totals.

    PYTHONPATH=src .venv/bin/python tools/trace_sweep_dir.py [--verbose]

Only the driver process is traced (the trials run in Ray's workers). Comparing two checkouts: run it with
PYTHONPATH pointing at each one's `src`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

#: Attributes through which a method reaches the sweep directory of its object.
HOLDERS = ("dir", "sweep_dir", "_sweep_dir", "path")


def one_trial_sweep(storage: Path) -> dict[str, Any]:
    """The smallest sweep with a search and a final phase, written in keys every proselflc version reads."""
    return {
        "name": "trace",
        "storage_path": str(storage),
        "base": {
            "data": {"name": "digits", "limit": 300},
            "model": {"name": "mlp", "hidden": 8},
            "train": {"epochs": 1, "batch_size": 64, "seed": 0},
        },
        "noise": {"kind": "symmetric", "rates": [0.2]},
        "methods": {"crossentropy": {"search": {"optim.lr": {"type": "loguniform", "low": 0.01, "high": 0.5}}}},
        "num_samples": 1,
        "resources": {"cpu": 1, "gpu": 0},
        "max_concurrent_trials": 1,
        "final_seeds": 1,
    }


class SweepDirTracer:
    """A profile hook recording (module, function) for each proselflc call that is handed the sweep directory."""

    def __init__(self, sweep_dir: Path) -> None:
        self.target = str(sweep_dir).rstrip("/")
        self.calls: list[tuple[str, str]] = []

    def _holds(self, value: Any) -> bool:
        if isinstance(value, str | Path) or type(value).__name__ == "Location":
            try:
                return str(value).rstrip("/") == self.target
            except AttributeError:  # an object still being built (its __init__ is the call traced)
                return False
        return False

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call":
            return
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("proselflc"):
            return
        code = frame.f_code
        arguments = [frame.f_locals.get(name) for name in code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]]
        owner = frame.f_locals.get("self")
        attributes = getattr(owner, "__dict__", None) if owner is not None else None  # no getattr: no side effects
        held = [attributes.get(name) for name in HOLDERS] if isinstance(attributes, dict) else []
        if any(self._holds(v) for v in arguments + held):
            self.calls.append((module, code.co_qualname))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="print every traced call")
    args = parser.parse_args()
    from proselflc.cli import main as cli

    with tempfile.TemporaryDirectory(prefix="proselflc-trace-") as tmp:
        storage = Path(tmp) / "results"
        sweep_file = Path(tmp) / "trace.yaml"
        sweep_file.write_text(yaml.safe_dump(one_trial_sweep(storage)))
        tracer = SweepDirTracer(storage / "trace")
        threading.setprofile(tracer)
        sys.setprofile(tracer)
        try:
            code = cli(["--debug", "tune", str(sweep_file)])
        finally:
            sys.setprofile(None)
            threading.setprofile(None)  # type: ignore[arg-type]
    if args.verbose:
        for module, function in tracer.calls:
            print(f"  {module}.{function}")
    modules = Counter(module for module, _ in tracer.calls)
    print("modules handed the sweep directory, in first-call order:")
    for module, count in modules.items():
        print(f"  {module:45s} {count:5d} calls")
    print(f"{len(modules)} modules, {len(tracer.calls)} calls ({len(set(tracer.calls))} distinct functions); "
          f"tune exited {code}")
    return 0 if code in (0, None) else 1


if __name__ == "__main__":
    sys.exit(main())
