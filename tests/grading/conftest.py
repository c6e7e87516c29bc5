"""The review notebooks' answers as Python values: the master's solutions, the given prompts."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIP = ("grader", "otter", "opslab.setup", "grading.check", "BEGIN TEST CONFIG", "attempt")


def answers(notebook: Path) -> dict[str, Any]:
    """Run the notebook's answer cells (not setup, checks or tests) into a fresh namespace."""
    module = types.ModuleType(f"review_answers_{notebook.parent.name}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    namespace = module.__dict__
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type == "code" and not any(s in cell.source for s in SKIP):
            exec(compile(cell.source, str(notebook), "exec"), namespace)
    return namespace


@pytest.fixture(scope="session")
def master() -> dict[str, Any]:
    """The model answers from solutions/review.ipynb."""
    return answers(ROOT / "solutions" / "review.ipynb")


@pytest.fixture(scope="session")
def exercise() -> dict[str, Any]:
    """The untouched learner notebook's values: the given Dockerfile, server, loader stub."""
    return answers(ROOT / "exercises" / "review.ipynb")
