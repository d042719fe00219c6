"""configs/paper/paper_*.yaml: the papers' questions as sweep files, validated as `proselflc tune` reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from proselflc.search_spaces import build_space
from proselflc.tuning import load_sweep
from proselflc.tuning.search import grid_size

PAPER = Path(__file__).resolve().parents[1] / "configs" / "paper"
METHODS = ["crossentropy", "labelsmoothing", "confidencepenalty", "labelcorrection", "proselflc"]


def _space(sweep, method):
    spec = next(m for m in sweep.methods if m.name == method)
    base = sweep.base.to_dict()
    base["loss"] = {"name": spec.loss, **spec.hyperparameters}
    return build_space(spec.search, spec.loss, base, f"methods.{method}.search")


@pytest.mark.parametrize("model", ["resnet18", "shufflenetv2"])
@pytest.mark.parametrize("kind, noise_kind", [("symmetric", "symmetric"), ("superclass", "cifar100_superclass")])
def test_asha_tpe_sweeps_search_the_authors_ranges(model, kind, noise_kind):
    sweep = load_sweep(PAPER / f"paper_cifar100_{model}_{kind}.yaml")
    assert (sweep.noise.kind, sweep.noise.rates) == (noise_kind, [0.2, 0.4, 0.6])
    assert sweep.base.noise.kind == noise_kind and sweep.base.data.val_fraction == 0.1
    assert [m.name for m in sweep.methods] == METHODS
    assert sweep.searcher.name == "tpe" and sweep.scheduler.name == "asha" and sweep.max_t == 100
    assert sweep.final_include_val and sweep.final_seeds == 3
    # The recipe under the search is the paper config's.
    b = sweep.base
    assert (b.optim.lr, b.optim.milestones, b.optim.milestones_unit, b.optim.accumulate_steps) == (
        0.2, [20000, 30000], "iterations", 10
    )
    assert (b.train.sampler, b.train.classes_per_batch, b.data.rotation_degrees, b.train.amp) == ("class_balanced", 64, 15, False)
    assert b.model.name == {"resnet18": "resnet18", "shufflenetv2": "shufflenetv2_proselflc"}[model]
    pro = _space(sweep, "proselflc")
    assert set(pro) == {"loss.trust_mode", "loss.exp_base", "loss.logit_temperature"}
    assert set(pro["loss.trust_mode"].values) == {"global", "entropy", "max_p"}
    assert (pro["loss.exp_base"].low, pro["loss.exp_base"].high) == (8, 16)
    for method in ("confidencepenalty", "labelcorrection"):
        t = _space(sweep, method)["loss.logit_temperature"]
        assert (t.low, t.high) == (0.4, 1.0)
    cp = next(m for m in sweep.methods if m.name == "confidencepenalty")
    assert cp.hyperparameters == {"epsilon": 0.5, "definition": "detached"}


@pytest.mark.parametrize("model", ["resnet18", "shufflenetv2"])
def test_the_authors_45_run_grid(model):
    sweep = load_sweep(PAPER / f"paper_grid_cifar100_{model}_symmetric.yaml")
    assert sweep.searcher.name == "grid" and sweep.scheduler.name == "fifo"
    assert sweep.noise.rates == [0.0, 0.2, 0.4, 0.6] and sweep.num_samples == 45
    space = _space(sweep, "proselflc")
    assert grid_size(space) == 45
    assert sorted(space["loss.exp_base"].values) == [8, 12, 16]
    assert sorted(space["loss.logit_temperature"].values) == [0.4, 0.5, 0.6, 0.8, 1.0]
