"""Every notebook runs top to bottom on its small budget and is committed with outputs cleared."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_the_three_notebooks_exist():
    assert {p.name for p in NOTEBOOKS} == {"quickstart.ipynb", "bias_mitigation.ipynb",
                                           "throughput_colab_tpu.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_with_outputs_cleared(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, path.name


@pytest.mark.long
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    # runs in a scratch folder (its runs/ go there), with the test session's pretraining cache
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on failure
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors


def _install_cell() -> dict:
    """The accelerator notebook's install cell, its functions defined and nothing run."""
    nb = nbformat.read(Path(__file__).parent.parent / "notebooks" / "throughput_colab_tpu.ipynb",
                       as_version=4)
    source = next(c.source for c in nb.cells if "def detect_runtime" in c.source)
    namespace = {"__name__": "install_cell"}
    exec(compile(source, "install_cell", "exec"), namespace)
    return namespace


def test_the_install_cell_keeps_a_simulated_gpu_runtimes_accelerator():
    cell = _install_cell()
    gpu = cell["detect_runtime"]({}, lambda cmd: "/usr/bin/nvidia-smi" if cmd == "nvidia-smi"
                                 else None, lambda path: False)
    assert gpu == "gpu"
    assert cell["detect_runtime"]({"COLAB_TPU_ADDR": "10.0.0.2:8470"}, lambda c: None,
                                  lambda p: False) == "tpu"
    assert cell["detect_runtime"]({}, lambda c: None, lambda p: False) == "cpu"
    url = "git+https://github.com/me/maskshift.git"
    assert cell["pip_spec"](url, "gpu") == f"maskshift[cuda12] @ {url}"
    assert cell["pip_spec"]("/content/maskshift", "tpu") == "/content/maskshift[tpu]"
    assert cell["pip_spec"]("/content/maskshift", "cpu") == "/content/maskshift"
    cell["check_platform"]("gpu", "gpu")  # the accelerator is still there
    with pytest.raises(SystemExit) as stop:  # the install fell back to the CPU build
        cell["check_platform"]("gpu", "cpu")
    message = str(stop.value)
    assert "This runtime has a GPU but JAX runs on cpu" in message and "\n" not in message


def _run_cells_script():
    import importlib.util

    path = Path(__file__).parent.parent / "notebooks" / "run_cells.py"
    spec = importlib.util.spec_from_file_location("run_cells", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_run_cells_sets_a_parameter_after_its_cell_and_refuses_bad_settings(tmp_path, capsys):
    script = _run_cells_script()
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("FULL = 'not code'"),
        nbformat.v4.new_code_cell("FULL = False\nOUT = 'a'"),
        nbformat.v4.new_code_cell("seen = (FULL, OUT)\nassert __name__ == '__main__'")])
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    namespace = script.run_cells(script.code_cells(path), {"FULL": True}, log=lambda s: None)
    assert namespace["seen"] == (True, "a")  # set after its cell, before the next
    for argv, message in [(["--set", "FULL"], "give NAME=VALUE"),
                          (["--set", "OUT=runs/x"], "is not a Python literal"),
                          (["--set", "SEEDS=3"], "no cell of the notebook assigns SEEDS")]:
        with pytest.raises(SystemExit) as stop:
            script.main([str(path), *argv])
        err = capsys.readouterr().err.strip()
        assert stop.value.code == 2 and message in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit) as stop:
        script.main([str(tmp_path / "missing.ipynb")])
    assert stop.value.code == 2 and "no such notebook" in capsys.readouterr().err
