"""configs/paper/: each run config resolves to the authors' recorded values, and each one trains on CPU.

EXPECTED re-types the authors' experiments_records/*/params.csv (XinshaoAmosWang/DeepCriticalLearning)
field by field; the smoke runs train one epoch of every config on generated data in the real formats.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from benchmarks.cifar_files import write_cifar100

from proselflc import models
from proselflc.config import load_run_config
from proselflc.training import Engine

PAPER = Path(__file__).resolve().parents[1] / "configs" / "paper"
DEEPLOC_SAMPLE = Path(__file__).resolve().parent / "data" / "deeploc_sample.csv"

#: CIFAR-100 at 40% symmetric noise, from the records' params.csv (loss hyperparameters by our names).
CIFAR_LOSS = {
    ("resnet18", "crossentropy"): {},
    ("resnet18", "labelsmoothing"): {"epsilon": 0.5},
    ("resnet18", "confidencepenalty"): {"epsilon": 0.5, "definition": "detached", "logit_temperature": 1.0},
    ("resnet18", "labelcorrection"): {"epsilon": 0.5, "logit_temperature": 0.5},
    ("resnet18", "proselflc"): {"trust_mode": "max_p", "exp_base": 12, "transit_time_ratio": 0.5, "logit_temperature": 0.5},
    ("shufflenetv2", "crossentropy"): {},
    ("shufflenetv2", "labelsmoothing"): {"epsilon": 0.5},
    ("shufflenetv2", "confidencepenalty"): {"epsilon": 0.5, "definition": "detached", "logit_temperature": 1.0},
    ("shufflenetv2", "labelcorrection"): {"epsilon": 0.5, "logit_temperature": 0.6},
    ("shufflenetv2", "proselflc"): {"trust_mode": "max_p", "exp_base": 8, "transit_time_ratio": 0.5, "logit_temperature": 0.4},
}
WEIGHT_DECAY = {"resnet18": 2e-3, "shufflenetv2": 1e-3}
MODEL_NAME = {"resnet18": "resnet18", "shufflenetv2": "shufflenetv2_proselflc"}
DEEPLOC_LOSS = {
    "crossentropy": {},  # record 021: labelsmoothing with epsilon 0
    "labelsmoothing": {"epsilon": 0.125},
    "confidencepenalty": {"epsilon": 0.25, "definition": "detached", "logit_temperature": 0.4},
    "labelcorrection": {"epsilon": 0.25, "logit_temperature": 0.2},
    "proselflc": {"trust_mode": "entropy", "exp_base": 12, "transit_time_ratio": 0.5, "logit_temperature": 0.2},
}


def _cifar_cases() -> list[tuple[str, str, str, str]]:
    cases = [(f"cifar100_{m}_{loss}_symmetric0.4", m, loss, "symmetric") for m, loss in CIFAR_LOSS]
    cases += [(f"cifar100_resnet18_{loss}_superclass0.4", "resnet18", loss, "cifar100_superclass") for loss in DEEPLOC_LOSS]
    return cases


def test_every_paper_config_is_covered():
    names = {p.stem for p in PAPER.glob("*.yaml") if not p.stem.startswith("paper_")}  # paper_*: sweep files
    expected = {c[0] for c in _cifar_cases()} | {f"deeploc_membrane_{loss}" for loss in DEEPLOC_LOSS}
    assert names == expected


@pytest.mark.parametrize("name, model, loss, noise_kind", _cifar_cases())
def test_cifar_configs_resolve_to_the_authors_values(name, model, loss, noise_kind):
    cfg = load_run_config(PAPER / f"{name}.yaml")
    assert (cfg.data.name, cfg.data.val_fraction, cfg.data.augment, cfg.data.rotation_degrees) == ("cifar100", 0.0, True, 15)
    assert (cfg.noise.kind, cfg.noise.rate) == (noise_kind, 0.4)
    assert cfg.model.name == MODEL_NAME[model] and cfg.model.kwargs == {}
    assert cfg.loss.name == loss and cfg.loss.hyperparameters == CIFAR_LOSS[(model, loss)]
    o = cfg.optim
    assert (o.name, o.lr, o.momentum, o.weight_decay, o.nesterov) == ("sgd", 0.2, 0.9, WEIGHT_DECAY[model], False)
    assert (o.schedule, o.warmup_epochs, o.milestones, o.milestones_unit, o.gamma) == (
        "multistep", 0, [20000, 30000], "iterations", 0.1
    )
    assert o.accumulate_steps == 10
    t = cfg.train
    assert (t.epochs, t.batch_size, t.sampler, t.classes_per_batch, t.amp, t.seed) == (
        100, 128, "class_balanced", 64, False, 123
    )
    # Their total_iterations = 39000: 100 epochs of 50000 // 128 full class-balanced batches.
    assert t.epochs * (50_000 // t.batch_size) == 39_000


@pytest.mark.parametrize("loss", DEEPLOC_LOSS)
def test_deeploc_configs_resolve_to_the_authors_values(loss):
    cfg = load_run_config(PAPER / f"deeploc_membrane_{loss}.yaml")
    assert (cfg.data.name, cfg.data.task, cfg.data.max_length, cfg.data.val_fraction) == ("deeploc", "membrane", 434, 0.0)
    assert cfg.noise.rate == 0.0
    assert cfg.model.kwargs == {"pretrained": "Rostlab/prot_bert_bfd", "pretrained_layers": 6}
    assert cfg.loss.name == loss and cfg.loss.hyperparameters == DEEPLOC_LOSS[loss]
    o = cfg.optim
    assert (o.lr, o.momentum, o.weight_decay, o.warmup_epochs, o.milestones, o.milestones_unit, o.gamma) == (
        0.02, 0.9, 1e-4, 0, [3000], "iterations", 0.1
    )
    assert o.accumulate_steps == 10
    t = cfg.train
    assert (t.epochs, t.batch_size, t.sampler, t.classes_per_batch, t.amp, t.seed) == (
        40, 32, "class_balanced", 2, False, 123
    )


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar100(root, n_train=160, n_test=20)  # 1-2 images per class: enough classes for 4 x 2 after the noise
    return root


def _check_smoke(history: list[dict], lr: float) -> None:
    last = history[-1]
    assert last["epoch"] == 1 and not last["diverged"] and math.isfinite(last["train_loss"])
    assert last["lr"] == pytest.approx(lr)  # the iteration milestone fell inside the epoch
    assert 0.0 <= last["test_accuracy"] <= 1.0 and math.isnan(last["val_accuracy"])  # no validation split


def _smoke_cases(names: list[str]) -> list:
    """The first config of each family (dataset_model) is a quick test; the others are marked slow."""
    seen: set[str] = set()
    out = []
    for name in names:
        family = "_".join(name.split("_")[:2])
        out.append(pytest.param(name, marks=[pytest.mark.slow] if family in seen else []))
        seen.add(family)
    return out


@pytest.mark.parametrize("name", _smoke_cases([c[0] for c in _cifar_cases()]))
@pytest.mark.slow
def test_cifar_paper_config_trains_one_epoch_on_cpu(name, cifar_root):
    # The paper recipe as written, scaled to 160 generated images: batches of 4 classes x 2, the lr milestone
    # at iteration 2 so the decay runs, the rest (model, loss, rotation, accumulation, fp32, seed) unchanged.
    overrides = [f"data.root={cifar_root}", "data.download=false", "train.epochs=1", "train.device=cpu",
                 "train.progress=false", "train.batch_size=8", "train.classes_per_batch=4", "optim.milestones=[2]"]
    engine = Engine(load_run_config(PAPER / f"{name}.yaml", overrides))
    assert engine.batches_per_epoch == 160 // 8
    _check_smoke(engine.run(), 0.02)


@pytest.fixture(scope="module")
def tiny_protbert(tmp_path_factory):
    """A 6-layer BERT with ProtBert's residue vocabulary saved in transformers' format, in place of ProtBert-BFD."""
    path = tmp_path_factory.mktemp("protbert")
    models.build(
        "protein_transformer", 2, (434,), vocab_size=30, hidden_size=16, num_hidden_layers=6,
        num_attention_heads=2, intermediate_size=32,
    ).save_pretrained(path)
    return path


@pytest.mark.parametrize("name", _smoke_cases([f"deeploc_membrane_{loss}" for loss in DEEPLOC_LOSS]))
@pytest.mark.slow
def test_deeploc_paper_config_trains_one_epoch_on_cpu(name, tiny_protbert):
    # The 400-protein sample, the built-in residue tokenizer and proteins cut to 64 tokens (for speed).
    overrides = [f"data.root={DEEPLOC_SAMPLE}", "data.tokenizer=null", f"model.pretrained={tiny_protbert}",
                 "data.max_length=64",
                 "train.epochs=1", "train.device=cpu", "train.progress=false", "optim.milestones=[2]"]
    engine = Engine(load_run_config(PAPER / f"{name}.yaml", overrides))
    assert len(engine.model.bert.bert.encoder.layer) == 6
    _check_smoke(engine.run(), 0.002)
