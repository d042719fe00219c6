"""Install proselflc on a GPU node that reaches no package index: a wheelhouse of exactly what the node lacks,
split into parts small enough to travel one at a time, joined, checked and installed with `pip --no-index`.

On a machine with network access (any platform: wheels are chosen for the node's python and manylinux tag):

    python deploy/offline_wheelhouse.py build --node-freeze node-pip-list.txt --python-version 3.12 \\
        --manylinux 2.28 --out wheelhouse [--extras cluster] [--part-mb 50]

`node-pip-list.txt` is the node's `python3 -m pip list --format=freeze`. pip's own resolver computes proselflc's
dependency closure for the node, with every package the node already has pinned to the node's version (a pin that
conflicts with proselflc's needs is dropped, so that package is upgraded); what the closure holds and the node does
not (absent, or at another version) is downloaded, with the proselflc wheel. `wheelhouse/parts/part-NN/` then hold
at most --part-mb MB each: a wheel larger than that is cut into chunks; each part carries `manifest.json` (the
sha256 of every wheel and every piece). On the node, once every part is there:

    python3 offline_wheelhouse.py install wheelhouse/parts --target /opt/site    # then PYTHONPATH=/opt/site
    python3 offline_wheelhouse.py install wheelhouse/parts                        # or into this python's env

The node needs only python and pip: this file uses the standard library there (`packaging` only to plan).
"""

from __future__ import annotations

import argparse
import dataclasses
import email.parser
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

MANIFEST = "manifest.json"
FORMAT = 1
#: Default part size: what one transfer to the node carries, with room for the rest of the payload.
PART_MB = 50
CHUNK = "{name}.chunk-{index:03d}-of-{count:03d}"
REPO = Path(__file__).resolve().parents[1]


class WheelhouseError(Exception):
    """A problem the user must act on (a corrupt or missing part, a failed resolve): printed without a traceback."""


# -- what the node lacks ---------------------------------------------------------------------------------------


def canonical(name: str) -> str:
    """PEP 503 name: `PyYAML`, `pyyaml` and `py_yaml` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def public(version: str) -> str:
    """A version without its local label: the node's `torch 2.11.0+cu130` is PyPI's `torch 2.11.0`."""
    return version.split("+", 1)[0]


def parse_freeze(text: str) -> dict[str, str]:
    """`pip list --format=freeze` (or `pip freeze`) text -> {canonical name: version}.

    A bare name (a package list without versions) means installed at an unknown version, assumed compatible
    (`""`). Other lines (editable installs, `name @ url`, comments) are left out: the plan treats them as absent.
    """
    installed = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:==([^\s;]+))?", line)
        if match:
            installed[canonical(match.group(1))] = match.group(2) or ""
    return installed


@dataclass(frozen=True)
class Target:
    """The node's interpreter and platform, as pip's `download`/`install --dry-run` options take them."""

    python_version: str = "3.12"
    manylinux: str = "2.28"
    arch: str = "x86_64"

    def platforms(self) -> list[str]:
        """Every manylinux tag a glibc `manylinux` node runs (pip matches each tag exactly, not `<=`)."""
        major, minor = (int(p) for p in self.manylinux.split("."))
        tags = [f"manylinux_{major}_{m}_{self.arch}" for m in range(minor, 4, -1)]
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        return tags + [f"{name}_{self.arch}" for m, name in legacy.items() if m <= minor]

    def pip_options(self) -> list[str]:
        opts = ["--only-binary=:all:", "--implementation", "cp", "--python-version", self.python_version]
        for platform in self.platforms():
            opts += ["--platform", platform]
        return opts

    def markers(self, extras: frozenset[str] = frozenset()) -> list[dict[str, str]]:
        """Environments to evaluate requirement markers in (one per extra asked for, plus none)."""
        env = {
            "python_version": self.python_version, "python_full_version": f"{self.python_version}.0",
            "os_name": "posix", "sys_platform": "linux", "platform_system": "Linux", "platform_machine": self.arch,
            "implementation_name": "cpython", "platform_python_implementation": "CPython",
        }  # fmt: skip
        return [{**env, "extra": e} for e in ["", *sorted(extras)]]


def conflicting_pins(
    requires: list[str], installed: dict[str, str], target: Target, extras: frozenset[str]
) -> dict[str, str]:
    """{name: why} for packages the node has at a version outside what `requires` (Requires-Dist lines) allow."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    out = {}
    for line in requires:
        req = Requirement(line)
        if req.marker is not None and not any(req.marker.evaluate(env) for env in target.markers(extras)):
            continue
        name = canonical(req.name)
        have = installed.get(name)
        if have and not req.specifier.contains(Version(have), prereleases=True):
            out[name] = f"node has {have}, proselflc needs {req.specifier}"
    return out


