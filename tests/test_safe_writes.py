"""Every file proselflc writes goes through `proselflc.io`: no write through a link, no name climbing out.

Links are planted where another user of a shared disk could plant them: the sweep's `.lock`, files in
`SWEEP_DIR/report/`, a run directory's files, the manifest; the target is a file outside that must not change.
A study's `dataset` read back from a manifest must not put a figure outside the report directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from proselflc.analysis.report import write_report
from proselflc.cli import main
from proselflc.config import load_run_config
from proselflc.io import UnsafePath, atomic_write_text, inside, safe_name
from proselflc.sweep_contract import read_manifest, write_manifest
from proselflc.training import train
from proselflc.tuning.lock import LOCK_FILE, SweepLock
from test_analysis_sweeps import Study, Trial, write_sweep

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PRECIOUS = "someone else's file\n"
TINY_RUN = ["train.epochs=1", "data.limit=200", "train.progress=false", "model.hidden=8", "optim.milestones=[]"]


def _target(tmp_path: Path) -> Path:
    target = tmp_path / "elsewhere" / "precious.txt"
    target.parent.mkdir(exist_ok=True)
    target.write_text(PRECIOUS)
    return target


def _small(root: Path, dataset: str = "digits") -> Path:
    trial = Trial({"optim.lr": 0.1}, {"val_accuracy": [0.5, 0.6, 0.7, 0.8], "test_accuracy": [0.5, 0.6, 0.7, 0.7]})
    return write_sweep(root, [Study("symmetric", 0.4, "crossentropy", [trial], dataset=dataset)])


def test_a_lock_file_that_is_a_link_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    target = _target(tmp_path)
    (sweep / LOCK_FILE).symlink_to(target)
    with pytest.raises(UnsafePath, match=r"\.lock.*is a symbolic link.*precious\.txt"):
        SweepLock(sweep).acquire()
    assert target.read_text() == PRECIOUS


@pytest.mark.parametrize("name", ["report.html", "results.md", "results.csv"])
def test_report_refuses_a_link_in_the_report_directory(tmp_path: Path, capsys: pytest.CaptureFixture, name: str) -> None:
    sweep = _small(tmp_path)
    target = _target(tmp_path)
    (sweep / "report").mkdir()
    (sweep / "report" / name).symlink_to(target)
    assert main(["report", str(sweep), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "is a symbolic link" in err and name in err and str(target) in err
    assert target.read_text() == PRECIOUS


def test_a_run_file_or_the_manifest_that_is_a_link_is_refused(tmp_path: Path) -> None:
    target = _target(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").symlink_to(target)
    with pytest.raises(UnsafePath, match="metrics.csv"):
        train(load_run_config(CONFIGS / "digits.yaml", TINY_RUN), run_dir=run)
    assert target.read_text() == PRECIOUS
    sweep = _small(tmp_path / "s")
    manifest = read_manifest(sweep)
    (sweep / "manifest.json").unlink()
    (sweep / "manifest.json").symlink_to(target)
    with pytest.raises(UnsafePath, match="manifest.json"):
        write_manifest(sweep, manifest)
    assert target.read_text() == PRECIOUS


def test_a_dataset_name_from_the_manifest_cannot_climb_out_of_the_report_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep = _small(tmp_path / "a" / "b", dataset="x/../../../../escaped")
    monkeypatch.chdir(sweep.parent)
    out = Path(sweep.name) / "report"  # relative, as `proselflc report SWEEP` is usually given
    report = write_report(sweep.name, out, formats=["csv"], figures=True)
    assert all(path.resolve().parent == out.resolve() for path in report.files)
    assert not list(tmp_path.rglob("escaped*.p*")), "a curve file was written outside the report directory"
    assert [p.name for p in out.glob("curves_*.png")] == ["curves_x_.._.._.._.._escaped_mlp_symmetric-0.4.png"]


def test_the_writer_itself_keeps_names_inside_their_root(tmp_path: Path) -> None:
    assert safe_name("../../etc/passwd") == "_.._etc_passwd" and safe_name("..") == "_" and safe_name("a.b-c") == "a.b-c"
    with pytest.raises(UnsafePath, match="outside"):
        atomic_write_text(tmp_path / "r" / ".." / "x.txt", "no", root=tmp_path / "r")
    assert inside(tmp_path, tmp_path / "a" / ".." / "b.txt") == tmp_path / "b.txt"
    assert not (tmp_path / "x.txt").exists()


def test_train_into_an_existing_run_is_refused_unless_resume_or_overwrite(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    args = ["train", str(CONFIGS / "digits.yaml"), "--out", str(out), *[a for s in TINY_RUN for a in ("--set", s)]]
    assert main(args) == 0
    first = (out / "metrics.csv").read_text()
    (out / "tensorboard" / "marker").write_text("old run")
    capsys.readouterr()
    assert main([*args, "--set", "train.seed=1"]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err and str(out) in err
    assert (out / "metrics.csv").read_text() == first and (out / "tensorboard" / "marker").exists()
    assert main([*args, "--set", "train.seed=1", "--overwrite"]) == 0
    assert (out / "metrics.csv").read_text() != first and not (out / "tensorboard" / "marker").exists()
    assert main([*args, "--resume", "--overwrite"]) == 2
