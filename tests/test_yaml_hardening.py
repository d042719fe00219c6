"""Config files are read by one hardened loader: bounded in time and memory, strict about what they hold."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from proselflc.cli import main
from proselflc.config import ConfigError, build_run_config, load_run_config, parse_overrides, read_yaml
from proselflc.safe_yaml import MAX_CONFIG_BYTES, dump_text, load_text

#: The classic "billion laughs": nine levels of ten aliases each, 10**9 leaves from under 1 kB.
ALIAS_BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(ord('a') + i)}: &{chr(ord('a') + i)} [{', '.join(['*' + chr(ord('a') + i - 1)] * 10)}]\n"
    for i in range(1, 9)
) + "noise: {rate: *i}\n"


def write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.faults
def test_an_alias_bomb_fails_fast_within_a_memory_bound(tmp_path):
    path = write(tmp_path, ALIAS_BOMB)
    assert path.stat().st_size < 1024
    probe = textwrap.dedent(
        f"""
        import resource, sys
        from proselflc.cli import main
        import proselflc.training  # torch maps large segments: import before the bound, not under it
        in_use = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1]) * 1024
        limit = in_use + (512 << 20)  # 512 MiB more than the imports took: the bomb would need gigabytes
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        sys.exit(main(["train", {str(path)!r}]))
        """
    )
    done = subprocess.run([sys.executable, "-c", probe], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "line 2" in done.stderr and "alias '*a'" in done.stderr and str(path) in done.stderr
    assert "Traceback" not in done.stderr


def test_aliases_are_refused_even_when_harmless(tmp_path):
    path = write(tmp_path, "train: &t {epochs: 2}\nnoise: {rate: 0.2}\nextra: *t\n")
    with pytest.raises(ConfigError, match=r"line 3: YAML alias '\*t' is not allowed"):
        read_yaml(path)
    with pytest.raises(ConfigError, match="alias"):
        parse_overrides(["train.epochs=&x [*x]"])


def test_duplicate_keys_are_refused_naming_key_and_lines(tmp_path):
    path = write(tmp_path, "data: {name: digits}\noptim:\n  lr: 0.1\n  momentum: 0.9\n  lr: 0.5\n")
    with pytest.raises(ConfigError, match=r"line 5: duplicate key 'lr' \(first set on line 3\)"):
        read_yaml(path)
    top = write(tmp_path, "train: {epochs: 2}\ntrain: {epochs: 3}\n", "top.yaml")
    with pytest.raises(ConfigError, match="duplicate key 'train'"):
        read_yaml(top)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_an_empty_file_is_refused(tmp_path, text):
    with pytest.raises(ConfigError, match="is empty"):
        load_run_config(write(tmp_path, text))


def test_an_oversized_or_binary_file_is_refused(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("data: {name: digits}\n" + "# padding\n" * (MAX_CONFIG_BYTES // 10 + 1))
    with pytest.raises(ConfigError, match="larger than 1024 KiB"):
        read_yaml(big)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"data: \xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_yaml(binary)


@pytest.mark.parametrize(
    ("raw", "field", "says"),
    [
        ({"optim": {"lr": float("inf")}}, "optim.lr", "finite"),
        ({"optim": {"weight_decay": float("nan")}}, "optim.weight_decay", "finite"),
        ({"data": {"val_fraction": float("nan")}}, "data.val_fraction", "finite"),
        ({"loss": {"name": "proselflc", "exp_base": float("inf")}}, "loss.exp_base", "finite"),
        ({"model": {"name": "mlp", "hidden": float("inf")}}, "model.hidden", "finite"),
        ({"train": {"epochs": True}}, "train.epochs", "boolean"),
        ({"train": {"batch_size": False}}, "train.batch_size", "boolean"),
        ({"optim": {"lr": True}}, "optim.lr", "boolean"),
        ({"optim": {"milestones": [True]}}, "optim.milestones", "boolean"),
        ({"name": "../../x"}, "name", "plain directory name"),
        ({"name": "/tmp/abs"}, "name", "plain directory name"),
        ({"name": ".hidden"}, "name", "plain directory name"),
        ({"name": "a/b"}, "name", "plain directory name"),
    ],
)
def test_values_that_make_no_sense_are_refused(raw, field, says):
    with pytest.raises(ConfigError) as err:
        build_run_config(raw)
    assert field in str(err.value) and says in str(err.value)


def test_booleans_stay_valid_where_a_boolean_is_meant():
    cfg = build_run_config({"train": {"amp": False, "compile": True}, "optim": {"nesterov": True}, "name": "ok-1.2_x"})
    assert (cfg.train.amp, cfg.train.compile, cfg.optim.nesterov, cfg.name) == (False, True, True, "ok-1.2_x")


def test_the_cli_writes_nothing_outside_runs_for_an_unsafe_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "name: ../../escaped\ntrain: {epochs: 1}\n")
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert "run name '../../escaped'" in err and "Traceback" not in err
    assert not (tmp_path.parent.parent / "escaped").exists() and not (tmp_path / "runs").exists()


def test_what_the_project_writes_reads_back_without_aliases():
    shared = [20, 30]
    data = {"optim": {"milestones": shared}, "copy": {"milestones": shared}}
    assert "&" not in dump_text(data)
    assert load_text(dump_text(data)) == data
