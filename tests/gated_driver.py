"""`proselflc tune ...` exactly as the CLI runs it, except that final re-runs after the first one hold at a gate.

`python tests/gated_driver.py [--search] GATE_DIR tune SWEEP.yaml [...]`. The resume test interrupts this driver while the
sweep is among its final re-runs. Instead of timing the Ctrl+C, the trials make the moment certain: the first final
re-run to start trains to its end, and any later one trains to epoch `HOLD_AT_EPOCH`, checkpoints, writes
`GATE_DIR/held` and holds there until the driver stops it. With one trial at a time (`max_concurrent_trials: 1`),
the second re-run starts only once the first has ended, so when `held` appears exactly one re-run has finished and
one is part-way. Each trial still trains the real Engine (`train_engine`); only its timing changes.

With `--search` the gate holds search trials instead, at epoch `HOLD_SEARCH_AT_EPOCH` (before the first ASHA rung
of the scheduler test's sweep): the first search trial to start trains to its end, any later one that reaches that
epoch holds. A trial is held once: run again (from a checkpoint or from its start) it trains on.

Everything else is `proselflc.cli.main` (Ctrl+C: "sweep interrupted; its state is saved", exit code 130): the
sweep's `run_sweep` is given the gated trial function, nothing more.
"""

from __future__ import annotations

import sys
import threading
from functools import partial
from pathlib import Path
from typing import Any

from proselflc import cli
from proselflc.tuning import sweep
from trial_hooks import train_engine_with_hook

#: The epoch after which a held re-run stops (its checkpoint of that epoch saved).
HOLD_AT_EPOCH = 2
#: With --search: the epoch after which a held search trial stops.
HOLD_SEARCH_AT_EPOCH = 1
#: What marks a final re-run among a trial's params (a search trial of the test's sweep has none).
FINAL_KEY = "train.seed"


def gated_engine(params: dict[str, Any], *, gate: Path, search: bool = False, **kwargs: Any) -> None:
    """`train_engine`, held after epoch HOLD_AT_EPOCH if this is a final re-run but not the first to start (with
    `search`: after HOLD_SEARCH_AT_EPOCH if this is a search trial but not the first to start)."""
    at = HOLD_SEARCH_AT_EPOCH if search else HOLD_AT_EPOCH

    def hold(metrics: dict[str, Any]) -> None:
        from ray import tune

        trial_id = tune.get_context().get_trial_id()
        if metrics.get("epoch") == at and _first(gate, f"held-{trial_id}"):  # a trial run again is not held again
            (gate / "held").write_text(trial_id)
            threading.Event().wait()  # until the driver stops this trial's actor

    held = (FINAL_KEY in params) != search and not _first(gate)
    train_engine_with_hook(params, hold if held else None, **kwargs)


def _first(gate: Path, name: str = "first") -> bool:
    """True for the first caller only: the file `GATE_DIR/<name>` is created exclusively (O_EXCL)."""
    try:
        (gate / name).touch(exist_ok=False)
    except FileExistsError:
        return False
    return True


def main(argv: list[str]) -> int:
    search = argv[0] == "--search"
    argv = argv[1:] if search else argv
    gate, cli_args = Path(argv[0]), argv[1:]
    sweep.run_sweep = partial(sweep.run_sweep, trial_function=partial(gated_engine, gate=gate, search=search))
    return cli.main(cli_args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
