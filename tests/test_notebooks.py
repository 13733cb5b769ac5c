"""The notebooks in docs/notebooks/ (jupytext percent files) parse as notebooks and run top to bottom.

Each is executed as a real notebook (a Jupyter kernel, via nbclient) in a temporary folder, with
RLRECIPES_NOTEBOOK_QUICK=1: its first code cell reads that variable and picks reduced sizes, so the
whole file runs in seconds. What is checked is that every cell runs, that the pictures it draws are
shown in the notebook and written into its scratch folder, and that the chapters link to it.
"""

from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext", reason="the notebooks' tests need the dev extra: pip install -e '.[dev]'")
nbclient = pytest.importorskip("nbclient", reason="the notebooks' tests need the dev extra: pip install -e '.[dev]'")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "docs/notebooks").glob("[0-9][0-9]_*.py"))
QUICK_LINE = 'QUICK = os.environ.get("RLRECIPES_NOTEBOOK_QUICK") == "1"'
# Each notebook and the chapter that links to it.
CHAPTERS = {
    "01_icemaze.py": "icemaze.md",
    "02_tiny_llm.py": "tiny-llm.md",
    "03_policy_gradients.py": "reinforce-rloo.md",
    "04_preferences.py": "reward-models.md",
}


def test_there_is_a_notebook_per_part():
    assert [p.name for p in NOTEBOOKS] == sorted(CHAPTERS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_parses_and_is_linked(path):
    nb = jupytext.read(path)
    kinds = [cell.cell_type for cell in nb.cells]
    assert kinds.count("markdown") >= 5 and kinds.count("code") >= 5, f"{path.name}: {kinds}"
    first_code = next(cell.source for cell in nb.cells if cell.cell_type == "code")
    assert QUICK_LINE in first_code, f"{path.name}: the first code cell must read RLRECIPES_NOTEBOOK_QUICK openly"
    assert "%matplotlib inline" in first_code  # a commented magic in the .py file, a real one in the notebook
    link = f"notebooks/{path.name}"
    assert link in (ROOT / "docs" / CHAPTERS[path.name]).read_text(), f"{CHAPTERS[path.name]} does not link {link}"
    assert link in (ROOT / "docs/README.md").read_text(), f"docs/README.md does not link {link}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom_at_quick_settings(path, tmp_path, monkeypatch):
    monkeypatch.setenv("RLRECIPES_NOTEBOOK_QUICK", "1")  # the kernel inherits this process's environment
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TQDM_DISABLE", "1")  # no progress bars in the executed cells' output
    nb = jupytext.read(path)
    # cwd of the kernel = tmp_path, so the notebook's scratch folder (runs/notebooks/...) lands there.
    # A cell that raises makes execute() raise CellExecutionError, with the cell and its traceback.
    nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    shown = sum("image/png" in out.get("data", {}) for out in outputs)
    assert shown >= 2, f"{path.name} showed {shown} pictures"
    written = list((tmp_path / "runs/notebooks" / path.stem).rglob("*.png"))
    assert len(written) >= 2, f"{path.name} wrote {[p.name for p in written]} into its scratch folder"
