"""A sweep directory is one type, `storage.Location`, whether it is local or a URI: no module but storage.py
branches on its type (`isinstance(..., Location)` / `isinstance(..., Path)`), so the difference between a local
disk and object storage lives in one class. The same operations run on both in test_storage_uri.py."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
#: isinstance(..., Path) that checks a config value's type (a run YAML path, a storage_path field), not a sweep dir.
CONFIG_VALUE_CHECKS = {"proselflc/reference.py", "proselflc/tuning/config.py"}


def _checked_types(node: ast.Call) -> set[str]:
    """The class names an `isinstance(x, ...)` call checks against (`A`, `mod.A`, `A | B`, `(A, B)`)."""
    if not (isinstance(node.func, ast.Name) and node.func.id == "isinstance" and len(node.args) == 2):
        return set()
    return {
        part.id if isinstance(part, ast.Name) else part.attr
        for part in ast.walk(node.args[1])
        if isinstance(part, ast.Name | ast.Attribute)
    }


def test_no_module_outside_storage_branches_on_the_type_of_a_sweep_directory() -> None:
    found = []
    for path in sorted((SRC / "proselflc").rglob("*.py")):
        module = path.relative_to(SRC).as_posix()
        if module == "proselflc/storage.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = _checked_types(node) if isinstance(node, ast.Call) else set()
            if "Location" in names or ("Path" in names and module not in CONFIG_VALUE_CHECKS):
                found.append(f"{module}:{node.lineno}")
    assert found == [], "use storage.as_dir and the Location's methods (or its .local) instead"


def test_the_union_of_path_and_location_is_gone() -> None:
    from proselflc import storage

    assert not hasattr(storage, "Dir")
    assert [p for p in (SRC / "proselflc").rglob("*.py") if "storage.Dir" in p.read_text()] == []


def test_a_local_path_a_file_uri_and_a_path_object_are_one_local_location(tmp_path: Path) -> None:
    from proselflc import storage

    for named in (str(tmp_path), f"file://{tmp_path}", tmp_path):
        where = storage.as_dir(named)
        assert where.local == tmp_path and str(where) == str(tmp_path)
        assert str(where / "a" / "b") == str(tmp_path / "a" / "b") and (where / "a").parent == where
    assert storage.as_dir(where) is where


@pytest.mark.subprocess
def test_a_local_sweep_directory_is_read_and_written_without_pyarrow(tmp_path: Path) -> None:
    code = (
        "import sys; from proselflc import storage; where = storage.as_dir(sys.argv[1]) / 'sweep'; where.mkdir(); "
        "(where / 'a').write_text('x'); assert (where / 'a').read_text() == 'x' and (where / 'a').size() == 1; "
        "assert [p.name for p in where.iterdir()] == ['a']; where.remove_tree(); "
        "assert 'pyarrow' not in sys.modules, 'pyarrow was imported'"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=60)