@dataclass(frozen=True)
class Wheel:
    """One wheel of the resolved closure that the node lacks, with why and where pip found it."""

    name: str
    version: str
    why: str
    url: str
    sha256: str | None


def lacking(report: dict, installed: dict[str, str], reasons: dict[str, str] | None = None) -> list[Wheel]:
    """The wheels of a pip installation report (`pip install --dry-run --report`) that the node lacks.

    A package the node has at the same public version is skipped; one it has at another version (a pin dropped
    because it conflicts) or not at all is needed.
    """
    reasons = reasons or {}
    out = []
    for item in report["install"]:
        meta = item["metadata"]
        name, version = canonical(meta["name"]), meta["version"]
        have = installed.get(name)
        if have == "" or (have is not None and public(have) == public(version)):
            continue  # the same version, or one of unknown version (assumed compatible)
        why = reasons.get(name) or ("absent" if have is None else f"node has {have}")
        info = item.get("download_info", {})
        sha = info.get("archive_info", {}).get("hashes", {}).get("sha256")
        out.append(Wheel(name, version, why, info.get("url", ""), sha))
    return sorted(out, key=lambda w: w.name)


def _pip(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args], check=False, text=True, capture_output=True, **kwargs
    )  # type: ignore[call-overload]


def _constraint_names(pip_error: str) -> set[str]:
    """Packages whose node pin pip names in a resolution conflict (`The user requested (constraint) x==1`)."""
    return {canonical(m) for m in re.findall(r"\(constraint\) ([A-Za-z0-9][A-Za-z0-9._-]*)==", pip_error)}


def resolve(
    requirement: str,
    installed: dict[str, str],
    target: Target,
    unpinned: dict[str, str],
    pip_args: list[str],
    attempts: int = 6,
) -> tuple[dict, dict[str, str]]:
    """pip's installation report for `requirement` on `target`, the node's versions pinned except `unpinned`.

    A pin that pip reports in a conflict (a dependency deeper down needs another version) is dropped and the
    resolve retried; returns the report and every dropped pin with why.
    """
    unpinned = dict(unpinned)
    with tempfile.TemporaryDirectory(prefix="wheelhouse-plan-") as tmp:
        for _ in range(attempts):
            pins = "".join(
                f"{n}=={public(v)}\n" for n, v in sorted(installed.items()) if v and n not in unpinned
            )
            Path(tmp, "pins.txt").write_text(pins)
            report = Path(tmp) / "report.json"
            proc = _pip(["install", "--dry-run", "--ignore-installed", "--report", str(report),
                         "--target", str(Path(tmp) / "t"), "-c", str(Path(tmp) / "pins.txt"), *target.pip_options(),
                         *pip_args, requirement])  # fmt: skip
            if proc.returncode == 0:
                return json.loads(report.read_text()), unpinned
            named = _constraint_names(proc.stderr + proc.stdout) - set(unpinned)
            if not named:
                raise WheelhouseError(
                    f"pip could not resolve {requirement} for the node:\n{proc.stderr.strip()}"
                )
            unpinned.update({n: f"node has {installed[n]}, a dependency needs another" for n in named})
    raise WheelhouseError(
        f"pip could not resolve {requirement} after dropping {attempts} rounds of conflicting pins"
    )


