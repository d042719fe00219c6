"""`storage_path` as a URI: a sweep on a real S3-compatible server (moto's server mode on 127.0.0.1).

Ray Tune writes the trials into the bucket, proselflc writes its manifest, sweep.yaml and lock there, and
`proselflc report` / `analysis.load_sweep` read the sweep back through pyarrow, as Ray does.

The endpoint and credentials travel as the environment variables a user sets (AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, ...). They are set when this module is collected, before the test session's Ray starts,
so the Ray workers inherit them: a trial uploads its checkpoints to the bucket from its worker.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.fs as pafs
import pytest
import yaml

from conftest import TINY_SWEEP
from processes import stop
from proselflc import analysis, storage
from proselflc.cli import main
from proselflc.config import ConfigError
from proselflc.sweep_contract import read_manifest
from proselflc.tuning import build_sweep_config, load_sweep, lock, run_sweep
from proselflc.tuning.lock import SweepLock


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


PORT = _free_port()
S3_ENV = {
    "AWS_ENDPOINT_URL": f"http://127.0.0.1:{PORT}",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # never ask a cloud metadata service for credentials
}
os.environ.update(S3_ENV)

BUCKET = "proselflc-test"
#: One noise rate, one method, 2 search trials and 1 final re-run: the smallest sweep with every phase.
SMALL_SWEEP: dict[str, Any] = {
    **TINY_SWEEP,
    "noise": {"kind": "symmetric", "rates": [0.4]},
    "methods": {"crossentropy": TINY_SWEEP["methods"]["crossentropy"]},
    "num_samples": 2,
    "final_seeds": 1,
}


@pytest.fixture(scope="session")
def s3_bucket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`moto_server` on 127.0.0.1:PORT with one empty bucket; its `s3://` root. Killed at the end."""
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    server = Path(sys.executable).with_name("moto_server")
    with log.open("w") as out:
        proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(PORT)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", PORT), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"moto_server did not start:\n{log.read_text()}") from None
                time.sleep(0.2)
        fs, _ = pafs.FileSystem.from_uri(f"s3://{BUCKET}?allow_bucket_creation=true")
        fs.create_dir(BUCKET)
        yield f"s3://{BUCKET}"
    finally:
        stop(proc)


def _files(uri: str) -> list[str]:
    """Every object under `uri`, relative to it, listed through pyarrow."""
    fs, root = pafs.FileSystem.from_uri(uri)
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    return sorted(i.path[len(root) + 1:] for i in infos if i.type == pafs.FileType.File)


def _put(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    with fs.open_output_stream(path) as out:
        out.write(data)


@pytest.fixture(scope="module")
def s3_sweep(ray_session: Any, s3_bucket: str) -> str:
    """SMALL_SWEEP run once with storage_path in the bucket; the sweep's URI."""
    sweep = build_sweep_config({**SMALL_SWEEP, "name": "s3sweep", "storage_path": f"{s3_bucket}/sweeps/"})
    assert sweep.sweep_dir == f"{s3_bucket}/sweeps/s3sweep"
    where = run_sweep(sweep)
    assert str(where) == sweep.sweep_dir
    return str(sweep.sweep_dir)


@pytest.mark.ray
def test_a_sweep_on_s3_writes_trials_checkpoints_and_manifest_into_the_bucket(
    s3_sweep: str, tmp_path: Path
) -> None:
    files = _files(s3_sweep)
    assert {"sweep.yaml", "manifest.json", ".lock"} <= set(files)
    results = [f for f in files if f.startswith("trials/") and f.endswith("/result.json")]
    assert len(results) == 3  # 2 search trials + 1 final re-run, written by Ray Tune into the bucket
    # Checkpoints are uploaded by the trials' workers: the endpoint in the environment reached them.
    assert any("/checkpoint_" in f for f in files)
    manifest = read_manifest(s3_sweep)
    assert manifest.finished and manifest.studies[0].best_params
    assert storage.resolve(f"{s3_sweep}/.lock").read_text() == ""  # released
    assert not Path("s3:").exists()  # nothing was written locally under a mangled URI


@pytest.mark.ray
def test_report_of_an_s3_sweep_is_written_locally_and_equals_a_local_copy_s_report(
    s3_sweep: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["report", s3_sweep, "--no-plots"]) == 0
    remote_report = tmp_path / "s3sweep-report"  # a local directory named after the sweep
    assert f"to {remote_report.name}" in capsys.readouterr().out

    fs, root = pafs.FileSystem.from_uri(s3_sweep)
    local = tmp_path / "copy" / "s3sweep"
    pafs.copy_files(root, str(local), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    assert main(["report", str(local), "--no-plots", "--out", str(tmp_path / "local-report")]) == 0

    names = sorted(p.name for p in remote_report.iterdir())
    assert names and names == sorted(p.name for p in (tmp_path / "local-report").iterdir())
    for name in names:
        if name.endswith((".csv", ".md", ".tex")):
            assert (remote_report / name).read_text() == (tmp_path / "local-report" / name).read_text(), name
    pd.testing.assert_frame_equal(analysis.load_sweep(s3_sweep), analysis.load_sweep(local))
    assert not any(f.startswith("report/") for f in _files(s3_sweep))  # nothing written into the bucket


@pytest.mark.ray
def test_report_out_as_a_uri_uploads_the_report(
    s3_sweep: str, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = f"{s3_bucket}/reports/r1"
    assert main(["report", s3_sweep, "--no-plots", "--format", "csv", "--out", out]) == 0
    assert f"file(s) to {out}" in capsys.readouterr().out
    assert any(name.endswith(".csv") for name in _files(out))


def test_storage_uris_keep_their_query_and_file_uris_are_local_paths(tmp_path: Path) -> None:
    query = "?endpoint_override=127.0.0.1:9000&scheme=http"
    sweep = build_sweep_config({**SMALL_SWEEP, "storage_path": f"s3://b/runs/{query}"})
    assert sweep.sweep_dir == f"s3://b/runs/tiny{query}"
    assert str(storage.resolve(str(sweep.sweep_dir)) / "manifest.json") == f"s3://b/runs/tiny/manifest.json{query}"
    assert storage.uri_name(str(sweep.sweep_dir)) == "tiny" and storage.uri_name("s3://bucket/") == "bucket"
    local = build_sweep_config({**SMALL_SWEEP, "storage_path": f"file://{tmp_path}"})
    assert local.sweep_dir == tmp_path / "tiny"


@pytest.mark.subprocess
def test_a_file_s_size_reads_the_same_on_a_local_disk_and_in_a_bucket(s3_bucket: str, tmp_path: Path) -> None:
    """Location.size, what the results check and the state guard use for both: -1 for a missing file or a
    directory."""
    remote = storage.resolve(f"{s3_bucket}/sizes")
    for root in (tmp_path, remote):
        (root / "d").mkdir()
        (root / "d" / "result.json").write_bytes(b'{"epoch": 1}\n')
        assert storage.as_dir(root / "d" / "result.json").size() == 13
        assert storage.as_dir(root / "d" / "params.json").size() == -1
        assert storage.as_dir(root / "d").size() == -1


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.subprocess)])
def sweep_root(request: pytest.FixtureRequest, tmp_path: Path) -> storage.Location:
    """The same sweep directory on the local disk and in the moto bucket, as `storage.as_dir` makes it."""
    if request.param == "local":
        return storage.as_dir(tmp_path / "sweep")
    return storage.as_dir(f"{request.getfixturevalue('s3_bucket')}/same/{tmp_path.name}")


