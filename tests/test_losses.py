"""Losses against independent numpy computations of their values and gradients w.r.t. the logits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from proselflc import losses

N, C = 6, 5


def _np_log_softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _ce_like(log_p: np.ndarray, q: np.ndarray) -> tuple[float, np.ndarray]:
    """Value and gradient of mean CE(q, softmax(z)) for a target q that carries no gradient."""
    p = np.exp(log_p)
    return float(-(q * log_p).sum(1).mean()), (p - q) / len(p)


def reference(name: str, z: np.ndarray, y: np.ndarray, **hp: float) -> tuple[float, np.ndarray]:
    """Value and d value / d z of loss `name`, written from the papers' formulas in float64 numpy."""
    log_p = _np_log_softmax(z)
    p = np.exp(log_p)
    n, c = p.shape
    if name == "crossentropy":
        return _ce_like(log_p, y)
    if name == "labelsmoothing":
        eps = hp.get("epsilon", 0.1)
        return _ce_like(log_p, (1 - eps) * y + eps / c)
    if name == "labelcorrection":
        eps = hp.get("epsilon", 0.05)
        return _ce_like(log_p, (1 - eps) * y + eps * p)
    if name == "confidencepenalty":
        eps = hp.get("epsilon", 0.1)
        h = -(p * log_p).sum(1, keepdims=True)
        value = ((1 - eps) * -(y * log_p).sum(1) - eps * h[:, 0]).mean()
        # dH/dz_k = -p_k (log p_k + H)
        grad = ((1 - eps) * (p - y) + eps * p * (log_p + h)) / n
        return float(value), grad
    if name == "mae":
        s = np.sign(p - y)
        grad = (s * p - p * (s * p).sum(1, keepdims=True)) / n
        return float(np.abs(p - y).sum(1).mean()), grad
    if name == "mse":
        d = p - y
        grad = 2 * (d * p - p * (d * p).sum(1, keepdims=True)) / n
        return float((d**2).sum(1).mean()), grad
    if name == "gce":
        q = hp.get("q", 0.7)
        pq = p**q
        grad = -(y * pq - p * (y * pq).sum(1, keepdims=True)) / n
        return float(((y * (1 - pq)).sum(1) / q).mean()), grad
    if name == "sce":
        alpha, beta = hp.get("alpha", 0.1), hp.get("beta", 1.0)
        log_y = np.log(np.clip(y, 1e-4, 1.0))
        rce = -(p * log_y).sum(1)
        value = (alpha * -(y * log_p).sum(1) + beta * rce).mean()
        grad = (alpha * (p - y) - beta * p * (log_y - (p * log_y).sum(1, keepdims=True))) / n
        return float(value), grad
    if name == "dm_imae":
        beta, lam = hp.get("beta", 2.0), hp.get("lambda", 0.0)
        p_y = (y * p).sum(1)
        w = np.exp(beta * (1 - p_y) * p_y**lam)
        w = w / w.sum()
        l1 = np.abs(p - y).sum(1)
        return float((w * l1).sum() / 2), w[:, None] * (p - y) / l1[:, None]
    raise AssertionError(name)


def _inputs(seed: int, soft: bool) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=2.0, size=(N, C))
    if soft:
        y = rng.dirichlet(np.ones(C), size=N)
        targets = torch.tensor(y)
    else:
        idx = rng.integers(0, C, size=N)
        y = np.eye(C)[idx]
        targets = torch.tensor(idx)
    return torch.tensor(z, requires_grad=True), targets, y


CASES = [
    ("crossentropy", {}),
    ("labelsmoothing", {}),
    ("labelsmoothing", {"epsilon": 0.3}),
    ("confidencepenalty", {"epsilon": 0.25}),
    ("labelcorrection", {"epsilon": 0.4}),
    ("mae", {}),
    ("mse", {}),
    ("gce", {}),
    ("gce", {"q": 0.3}),
    ("sce", {"alpha": 0.5, "beta": 2.0}),
    ("dm_imae", {}),
    ("dm_imae", {"beta": 5.0, "lambda": 1.0}),
]


