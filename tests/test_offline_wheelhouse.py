"""The offline installer for GPU nodes (deploy/offline_wheelhouse.py): what a node lacks, parts, join, install.

The wheels are real ones built from tiny generated projects by setuptools' PEP 517 backend (the hook `pip wheel`
calls, all in one process: a `pip wheel` per project costs seconds each), then resolved and installed by pip
with `--no-index`: nothing here reaches a package index.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from deploy import offline_wheelhouse as ow

#: Tiny projects (name, version, dependencies): alpha needs beta>=2 and gamma; beta 2 needs gamma>=1.5.
PROJECTS = [
    ("alpha", "1.0", ["beta>=2", "gamma"]),
    ("beta", "1.0", []),
    ("beta", "2.0", ["gamma>=1.5"]),
    ("gamma", "1.0", []),
    ("gamma", "2.0", []),
]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of the PROJECTS' wheels, built without network by setuptools' build_wheel hook in one process."""
    root = tmp_path_factory.mktemp("projects")
    sources = []
    for name, version, deps in PROJECTS:
        src = root / f"{name}-{version}"
        src.mkdir()
        (src / "pyproject.toml").write_text(
            '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
            f'[project]\nname = "{name}"\nversion = "{version}"\ndependencies = {json.dumps(deps)}\n'
            f'[tool.setuptools]\npy-modules = ["{name}"]\n'
        )
        (src / f"{name}.py").write_text(f"VERSION = {version!r}\n")
        sources.append(str(src))
    out = root / "wheels"
    out.mkdir()
    # build_wheel rewrites sys.argv: read the arguments first.
    build = (
        "import os, sys\nfrom setuptools import build_meta\nout, *projects = sys.argv[1:]\n"
        "for p in projects:\n    os.chdir(p)\n    build_meta.build_wheel(out)\n"
    )
    subprocess.run([sys.executable, "-c", build, str(out), *sources], check=True, capture_output=True)
    return out


def test_what_the_node_lacks_is_read_off_its_pip_list() -> None:
    """Same public version (a CUDA build's local label aside) or a bare name: installed; another version or none:
    lacking. A Requires-Dist that the node's version breaks (for the node's python) unpins it."""
    freeze = ow.parse_freeze(
        "# a node\ntorch==2.11.0+cu130\nPyYAML==6.0.1\npandas\n-e git+https://x/y#egg=z\nzed @ file:///tmp/zed.whl\n"
    )
    assert freeze == {"torch": "2.11.0+cu130", "pyyaml": "6.0.1", "pandas": ""}
    report = {"install": [
        {"metadata": {"name": n, "version": v}, "download_info": {"url": f"https://host/{n}.whl",
                                                                  "archive_info": {"hashes": {"sha256": "ab"}}}}
        for n, v in (("torch", "2.11.0"), ("PyYAML", "6.0.4"), ("pandas", "2.3.3"), ("ray", "2.60.0"))
    ]}  # fmt: skip
    needed = ow.lacking(report, freeze, {"pyyaml": "node has 6.0.1, proselflc needs >=6.0.3"})
    assert [(w.name, w.version, w.why) for w in needed] == [
        ("pyyaml", "6.0.4", "node has 6.0.1, proselflc needs >=6.0.3"),
        ("ray", "2.60.0", "absent"),
    ]
    assert needed[1].url == "https://host/ray.whl" and needed[1].sha256 == "ab"
    target = ow.Target("3.12", "2.28")
    requires = [
        "pyyaml>=6.0.3",
        "torch>=2.4",
        "tomli>=2; python_version < '3.11'",
        "moto; extra == 'dev'",
        "pandas>=2",
    ]
    assert ow.conflicting_pins(
        requires, {"pyyaml": "6.0.1", "tomli": "1.0", "moto": "1", **freeze}, target, frozenset()
    ) == {"pyyaml": "node has 6.0.1, proselflc needs >=6.0.3"}
    assert set(ow.conflicting_pins(requires, {"moto": "1"}, target, frozenset({"dev"}))) == set()
    platforms = target.platforms()
    assert platforms[0] == "manylinux_2_28_x86_64" and "manylinux_2_17_x86_64" in platforms
    assert {"manylinux2014_x86_64", "manylinux1_x86_64"} <= set(platforms)


@pytest.mark.subprocess
def test_plan_resolves_the_closure_with_the_nodes_versions_pinned(wheels: Path) -> None:
    """pip's resolver, offline: alpha is absent, beta 1.0 is too old for alpha, and beta 2.0 in turn needs a newer
    gamma than the node's (a conflict pip names, so that pin is dropped); an unrelated package stays out."""
    node = ow.parse_freeze("beta==1.0\ngamma==1.0\nunrelated==3.0\n")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    needed = ow.plan(
        next(wheels.glob("alpha-*.whl")),
        node,
        ow.Target(version),
        pip_args=["--no-index", "--find-links", str(wheels)],
    )
    assert [(w.name, w.version, w.why) for w in needed] == [
        ("alpha", "1.0", "absent"),
        ("beta", "2.0", "node has 1.0, proselflc needs >=2"),
        ("gamma", "2.0", "node has 1.0, a dependency needs another"),
    ]
    assert all(w.url.startswith("file:") for w in needed)