def test_the_sweep_code_s_file_operations_read_the_same_on_a_local_disk_and_in_a_bucket(
    sweep_root: storage.Location, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One code path for both: write, replace, move, remove, size, the lock and a signed snapshot generation,
    called on a Location without asking which kind it is."""
    d = sweep_root / "d"
    d.mkdir()
    (d / "a.json").write_text("{}\n")
    (d / "a.json").write_text("[1]\n")  # replaced whole
    assert (d / "a.json").read_text() == "[1]\n" and [p.name for p in d.iterdir()] == ["a.json"]
    assert (d / "a.json").is_file() and d.is_dir() and not (d / "b.json").exists()
    assert (d / "a.json").size() == 4 and d.size() == -1 and (d / "b.json").size() == -1
    (d / "a.json").move(sweep_root / "moved" / "a.json")  # the target's parent need not exist
    assert not (d / "a.json").exists() and (sweep_root / "moved" / "a.json").read_bytes() == b"[1]\n"
    (sweep_root / "moved").remove_tree()
    assert not (sweep_root / "moved").exists()

    monkeypatch.setattr(lock, "SETTLE_S", 0.05)
    with SweepLock(sweep_root), pytest.raises(ConfigError, match=f"pid {os.getpid()}"):
        SweepLock(sweep_root).acquire()
    with SweepLock(sweep_root):  # released: the next driver takes it
        pass
    assert (sweep_root / ".lock").read_text() == ""

    from proselflc.tuning import state_guard

    monkeypatch.setenv(state_guard.KEY_ENV, str(tmp_path / "keys" / "sweep.key"))
    staging, experiment = tmp_path / "staging", sweep_root / "trials"
    staging.mkdir()
    for version in (b"v1", b"v2"):
        (staging / "searcher-state-1.pkl").write_bytes(b"searcher-" + version)
        for name in ("searcher-state-1.pkl", "tuner.pkl"):
            (experiment / name).write_bytes(b"searcher-" + version if name != "tuner.pkl" else b"tuner")
        assert state_guard.StateSigner().sign(sweep_root, staging, experiment) is True
    snapshot = state_guard.last_snapshot(sweep_root)
    assert snapshot is not None and [g.name for g in (sweep_root / state_guard.SNAPSHOT).iterdir()] == ["2"]
    assert (snapshot / "searcher-state-1.pkl").read_bytes() == b"searcher-v2"
    assert state_guard.verify(sweep_root, experiment) == []
    (experiment / "tuner.pkl").write_bytes(b"someone else's code")
    assert state_guard.verify(sweep_root, experiment)[0].startswith("tuner.pkl: not the last signed state")
    assert (experiment / "tuner.pkl").read_bytes() == b"tuner"


@pytest.mark.ray
def test_the_endpoint_may_be_given_in_the_uri_instead_of_the_environment(
    s3_sweep: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = len(analysis.load_sweep(s3_sweep))
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    uri = f"{s3_sweep}?endpoint_override=127.0.0.1:{PORT}&scheme=http"
    assert read_manifest(uri).finished
    assert len(analysis.load_sweep(uri)) == rows


@pytest.mark.subprocess
def test_the_lock_on_object_storage_names_its_holder_and_is_freed_on_release(
    s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lock, "SETTLE_S", 0.05)
    where = storage.resolve(f"{s3_bucket}/locks/a")
    with SweepLock(where), pytest.raises(ConfigError, match=f"pid {os.getpid()}"):
        SweepLock(where).acquire()
    with SweepLock(where):  # released: the next driver takes it
        pass
    # A record left by a dead process of this host (a SIGKILLed driver) is taken over.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    record = {"host": socket.gethostname(), "pid": int(dead.stdout), "since": 0, "token": "x"}
    (where / ".lock").write_text(json.dumps(record))
    with SweepLock(where):
        assert json.loads((where / ".lock").read_text())["pid"] == os.getpid()
    # A record from another host cannot be checked: refused, naming it.
    (where / ".lock").write_text(json.dumps({**record, "host": "elsewhere"}))
    with pytest.raises(ConfigError, match="host 'elsewhere'"):
        SweepLock(where).acquire()


def test_bad_storage_uris_fail_fast_naming_storage_path(s3_bucket: str) -> None:
    unknown = build_sweep_config({**SMALL_SWEEP, "storage_path": "nosuchfs://bucket/x"})
    with pytest.raises(ConfigError, match="storage_path: 'nosuchfs://bucket/x/tiny' is not a URI"):
        run_sweep(unknown)
    closed = _free_port()
    unreachable = build_sweep_config(
        {**SMALL_SWEEP, "storage_path": f"s3://{BUCKET}/x?endpoint_override=127.0.0.1:{closed}&scheme=http"}
    )
    started = time.monotonic()
    with pytest.raises(ConfigError, match="storage_path: cannot reach"):
        run_sweep(unreachable)
    assert time.monotonic() - started < 60
    assert main(["report", "nosuchfs://bucket/x"]) == 2


@pytest.mark.ray
@pytest.mark.slow
def test_an_interrupted_s3_sweep_resumes_from_the_bucket(ray_session: Any, s3_bucket: str, tmp_path: Path) -> None:
    from test_tuning_resume import _interrupt_when, _reported

    samples = 6
    raw = {
        **SMALL_SWEEP,
        "name": "s3resume",
        "storage_path": f"{s3_bucket}/resume",
        "methods": {"proselflc": TINY_SWEEP["methods"]["proselflc"]},
        "num_samples": samples,
        "final_seeds": 0,
        "checkpoint_every": 1,
    }
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump(raw))
    uri = f"{s3_bucket}/resume/s3resume"
    log = tmp_path / "sweep.log"
    output = _interrupt_when(_reported(log, r"search \w+: epoch 3/3"), sweep_file, ray_session, log)
    assert f"proselflc tune {uri}/sweep.yaml --resume" in output
    assert read_manifest(uri).studies[0].status == "searching"
    fs, root = pafs.FileSystem.from_uri(uri)

    def results() -> dict[str, bytes]:
        paths = [f for f in _files(uri) if f.endswith("/result.json")]
        return {p: fs.open_input_stream(f"{root}/{p}").readall() for p in paths}

    before = {p: data for p, data in results().items() if b'"epoch": 3' in data}
    assert before

    resumed = load_sweep(f"{uri}/sweep.yaml")  # the sweep file stored in the bucket, as the message says
    assert resumed.sweep_dir == uri
    # Ray's state in the bucket is signed as it is locally: a changed signed copy refuses the resume...
    files = _files(uri)
    (signed,) = [f for f in files if f.startswith(".state-backup/") and f.endswith("/tuner.pkl")]
    original = fs.open_input_stream(f"{root}/{signed}").readall()
    _put(fs, f"{root}/{signed}", original + b"x")
    with pytest.raises(ConfigError, match="does not match its signature"):
        run_sweep(resumed, resume=True)
    _put(fs, f"{root}/{signed}", original)
    # ... and a changed state file of Ray's is set aside for its signed copy.
    state = next(f for f in files if re.fullmatch(r"trials/experiment_state-.*\.json", f))
    _put(fs, f"{root}/{state}", b"{}")
    lines: list[str] = []
    run_sweep(resumed, resume=True, log=lines.append)

    assert any("not the last signed state" in line for line in lines)
    assert f"{state}.rejected" in _files(uri)
    assert any("restoring the interrupted sweep's Tuner" in line for line in lines)
    after = results()
    assert {p: after[p] for p in before} == before  # finished trials were not re-run
    manifest = read_manifest(uri)
    assert manifest.finished and len(manifest.studies[0].trial_order) == samples
