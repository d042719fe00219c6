"""Dataset pickles are data: a file that would run code is refused before anything it names is called.

The real CIFAR batches are Python 2 pickles (protocol 2, `str` written as byte strings) that torchvision reads
with `encoding='latin1'`; `_py2_pickle` writes that exact form, and `benchmarks.cifar_files` the Python 3 form.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from benchmarks.cifar_files import write_cifar10

from proselflc import data
from proselflc.config import DataConfig
from proselflc.data import pickles


class _CreatesAFile:
    """What a hostile batch file holds: unpickling it calls os.system (here: touch a marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler, whose dispatch table can be extended
    """Writes str and bytes as Python 2's `str` (BINSTRING), as cPickle wrote the CIFAR batches."""

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj: str | bytes) -> None:
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = _save_py2_str
    dispatch[bytes] = _save_py2_str


def _py2_pickle(obj: object) -> bytes:
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def test_a_code_carrying_batch_file_is_refused_and_runs_nothing(tmp_path):
    root = tmp_path / "data"
    write_cifar10(root, per_batch=10)
    marker = tmp_path / "ran"
    batch = root / "cifar-10-batches-py" / "data_batch_2"
    for protocol in (0, 2, pickle.HIGHEST_PROTOCOL):
        batch.write_bytes(pickle.dumps({"data": _CreatesAFile(marker), "labels": [0]}, protocol=protocol))
        with pytest.raises(ValueError) as refused:
            data.load(DataConfig(name="cifar10", root=root))
        assert not marker.exists(), f"protocol {protocol}: the pickle ran code"
        text = str(refused.value)
        assert str(batch) in text and "system" in text, text  # os.system pickles as posix.system
        assert "never runs code" in text


def test_the_real_python2_batch_format_and_the_python3_one_load(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(10, 3072), dtype=np.uint8)
    batch = {"batch_label": "training batch 1 of 5", "labels": list(range(10)), "data": pixels,
             "filenames": [f"img_{i}.png" for i in range(10)]}
    for raw in (_py2_pickle(batch), pickle.dumps(batch, protocol=2), pickle.dumps(batch, protocol=5)):
        path = tmp_path / "batch"
        path.write_bytes(raw)
        back = pickles.load(path)
        assert back["labels"] == list(range(10)) and back["filenames"][3] == "img_3.png"
        np.testing.assert_array_equal(back["data"], pixels)
    meta = tmp_path / "meta"
    meta.write_bytes(_py2_pickle({"label_names": ["airplane", "automobile"], "num_cases_per_batch": 10000}))
    assert pickles.load(meta) == {"label_names": ["airplane", "automobile"], "num_cases_per_batch": 10000}


def test_bytes_through_codecs_only_as_latin1(tmp_path):
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({"f": b"\x00\xffab"}, protocol=2))
    assert pickles.load(path) == {"f": b"\x00\xffab"}
    # the same global asked for another codec (zlib would inflate a small file into a large one)
    hostile = pickle.dumps({"f": b"x"}, protocol=2).replace(b"latin1", b"zlib\x00\x00")
    path.write_bytes(hostile)
    with pytest.raises(ValueError, match="refused as a dataset file"):
        pickles.load(path)


@pytest.mark.parametrize("content", [b"", b"\x80\x04garbage-not-a-pickle", b"PK\x03\x04 a zip file", b"\x80\x02}q\x00(X"])
def test_an_empty_or_garbage_batch_file_is_one_clear_error_naming_it(tmp_path, content):
    root = tmp_path / "data"
    write_cifar10(root, per_batch=10)
    batch = root / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(content)
    with pytest.raises(ValueError) as refused:
        data.load(DataConfig(name="cifar10", root=root))
    text = str(refused.value)
    assert str(batch) in text and "data.root" in text and "data.download: true" in text
    assert "\n" not in text
