"""The wheel works on its own: built from the source tree, installed in a fresh venv outside the checkout, it
lists and copies out its example configs, knows its version and runs the quickstart by name.

The fresh venv borrows the dependencies (torch, Ray ...) from the running interpreter's site-packages through
a .pth line, so nothing is downloaded; proselflc itself comes from the wheel, which the test checks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{args} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


def _build_wheel(tmp: Path) -> Path:
    """The wheel of a copy of the source tree (the checkout gets no build/ or egg-info)."""
    tree = tmp / "tree"
    shutil.copytree(REPO / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, tree / name)
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp / "dist"), str(tree)],
         cwd=tmp, env=os.environ.copy())
    (wheel,) = (tmp / "dist").glob("proselflc-*.whl")
    return wheel


def _fresh_venv(tmp: Path, wheel: Path) -> tuple[Path, dict[str, str]]:
    """A venv outside the checkout with the wheel installed; its bin dir and an environment that uses it."""
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp, env=os.environ.copy())
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    (site / "shared_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("RAY_raylet_start_wait_time_s", "180")  # the local Ray the CLI starts, on a loaded machine
    _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet", "--no-deps",
          "--no-index", str(wheel)], cwd=tmp, env=env)
    return venv / "bin", env


@pytest.fixture
def own_ray_temp() -> Iterator[str]:
    """A short temp dir of its own for the CLI's local Ray: Ray would otherwise join the cluster that a
    `ray start` on this machine recorded in /tmp/ray/ray_current_cluster (sockets need a short path)."""
    path = tempfile.mkdtemp(prefix="rw", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_wheel_runs_the_quickstart_from_anywhere(tmp_path: Path, own_ray_temp: str) -> None:
    wheel = _build_wheel(tmp_path)
    bin_dir, env = _fresh_venv(tmp_path, wheel)
    env["RAY_TMPDIR"] = own_ray_temp
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run([str(bin_dir / "python"), "-c", "import proselflc; print(proselflc.__file__)"], work, env).stdout
    assert where.startswith(str(tmp_path / "venv")), where  # the wheel's copy, not the checkout's

    version = _run([str(bin_dir / "proselflc"), "--version"], work, env).stdout
    assert version.strip() == "proselflc 0.1.0"
    listed = _run([str(bin_dir / "proselflc"), "configs"], work, env).stdout
    assert "quickstart" in listed and "paper/paper_cifar100_resnet18_symmetric" in listed
    _run([str(bin_dir / "proselflc"), "init", "digits"], work, env)
    assert "name: digits-mlp" in (work / "digits.yaml").read_text()

    shortened = [
        "methods=[{name: crossentropy}]", "noise.rates=[0.4]", "num_samples=1", "final_seeds=0",
        "base.train.epochs=2", "base.optim.milestones=[1]", "base.data.limit=300",
        f"storage_path={tmp_path / 'results'}",
    ]
    sets = [arg for item in shortened for arg in ("--set", item)]
    tuned = _run([str(bin_dir / "proselflc"), "tune", "quickstart", *sets], work, env).stdout
    assert "symmetric-0.4/crossentropy" in (tmp_path / "results" / "quickstart" / "manifest.json").read_text()
    assert f"results: {tmp_path / 'results' / 'quickstart'}" in tuned
