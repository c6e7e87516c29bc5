"""Each section links the first use of a glossary term, in its prose, to the glossary.

The link is the same relative one the "Next" cells use: it opens the glossary page in the
book and the Markdown file in JupyterLab. (A `#term-...` anchor would be nicer, but MyST
resolves anchors only to headings and the book's strict build rejects the link.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GLOSSARY_LINK = "../book/glossary.md"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
LINK = re.compile(r"\[([^\]]*)\]\(([^)]*)\)")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)


def glossary_terms() -> list[str]:
    """The glossary's terms without their parenthesised forms, longest first."""
    text = (ROOT / "book" / "glossary.md").read_text()
    body = text.split("```{glossary}", 1)[1].split("```", 1)[0]
    entries = [line for line in body.splitlines() if line and not line.startswith((" ", ":"))]
    return sorted({re.sub(r"\s*\(.*\)$", "", e) for e in entries}, key=len, reverse=True)


def _blank(text: str, pattern: re.Pattern[str], group: int = 0) -> str:
    """`text` with every match of `pattern` (or its group) turned into spaces, same length."""
    return pattern.sub(
        lambda m: m.group(0).replace(m.group(group), " " * len(m.group(group))), text
    )


def uses(source: str, term: str) -> list[tuple[int, int, str | None]]:
    """Where prose uses `term` (start, end, the URL of the link around it, or None).

    Code, headings and the URLs of links are not prose; a use inside a link to somewhere
    other than the glossary does not count (its link is taken)."""
    prose = CODE.sub(lambda m: " " * len(m.group(0)), source)
    prose = re.sub(r"(?m)^#.*$", lambda m: " " * len(m.group(0)), prose)
    links = [(m.start(1), m.end(1), m.group(2)) for m in LINK.finditer(prose)]
    prose = _blank(prose, LINK, 2)
    found = []
    for match in re.finditer(rf"(?i)\b{re.escape(term)}(?:e?s)?\b", prose):
        url = next((u for s, e, u in links if s <= match.start() < e), None)
        if url is None or url == GLOSSARY_LINK:
            found.append((match.start(), match.end(), url))
    return found


def markdown_cells(path: Path) -> list[str]:
    cells = json.loads(path.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]


def first_use(path: Path, term: str) -> tuple[int, int, int, str | None] | None:
    """The first use of `term` in the notebook's prose: (cell, start, end, link URL)."""
    for number, source in enumerate(markdown_cells(path)):
        found = uses(source, term)
        if found:
            return (number, *found[0])
    return None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_use_of_each_glossary_term_links_the_glossary(path: Path) -> None:
    unlinked = []
    for term in glossary_terms():
        found = first_use(path, term)
        if found is not None and found[3] != GLOSSARY_LINK:
            cell, start, end, _ = found
            unlinked.append(
                f"{term!r} in markdown cell {cell}: {markdown_cells(path)[cell][start:end]!r}"
            )
    assert unlinked == []


def test_uses_sees_prose_only() -> None:
    text = "# HSTS\n`HSTS` and [HSTS](https://x.org) then [HSTS](../book/glossary.md), HSTS."

    assert [url for _, _, url in uses(text, "HSTS")] == [GLOSSARY_LINK, None]
