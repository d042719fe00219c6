"""The ProSelfLC code's recipe elements, each against an independent reference.

The references re-state the authors' code (XinshaoAmosWang/DeepCriticalLearning): their
`WarmupMultiStepSchedule` and the trainer's order of calls, their `BalancedBatchSampler` contract,
their label-correction and confidence-penalty targets, and their CIFAR ShuffleNetV2's layers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from benchmarks.cifar_files import write_cifar100
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from proselflc import losses, models
from proselflc.config import ConfigError, OptimConfig, build_run_config
from proselflc.data.cifar import random_rotate
from proselflc.data.sampler import class_balanced_order
from proselflc.training import Engine
from proselflc.training.schedule import lr_factor


def test_class_balanced_batches_hold_64_classes_x_2_examples_by_label():
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 100, (50_000,), generator=gen)
    order = class_balanced_order(labels, 64, 2, 390, torch.Generator().manual_seed(123))
    assert order.shape == (390 * 128,)
    for batch in order.view(390, 128):
        assert len(set(batch.tolist())) == 128  # no example twice in a batch
        classes, counts = torch.unique(labels[batch], return_counts=True)
        assert len(classes) == 64 and bool((counts == 2).all())
    # One epoch of cursors through per-class permutations: most examples seen exactly once.
    seen = torch.bincount(order, minlength=len(labels))
    assert (seen == 1).float().mean() > 0.9 and seen.max() <= 2


def test_class_balanced_order_is_seeded_and_refuses_too_few_classes():
    labels = torch.arange(40) % 4
    first = class_balanced_order(labels, 2, 5, 3, torch.Generator().manual_seed(1))
    again = class_balanced_order(labels, 2, 5, 3, torch.Generator().manual_seed(1))
    assert torch.equal(first, again)
    with pytest.raises(ConfigError, match=r"classes_per_batch = 5: only 4 classes"):
        class_balanced_order(labels, 5, 2, 3, torch.Generator().manual_seed(1))


def test_engine_batches_are_balanced_by_the_noisy_labels(tmp_path):
    write_cifar100(tmp_path, n_train=1000, n_test=100)
    cfg = build_run_config({
        "data": {"name": "cifar100", "root": str(tmp_path), "val_fraction": 0.0},
        "noise": {"kind": "symmetric", "rate": 0.4},
        "model": {"name": "mlp"},
        "train": {"batch_size": 128, "sampler": "class_balanced", "classes_per_batch": 64, "device": "cpu"},
    })  # fmt: skip
    engine = Engine(cfg)
    assert engine.batches_per_epoch == 1000 // 128
    order = engine._epoch_order()
    noisy, true = engine.noisy_labels[order].view(-1, 128), engine.true_labels[order].view(-1, 128)
    assert not torch.equal(noisy, true)  # the noise moved labels, and batches follow the noisy ones
    for batch in noisy:
        _, counts = torch.unique(batch, return_counts=True)
        assert len(counts) == 64 and bool((counts == 2).all())


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"sampler": "class_balanced"}, "needs train.classes_per_batch dividing"),
        ({"sampler": "class_balanced", "classes_per_batch": 48}, "needs train.classes_per_batch dividing"),
        ({"classes_per_batch": 64}, "only used with train.sampler 'class_balanced'"),
    ],
)
def test_sampler_options_are_validated(raw, message):
    with pytest.raises(ConfigError, match=message):
        build_run_config({"train": raw})


def _authors_lr_per_batch(base: float, milestones: list[int], gamma: float, accumulate: int, batches: int) -> list[float]:
    """The lr each training batch's gradient is applied with in the authors' trainer.

    `WarmupMultiStepSchedule` (warm-up 0) gets milestones // accumulation and t_total // accumulation;
    the trainer calls `lr_scheduler.step()` then `optimizer.step()` when cur_time % accumulation == 0,
    with cur_time counting batches from 1 across epochs.
    """
    steps_milestones = [m // accumulate for m in milestones]
    t_total = batches // accumulate
    scheduler_steps, out, pending = 0, [], 0
    for cur_time in range(1, batches + 1):
        pending += 1
        if cur_time % accumulate == 0:
            scheduler_steps += 1
            count = sum(m <= scheduler_steps <= t_total for m in steps_milestones)
            out.extend([base * gamma**count] * pending)
            pending = 0
    return out


def _our_lr_per_batch(optim: OptimConfig, epochs: int, batches_per_epoch: int) -> list[float]:
    """The Engine's order: accumulate, optimizer.step(), scheduler.step(); flush at the end of an epoch."""
    param = torch.nn.Parameter(torch.zeros(()))
    opt = torch.optim.SGD([param], lr=optim.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(optim, epochs, batches_per_epoch))
    out, pending = [], 0
    for _ in range(epochs):
        for b in range(batches_per_epoch):
            pending += 1
            if (b + 1) % optim.accumulate_steps == 0 or b + 1 == batches_per_epoch:
                out.extend([opt.param_groups[0]["lr"]] * pending)
                pending = 0
                opt.step()
                sched.step()
    return out


