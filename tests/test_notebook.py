"""The Colab quick-start notebook runs top to bottom at the tiny preset (as CI runs it).

The notebook is executed with nbclient in a kernel on this interpreter (the test's own
kernelspec, so a user-level ``python3`` kernel pointing elsewhere cannot be picked up), from a
temporary folder, with ``PPM_NOTEBOOK_PRESET=tiny`` and ``PPM_NOTEBOOK_OUT`` in it. Every cell
runs, the install cell included: ppm_tf is importable here, so it installs nothing; a second
test runs it in a kernel where ppm_tf is not, with the source left at its placeholder.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "ppm_quickstart.ipynb"
INSTALL_TAG = "install"
CELL_TIMEOUT_SECONDS = 600


def _tagged(notebook, tag: str):
    cells = [cell for cell in notebook.cells if tag in cell.metadata.get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged {tag!r}, found {len(cells)}"
    return cells[0]


def _text(cell) -> str:
    """Everything a code cell printed or displayed as text."""
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("display_data", "execute_result"):
            parts.extend(str(value) for key, value in output.data.items()
                         if key.startswith("text/"))
    return "".join(parts)


def _kernel_manager(kernels_dir: Path, without_ppm_tf: bool = False) -> KernelManager:
    """A ``python3`` kernel that runs this interpreter (the venv's, with ipykernel); with
    ``without_ppm_tf``, one in which ppm_tf cannot be found, as before it is installed (a
    ``None`` in ``sys.modules`` is how Python marks a module as not importable)."""
    spec_dir = kernels_dir / "python3"
    spec_dir.mkdir(parents=True)
    hide = "sys.modules['ppm_tf'] = None; " if without_ppm_tf else ""
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-c",
                 f"import sys; {hide}from ipykernel import kernelapp; "
                 "kernelapp.launch_new_instance()", "-f", "{connection_file}"],
        "display_name": "PPM-TF test kernel", "language": "python"}))
    return KernelManager(kernel_name="python3",
                         kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels_dir)]))


def test_committed_notebook_has_no_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, cell.source[:80]
    assert "%pip install" in _tagged(notebook, INSTALL_TAG).source


def test_install_cell_asks_for_the_source_left_at_its_placeholder(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    notebook.cells = [_tagged(notebook, INSTALL_TAG)]
    client = nbclient.NotebookClient(
        notebook, km=_kernel_manager(tmp_path / "kernels", without_ppm_tf=True),
        timeout=60, startup_timeout=120, resources={"metadata": {"path": str(tmp_path)}})

    with pytest.raises(nbclient.exceptions.CellExecutionError) as raised:
        client.execute()

    (output,) = notebook.cells[0].outputs
    assert output.ename == "ValueError", output
    assert output.evalue.startswith("Set PPM_TF_SOURCE at the top of this cell"), output.evalue
    assert "/content/ppm-tf" in output.evalue and "pip" not in _text(notebook.cells[0])
    assert "ValueError" in str(raised.value)


@pytest.mark.slow
def test_notebook_runs_at_tiny_preset(tmp_path, monkeypatch):
    monkeypatch.setenv("PPM_NOTEBOOK_PRESET", "tiny")
    monkeypatch.setenv("PPM_NOTEBOOK_OUT", str(tmp_path / "out"))
    run_dir = tmp_path / "cwd"
    run_dir.mkdir()
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, km=_kernel_manager(tmp_path / "kernels"), timeout=CELL_TIMEOUT_SECONDS,
        startup_timeout=120, resources={"metadata": {"path": str(run_dir)}})

    try:
        client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
    finally:
        nbformat.write(notebook, tmp_path / "executed.ipynb")  # kept by pytest, to inspect

    assert _text(_tagged(notebook, INSTALL_TAG)) == "ppm_tf is already installed; nothing to do\n"
    (run_folder,) = (tmp_path / "out").iterdir()  # one new folder per run, kept after it
    assert run_folder.name.startswith("tiny-")
    assert f"preset 'tiny', writing to {run_folder}" in "".join(
        _text(cell) for cell in notebook.cells if cell.cell_type == "code")
    assert (run_folder / "work").is_dir() and (run_folder / "saved_models" / "urm").is_dir()
    fit_output = _text(_tagged(notebook, "urm-fit"))
    assert re.search(r"Epoch 1/\d+", fit_output), fit_output[-2000:]
    assert re.search(r"\d+/\d+ \[=+\] .* - loss: \d", fit_output), fit_output[-2000:]
    table = _text(_tagged(notebook, "results-table"))
    assert "| model | overall | warm | cold |" in table  # click AUC by slice
    for row in ("| urm |", "| base |", "| oracle |"):
        assert row in table, table
    assert "URM over base, click AUC:" in table
    plot = _tagged(notebook, "auc-by-age-plot")
    assert any("image/png" in output.get("data", {}) for output in plot.outputs), plot.outputs
    serving = _text(_tagged(notebook, "serving"))
    assert "| candidate | click_prob |" in serving and "user_states" in serving