@pytest.mark.parametrize("soft", [False, True], ids=["indices", "probabilities"])
@pytest.mark.parametrize(("name", "hp"), CASES, ids=[f"{n}-{hp}" for n, hp in CASES])
def test_value_and_gradient_match_reference(name: str, hp: dict, soft: bool) -> None:
    z, targets, y = _inputs(seed=len(name) + len(hp), soft=soft)
    loss_fn = losses.build(name, C, **hp)
    value = loss_fn(z, targets, step=3, total_steps=10)
    value.backward()
    ref_value, ref_grad = reference(name, z.detach().numpy(), y, **hp)
    assert value.ndim == 0
    assert value.item() == pytest.approx(ref_value, rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(z.grad.numpy(), ref_grad, rtol=1e-8, atol=1e-12)


# Label correction, ProSelfLC and DM define their gradient (detached targets / manipulated derivative),
# so only the losses whose gradient is the derivative of their value are checked by finite differences.
@pytest.mark.parametrize(("name", "hp"), [c for c in CASES if c[0] not in ("dm_imae", "labelcorrection")])
def test_gradient_matches_finite_differences(name: str, hp: dict) -> None:
    z, targets, _ = _inputs(seed=7, soft=True)
    loss_fn = losses.build(name, C, **hp)
    assert torch.autograd.gradcheck(lambda logits: loss_fn(logits, targets), (z,))


def test_labelsmoothing_equals_torch_label_smoothing() -> None:
    z, targets, _ = _inputs(seed=1, soft=False)
    ours = losses.build("labelsmoothing", C, epsilon=0.2)(z, targets)
    assert ours.item() == pytest.approx(F.cross_entropy(z, targets, label_smoothing=0.2).item(), rel=1e-12)


def _proselflc_reference(
    z: np.ndarray, y: np.ndarray, t: float, b_exp: float, b: float, mode: str, temp: float
):
    log_p_t = _np_log_softmax(z / temp)
    p_t = np.exp(log_p_t)
    g = 1.0 / (1.0 + math.exp(-b_exp * (t - b)))
    if mode == "global":
        e = np.ones(len(z))
    elif mode == "entropy":
        e = 1.0 + (p_t * log_p_t).sum(1) / math.log(z.shape[1])
    else:
        e = p_t.max(1)
    eps = (g * e)[:, None]
    q = (1 - eps) * y + eps * p_t
    return q, g, e


@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("trust_mode", ["global", "entropy", "max_p"])
@pytest.mark.parametrize("soft", [False, True], ids=["indices", "probabilities"])
def test_proselflc_gradient_is_p_minus_q_over_n(trust_mode: str, temperature: float, soft: bool) -> None:
    z, targets, y = _inputs(seed=11, soft=soft)
    hp = {
        "exp_base": 8.0,
        "transit_time_ratio": 0.3,
        "trust_mode": trust_mode,
        "logit_temperature": temperature,
    }
    loss_fn = losses.build("proselflc", C, **hp)
    value = loss_fn(z, targets, step=45, total_steps=100)
    value.backward()
    q, g, e = _proselflc_reference(z.detach().numpy(), y, 0.45, 8.0, 0.3, trust_mode, temperature)
    ref_value, ref_grad = _ce_like(_np_log_softmax(z.detach().numpy()), q)
    assert value.item() == pytest.approx(ref_value, rel=1e-10)
    np.testing.assert_allclose(z.grad.numpy(), ref_grad, rtol=1e-9, atol=1e-13)
    stats = loss_fn.stats
    assert stats["global_trust"].item() == pytest.approx(g, rel=1e-12)
    assert stats["mean_example_trust"].item() == pytest.approx(e.mean(), rel=1e-10)
    assert stats["mean_epsilon"].item() == pytest.approx((g * e).mean(), rel=1e-10)


def test_proselflc_time_is_clipped_and_accepts_tensors() -> None:
    z, targets, _ = _inputs(seed=2, soft=False)
    loss_fn = losses.build("proselflc", C, exp_base=10.0, transit_time_ratio=0.5)
    late = loss_fn(z, targets, step=250, total_steps=100)
    assert loss_fn.stats["global_trust"].item() == pytest.approx(1 / (1 + math.exp(-5.0)), rel=1e-6)
    at_end = loss_fn(z, targets, step=torch.tensor(100), total_steps=torch.tensor(100))
    assert at_end.item() == pytest.approx(late.item(), rel=1e-12)
    loss_fn(z, targets, step=-5, total_steps=100)
    assert loss_fn.stats["global_trust"].item() == pytest.approx(1 / (1 + math.exp(5.0)), rel=1e-6)
    mixed = loss_fn(z, targets, step=torch.tensor(30), total_steps=100)
    assert mixed.item() == pytest.approx(loss_fn(z, targets, step=30, total_steps=100).item(), rel=1e-12)


def test_proselflc_exp_base_zero_is_constant_half_trust() -> None:
    z, targets, _ = _inputs(seed=3, soft=False)
    loss_fn = losses.build("proselflc", C, exp_base=0.0)
    loss_fn(z, targets, step=0, total_steps=10)
    assert loss_fn.stats["global_trust"].item() == 0.5


def test_dm_imae_large_beta_stays_finite_and_weights_hard_examples() -> None:
    z = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0]], requires_grad=True)
    targets = torch.tensor([0, 0])  # the first example is easy, the second hard
    value = losses.build("dm_imae", 3, beta=1000.0)(z, targets)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(z.grad).all()
    per_example = z.grad.abs().sum(dim=1)
    assert per_example.sum().item() == pytest.approx(1.0, rel=1e-6)
    assert per_example[1] > 0.999


