"""Show the app's real code and config files in a notebook, instead of retyping them."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import sample_app

APP_DIR = Path(sample_app.__file__).parent
REPO_DIR = APP_DIR.parent
LANGUAGES = {
    ".py": "python",
    ".conf": "nginx",
    ".j2": "jinja",
    ".yml": "yaml",
    ".yaml": "yaml",
    ".toml": "toml",
    ".json": "json",
    ".html": "html",
    ".css": "css",
    ".js": "javascript",
    ".sh": "bash",
    "Dockerfile": "dockerfile",
    "Makefile": "makefile",
}


class Code:
    """A code listing: Markdown (syntax-highlighted) in notebooks and the book, text elsewhere."""

    def __init__(self, text: str, language: str = "", title: str = "") -> None:
        self.text, self.language, self.title = text.rstrip("\n"), language, title

    def _repr_markdown_(self) -> str:
        head = f"**`{self.title}`**\n\n" if self.title else ""
        return f"{head}```{self.language}\n{self.text}\n```"

    def __repr__(self) -> str:
        return f"# {self.title}\n{self.text}" if self.title else self.text


def _language(path: Path) -> str:
    return LANGUAGES.get(path.name) or LANGUAGES.get(path.suffix, "")


def show_file(
    path: str | Path,
    lines: tuple[int, int] | None = None,
    *,
    grep: str = "",
    between: tuple[str, str] | None = None,
) -> Code:
    """A file of the repo (path from its root); optionally lines (first, last), a `grep`, or
    the lines `between` a line containing the first marker and one containing the second
    (which is left out): markers keep a listing right when the file's line numbers move.
    """
    full = Path(path) if Path(path).is_absolute() else REPO_DIR / path
    text = full.read_text()
    if between:
        all_lines = text.splitlines()
        first = next(i for i, line in enumerate(all_lines) if between[0] in line)
        last = next(i for i in range(first + 1, len(all_lines)) if between[1] in all_lines[i])
        text = "\n".join(all_lines[first:last])
    if lines:
        text = "\n".join(text.splitlines()[lines[0] - 1 : lines[1]])
    if grep:
        text = "\n".join(line for line in text.splitlines() if grep in line)
    title = full.relative_to(REPO_DIR) if full.is_relative_to(REPO_DIR) else full
    return Code(text, _language(full), str(title))


def show_source(obj: Any) -> Code:
    """The source of a function, class or module of the app, as it really is."""
    source_file = Path(inspect.getsourcefile(obj) or "")
    title = (
        source_file.relative_to(REPO_DIR) if source_file.is_relative_to(REPO_DIR) else source_file
    )
    _, first = inspect.getsourcelines(obj)
    return Code(inspect.getsource(obj), "python", f"{title}:{max(first, 1)}")
