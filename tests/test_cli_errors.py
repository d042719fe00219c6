"""The real CLI turns every anticipated failure into one paragraph naming the field or file; others are one line.

Read-only locations and full disks are real: tmpfs mounts made by the test (CI runs as root, where a
0o555 directory would still be writable). Without permission to mount, those tests skip.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from benchmarks.cifar_files import write_cifar10

from proselflc import cli
from proselflc.cli import main

Mount = Callable[[str], Path]


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Mount]:
    """`tmpfs("ro,size=1m")`: a fresh tmpfs with those options, unmounted after the test."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        target = tmp_path / f"mnt{len(mounted)}"
        target.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                              check=False, capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'})")
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], check=False)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def one_paragraph(err: str, *names: str) -> None:
    """The error is a single 'error:' paragraph (no traceback) that mentions every one of `names`."""
    assert "Traceback" not in err and err.count("error:") == 1, err
    for name in names:
        assert name in err, (name, err)


def write_sweep(path: Path, storage: Path) -> Path:
    raw = {
        "name": "errs",
        "base": {"data": {"name": "digits", "limit": 200}, "model": {"name": "mlp", "hidden": 8},
                 "train": {"epochs": 1}},
        "noise": {"kind": "symmetric", "rates": [0.2]},
        "methods": {"crossentropy": {}},
        "num_samples": 1,
        "final_seeds": 0,
        "resources": {"cpu": 1, "gpu": 0},
        "storage_path": str(storage),
    }
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.ray
def test_a_storage_path_that_is_a_file_is_one_paragraph(ray_session, tmp_path, capsys):
    blocker = tmp_path / "results"
    blocker.write_text("not a directory")
    code, err = run_cli(capsys, "tune", str(write_sweep(tmp_path / "sweep.yaml", blocker)))
    assert code == 2
    one_paragraph(err, str(blocker), "storage_path", "a file is in the way")


@pytest.mark.ray
def test_a_storage_path_on_a_read_only_mount_is_one_paragraph(ray_session, tmp_path, tmpfs, capsys):
    storage = tmpfs("ro,size=1m") / "results"
    code, err = run_cli(capsys, "tune", str(write_sweep(tmp_path / "sweep.yaml", storage)))
    assert code == 2
    one_paragraph(err, str(storage), "read-only", "storage_path")


@pytest.mark.ray
def test_report_out_on_a_read_only_mount_is_one_paragraph(tiny_sweep, tmpfs, capsys):
    out = tmpfs("ro,size=1m") / "report"
    code, err = run_cli(capsys, "report", str(tiny_sweep), "--out", str(out), "--no-plots")
    assert code == 2
    one_paragraph(err, str(out), "read-only", "--out")


@pytest.mark.faults
@pytest.mark.ray
def test_report_on_a_full_disk_names_the_file(tiny_sweep, tmpfs, capsys):
    out = tmpfs("size=64k")
    code, err = run_cli(capsys, "report", str(tiny_sweep), "--out", str(out))
    assert code == 2
    one_paragraph(err, "no space left", str(out))


def _fill(directory: Path) -> Path:
    """Write zeros into `directory` until its filesystem is full; the filler file to delete later."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
        except OSError:
            pass
    return filler


@pytest.mark.slow
@pytest.mark.faults
def test_train_resume_on_a_full_disk_then_after_freeing_space(tmp_path, tmpfs, capsys):
    """A run killed mid-way is resumed on a full disk (one paragraph), then again once space is freed."""
    out = tmpfs("size=2m") / "run"
    config = tmp_path / "run.yaml"
    config.write_text("name: full\ndata: {name: digits, limit: 300}\nmodel: {name: mlp, hidden: 8}\noptim: {schedule: constant}\n"
                      "train: {epochs: 40, device: cpu, progress: false, checkpoint_every: 1}\n")
    probe = f"from proselflc.cli import main; main(['train', {str(config)!r}, '--out', {str(out)!r}])"
    first = subprocess.Popen([sys.executable, "-c", probe], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoint.pt").is_file() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert first.poll() is None, "the run ended before it could be interrupted"
    finally:
        first.kill()
        first.wait()
    assert (out / "checkpoint.pt").is_file()
    filler = _fill(out.parent)
    code, err = run_cli(capsys, "train", str(config), "--out", str(out), "--resume")
    assert code == 2
    one_paragraph(err, "no space left", str(out), "--resume")
    filler.unlink()
    assert main(["train", str(config), "--out", str(out), "--resume"]) == 0
    assert len((out / "metrics.csv").read_text().strip().splitlines()) == 41  # header + every epoch


def _cifar_config(tmp_path: Path, root: Path, download: bool) -> Path:
    config = tmp_path / "cifar.yaml"
    config.write_text(f"name: c10\ndata: {{name: cifar10, root: {str(root)!r}, download: {str(download).lower()}}}\n"
                      "model: {name: resnet18}\ntrain: {epochs: 1, device: cpu}\n")
    return config


@pytest.mark.subprocess
def test_download_without_network_is_one_paragraph(tmp_path):
    """torchvision's real download, through a proxy on a closed loopback port: URLError from deep inside."""
    root = tmp_path / "data"
    env = {**os.environ, "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
           "no_proxy": "", "NO_PROXY": ""}
    probe = f"import sys; from proselflc.cli import main; sys.exit(main(['train', {str(_cifar_config(tmp_path, root, True))!r}]))"
    done = subprocess.run([sys.executable, "-c", probe], check=False, capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    one_paragraph(done.stderr, "data.download", "no network", "cifar-10-batches-py/", str(root), "data.download: false")


def test_a_cifar_pickle_without_its_keys_names_file_and_key(tmp_path, capsys):
    root = tmp_path / "data"
    write_cifar10(root, per_batch=10)
    broken = root / "cifar-10-batches-py" / "data_batch_3"
    broken.write_bytes(pickle.dumps({"data": [[0] * 3072] * 10, "batch_label": "x"}))
    code, err = run_cli(capsys, "train", str(_cifar_config(tmp_path, root, False)))
    assert code == 2
    one_paragraph(err, str(broken), "'labels'", "data.root")


def test_an_internal_error_is_one_line_and_the_traceback_needs_debug(tmp_path, monkeypatch, capsys):
    """A bug (a command raising something no paragraph explains) is reported as such, not dressed up."""

    def broken(args: object) -> int:
        raise RuntimeError("simulated bug\nsecond line")

    monkeypatch.setattr(cli, "_train", broken)
    config = tmp_path / "run.yaml"
    config.write_text("name: bug\n")
    code, err = run_cli(capsys, "train", str(config))
    assert code == 1
    assert err.strip() == "proselflc train: internal error (RuntimeError: simulated bug); rerun with --debug for the traceback"
    with pytest.raises(RuntimeError, match="simulated bug"):
        main(["--debug", "train", str(config)])


def test_a_missing_base_file_in_a_sweep_is_one_paragraph(tmp_path, capsys):
    sweep = tmp_path / "sweep.yaml"
    write_sweep(sweep, tmp_path / "results")
    raw = yaml.safe_load(sweep.read_text())
    raw["base"] = "missing-base.yaml"
    sweep.write_text(yaml.safe_dump(raw))
    code, err = run_cli(capsys, "tune", str(sweep))
    assert code == 2
    one_paragraph(err, "base", str(tmp_path / "missing-base.yaml"), "does not exist")
