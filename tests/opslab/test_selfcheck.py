"""Self-checks: immediate, explained feedback in a kernel; the question and answers in the book."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from opslab.selfcheck import SelfCheck, selfcheck, verdict

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = sorted(p for p in (ROOT / "notebooks").glob("0[1-9]-*.ipynb"))
OPTIONS = {
    "SIGTERM": (True, "It can be caught: the app drains first."),
    "SIGKILL <now>": (False, "It cannot be caught: nothing drains."),
}


def test_feedback_names_the_verdict_first_and_says_why() -> None:
    check = selfcheck("Which signal lets the app drain?", OPTIONS)

    assert verdict(check.choices, "SIGTERM") == "Right. It can be caught: the app drains first."
    assert verdict(check.choices, "SIGKILL <now>").startswith("Not quite. It cannot be caught")
    assert verdict(check.choices, None) == "Pick an answer first."


def test_clicking_check_shows_the_feedback_for_the_pick() -> None:
    widget = selfcheck("Which signal lets the app drain?", OPTIONS).widget()
    _title, picker, button, feedback = widget.children

    button.click()
    assert "Pick an answer first" in feedback.value
    picker.value = "SIGKILL <now>"
    button.click()
    assert "Not quite." in feedback.value
    picker.value = "SIGTERM"
    button.click()
    assert feedback.value.startswith("<p>Right.")


def test_the_book_gets_the_question_and_every_answer_explained() -> None:
    bundle = selfcheck("Which <signal>?", OPTIONS)._repr_mimebundle_()

    page = bundle["text/html"]
    assert "application/vnd.jupyter.widget-view+json" in bundle  # JupyterLab: the widget
    assert "Which &lt;signal&gt;?" in page
    assert "<details><summary>Answer</summary>" in page
    assert page.count("<li><strong>") == len(OPTIONS)


@pytest.mark.parametrize(
    "options",
    [{"a": (True, "")}, {"a": (True, ""), "b": (True, "")}, {"a": (False, ""), "b": (False, "")}],
)
def test_a_question_has_one_right_answer_among_two_to_six(options: dict) -> None:
    with pytest.raises(ValueError, match="exactly one right answer"):
        SelfCheck("q", options)


@pytest.mark.parametrize("path", SECTIONS, ids=lambda p: p.stem)
def test_every_section_ends_with_self_checks_and_links(path: Path) -> None:
    cells = json.loads(path.read_text())["cells"]
    sources = ["".join(c["source"]) for c in cells]
    checks = [
        eval(source, {"selfcheck": selfcheck})  # the course's own notebooks
        for source in sources
        if source.startswith("selfcheck(")
    ]
    links = re.findall(r"\]\((\.\./[^)]+)\)", sources[-1])

    assert len(checks) >= 3
    assert all(isinstance(check, SelfCheck) for check in checks)
    assert any("exercises/checkpoint-" in link for link in links), sources[-1]
    assert any(link.endswith("book/glossary.md") for link in links)
    assert all((path.parent / link).resolve().is_file() for link in links)
