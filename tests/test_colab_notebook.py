"""The Colab notebook, executed cell by cell on its CPU profile (tiny models), so it cannot rot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "experiments" / "colab" / "distill_colab.ipynb"


@pytest.mark.slow
def test_the_colab_notebook_runs_every_stage(tmp_path, monkeypatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    monkeypatch.setenv("DISTILL_NOTEBOOK_PROFILE", "cpu_tiny")
    monkeypatch.setenv("DISTILL_NOTEBOOK_OUT", str(tmp_path))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parents[2])}},
    )  # fmt: skip
    client.execute()  # raises on the first cell that fails
    assert (tmp_path / "train" / "adapters" / "adapter_config.json").is_file()
    assert (
        json.loads((tmp_path / "eval" / "metrics.json").read_text())["eval/humaneval/num_problems"]
        == 3
    )
    exported = tmp_path / "export" / "model"
    assert {"model.safetensors", "Modelfile", "README.md"} <= {p.name for p in exported.iterdir()}
    assert (tmp_path / "chat" / "chat.jsonl").read_text().strip()