def _sizes(part: Path) -> int:
    return sum(f.stat().st_size for f in part.iterdir() if f.name != ow.MANIFEST)


def test_split_cuts_a_file_larger_than_a_part_and_join_restores_every_byte(tmp_path: Path) -> None:
    house = tmp_path / "house"
    house.mkdir()
    contents = {"big.whl": os.urandom(2500), "mid.whl": os.urandom(700), "small.whl": os.urandom(90)}
    for name, data in contents.items():
        (house / name).write_bytes(data)
    parts = ow.split(house, tmp_path / "parts", part_bytes=1000)
    assert all(_sizes(p) <= 1000 for p in parts)
    assert [p.name for p in parts] == [f"part-{i:02d}" for i in range(1, len(parts) + 1)]
    manifest = json.loads((parts[0] / ow.MANIFEST).read_text())
    big = next(f for f in manifest["files"] if f["name"] == "big.whl")
    assert [p["name"] for p in big["pieces"]] == [f"big.whl.chunk-00{i}-of-003" for i in (1, 2, 3)]
    assert {f["name"]: f["sha256"] for f in manifest["files"]} == {n: ow.sha256(house / n) for n in contents}
    assert len(parts) == manifest["parts"] == 4  # first fit, largest first: 1000 / 1000 / 700 + 90 / 500
    # The parts arrive separately (here: in two folders), and the join checks and reassembles them.
    moved = tmp_path / "arrived-later"
    moved.mkdir()
    parts[-1].rename(moved / parts[-1].name)
    joined = ow.join([tmp_path / "parts", moved], tmp_path / "joined")
    assert {p.name: p.read_bytes() for p in joined} == contents


def test_a_corrupt_or_missing_piece_is_refused_naming_the_part_to_copy_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    house = tmp_path / "house"
    house.mkdir()
    (house / "big.whl").write_bytes(os.urandom(300))
    parts = ow.split(house, tmp_path / "parts", part_bytes=128)
    chunk = parts[1] / "big.whl.chunk-002-of-003"
    data = bytearray(chunk.read_bytes())
    data[5] ^= 0xFF
    chunk.write_bytes(bytes(data))
    assert ow.main(["join", str(tmp_path / "parts"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "corrupt" in err and "big.whl.chunk-002-of-003" in err and "part 2 of 3 (part-02)" in err, err
    assert "copy that part again" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "big.whl").exists()
    chunk.unlink()
    with pytest.raises(
        ow.WheelhouseError, match=r"missing big.whl.chunk-002-of-003 from part 2 of 3 \(part-02\)"
    ):
        ow.join([tmp_path / "parts"], tmp_path / "out")


@pytest.mark.subprocess
def test_parts_install_offline_into_a_target_dir_and_import(
    wheels: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wheelhouse of alpha, beta 2 and gamma 2 in parts smaller than a wheel: joined, installed with
    `pip --no-index --target`, and importable from there by a fresh interpreter. Without beta and gamma (which
    this environment lacks too), the install is refused, naming what alpha needs."""
    house = tmp_path / "house"
    house.mkdir()
    for pattern in ("alpha-1.0-*", "beta-2.0-*", "gamma-2.0-*"):
        (house / next(wheels.glob(pattern)).name).write_bytes(next(wheels.glob(pattern)).read_bytes())
    smallest = min(p.stat().st_size for p in house.iterdir())
    ow.split(house, tmp_path / "parts", part_bytes=smallest // 2)
    target = tmp_path / "site"
    alone = tmp_path / "alone"
    alone.mkdir()
    alpha = next(wheels.glob("alpha-1.0-*"))
    (alone / alpha.name).write_bytes(alpha.read_bytes())
    ow.split(alone, tmp_path / "alone-parts", part_bytes=10_000)
    assert ow.main(["install", str(tmp_path / "alone-parts"), "--target", str(tmp_path / "site-alone")]) == 1
    err = capsys.readouterr().err
    assert (
        "needs what this node lacks" in err and "alpha 1.0 requires beta, which is not installed." in err
    ), err
    assert ow.main(["install", str(tmp_path / "parts"), "--target", str(target)]) == 0
    code = "import alpha, beta, gamma; print(alpha.VERSION, beta.VERSION, gamma.VERSION, alpha.__file__)"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(target)},
                         capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    assert out[:3] == ["1.0", "2.0", "2.0"] and out[3].startswith(str(target))