def test_dm_imae_perfect_prediction_gives_zero_gradient_not_nan() -> None:
    z = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    targets = torch.full((2, 3), 1 / 3, dtype=torch.float64)
    value = losses.build("dm_imae", 3)(z, targets)
    value.backward()
    assert value.item() == 0.0
    assert torch.equal(z.grad, torch.zeros_like(z))


def _build(name: str, **hp: float) -> losses.Loss:
    """`losses.build`, sized for a batch of N examples (a loss with per-example state needs it)."""
    loss_fn = losses.build(name, C, **hp)
    loss_fn.set_num_examples(N)
    return loss_fn


#: Every loss takes the batch's indices; those with per-example state (ELR) read them.
INDEX = torch.arange(N)


@pytest.mark.parametrize("name", losses.NAMES)
def test_indices_and_one_hot_probabilities_agree(name: str) -> None:
    z, targets, _ = _inputs(seed=5, soft=False)
    by_index = _build(name)(z, targets, step=7, total_steps=10, index=INDEX)
    by_probs = _build(name)(z, F.one_hot(targets, C).double(), step=7, total_steps=10, index=INDEX)
    assert by_index.item() == pytest.approx(by_probs.item(), rel=1e-12)


@pytest.mark.parametrize("name", losses.NAMES)
def test_bf16_autocast_computes_in_float32(name: str) -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, C)
    x, targets = torch.randn(N, 8), torch.randint(0, C, (N,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = layer(x)
        value = _build(name)(logits, targets, step=1, total_steps=2, index=INDEX)
    assert logits.dtype == torch.bfloat16
    assert value.dtype == torch.float32
    reference_value = _build(name)(logits.detach().float(), targets, step=1, total_steps=2, index=INDEX)
    assert value.item() == pytest.approx(reference_value.item(), rel=1e-6)
    value.backward()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()


@pytest.mark.parametrize("name", losses.NAMES)
def test_stats_are_detached_scalars_and_losses_are_stateless(name: str) -> None:
    """Only a loss that declares per-example state keeps any (in its state_dict, so checkpoints carry it)."""
    z, targets, _ = _inputs(seed=9, soft=False)
    loss_fn = _build(name)
    loss_fn(z, targets, step=1, total_steps=4, index=INDEX)
    expected = (
        {"mean_epsilon", "global_trust", "mean_example_trust"} if name == "proselflc" else {"mean_epsilon"}
    )
    assert set(loss_fn.stats) == expected
    for value in loss_fn.stats.values():
        assert isinstance(value, torch.Tensor) and value.ndim == 0 and not value.requires_grad
    if loss_fn.per_example_state:
        assert set(loss_fn.state_dict()) == {"state"} and loss_fn.state_dict()["state"].shape == (N, C)
    else:
        assert loss_fn.state_dict() == {}


@pytest.mark.parametrize(
    ("name", "epsilon"),
    [("crossentropy", 0.0), ("labelsmoothing", 0.2), ("confidencepenalty", 0.3), ("labelcorrection", 0.4)],
)
def test_mean_epsilon_of_fixed_methods(name: str, epsilon: float) -> None:
    z, targets, _ = _inputs(seed=4, soft=False)
    loss_fn = losses.build(name, C, **({"epsilon": epsilon} if epsilon else {}))
    loss_fn(z, targets)
    assert loss_fn.stats["mean_epsilon"].item() == pytest.approx(epsilon)


def test_hyperparameters_are_the_build_defaults() -> None:
    assert losses.hyperparameters("proselflc") == {
        "exp_base": 16.0,
        "transit_time_ratio": 0.5,
        "trust_mode": "global",
        "logit_temperature": 1.0,
    }
    assert losses.hyperparameters("dm_imae") == {"beta": 2.0, "lambda": 0.0}
    assert losses.hyperparameters("gce") == {"q": 0.7}
    assert losses.hyperparameters("sce") == {"alpha": 0.1, "beta": 1.0}
    assert losses.hyperparameters("labelsmoothing") == {"epsilon": 0.1}
    assert losses.hyperparameters("crossentropy") == {}
    z, targets, _ = _inputs(seed=6, soft=False)
    for name in losses.NAMES:
        explicit = _build(name, **losses.hyperparameters(name))(z, targets, step=1, total_steps=3, index=INDEX)
        default = _build(name)(z, targets, step=1, total_steps=3, index=INDEX)
        assert explicit.item() == default.item()


def test_dm_imae_accepts_lambda_keyword() -> None:
    loss_fn = losses.build("dm_imae", C, **{"lambda": 1.5, "beta": 3})
    assert (loss_fn.beta, loss_fn.lam) == (3.0, 1.5)
    losses.check("dm_imae", **{"lambda": 0.5})


BAD = [
    ("proselflc", {"exp_base": -1.0}, r"loss\.exp_base = -1\.0 .*\[0, inf\)"),
    ("proselflc", {"logit_temperature": 0.0}, r"loss\.logit_temperature = 0\.0 .*\(0, inf\)"),
    ("proselflc", {"logit_temperature": -2}, r"loss\.logit_temperature = -2 .*\(0, inf\)"),
    ("proselflc", {"transit_time_ratio": 1.5}, r"loss\.transit_time_ratio = 1\.5 .*\[0, 1\]"),
    (
        "proselflc",
        {"trust_mode": "entropi"},
        r"loss\.trust_mode = 'entropi'.*valid: entropy, global, max_p \(did you mean 'entropy'\?\)",
    ),
    ("labelsmoothing", {"epsilon": 1.2}, r"loss\.epsilon = 1\.2 \(loss 'labelsmoothing'\).*\[0, 1\]"),
    ("confidencepenalty", {"epsilon": -0.1}, r"loss\.epsilon = -0\.1 .*\[0, 1\]"),
    ("labelcorrection", {"epsilon": float("nan")}, r"loss\.epsilon = nan"),
    ("labelcorrection", {"epsilon": "0.1"}, r"loss\.epsilon = '0\.1' .*must be a number"),
    ("gce", {"q": 0.0}, r"loss\.q = 0\.0 .*\(0, 1\]"),
    ("sce", {"alpha": -1.0}, r"loss\.alpha = -1\.0"),
    ("dm_imae", {"lambda": -1.0}, r"loss\.lambda = -1\.0"),
    ("dm_imae", {"beta": True}, r"loss\.beta = True .*must be a number"),
    (
        "proselflc",
        {"epsilon": 0.1},
        (
            r"^loss\.epsilon: loss 'proselflc' has no hyperparameter 'epsilon'; "
            r"allowed: exp_base, logit_temperature, transit_time_ratio, trust_mode$"
        ),
    ),
    ("proselflc", {"exp_bas": 2.0}, r"no hyperparameter 'exp_bas'.*did you mean 'exp_base'"),
    ("crossentropy", {"epsilon": 0.1}, r"loss 'crossentropy' has no hyperparameter 'epsilon'; allowed: \(none\)"),
    (
        "crossentropie",
        {},
        r"unknown loss 'crossentropie'; valid: .*proselflc.*\(did you mean 'crossentropy'\?\)",
    ),
]


@pytest.mark.parametrize(("name", "hp", "match"), BAD, ids=[f"{n}-{list(hp)}" for n, hp, _ in BAD])
def test_invalid_configuration_raises_the_same_error_in_check_and_build(
    name: str, hp: dict, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        losses.check(name, **hp)
    with pytest.raises(ValueError, match=match):
        losses.build(name, C, **hp)


@pytest.mark.parametrize("num_classes", [1, 2.5, True])
def test_invalid_num_classes(num_classes: object) -> None:
    with pytest.raises(ValueError, match="num_classes"):
        losses.build("crossentropy", num_classes)


def test_shape_and_step_errors() -> None:
    loss_fn = losses.build("proselflc", C)
    z = torch.randn(N, C)
    with pytest.raises(ValueError, match=r"logits must have shape \(N, 5\)"):
        loss_fn(torch.randn(N, C + 1), torch.zeros(N, dtype=torch.long))
    with pytest.raises(ValueError, match="targets has 3 labels for 6 logits rows"):
        loss_fn(z, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"targets must be \(N,\) integer class indices or \(N, 5\)"):
        loss_fn(z, torch.zeros(N, C, dtype=torch.long))
    with pytest.raises(ValueError, match="total_steps = 0 must be > 0"):
        loss_fn(z, torch.zeros(N, dtype=torch.long), step=0, total_steps=0)
