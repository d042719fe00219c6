"""Search-space presets and domains: every preset converts to Ray domains Optuna can sample into valid configs."""

from __future__ import annotations

import random

import optuna
import pytest
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from proselflc import losses, search_spaces
from proselflc.config import ConfigError, RunConfig, build_run_config
from proselflc.search_spaces import PRESETS, apply_params, build_space, resolve, to_tune


def base_for(loss: str) -> dict:
    raw = RunConfig().to_dict()
    raw["loss"] = {"name": loss}
    return raw


def test_there_is_a_preset_for_every_loss() -> None:
    assert set(PRESETS) == set(losses.NAMES)


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_converts_and_ray_samples_valid_configs(name: str) -> None:
    space = build_space(name, name, base_for(name), f"methods.{name}.search")
    assert "optim.lr" in space
    assert {k for k in space if k.startswith("loss.")} == {f"loss.{k}" for k in losses.hyperparameters(name)}
    domains = to_tune(space)
    assert all(isinstance(d, tune.search.sample.Domain) for d in domains.values())
    random.seed(0)
    for _ in range(20):
        params = {key: domain.sample() for key, domain in domains.items()}
        cfg = build_run_config(apply_params(base_for(name), params))
        for key, value in params.items():
            section, field = key.split(".")
            assert cfg.loss.hyperparameters[field] == value if section == "loss" else getattr(cfg.optim, field) == value


@pytest.mark.parametrize("name", PRESETS)
def test_optuna_samples_every_preset_within_its_ranges(name: str) -> None:
    space = build_space(name, name, base_for(name), "search")
    searcher = OptunaSearch(sampler=optuna.samplers.TPESampler(seed=0))
    assert searcher.set_search_properties("val_accuracy", "max", to_tune(space))
    for i in range(3):
        suggestion = searcher.suggest(f"trial{i}")
        assert set(suggestion) == set(space)
        for key, value in suggestion.items():
            domain = space[key]
            if domain.type == "choice":
                assert value in domain.values
            else:
                low, high = domain.edges()
                assert low <= value <= high, (key, value)
        build_run_config(apply_params(base_for(name), suggestion))


def test_resolve_defaults_to_the_loss_preset_and_edits_a_preset() -> None:
    assert resolve(None, "proselflc") == search_spaces.preset("proselflc")
    edited = resolve(
        {"preset": "proselflc", "optim.weight_decay": None, "loss.exp_base": {"type": "uniform", "low": 4, "high": 8}},
        "proselflc",
    )
    assert "optim.weight_decay" not in edited
    assert edited["loss.exp_base"] == {"type": "uniform", "low": 4, "high": 8}
    assert edited["loss.trust_mode"] == search_spaces.preset("proselflc")["loss.trust_mode"]
    assert resolve({}, "crossentropy") == {}


def test_domains_cover_every_type_and_their_reachable_edges() -> None:
    raw = {
        "optim.lr": {"type": "qloguniform", "low": 0.01, "high": 0.5, "q": 0.01},
        "optim.momentum": {"type": "quniform", "low": 0.5, "high": 0.9, "q": 0.1},
        "optim.warmup_epochs": {"type": "randint", "low": 0, "high": 3},
        "train.batch_size": {"type": "lograndint", "low": 16, "high": 129},
        "optim.accumulate_steps": {"type": "qrandint", "low": 1, "high": 4, "q": 1},
        "model.hidden": {"type": "choice", "values": [16, 32]},
    }
    space = build_space(raw, "crossentropy", base_for("crossentropy"), "search")
    assert space["optim.warmup_epochs"].edges() == [0, 2]
    assert space["optim.accumulate_steps"].edges() == [1, 4]
    assert space["model.hidden"].describe() == "choice(values=[16, 32])"
    domains = to_tune(space)
    assert isinstance(domains["optim.warmup_epochs"], tune.search.sample.Integer)
    assert isinstance(domains["model.hidden"], tune.search.sample.Categorical)


