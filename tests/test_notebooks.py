"""The notebooks: committed without outputs, and each runs top to bottom in a fresh kernel.

The kernel is this Python (jupyter_client runs the ``python3`` kernel spec's ``python`` as
``sys.executable``), started in notebooks/ as Jupyter would; files a notebook writes go to the
test's temporary directory (``ADPOLICY_NOTEBOOK_DIR``).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from serve.server import TorchServe

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
OFFLINE = "01_offline_scoring.ipynb"
SWAP = "02_swap_encoder.ipynb"
SERVE = "03_export_serve_monitor.ipynb"
CELL_TIMEOUT_S = 600


def execute(name: str, out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every cell of a notebook; a cell that raises fails the test with its traceback."""
    monkeypatch.setenv("ADPOLICY_NOTEBOOK_DIR", str(out))
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()


def test_notebooks_are_committed_without_outputs() -> None:
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == [OFFLINE, SWAP, SERVE]
    for name in names:
        notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(notebook)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [], f"{name}: a cell has outputs; clear them"
                assert cell.execution_count is None, f"{name}: a cell has an execution count"


@pytest.mark.slow
@pytest.mark.parametrize("name", [OFFLINE, SWAP])
def test_notebook_runs(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    execute(name, tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.serve
def test_serving_notebook_runs_and_stops_its_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        execute(SERVE, tmp_path, monkeypatch)
    finally:  # a failed cell leaves the server up: stop it here
        server = TorchServe.find(tmp_path / "torchserve")
        if server is not None:
            server.stop()
    assert TorchServe.find(tmp_path / "torchserve") is None
