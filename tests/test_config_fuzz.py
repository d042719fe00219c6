"""Property-based: any malformed run config is rejected with a ConfigError naming the field, never a traceback."""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proselflc.config import ConfigError, RunConfig, build_run_config

VALID = {
    "name": "fuzz",
    "data": {"name": "digits", "val_fraction": 0.1},
    "noise": {"kind": "symmetric", "rate": 0.4},
    "model": {"name": "mlp", "hidden": 16},
    "loss": {"name": "proselflc", "exp_base": 16, "transit_time_ratio": 0.5, "trust_mode": "global",
             "logit_temperature": 1.0},
    "optim": {"lr": 0.1, "momentum": 0.9, "milestones": [2], "warmup_epochs": 1},
    "train": {"epochs": 3, "batch_size": 32, "device": "cpu", "seed": 0},
}
FIELDS = [(section, key) for section, values in VALID.items() if isinstance(values, dict) for key in values]

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-10**6, max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(min_value=-5, max_value=50), max_size=4),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(FIELDS), value=junk)
def test_a_mutated_field_is_accepted_or_rejected_with_its_path(field, value):
    section, key = field
    raw = copy.deepcopy(VALID)
    raw[section][key] = value
    try:
        cfg = build_run_config(raw)
    except ConfigError as err:
        message = str(err)
        assert f"{section}.{key}" in message or f"{section}:" in message or f"{section}" in message.split("\n")[1]
        assert "Traceback" not in message
    else:
        assert isinstance(cfg, RunConfig)


@settings(max_examples=60, deadline=None)
@given(section=st.sampled_from(sorted(VALID)), key=st.text(min_size=1, max_size=10).filter(str.isidentifier))
def test_unknown_keys_in_strict_sections_are_named(section, key):
    raw = copy.deepcopy(VALID)
    if not isinstance(raw[section], dict) or key in raw[section]:
        return
    raw[section][key] = 1
    assert key in refusal(raw, f"{section}.{key}")


def refusal(raw: dict, what: str) -> str:
    """The ConfigError message for `raw`; fails the test when `raw` is accepted."""
    try:
        build_run_config(raw)
    except ConfigError as err:
        return str(err)
    raise AssertionError(f"{what} was accepted")


#: Numeric fields of the strict sections: true/false and inf/nan make no sense in any of them.
NUMERIC = [
    ("data", "val_fraction"), ("noise", "rate"), ("optim", "lr"), ("optim", "momentum"), ("optim", "warmup_epochs"),
    ("train", "epochs"), ("train", "batch_size"), ("train", "seed"), ("loss", "exp_base"), ("model", "hidden"),
]


@settings(max_examples=80, deadline=None)
@given(field=st.sampled_from(NUMERIC),
       value=st.one_of(st.booleans(), st.sampled_from([float("inf"), float("-inf"), float("nan")])))
def test_booleans_and_non_finite_numbers_are_always_refused(field, value):
    section, key = field
    raw = copy.deepcopy(VALID)
    raw[section][key] = value
    assert section in refusal(raw, f"{section}.{key} = {value!r}")
