"""The glossary explains the jargon the sections use."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GLOSSARY = (ROOT / "book" / "glossary.md").read_text()
# Terms a reader meets without an explanation next to them (found by reading the sections).
JARGON = ["ALPN", "ASGI", "Content Security Policy", "HSTS", "Percentile", "Round-robin"]
JARGON += ["TIME_WAIT", "Unix socket", "Idempotent request", "Keep-alive connection", "SLO"]


def _notebook_text() -> str:
    text = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        text += ["".join(c["source"]) for c in json.loads(path.read_text())["cells"]]
    return "\n".join(text)


def _entries() -> list[str]:
    """The glossary's terms: the unindented lines inside its ```{glossary} block."""
    body = GLOSSARY.split("```{glossary}", 1)[1].split("```", 1)[0]
    return [line for line in body.splitlines() if line and not line.startswith((" ", ":"))]


@pytest.mark.parametrize("term", JARGON)
def test_jargon_the_sections_use_is_in_the_glossary(term: str) -> None:
    assert any(entry.startswith(term) for entry in _entries()), term


def test_the_jargon_list_names_only_terms_the_sections_use() -> None:
    used = _notebook_text().lower()
    short = {"Percentile": "p95", "Round-robin": "round-robin", "Content Security Policy": "csp"}
    unused = [t for t in JARGON if short.get(t, t).lower() not in used]
    assert unused == []


def test_glossary_entries_are_unique_and_capitalised() -> None:
    entries = _entries()
    assert len(entries) == len(set(entries))
    assert all(re.match(r"[A-Z]", e) for e in entries)