@pytest.mark.parametrize(
    ("search", "loss", "expected"),
    [
        ("nopreset", "crossentropy", "unknown search-space preset 'nopreset'"),
        ({"loss.epsilon": {"type": "uniform", "low": 0.0, "high": 1.5}}, "labelsmoothing",
         "can sample 1.5, which is invalid"),
        ({"loss.eps": {"type": "uniform", "low": 0.0, "high": 0.5}}, "labelsmoothing", "did you mean 'epsilon'"),
        ({"loss.epsilon": {"type": "uniform", "low": 0.0, "high": 0.5}}, "crossentropy",
         "loss 'crossentropy' has no field 'epsilon'"),
        ({"optim.lr": {"type": "logunifrom", "low": 0.1, "high": 1}}, "crossentropy", "did you mean 'loguniform'"),
        ({"optim.lr": {"type": "loguniform", "low": 0.0, "high": 1}}, "crossentropy", "needs low > 0"),
        ({"optim.lr": {"type": "uniform", "low": 0.5, "high": 0.1}}, "crossentropy", "must be finite and below high"),
        ({"optim.lr": {"type": "uniform", "low": 0.1, "high": 0.5, "q": 2}}, "crossentropy", "q"),
        ({"optim.lr": 0.1}, "crossentropy", "expected a domain mapping"),
        ({"optim.lr": {"type": "choice", "values": []}}, "crossentropy", "values"),
        ({"optim.warmup_epochs": {"type": "randint", "low": 2, "high": 2}}, "crossentropy", "high is exclusive"),
        ({"optim.momentum": {"type": "uniform", "low": 0.5, "high": 1.0}}, "crossentropy", "can sample 1.0"),
        ({"noise.rate": {"type": "uniform", "low": 0.0, "high": 0.5}}, "crossentropy", "data and noise are fixed"),
        ({"lr": {"type": "uniform", "low": 0.01, "high": 0.5}}, "crossentropy", "dotted RunConfig paths"),
        ({"train.seed": {"type": "randint", "low": 0, "high": 5}}, "crossentropy", "final_seeds"),
        ({"train.epochs": {"type": "randint", "low": 1, "high": 5}}, "crossentropy", "asha.max_t"),
        ({"loss.name": {"type": "choice", "values": ["mae"]}}, "crossentropy", "own study"),
        ({"optim.nesterovv": {"type": "choice", "values": [True]}}, "crossentropy", "did you mean 'nesterov'"),
        (["optim.lr"], "crossentropy", "must be a preset name"),
    ],
)
def test_bad_spaces_name_the_key_the_value_and_what_is_allowed(search, loss: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_space(search, loss, base_for(loss), "methods.m.search")
    assert expected in str(info.value)
    if isinstance(search, dict):
        assert f"methods.m.search.{next(iter(search))}" in str(info.value)


def test_apply_params_sets_dotted_paths_without_touching_the_base() -> None:
    base = base_for("proselflc")
    out = apply_params(base, {"loss.exp_base": 8.0, "optim.lr": 0.05, "model.hidden": 32})
    assert out["loss"] == {"name": "proselflc", "exp_base": 8.0}
    assert out["optim"]["lr"] == 0.05 and out["model"]["hidden"] == 32
    assert base["loss"] == {"name": "proselflc"} and "hidden" not in base["model"]
    with pytest.raises(ConfigError, match="not a dotted RunConfig path"):
        apply_params(base, {"lr": 0.1})


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "uniform", "low": 0.0, "high": 1.0},
        {"type": "loguniform", "low": 1e-3, "high": 1.0},
        {"type": "quniform", "low": 0.0, "high": 1.0, "q": 0.25},
        {"type": "qloguniform", "low": 1e-3, "high": 1.0, "q": 1e-3},
        {"type": "randint", "low": 1, "high": 5},
        {"type": "lograndint", "low": 1, "high": 64},
        {"type": "qrandint", "low": 0, "high": 10, "q": 2},
        {"type": "choice", "values": ["a", 1, True]},
    ],
    ids=lambda raw: raw["type"],
)
def test_a_domain_is_the_same_optuna_distribution_the_sweep_and_ray_tune_make(raw: dict) -> None:
    """`to_optuna` is what OptunaSearch makes of `to_tune`: the sweep's samplers and the analysis read one space."""
    from proselflc.analysis.distributions import from_spec
    from proselflc.search_spaces.domains import parse_domain

    domain = parse_domain(raw)
    ray_made = OptunaSearch.convert_search_space({"x": domain.to_tune()})["x"]
    assert domain.to_optuna() == ray_made == from_spec(raw)
    assert search_spaces.to_optuna({"x": domain}) == {"x": ray_made}


def test_the_analysis_falls_back_when_a_recorded_domain_no_longer_parses() -> None:
    from proselflc.analysis.distributions import from_spec

    assert from_spec({"type": "uniform", "low": 1.0, "high": 0.0}) is None
    assert from_spec({"type": "beta", "a": 1}) is None
