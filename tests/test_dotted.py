"""One module turns dotted keys (`optim.lr`) into nested dicts and back, for every layer that names a field."""

from __future__ import annotations

import pytest

from proselflc import dotted
from proselflc.api import _dotted
from proselflc.config import ConfigError, parse_overrides
from proselflc.search_spaces import apply_params


def test_flatten_and_nest_are_inverse_on_nested_dicts() -> None:
    tree = {"optim": {"lr": 0.1, "milestones": [2, 4]}, "loss": {"name": "gce", "q": 0.7}, "name": "run"}
    flat = dotted.flatten(tree)
    assert flat == {"optim.lr": 0.1, "optim.milestones": [2, 4], "loss.name": "gce", "loss.q": 0.7, "name": "run"}
    assert dotted.nest(flat) == tree


def test_nest_merges_dotted_and_nested_keys_later_ones_winning() -> None:
    items = {"train": {"epochs": 5, "seed": 0}, "train.epochs": 7, "optim": {"lr": 0.1}, "optim.schedule": "constant"}
    assert dotted.nest(items) == {"train": {"epochs": 7, "seed": 0}, "optim": {"lr": 0.1, "schedule": "constant"}}
    assert dotted.nest({"a": {"b.c": 1}}) == {"a": {"b": {"c": 1}}}
    assert dotted.flatten({"a": {}}) == {}, "an empty section has no leaf"


def test_set_path_copies_what_it_changes_and_refuses_a_value_on_the_way() -> None:
    base = {"optim": {"lr": 0.1}, "loss": {"name": "gce"}}
    out = dict(base)
    dotted.set_path(out, "optim.lr", 0.5)
    dotted.set_path(out, "model.hidden", 32)
    assert out == {"optim": {"lr": 0.5}, "loss": {"name": "gce"}, "model": {"hidden": 32}}
    assert base == {"optim": {"lr": 0.1}, "loss": {"name": "gce"}}, "the caller's nested dicts are untouched"
    with pytest.raises(dotted.PathConflict) as caught:
        dotted.set_path(out, "optim.lr.x", 1)
    assert caught.value.part == "lr"


def test_the_callers_keep_their_own_messages() -> None:
    with pytest.raises(ConfigError, match=r"override 'a.b=2': 'a' is already set to a value"):
        parse_overrides(["a=1", "a.b=2"])
    with pytest.raises(ConfigError, match=r"trial parameter 'lr' is not a dotted RunConfig path"):
        apply_params({"optim": {}}, {"lr": 0.1})
    assert parse_overrides(["train.epochs=3", "train.seed=1"]) == {"train": {"epochs": 3, "seed": 1}}
    assert _dotted({"base": {"train": {"epochs": 5}}, "num_samples": 2}) == ["base.train.epochs=5", "num_samples=2"]
