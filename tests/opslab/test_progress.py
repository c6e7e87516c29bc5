"""Progress bars: live while a cell runs, one summary line in the saved notebook."""

from __future__ import annotations

import nbformat
from nbclient import NotebookClient

from opslab.progress import progress_bar, wait

CELL = """from opslab.progress import progress_bar, wait
with progress_bar(3, "load", "req") as bar:
    bar.update(3)
wait(0.5, "background load")
"""


def test_a_notebook_keeps_a_summary_line_not_the_bar_s_first_state() -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(CELL)]
    notebook.metadata.kernelspec = {"name": "python3", "display_name": "Python 3"}
    NotebookClient(notebook, timeout=60).execute()

    outputs = notebook.cells[0].outputs
    texts = [o["data"]["text/plain"] for o in outputs if o["output_type"] == "display_data"]
    assert len(texts) == 2
    assert texts[0].startswith("load: 3 req in ")
    assert texts[1] == "background load: waited 0.5 s"
    assert not any("widget-view" in key for o in outputs for key in o.get("data", {}))


def test_outside_a_notebook_the_bar_ends_on_its_last_count(capsys) -> None:
    with progress_bar(2, "load", "req") as bar:
        bar.update(2)
    wait(0.2, "pause")

    assert bar.n == 2
    assert "2/2" in capsys.readouterr().err