def test_iteration_milestones_follow_the_authors_schedule():
    # CIFAR-100 with the 64 x 2 sampler: 50000 // 128 = 390 batches per epoch, 100 epochs = 39000 iterations.
    optim = OptimConfig(lr=0.2, milestones=[20000, 30000], milestones_unit="iterations", gamma=0.1, accumulate_steps=10)
    ours = _our_lr_per_batch(optim, 100, 390)
    theirs = _authors_lr_per_batch(0.2, [20000, 30000], 0.1, 10, 39000)
    assert len(ours) == len(theirs) == 39000
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    lr_at = lambda iteration: ours[iteration - 1]
    # Batch 19999 is accumulated into the update that ends at batch 20000, which already uses the decayed rate.
    assert lr_at(19990) == pytest.approx(0.2)
    assert lr_at(19999) == lr_at(20000) == pytest.approx(0.02)
    assert lr_at(29990) == pytest.approx(0.02)
    assert lr_at(30000) == lr_at(39000) == pytest.approx(0.002)


def test_epoch_milestones_are_unchanged_and_iterations_are_checked_against_the_run(tmp_path):
    optim = OptimConfig(lr=0.1, milestones=[2, 3], gamma=0.5)
    per_batch = _our_lr_per_batch(optim, 4, 5)
    assert per_batch == [0.1] * 10 + [0.05] * 5 + [0.025] * 5
    write_cifar100(tmp_path, n_train=300, n_test=100)
    cfg = build_run_config({
        "data": {"name": "cifar100", "root": str(tmp_path), "val_fraction": 0.0},
        "model": {"name": "mlp"},
        "optim": {"milestones": [5000], "milestones_unit": "iterations"},
        "train": {"epochs": 2, "batch_size": 100, "device": "cpu"},
    })  # fmt: skip
    with pytest.raises(ConfigError, match=r"go past the run's 6 iterations"):
        Engine(cfg)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _grad(name: str, z: np.ndarray, y: np.ndarray, **hp: object) -> tuple[float, np.ndarray]:
    logits = torch.tensor(z, requires_grad=True)
    loss = losses.build(name, z.shape[1], **hp)(logits, torch.tensor(y))
    loss.backward()
    return loss.item(), logits.grad.numpy()


@pytest.mark.parametrize("temperature", [0.5, 0.6, 1.0, 2.0])
def test_label_correction_with_temperature_matches_its_gradient(temperature):
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(7, 5)) * 3, rng.integers(0, 5, 7)
    onehot = np.eye(5)[y]
    eps = 0.5
    p, p_t = _softmax(z), _softmax(z / temperature)
    q = (1 - eps) * onehot + eps * p_t
    value, grad = _grad("labelcorrection", z, y, epsilon=eps, logit_temperature=temperature)
    assert value == pytest.approx(float(-(q * np.log(p)).sum(1).mean()), rel=1e-12)
    np.testing.assert_allclose(grad, (p - q) / len(z), atol=1e-14)


@pytest.mark.parametrize("temperature", [1.0, 0.4])
def test_detached_confidence_penalty_is_the_authors_target(temperature):
    rng = np.random.default_rng(1)
    z, y = rng.normal(size=(6, 4)) * 2, rng.integers(0, 4, 6)
    onehot = np.eye(4)[y]
    eps = 0.5 if temperature == 1.0 else 0.25
    p, p_t = _softmax(z), _softmax(z / temperature)
    q = (1 - eps) * onehot - eps * p_t  # the authors' new_target_probs, detached; sums to 1 - 2 eps
    value, grad = _grad("confidencepenalty", z, y, epsilon=eps, definition="detached", logit_temperature=temperature)
    assert value == pytest.approx(float(-(q * np.log(p)).sum(1).mean()), rel=1e-12)
    np.testing.assert_allclose(grad, ((1 - 2 * eps) * p - (1 - eps) * onehot + eps * p_t) / len(z), atol=1e-14)
    if temperature == 1.0:  # scaled cross entropy: (1 - eps)(p - y) / N
        np.testing.assert_allclose(grad, (1 - eps) * (p - onehot) / len(z), atol=1e-14)


