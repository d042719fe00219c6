"""notebooks/analysis.ipynb executes top to bottom against a sweep and shows the table and figures."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "analysis.ipynb"
KERNEL = "proselflc-test-python"


@pytest.fixture
def this_python_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec running this interpreter (the project's .venv), found first through JUPYTER_PATH."""
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec_dir / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return KERNEL


def execute(sweep: Path, kernel: str, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    monkeypatch.setenv("PROSELFLC_SWEEP", str(sweep))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb, kernel_name=kernel, timeout=120, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()
    return nb


def outputs(nb: nbformat.NotebookNode) -> tuple[str, int]:
    """All text/markdown output of the notebook, and how many PNG images it displayed."""
    text, images = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            images += "image/png" in data
            text += [out.get("text", ""), data.get("text/markdown", ""), data.get("text/plain", "")]
    return "\n".join(text), images


@pytest.mark.ray
def test_notebook_runs_on_a_real_sweep(
    tiny_sweep: Path, this_python_kernel: str, monkeypatch: pytest.MonkeyPatch, ray_session: Any
) -> None:
    # The notebook's own tiny sweep (proselflc.tune) runs on the session's Ray, not on a second one.
    monkeypatch.setenv("RAY_ADDRESS", ray_session.get_runtime_context().gcs_address)
    nb = execute(tiny_sweep, this_python_kernel, monkeypatch)
    text, images = outputs(nb)
    assert re.search(r"\|\s+noise rate\s+\|\s+crossentropy\s+\|\s+proselflc\s+\|", text)
    assert "symmetric-0.4/proselflc" in text and "loss.exp_base" in text
    assert re.search(r"\|\s+0.4\s+\|\s+[\d.]+ / [\d.]+\s+\|", text)  # the memorisation table
    assert re.search(r"\|\s+0.4\s+\|\s+([\d.]+|n/a: [^|]+) · n_eff [\d]+ of 60", text)  # the certainty table
    assert images >= 3  # accuracy vs noise and one learning-curve figure per noise rate
    assert re.search(r"Sweep\('.*/notebook-tiny'\)", text)  # the sweep the notebook started from Python
    assert re.search(r"\|\s+0.4\s+\|\s+\*\*[\d.]+\*\*\s+\|", text)  # ... and its one-method table
