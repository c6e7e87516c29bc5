"""Self-check questions at the end of a section: immediate, explained, ungraded feedback.

In JupyterLab a question is a set of choices and a *Check* button; the answer appears
under it at once, right or wrong, with the reason for the choice picked. In the book
(no kernel) the same output shows the question, the choices and a collapsed "Answer"
with every choice explained: the page still makes sense without widgets.

    selfcheck("Which signal ...?", {
        "SIGTERM": (True, "It can be caught: the app drains first."),
        "SIGKILL": (False, "It cannot be caught: nothing drains."),
    })

Graded questions live in the exercises (otter); these never count.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_CHOICES = 6


@dataclass(frozen=True)
class Choice:
    """One answer: its text, whether it is right, and why."""

    text: str
    correct: bool
    why: str


def _choices(options: Mapping[str, tuple[bool, str]]) -> list[Choice]:
    choices = [Choice(text, correct, why) for text, (correct, why) in options.items()]
    if not 2 <= len(choices) <= MAX_CHOICES or sum(c.correct for c in choices) != 1:
        raise ValueError("a self-check has 2-6 choices and exactly one right answer")
    return choices


def verdict(choices: list[Choice], picked: str | None) -> str:
    """The feedback line for a pick: right or not, and why (plain text)."""
    if picked is None:
        return "Pick an answer first."
    choice = next(c for c in choices if c.text == picked)
    if choice.correct:
        return f"Right. {choice.why}"
    return f"Not quite. {choice.why}"


def static_html(question: str, choices: list[Choice]) -> str:
    """The question as the book shows it: choices, then every answer explained, collapsed."""
    items = "".join(f"<li>{html.escape(c.text)}</li>" for c in choices)
    answers = "".join(
        f"<li><strong>{'Right' if c.correct else 'No'}</strong>: "
        f"{html.escape(c.text)}: {html.escape(c.why)}</li>"
        for c in choices
    )
    return (
        f'<div class="opslab-selfcheck"><p><strong>Self-check.</strong> '
        f"{html.escape(question)}</p><ol type='a'>{items}</ol>"
        f"<details><summary>Answer</summary><ul>{answers}</ul></details></div>"
    )


class SelfCheck:
    """A displayable question: a widget in a kernel with a widget frontend, HTML elsewhere."""

    def __init__(self, question: str, options: Mapping[str, tuple[bool, str]]) -> None:
        self.question = question
        self.choices = _choices(options)
        self._widget: Any = None

    def widget(self) -> Any:
        """RadioButtons, a Check button and the feedback line (built once)."""
        if self._widget is None:
            import ipywidgets as widgets

            picker = widgets.RadioButtons(
                options=[c.text for c in self.choices],
                value=None,
                layout=widgets.Layout(width="max-content"),
            )
            button = widgets.Button(description="Check", button_style="primary")
            feedback = widgets.HTML()

            def on_check(_button: Any) -> None:
                feedback.value = f"<p>{html.escape(verdict(self.choices, picker.value))}</p>"

            button.on_click(on_check)
            title = widgets.HTML(
                f"<p><strong>Self-check.</strong> {html.escape(self.question)}</p>"
            )
            self._widget = widgets.VBox([title, picker, button, feedback])
        return self._widget

    def _repr_mimebundle_(self, **_kwargs: Any) -> dict[str, Any]:
        bundle = {"text/html": static_html(self.question, self.choices)}
        bundle["text/plain"] = f"Self-check: {self.question}"
        try:
            widget_bundle = self.widget()._repr_mimebundle_()
        except ImportError:  # no ipywidgets: the HTML is the whole question
            return bundle
        view = widget_bundle.get("application/vnd.jupyter.widget-view+json")
        if view:
            bundle["application/vnd.jupyter.widget-view+json"] = view
        return bundle


def selfcheck(question: str, options: Mapping[str, tuple[bool, str]]) -> SelfCheck:
    """A question to display (the last expression of a cell): see the module docstring."""
    return SelfCheck(question, options)