def test_textbook_confidence_penalty_stays_the_default():
    rng = np.random.default_rng(2)
    z, y = rng.normal(size=(5, 3)), rng.integers(0, 3, 5)
    p, onehot, eps = _softmax(z), np.eye(3)[y], 0.3
    expected = ((1 - eps) * -(onehot * np.log(p)).sum(1) + eps * (p * np.log(p)).sum(1)).mean()
    value, _ = _grad("confidencepenalty", z, y, epsilon=eps)
    assert value == pytest.approx(float(expected), rel=1e-12)
    assert losses.hyperparameters("confidencepenalty")["definition"] == "entropy"
    with pytest.raises(ConfigError, match=r"logit_temperature = 0.5 .* only applies with definition 'detached'"):
        build_run_config({"loss": {"name": "confidencepenalty", "logit_temperature": 0.5}})
    with pytest.raises(ConfigError, match=r"loss.definition = 'detach' .*did you mean 'detached'"):
        build_run_config({"loss": {"name": "confidencepenalty", "definition": "detach"}})


def test_random_rotation_is_torchvisions_rotate_per_image():
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = random_rotate(x, 15.0, torch.Generator().manual_seed(7))
    angles = (torch.rand(16, generator=torch.Generator().manual_seed(7)) * 2 - 1) * 15.0
    assert angles.abs().max() <= 15.0 and angles.std() > 1.0
    for image, angle, rotated in zip(x, angles, out):
        expected = TF.rotate(image, float(angle), interpolation=InterpolationMode.NEAREST, fill=0)
        assert torch.equal(rotated, expected.float())


def test_rotation_is_validated_and_only_drawn_when_asked(tmp_path):
    with pytest.raises(ConfigError, match=r"data.rotation_degrees: dataset 'digits' has no option 'rotation_degrees'"):
        build_run_config({"data": {"rotation_degrees": 15}})
    with pytest.raises(ConfigError, match=r"data.rotation_degrees = 181 \(dataset 'cifar100'\) is outside the allowed range \[0, 180\]"):
        build_run_config({"data": {"name": "cifar100", "root": str(tmp_path), "rotation_degrees": 181}})
    write_cifar100(tmp_path, n_train=100, n_test=100)
    from proselflc import data

    plain = data.load(build_run_config({"data": {"name": "cifar100", "root": str(tmp_path)}}).data)
    rotated = data.load(build_run_config({"data": {"name": "cifar100", "root": str(tmp_path), "rotation_degrees": 15}}).data)
    index = torch.arange(32)
    batches = [
        d.batch("train", index, augment=True, generator=torch.Generator().manual_seed(3)) for d in (plain, rotated)
    ]
    assert not torch.equal(batches[0], batches[1])
    assert torch.equal(rotated.batch("train", index), plain.batch("train", index))  # evaluation never rotates


def test_shufflenetv2_proselflc_has_the_authors_layers():
    net = models.build("shufflenetv2_proselflc", 100, (3, 32, 32))
    state = net.state_dict()
    # Counted from the authors' class (`ShuffleNetV2(class_num=100)` in slices/networks/shufflenetv2.py):
    # 394 state entries, 1,360,896 parameters; our state dict has the same keys in the same order.
    assert len(state) == 394
    assert sum(p.numel() for p in net.parameters()) == 1_360_896
    assert state["pre.0.weight"].shape == (24, 3, 3, 3) and state["pre.0.bias"].shape == (24,)
    assert not any(isinstance(m, torch.nn.ReLU) for m in net.pre)  # stem: conv + BN, no ReLU
    assert [len(s) for s in (net.stage2, net.stage3, net.stage4)] == [4, 8, 4]
    assert state["stage2.0.shortcut.0.weight"].shape == (24, 1, 3, 3)  # depthwise on all 24 input channels
    assert state["stage2.0.residual.5.weight"].shape == (58, 24, 1, 1)
    assert state["stage2.1.residual.0.weight"].shape == (58, 58, 1, 1)  # split units work on half the channels
    assert state["conv5.0.weight"].shape == (1024, 464, 1, 1) and state["fc.weight"].shape == (100, 1024)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    with pytest.raises(ValueError, match="not a ShuffleNetV2 width"):
        models.build("shufflenetv2_proselflc", 100, (3, 32, 32), width=0.75)



def test_pretrained_layers_keeps_the_first_encoder_layers(tmp_path):
    kwargs = {"vocab_size": 30, "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32}
    full = models.build("protein_transformer", 2, (32,), num_hidden_layers=4, **kwargs)
    full.save_pretrained(tmp_path)
    cut = models.build("protein_transformer", 2, (32,), pretrained=str(tmp_path), pretrained_layers=2)
    layers = cut.bert.bert.encoder.layer
    assert len(layers) == 2 and cut.bert.config.num_hidden_layers == 2
    for ours, theirs in zip(layers, full.bert.bert.encoder.layer[:2]):
        assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()))
    with pytest.raises(ValueError, match=r"pretrained_layers: 6 is more than the 4 layers"):
        models.build("protein_transformer", 2, (32,), pretrained=str(tmp_path), pretrained_layers=6)
    with pytest.raises(ValueError, match=r"model.pretrained_layers: 2 needs model.pretrained"):
        models.build("protein_transformer", 2, (32,), pretrained_layers=2)
