"""Figures in a section's prose are computed by the section, never typed.

A number with a unit in a Markdown cell ("3 s", "28 MB", "2.5x", "95 %") must be either
(a) in a code span, (b) a constant a code cell of the notebook sets (`GRACE = 3`, a PromQL
`[5s]`: the prose names the knob, and changing the knob without the prose fails here), or
(c) on the short list below of outside facts the text explains. A measured figure belongs
in an output the prose points to ("the table above"), or in an f-string.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
UNITS = r"\s?%|\u00d7|x\b|\s(?:ms|s|min|minutes?|seconds?|hours?|MB|kB|KB|GB|B|bytes|req/s)\b"
FIGURE = re.compile(rf"(?<![\w.\-/])(\d+(?:\.\d+)?)(?:{UNITS})")
CODE_SPAN = re.compile(r"```.*?```|`[^`\n]*`", re.S)
LINK_URL = re.compile(r"\]\([^)]*\)")
IN_STRING = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?:s|ms|m|r/s)?(?![\w.])")
LAYOUT = {"figsize", "layout", "bins", "range", "width", "rot", "alpha", "fontsize", "dpi"}
# Outside facts the prose states as such, each a default of another program (not a measure):
OUTSIDE_FACTS = {
    ("02", "10 s"),  # `docker stop`'s default grace period before SIGKILL (Docker's docs)
    ("05", "15 s"),  # a common production scrape interval, contrasted with this lab's 1 s
    ("05", "5 s"),  # Prometheus applies new scrape targets in batches about every 5 s
    ("06", "30 s"),  # Kubernetes' default terminationGracePeriodSeconds
    ("06", "90 s"),  # systemd's default TimeoutStopSec
}


def number_of(figure: str) -> float:
    return float(re.match(r"\d+(?:\.\d+)?", figure).group(0))


def prose_figures(path: Path) -> list[tuple[int, str, str]]:
    """(markdown cell number, figure, context) for each figure typed in the prose."""
    found = []
    for number, cell in enumerate(nbformat.read(path, as_version=4).cells):
        if cell.cell_type == "markdown":
            text = LINK_URL.sub("]", CODE_SPAN.sub(" ", cell.source))
            for m in FIGURE.finditer(text):
                context = " ".join(text[max(0, m.start() - 40) : m.end() + 10].split())
                found.append((number, " ".join(m.group(0).split()), context))
    return found


def code_constants(path: Path) -> set[float]:
    """Numbers the notebook's code sets: literals (not plot layout) and durations in strings."""
    numbers: set[float] = set()
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        tree = ast.parse(cell.source)
        layout = {
            id(n)
            for k in ast.walk(tree)
            if isinstance(k, ast.keyword) and k.arg in LAYOUT
            for n in ast.walk(k.value)
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Constant) or id(node) in layout:
                continue
            if isinstance(node.value, int | float) and not isinstance(node.value, bool):
                numbers.add(float(node.value))
            elif isinstance(node.value, str):
                numbers |= {float(m.group(1)) for m in IN_STRING.finditer(node.value)}
    return numbers


def typed_figures(path: Path) -> list[str]:
    constants, prefix = code_constants(path), path.name[:2]
    return [
        f"{path.name} markdown cell {cell}: {figure!r} in {context!r}"
        for cell, figure, context in prose_figures(path)
        if number_of(figure) not in constants and (prefix, figure) not in OUTSIDE_FACTS
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_prose_names_no_figure_the_notebook_does_not_compute(path: Path) -> None:
    assert typed_figures(path) == []


def test_typed_figures_finds_a_measurement_typed_in_prose(tmp_path: Path) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("GRACE = 3\nplt.subplots(figsize=(28, 4))"),
        nbformat.v4.new_markdown_cell(
            "Waits 3 s; `2 s` is code; the image is 28 MB, 2.5x less, 95 % of it."
        ),
    ]
    path = tmp_path / "99-x.ipynb"
    nbformat.write(notebook, path)

    assert [f.split(": ")[1].split(" in ")[0] for f in typed_figures(path)] == [
        "'28 MB'",
        "'2.5x'",
        "'95 %'",
    ]
