"""One registry shape: a loss added by one `register` call is validated by the config and trains.

Also the registry's own rules (a name registered twice, a default written twice, a required option)
and the did-you-mean errors of every family the config names.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from proselflc import losses
from proselflc.config import ConfigError, build_run_config
from proselflc.losses.base import LOSSES, Loss, Step
from proselflc.registry import Param, Registry
from proselflc.training.engine import train

TOY = "toy_focal"


class ToyFocal(Loss):
    """Focal loss (Lin et al.): mean of -(1 - p_y)^gamma log p_y, a loss proselflc does not ship."""

    calls: ClassVar[int] = 0

    def __init__(self, num_classes: int, gamma: float = 2.0) -> None:
        super().__init__(num_classes)
        self.gamma = float(gamma)

    def compute(self, logits: Tensor, targets: Tensor, step: Step, total_steps: Step) -> Tensor:
        type(self).calls += 1
        self.stats = {"mean_epsilon": self._constant(0.0, logits)}
        log_p = F.log_softmax(logits, dim=1)
        log_p_y = (targets * log_p).sum(dim=1)
        return (-((1.0 - log_p_y.exp()) ** self.gamma) * log_p_y).mean()


@pytest.fixture
def toy_loss() -> Iterator[str]:
    LOSSES.register(TOY, params={"gamma": Param(low=0.0)})(ToyFocal)
    try:
        yield TOY
    finally:
        LOSSES.unregister(TOY)


def _run(loss_section: dict) -> dict:
    """A small digits run (2 epochs, 400 examples) with the given loss section."""
    return {
        "name": "toy",
        "data": {"name": "digits", "limit": 400},
        "noise": {"kind": "symmetric", "rate": 0.2},
        "model": {"name": "mlp", "hidden": 32},
        "loss": loss_section,
        "optim": {"lr": 0.1, "schedule": "constant"},
        "train": {"epochs": 2, "batch_size": 64, "device": "cpu", "progress": False, "seed": 0},
    }


def test_a_loss_registered_by_one_call_is_validated_and_trains(toy_loss: str, tmp_path: Path) -> None:
    assert toy_loss in losses.NAMES
    assert losses.hyperparameters(toy_loss) == {"gamma": 2.0}
    with pytest.raises(ConfigError, match=r"loss\.gamma = -1\.0 \(loss 'toy_focal'\) is outside the allowed range \[0, inf\)"):
        build_run_config(_run({"name": toy_loss, "gamma": -1.0}))
    with pytest.raises(ConfigError, match=r"loss 'toy_focal' has no hyperparameter 'gama'.*did you mean 'gamma'"):
        build_run_config(_run({"name": toy_loss, "gama": 1.0}))

    cfg = build_run_config(_run({"name": toy_loss, "gamma": 1.0}))
    calls_before = ToyFocal.calls
    rows = train(cfg, run_dir=tmp_path / "run")
    assert [row["epoch"] for row in rows] == [1, 2]
    assert ToyFocal.calls - calls_before >= 2 * 5, "every training batch went through the toy loss"
    for row in rows:
        for key in ("train_loss", "val_accuracy", "test_accuracy", "test_loss", "noisy_fit"):
            assert math.isfinite(row[key]), (key, row[key])
    assert 0.0 <= rows[-1]["test_accuracy"] <= 1.0
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] or rows[-1]["test_accuracy"] > 0.1 + 1e-9
    assert "toy_focal" in (tmp_path / "run" / "config.yaml").read_text()


def test_after_unregistering_the_name_is_unknown_again(toy_loss: str) -> None:
    LOSSES.unregister(toy_loss)
    try:
        with pytest.raises(ConfigError, match=r"unknown loss 'toy_focal'; valid: "):
            losses.check(toy_loss)
    finally:
        LOSSES.register(TOY, params={"gamma": Param(low=0.0)})(ToyFocal)


@pytest.mark.parametrize(
    ("section", "value", "match"),
    [
        ("loss", {"name": "crossentropie"}, r"loss: unknown loss 'crossentropie'; valid: .*\(did you mean 'crossentropy'\?\)"),
        ("model", {"name": "resnet81"}, r"model.*unknown model 'resnet81'; valid: .*\(did you mean 'resnet18'\?\)"),
        ("data", {"name": "cifar1O", "root": "/nowhere"}, r"data\.name: unknown dataset 'cifar1O'; valid: .*\(did you mean 'cifar10'\?\)"),
        ("noise", {"kind": "symetric"}, r"noise\.kind: unknown noise kind 'symetric'; valid: .*\(did you mean 'symmetric'\?\)"),
        ("model", {"name": "mlp", "hiden": 8}, r"model\.hiden: model 'mlp' has no option 'hiden'; allowed: depth, dropout, hidden \(did you mean 'hidden'\?\)"),
        ("noise", {"kind": "matrix"}, r"noise kind 'matrix' needs noise\.matrix \(a row-stochastic C x C list of lists\)"),
        ("noise", {"kind": "pairflip", "rate": 0.2, "allow_true_label": True}, r"noise\.allow_true_label: noise kind 'pairflip' has no option"),
    ],
)
def test_unknown_names_and_options_get_the_did_you_mean_error(section: str, value: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_run_config({**_run({"name": "crossentropy"}), section: value})


def test_every_family_is_one_registry() -> None:
    from proselflc.data import DATASETS
    from proselflc.models import MODELS
    from proselflc.noise import NOISE_KINDS

    for registry in (LOSSES, MODELS, DATASETS, NOISE_KINDS):
        assert isinstance(registry, Registry)
    assert set(DATASETS.names) == {
        "digits", "cifar10", "cifar100", "deeploc", "clothing1m", "food101n", "imagefolder", "table"
    }
    assert {name for name in DATASETS.names if DATASETS.entry(name).info.get("real_noise")} == {"clothing1m", "food101n"}
    assert set(NOISE_KINDS.names) == {"none", "symmetric", "pairflip", "cifar100_superclass", "matrix", "human"}
    assert {"mlp", "resnet18", "protein_transformer"} <= set(MODELS.names)


def test_the_registry_refuses_a_second_member_under_one_name_and_a_default_written_twice() -> None:
    toy = Registry("widget", "widget", positional=("size",))

    @toy.register("a", params={"k": Param(low=1)})
    def make_a(size: int, k: int = 2) -> tuple[int, int]:
        return size, k

    assert toy.build("a", 3) == (3, 2)
    assert toy.build("a", 3, k=5) == (3, 5)
    with pytest.raises(ConfigError, match=r"widget\.k = 0 \(widget 'a'\) is outside the allowed range \[1, inf\)"):
        toy.check("a", {"k": 0})
    with pytest.raises(ConfigError, match=r"widget\.k = 2\.5 \(widget 'a'\) must be a whole number"):
        toy.check("a", {"k": 2.5})
    with pytest.raises(ValueError, match="'a' is already registered by"):
        toy.register("a")(lambda size: size)
    with pytest.raises(ValueError, match="the default of 'k' is written twice"):
        toy.register("b", params={"k": Param(3)})(make_a)
    with pytest.raises(ValueError, match=r"params \['j'\] are not arguments"):
        toy.register("c", params={"j": Param(1)})(make_a)

    @toy.register("needs", params={"k": Param(help="a positive number")})
    def make_needs(size: int, k: int) -> int:
        return size * k

    with pytest.raises(ConfigError, match=r"widget 'needs' needs widget\.k \(a positive number\)"):
        toy.build("needs", 2)
    assert toy.build("needs", 2, k=4) == 8
    assert toy.defaults("needs") == {}


@pytest.mark.subprocess
def test_listing_models_and_datasets_does_not_import_torchvision_or_transformers() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from proselflc import data, models\n"
        "assert 'resnet18' in models.NAMES and 'deeploc' in data.NAMES\n"
        "print(sorted(m for m in ('torchvision', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_toy_loss_gradient_is_finite(toy_loss: str) -> None:
    loss_fn = losses.build(toy_loss, 4, gamma=0.5)
    logits = torch.randn(8, 4, requires_grad=True)
    loss_fn(logits, torch.arange(8) % 4).backward()
    assert torch.isfinite(logits.grad).all()
