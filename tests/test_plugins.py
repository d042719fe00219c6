"""`plugins:` in a run or sweep file: the user's loss and dataset, in files the test writes, trained by name in
a sweep on the shared Ray, imported by the trial workers themselves; and clear errors for a bad plugin."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proselflc import plugins
from proselflc.config import load_run_config
from proselflc.data import DATASETS
from proselflc.errors import ConfigError
from proselflc.losses.base import LOSSES

LOSS_FILE = '''
import os
from pathlib import Path

from proselflc.losses.base import LOSSES, Loss
from proselflc.registry import Param

# Every process that imports this plugin leaves its pid here: the test tells the trial workers by it.
with open(Path(__file__).with_name("imported_by.txt"), "a") as fh:
    fh.write(f"{os.getpid()}\\n")


@LOSSES.register("tempered_ce", params={"temperature": Param(low=0.0, low_open=True)})
class TemperedCE(Loss):
    def __init__(self, num_classes: int, temperature: float = 1.0) -> None:
        super().__init__(num_classes)
        self.temperature = temperature

    def compute(self, logits, targets, step, total_steps):
        self.stats = {"mean_epsilon": self._constant(0.0, logits)}
        return -(targets * (logits / self.temperature).log_softmax(dim=1)).sum(dim=1).mean()
'''

DATA_FILE = '''
from dataclasses import dataclass

import numpy as np
import torch

from proselflc.data.base import DATASETS, Dataset


@dataclass
class BlobDataset(Dataset):
    """A Dataset subclass of the plugin: the trial workers unpickle it, so they must import this file."""

    shift: float = 0.0

    def prepare(self, x, *, augment, generator):
        return x + self.shift


@DATASETS.register("blobs", needs_root=False)
def load(cfg) -> Dataset:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 4)) * 3
    y = rng.integers(0, 3, size=300)
    x = (centres[y] + rng.normal(size=(300, 4))).astype(np.float32)
    return BlobDataset(name="blobs", train_inputs=torch.from_numpy(x[:240]), train_labels=y[:240],
                       test_inputs=torch.from_numpy(x[240:]), test_labels=y[240:], num_classes=3,
                       input_shape=(4,), shift=0.5)
'''


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Iterator[Path]:
    """The two plugin files in a directory; what they register is removed again afterwards."""
    (tmp_path / "my_losses.py").write_text(textwrap.dedent(LOSS_FILE))
    (tmp_path / "my_data.py").write_text(textwrap.dedent(DATA_FILE))
    yield tmp_path
    for registry, name in ((LOSSES, "tempered_ce"), (DATASETS, "blobs")):
        if name in registry.names:
            registry.unregister(name)
    for module in ("my_losses", "my_data"):
        sys.modules.pop(module, None)
    for path in [p for p in plugins._LOADED if Path(p).parent == tmp_path]:
        del plugins._LOADED[path]


SWEEP = """
name: plugged
plugins: [./my_losses.py, ./my_data.py]
base:
  data: {name: blobs, val_fraction: 0.2}
  model: {name: mlp, hidden: 16}
  optim: {lr: 0.1, schedule: constant}
  train: {epochs: 2, batch_size: 64}
noise: {kind: symmetric, rates: [0.3]}
methods:
  tempered:
    loss: tempered_ce
    hyperparameters: {temperature: 2.0}
    search: {optim.lr: {type: loguniform, low: 0.05, high: 0.3}}
num_samples: 2
scheduler: {name: asha, grace_period: 2}
searcher: {seed: 0}
resources: {cpu: 1, gpu: 0}
max_concurrent_trials: 1
final_seeds: 0
max_failures: 0
"""


@pytest.mark.ray
def test_a_plugin_loss_and_dataset_train_by_name_in_the_trial_workers(ray_session: Any, plugin_dir: Path) -> None:
    from proselflc.analysis import load_sweep as load_results
    from proselflc.tuning import load_sweep, run_sweep

    (plugin_dir / "sweep.yaml").write_text(SWEEP)
    sweep = load_sweep(plugin_dir / "sweep.yaml", [f"storage_path={plugin_dir / 'results'}"])
    assert sweep.base.plugins == [str(plugin_dir / "my_losses.py"), str(plugin_dir / "my_data.py")]
    sweep_dir = run_sweep(sweep, log=lambda line: None)

    trials = load_results(sweep_dir)
    finished = trials.groupby("trial_id")["epoch"].max()
    assert len(finished) == 2 and (finished == 2).all()
    assert trials["test_accuracy"].notna().all()
    importers = {int(pid) for pid in (plugin_dir / "imported_by.txt").read_text().split()}
    assert os.getpid() in importers and importers - {os.getpid()}  # the driver, and the Ray trial worker(s)


def test_a_run_file_names_a_plugin_loss(plugin_dir: Path) -> None:
    (plugin_dir / "run.yaml").write_text(
        "plugins: [./my_losses.py]\nloss: {name: tempered_ce, temperature: 0.5}\ntrain: {epochs: 1}\n"
    )
    cfg = load_run_config(plugin_dir / "run.yaml")
    assert cfg.loss.name == "tempered_ce" and cfg.plugins == [str(plugin_dir / "my_losses.py")]
    with pytest.raises(ConfigError, match=r"loss.temperature = -1 .*outside the allowed range"):
        load_run_config(plugin_dir / "run.yaml", ["loss.temperature=-1"])


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("./missing.py", r"plugins\[0\] = '.*missing.py': no such file"),
        ("no_such_package.losses", r"plugins\[0\] = 'no_such_package.losses': no module named 'no_such_package'"),
        ("./broken.py", r"plugins\[0\] = '.*broken.py': importing it failed: ValueError: loss 'crossentropy' is"),
    ],
)
def test_a_bad_plugin_names_the_entry_and_the_field(tmp_path: Path, entry: str, message: str) -> None:
    (tmp_path / "broken.py").write_text(
        "from proselflc.losses.base import LOSSES\n\n@LOSSES.register('crossentropy')\ndef other(num_classes): ...\n"
    )
    (tmp_path / "run.yaml").write_text(f"plugins: ['{entry}']\n")
    with pytest.raises(ConfigError, match=message):
        load_run_config(tmp_path / "run.yaml")
    assert "broken" not in sys.modules
