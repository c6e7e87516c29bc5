"""Kind mode: with a tool missing, every cell that needs it says what it would have shown.

A notebook checks its tools once (`HAVE_NGINX = opslab.require("nginx")`); every cell that
needs one is guarded by `if opslab.needs(HAVE_NGINX, shows="..."):`. The first test reads the
notebooks; the second really runs section 03 with nginx hidden (OPSLAB_MISSING_TOOLS).
"""

from __future__ import annotations

import ast
import json
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SKIP_NOTE = "Skipped: nginx is not installed. This cell would show"


def _code_cells(path: Path) -> list[tuple[str, ast.Module]]:
    cells = json.loads(path.read_text())["cells"]
    return [(c["id"], ast.parse("".join(c["source"]))) for c in cells if c["cell_type"] == "code"]


def _is_needs(node: ast.AST) -> bool:
    func = node.func if isinstance(node, ast.Call) else None
    return isinstance(func, ast.Attribute) and func.attr == "needs"


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _guard_names(cells: list[tuple[str, ast.Module]]) -> set[str]:
    """Names set from `require(...)` or from other guards, and flags passed to `needs()`."""
    guards: set[str] = set()
    for _, tree in cells * 2:  # twice: a guard may be derived from one assigned later
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                calls = [p.func for p in ast.walk(node.value) if isinstance(p, ast.Call)]
                required = any(getattr(f, "attr", getattr(f, "id", "")) == "require" for f in calls)
                if required or _names(node.value) & guards:
                    guards.add(node.targets[0].id)
            if _is_needs(node) and isinstance(node.args[0], ast.Name):
                guards.add(node.args[0].id)
    return guards


def _unexplained_guards(path: Path) -> list[str]:
    """Top-level statements of a cell that depend on a guard without `opslab.needs(...)`."""
    cells = _code_cells(path)
    guards, bad = _guard_names(cells), []
    for cell_id, tree in cells:
        for stmt in tree.body:
            # An `if` or a bare expression (`proxy.manifest if HAVE_NGINX else None`) skips
            # output; an assignment (a guard, or a value with a fallback) skips nothing.
            test = stmt.test if isinstance(stmt, ast.If) else getattr(stmt, "value", None)
            if not isinstance(stmt, ast.If | ast.Expr) or not _names(test) & guards:
                continue
            calls = [n for n in ast.walk(test) if _is_needs(n)]
            shows = [k.value for c in calls for k in c.keywords if k.arg == "shows"]
            if not any(isinstance(s, ast.Constant) and str(s.value).strip() for s in shows):
                bad.append(f"{path.name} cell {cell_id}: {ast.unparse(test)[:60]}")
    return bad


def test_guarded_cells_say_what_they_would_show() -> None:
    assert [bad for path in NOTEBOOKS for bad in _unexplained_guards(path)] == []


def test_guard_check_finds_a_silent_guard(tmp_path: Path) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell('HAVE_X = opslab.require("nginx")\nHAVE_Y = HAVE_X and True'),
        nbformat.v4.new_code_cell('if opslab.needs(HAVE_Y, shows="a table"):\n    pass'),
        nbformat.v4.new_code_cell("if HAVE_Y:\n    pass"),
        nbformat.v4.new_code_cell('if opslab.needs(HAVE_X, shows=" "):\n    pass'),
        nbformat.v4.new_code_cell("proxy.manifest if HAVE_X else None"),
    ]
    path = tmp_path / "nb.ipynb"
    nbformat.write(notebook, path)

    assert len(_unexplained_guards(path)) == 3


def _skip_notes(cell: nbformat.NotebookNode) -> list[str]:
    texts = [out.get("data", {}).get("text/markdown", "") for out in cell.get("outputs", [])]
    return [text for text in texts if SKIP_NOTE in text]


def test_section_03_without_nginx_runs_and_explains_every_skipped_cell(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPSLAB_MISSING_TOOLS", "nginx")
    monkeypatch.delenv("OPSLAB_STRICT", raising=False)  # the kernel inherits this environment
    path = ROOT / "notebooks" / "03-reverse-proxy-nginx.ipynb"
    notebook = nbformat.read(path, as_version=4)
    started = time.monotonic()

    NotebookClient(
        notebook, timeout=120, resources={"metadata": {"path": str(path.parent)}}
    ).execute()

    guarded = [c for c in notebook.cells if c.cell_type == "code" and "opslab.needs(" in c.source]
    assert len(guarded) > 20
    assert [c.id for c in guarded if len(_skip_notes(c)) != 1] == []
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []
    assert time.monotonic() - started < 90  # it skips the servers: seconds, not minutes
