"""The shipped example configs by name (`configs`, `init`, `tune quickstart` from anywhere), `--version`, and
progress that follows where it is written: one line per epoch into a file, a live bar on a terminal."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from proselflc import examples
from proselflc.cli import main
from proselflc.errors import ConfigError
from proselflc.training.progress import Progress
from proselflc.tuning import load_sweep


def test_configs_lists_the_shipped_sweeps_and_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["configs"]) == 0
    out = capsys.readouterr().out
    sweeps, runs = out.split("runs (proselflc train NAME):")
    assert "quickstart" in sweeps and "paper/paper_cifar100_resnet18_symmetric" in sweeps
    assert "digits" in runs and "paper/cifar100_resnet18_proselflc_symmetric0.4" in runs
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("proselflc ")


def test_a_name_finds_the_shipped_file_from_any_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("quickstart", "quickstart.yaml", "configs/quickstart.yaml"):
        assert examples.resolve(name) == examples.ROOT / "quickstart.yaml"
    assert load_sweep("paper/paper_cifar100_resnet18_symmetric").base.model.name == "resnet18"
    with pytest.raises(ConfigError, match="no config that ships with proselflc is named 'quickstat'.*'quickstart'"):
        examples.resolve("quickstat")


def test_init_copies_a_sweep_with_its_base_and_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", "paper/paper_cifar100_resnet18_symmetric", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cifar100_resnet18_crossentropy_symmetric0.4.yaml", "paper_cifar100_resnet18_symmetric.yaml",
    ]
    assert load_sweep(tmp_path / "paper_cifar100_resnet18_symmetric.yaml").name == "paper_cifar100_resnet18_symmetric"
    assert "proselflc tune" in capsys.readouterr().out
    assert main(["init", "paper/paper_cifar100_resnet18_symmetric", str(tmp_path)]) == 2
    assert "already exist" in capsys.readouterr().err


def test_train_writes_one_progress_line_per_epoch_into_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sets = ["train.epochs=3", "optim.milestones=[2]", "data.limit=300"]
    assert main(["train", "digits", "--out", str(tmp_path / "run"), *[a for s in sets for a in ("--set", s)]]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[0] for line in lines[:3]] == [f"digits-mlp: epoch {e}/3" for e in (1, 2, 3)]
    assert "\r" not in "".join(lines)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_live_bar() -> None:
    stream = _Terminal()
    bar = Progress("run", total=2, stream=stream)
    bar.update({"epoch": 1, "val_accuracy": 0.5})
    bar.close()
    assert bar.style == "bar" and "\r" in stream.getvalue() and "val_accuracy=0.500" in stream.getvalue()
    assert Progress("run", total=2, stream=_Terminal(), enabled=False).style == "off"