def wheel_requires(wheel: Path) -> list[str]:
    """The Requires-Dist lines of a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        message = email.parser.Parser().parsestr(zf.read(meta).decode())
    return message.get_all("Requires-Dist") or []


def build_project_wheel(out: Path, project: Path = REPO) -> Path:
    """proselflc's own wheel (what the node installs), built from the checkout without network."""
    out.mkdir(parents=True, exist_ok=True)
    proc = _pip(["wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(out), str(project)])
    if proc.returncode != 0:
        raise WheelhouseError(f"building the proselflc wheel failed:\n{proc.stderr.strip()}")
    return max(out.glob("proselflc-*.whl"), key=lambda p: p.stat().st_mtime)


def plan(
    project_wheel: Path,
    installed: dict[str, str],
    target: Target,
    extras: frozenset[str] = frozenset(),
    pip_args: list[str] | None = None,
) -> list[Wheel]:
    """The wheels the node lacks to run `project_wheel` (itself included)."""
    requires = wheel_requires(project_wheel)
    unpinned = conflicting_pins(requires, installed, target, extras)
    name = project_wheel.name.split("-", 1)[0]
    spec = f"{name}[{','.join(sorted(extras))}]" if extras else name
    report, dropped = resolve(
        f"{spec} @ {project_wheel.resolve().as_uri()}", installed, target, unpinned, pip_args or []
    )
    return lacking(report, installed, dropped)


def download(
    wheels: list[Wheel], target: Target, out: Path, project_wheel: Path, pip_args: list[str]
) -> list[Path]:
    """Download every lacking wheel for the node (pip, exact pins, no dependencies), checked against the report."""
    out.mkdir(parents=True, exist_ok=True)
    pins = [f"{w.name}=={w.version}" for w in wheels if not w.url.startswith("file:")]
    local = [w for w in wheels if w.url.startswith("file:")]
    if pins:
        proc = _pip(
            ["download", "--no-deps", "--quiet", "-d", str(out), *target.pip_options(), *pip_args, *pins]
        )
        if proc.returncode != 0:
            raise WheelhouseError(f"pip download failed:\n{proc.stderr.strip()}")
    for w in local:  # the project wheel, or a wheel pip found in a local index or --find-links
        project = w.name == canonical(project_wheel.name.split("-", 1)[0])
        source = project_wheel if project else Path(url2pathname(urlparse(w.url).path))
        shutil.copy2(source, out / source.name)
    files = sorted(out.glob("*.whl"))
    by_name = {canonical(f.name.split("-", 1)[0]): f for f in files}
    for w in wheels:
        got = by_name.get(w.name)
        if got is None:
            raise WheelhouseError(f"{w.name} {w.version} was not downloaded")
        if w.sha256 and sha256(got) != w.sha256:
            raise WheelhouseError(f"{got.name}: sha256 differs from the index's ({w.sha256})")
    return files


# -- parts -----------------------------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def part_dir(index: int) -> str:
    return f"part-{index:02d}"


def split(wheelhouse: Path, out: Path, part_bytes: int) -> list[Path]:
    """Copy wheelhouse's files into parts of at most `part_bytes` (first fit, largest first); a file larger than a
    part is cut into chunks. Each part gets the same manifest; returns the part directories."""
    if part_bytes < 1:
        raise WheelhouseError(f"part size must be at least 1 byte (got {part_bytes})")
    files = sorted(
        (p for p in wheelhouse.iterdir() if p.is_file()), key=lambda p: (-p.stat().st_size, p.name)
    )
    if not files:
        raise WheelhouseError(f"{wheelhouse} holds no files to split")
    pieces: list[tuple[Path, str, int, int]] = []  # (source, piece name, offset, size)
    entries = []
    for path in files:
        size = path.stat().st_size
        count = max(1, -(-size // part_bytes))
        names = (
            [path.name]
            if count == 1
            else [CHUNK.format(name=path.name, index=i + 1, count=count) for i in range(count)]
        )
        for i, name in enumerate(names):
            pieces.append((path, name, i * part_bytes, min(part_bytes, size - i * part_bytes)))
        entries.append({"name": path.name, "size": size, "sha256": sha256(path), "pieces": names})
    free: list[int] = []
    placed = {}
    for _, name, _, size in sorted(pieces, key=lambda p: -p[3]):
        index = next((i for i, room in enumerate(free) if room >= size), None)
        if index is None:
            free.append(part_bytes)
            index = len(free) - 1
        free[index] -= size
        placed[name] = index + 1
    out.mkdir(parents=True, exist_ok=True)
    piece_info = {}
    for source, name, offset, size in pieces:
        dest = out / part_dir(placed[name]) / name
        dest.parent.mkdir(exist_ok=True)
        with open(source, "rb") as src, open(dest, "wb") as dst:
            src.seek(offset)
            dst.write(src.read(size))
        piece_info[name] = {"name": name, "part": placed[name], "size": size, "sha256": sha256(dest)}
    for entry in entries:
        entry["pieces"] = [piece_info[n] for n in entry["pieces"]]
    manifest = {"format": FORMAT, "part_bytes": part_bytes, "parts": len(free), "files": entries}
    dirs = [out / part_dir(i) for i in range(1, len(free) + 1)]
    for d in dirs:
        (d / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return dirs


def find_parts(paths: list[Path]) -> list[Path]:
    """Part directories among `paths`: each one a part (it holds manifest.json) or a folder of parts."""
    parts = []
    for path in paths:
        if (path / MANIFEST).is_file():
            parts.append(path)
        elif path.is_dir():
            parts += sorted(p for p in path.iterdir() if (p / MANIFEST).is_file())
        else:
            raise WheelhouseError(f"{path}: no such directory")
    if not parts:
        raise WheelhouseError(f"no part (a directory holding {MANIFEST}) in {', '.join(map(str, paths))}")
    return parts


def join(paths: list[Path], out: Path) -> list[Path]:
    """Check every piece of every part against the manifest and reassemble the wheelhouse in `out`.

    Refuses, naming the part to copy again, when a part is missing, a piece is corrupt, or parts come from
    different wheelhouses; nothing lands in `out` unless its whole-file checksum matches.
    """
    parts = find_parts(paths)
    manifests = {p: (p / MANIFEST).read_text() for p in parts}
    if len(set(manifests.values())) > 1:
        raise WheelhouseError(
            f"these parts come from different wheelhouses (their {MANIFEST} differ): "
            f"{', '.join(map(str, parts))}"
        )
    manifest = json.loads(next(iter(manifests.values())))
    if manifest.get("format") != FORMAT:
        raise WheelhouseError(f"{MANIFEST} has format {manifest.get('format')!r}; this script reads {FORMAT}")
    total = manifest["parts"]
    where: dict[str, Path] = {}
    for p in parts:
        for f in p.iterdir():
            where.setdefault(f.name, f)
    out.mkdir(parents=True, exist_ok=True)
    joined = []
    for entry in manifest["files"]:
        for piece in entry["pieces"]:
            found = where.get(piece["name"])
            label = f"part {piece['part']} of {total} ({part_dir(piece['part'])})"
            if found is None:
                raise WheelhouseError(
                    f"missing {piece['name']} from {label}: copy that part next to the others"
                )
            got = sha256(found)
            if got != piece["sha256"]:
                raise WheelhouseError(
                    f"corrupt {found}: sha256 {got[:16]}... expected {piece['sha256'][:16]}... "
                    f"({label}); copy that part again"
                )
        temp = out / f".{entry['name']}.joining"
        with open(temp, "wb") as dst:
            for piece in entry["pieces"]:
                with open(where[piece["name"]], "rb") as src:
                    shutil.copyfileobj(src, dst)
        if sha256(temp) != entry["sha256"]:
            temp.unlink()
            raise WheelhouseError(f"{entry['name']}: the joined file's sha256 differs from the manifest's")
        final = out / entry["name"]
        os.replace(temp, final)
        joined.append(final)
    return joined


def install(wheels: list[Path], target: Path | None, python: str = sys.executable) -> None:
    """`pip install --no-index` of the joined wheels: into `target` (no dependency resolution there: the wheelhouse
    is what the node lacks, the rest is installed) or, without a target, into `python`'s environment, where pip
    resolves against what is installed and refuses anything missing.

    A target install is then checked with `pip check` over the node's packages and the target together: a
    requirement of a newly installed package that the node does not meet is refused, naming it."""
    if target is not None:
        args = [
            "install",
            "--no-index",
            "--no-deps",
            "--no-compile",
            "--upgrade",
            "--target",
            str(target),
            *map(str, wheels),
        ]
    else:
        project = [w for w in wheels if w.name.startswith("proselflc-")]
        args = ["install", "--no-index", "--find-links", str(wheels[0].parent), *map(str, project or wheels)]
    proc = subprocess.run([python, "-m", "pip", *args], check=False, text=True, capture_output=True)
    if proc.returncode != 0:
        raise WheelhouseError(f"pip install failed:\n{proc.stderr.strip()}")
    if target is not None:
        problems = unmet(target, {canonical(w.name.split("-", 1)[0]) for w in wheels}, python)
        if problems:
            raise WheelhouseError(
                f"installed into {target}, but what it installed needs what this node lacks:\n  "
                + "\n  ".join(problems)
                + "\nbuild the wheelhouse again from this node's own `pip list --format=freeze` (or --fetch NAME)"
            )


def unmet(target: Path, names: set[str], python: str = sys.executable) -> list[str]:
    """`pip check` lines about `names` with `target` ahead on the path: requirements the node leaves unmet."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [python, "-m", "pip", "check"], check=False, text=True, capture_output=True, env=env
    )
    return [
        line
        for line in proc.stdout.splitlines()
        if line.split(" ")[0] and canonical(line.split(" ")[0]) in names
    ]


# -- command line ----------------------------------------------------------------------------------------------


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def node_packages(args: argparse.Namespace) -> dict[str, str]:
    """The node's packages from its pip list, less those named by --fetch (planned as if absent)."""
    installed = parse_freeze(Path(args.node_freeze).read_text())
    for name in args.fetch:
        installed.pop(canonical(name), None)
    return installed


def fetched(wheels: list[Wheel], names: list[str]) -> list[Wheel]:
    """The plan, with the wheels that --fetch asked for said so (the node may have them)."""
    asked = {canonical(n) for n in names}
    return [dataclasses.replace(w, why="--fetch") if w.name in asked else w for w in wheels]


def cmd_build(args: argparse.Namespace) -> int:
    installed = node_packages(args)
    target = Target(args.python_version, args.manylinux, args.arch)
    out = Path(args.out)
    wheels_dir, parts_dir = out / "wheels", out / "parts"
    for d in (wheels_dir, parts_dir):
        if d.exists():
            shutil.rmtree(d)
    project = build_project_wheel(out / "project")
    extras = frozenset(args.extras)
    needed = fetched(plan(project, installed, target, extras, args.pip_arg), args.fetch)
    for w in needed:
        print(f"  {w.name}=={w.version}  ({w.why})")
    files = download(needed, target, wheels_dir, project, args.pip_arg)
    parts = split(wheels_dir, parts_dir, int(args.part_mb * 1e6))
    total = sum(f.stat().st_size for f in files)
    print(
        f"{len(files)} wheels, {_size(total)}, for python {target.python_version} manylinux {target.manylinux} "
        f"{target.arch} -> {len(parts)} part(s) of at most {args.part_mb:g} MB:"
    )
    for p in parts:
        print(f"  {p}: {_size(sum(f.stat().st_size for f in p.iterdir()))}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    installed = node_packages(args)
    target = Target(args.python_version, args.manylinux, args.arch)
    with tempfile.TemporaryDirectory(prefix="wheelhouse-") as tmp:
        project = build_project_wheel(Path(tmp))
        for w in fetched(plan(project, installed, target, frozenset(args.extras), args.pip_arg), args.fetch):
            print(f"{w.name}=={w.version}  ({w.why})")
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    for p in split(Path(args.wheelhouse), Path(args.out), int(args.part_mb * 1e6)):
        print(f"{p}: {_size(sum(f.stat().st_size for f in p.iterdir()))}")
    return 0


def cmd_join(args: argparse.Namespace) -> int:
    files = join([Path(p) for p in args.parts], Path(args.out))
    print(f"joined and verified {len(files)} files in {args.out}")
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="wheelhouse-") as tmp:
        wheels = [
            w for w in join([Path(p) for p in args.parts], Path(args.wheelhouse or tmp)) if w.suffix == ".whl"
        ]
        install(wheels, Path(args.target) if args.target else None)
    where = args.target or "this environment"
    print(
        f"installed {len(wheels)} wheels into {where}"
        + (f"; use it with PYTHONPATH={args.target}" if args.target else "")
    )
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="offline_wheelhouse", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in (
        ("build", "plan, download and split (network side)"),
        ("plan", "print what the node lacks"),
    ):
        s = sub.add_parser(name, help=help_)
        s.add_argument(
            "--node-freeze", required=True, help="the node's `python3 -m pip list --format=freeze` output"
        )
        s.add_argument(
            "--python-version", default="3.12", help="the node's python, major.minor (default 3.12)"
        )
        s.add_argument(
            "--manylinux", default="2.28", help="the node's glibc, as a manylinux level (default 2.28)"
        )
        s.add_argument("--arch", default="x86_64")
        s.add_argument("--extras", nargs="*", default=[], help="proselflc extras to include (e.g. cluster)")
        s.add_argument(
            "--pip-arg", action="append", default=[], help="extra pip option (e.g. --index-url=...)"
        )
        s.add_argument(
            "--fetch",
            action="append",
            default=[],
            help="fetch NAME even where the node has it (e.g. a bare name whose version is unknown)",
        )
        if name == "build":
            s.add_argument("--out", required=True, help="folder for wheels/ and parts/")
            s.add_argument(
                "--part-mb", type=float, default=PART_MB, help=f"largest part, MB (default {PART_MB})"
            )
    s = sub.add_parser("split", help="split a wheelhouse folder into parts")
    s.add_argument("wheelhouse")
    s.add_argument("out")
    s.add_argument("--part-mb", type=float, default=PART_MB)
    s = sub.add_parser("join", help="verify and join parts into a wheelhouse")
    s.add_argument("parts", nargs="+", help="part directories, or folders holding them")
    s.add_argument("--out", required=True)
    s = sub.add_parser("install", help="verify, join and pip install --no-index (node side)")
    s.add_argument("parts", nargs="+", help="part directories, or folders holding them")
    s.add_argument(
        "--target", help="install here (then PYTHONPATH=TARGET); default: this python's environment"
    )
    s.add_argument("--wheelhouse", help="keep the joined wheels here (default: a temporary folder)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command = {
        "build": cmd_build,
        "plan": cmd_plan,
        "split": cmd_split,
        "join": cmd_join,
        "install": cmd_install,
    }
    try:
        return command[args.command](args)
    except WheelhouseError as err:
        print(f"offline_wheelhouse: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
