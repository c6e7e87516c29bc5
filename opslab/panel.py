"""Experiment panels: a few knobs, a Run button, and the result of a run on real servers.

    panel(run, {"drain": FloatSlider(value=1, min=0, max=2)}, title="SIGTERM")
    # ...as the last expression of a cell

`run(**values)` starts what it needs (with `opslab.start_app`, `opslab.Nginx`...), measures
and returns what to show: a matplotlib `Figure`, a pandas `DataFrame`, a string, or a list
of them. `panel()` runs it once with the default values before it is displayed, so the
cell's output already tells the story; in the book (no kernel, no widgets) that output is
the result's HTML. In JupyterLab the Run button starts another run in a worker thread,
so the button can say it is busy: a second click during a run is ignored, not queued.
Every server a run started and left running is stopped when the run ends, even if it
failed; the toolkit's pidfiles cover a kernel that dies mid-run.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opslab import registry

log = logging.getLogger(__name__)

RUN_LABEL, BUSY_LABEL = "Run", "Running…"
TICK_SECONDS = 0.2


@contextmanager
def stopping_new_servers() -> Iterator[None]:
    """Stop, on the way out, every registered process started inside the block."""
    before = set(map(id, registry.running_processes()))
    try:
        yield
    finally:
        for proc in reversed(registry.running_processes()):
            if id(proc) not in before:
                try:
                    proc.stop()
                except Exception:
                    log.exception("could not stop %s", proc.name)


def slider(label: str, value: float, low: float, high: float, step: float = 0.5) -> Any:
    """A labelled float knob whose label is not cut off (ipywidgets' default is 80 px)."""
    import ipywidgets as widgets

    return widgets.FloatSlider(
        value=value,
        min=low,
        max=high,
        step=step,
        description=label,
        readout_format=".0f" if float(step).is_integer() else ".2f",
        style={"description_width": "initial"},
        layout=widgets.Layout(width="28em", max_width="100%"),
    )


def figure(width: float = 9, height: float = 3.5) -> Any:
    """A matplotlib Figure that no backend displays by itself (safe in a worker thread)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _figure_html(fig: Any, alt: str) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96)
    data = base64.b64encode(buffer.getvalue()).decode()
    return (
        f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}" '
        'style="max-width:100%;height:auto">'
    )


def to_html(result: Any, alt: str = "") -> str:
    """The HTML of a run's result: figures as PNG images, frames as tables, text escaped."""
    items = result if isinstance(result, list | tuple) else [result]
    parts = []
    for item in items:
        if hasattr(item, "savefig"):
            parts.append(_figure_html(item, alt))
        elif hasattr(item, "to_html"):
            parts.append(item.to_html())
        else:
            parts.append(f"<pre>{html.escape(str(item))}</pre>")
    return f'<div class="opslab-panel-result">{"".join(parts)}</div>'


def _describe(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={value}" for name, value in values.items())


class Panel:
    """Knobs + Run + an output replaced in place; see the module docstring."""

    def __init__(
        self,
        run: Callable[..., Any],
        controls: Mapping[str, Any],
        *,
        title: str,
        alt: str = "",
    ) -> None:
        import ipywidgets as widgets

        self.run_fn, self.controls, self.title = run, dict(controls), title
        self.alt = alt or title
        self.button = widgets.Button(description=RUN_LABEL, button_style="primary")
        self.button.on_click(self._on_click)
        self.status = widgets.HTML()
        # A click's run shows how far it is, timed on the previous run (the default's first).
        self.progress = widgets.FloatProgress(
            value=0, min=0, max=1, layout=widgets.Layout(width="12em", visibility="hidden")
        )
        self.output = widgets.Output()
        self.runs, self.last_html, self.error, self.last_seconds = 0, "", None, 0.0
        self._lock, self._thread = threading.Lock(), None
        knobs = widgets.VBox(list(self.controls.values()))
        header = widgets.HTML(f"<strong>{html.escape(title)}</strong>")
        row = widgets.HBox([self.button, self.progress, self.status])
        self.widget = widgets.VBox([header, knobs, row, self.output])

    def values(self) -> dict[str, Any]:
        """The knobs' current values, by the run function's argument names."""
        return {name: control.value for name, control in self.controls.items()}

    def run(self, *, raise_errors: bool = True) -> str:
        """One run with the current values, in this thread; returns (and shows) its HTML."""
        if not self._lock.acquire(blocking=False):
            raise RuntimeError("a run is already going")
        try:
            return self._run_locked(raise_errors)
        finally:
            self._lock.release()

    def _run_locked(self, raise_errors: bool) -> str:
        values = self._set_busy(True)
        started, done = time.monotonic(), threading.Event()
        ticker = threading.Thread(target=self._tick, args=(started, done), daemon=True)
        ticker.start()
        number = self.runs + 1
        page, status = "", "<strong>the run was interrupted</strong>"
        try:
            with stopping_new_servers():
                result = self.run_fn(**values)
            page = to_html(result, alt=f"{self.alt} ({_describe(values)}; run {number})")
            self.error, self.last_html = None, page
            status = f"run {number}: {html.escape(_describe(values))}"
        except Exception as exc:
            self.error = exc
            text = html.escape(f"{type(exc).__name__}: {exc}")
            page = self.last_html = f"<pre>{text}</pre>"
            status = "<strong>the run failed</strong>"
            log.exception("panel run failed")
            if raise_errors:
                raise
        finally:
            self.runs = number
            self.last_seconds = time.monotonic() - started
            self._set_busy(False)
            done.set()
            ticker.join()
            self.progress.value = 1.0
            self._show(page)
            # Set after the result is on screen: a status that says "run N" means run N's
            # figure is already there.
            self.status.value = status
        return page

    def _set_busy(self, busy: bool) -> dict[str, Any]:
        self.button.disabled = busy
        self.button.description = BUSY_LABEL if busy else RUN_LABEL
        self.progress.layout.visibility = "visible" if busy else "hidden"
        for control in self.controls.values():
            control.disabled = busy
        return self.values()

    def _tick(self, started: float, done: threading.Event) -> None:
        """Move the bar while the run goes; it stops short of the end until the run is over."""
        expected = self.last_seconds
        self.progress.description = f"~{expected:.1f} s" if expected else ""
        self.progress.value = 0.0
        while not done.wait(TICK_SECONDS):
            if expected:
                self.progress.value = min((time.monotonic() - started) / expected, 0.95)

    def _show(self, page: str) -> None:
        # Replacing the outputs (not appending) keeps one result on screen, from any thread.
        data = {"text/html": page, "text/plain": f"{self.title}: run {self.runs}"}
        self.output.outputs = ({"output_type": "display_data", "data": data, "metadata": {}},)

    def _on_click(self, _button: Any = None) -> None:
        # Taken here, in the click's own handler: a second click during the run is dropped,
        # so runs never overlap and never queue up.
        if not self._lock.acquire(blocking=False):
            return
        self._set_busy(True)
        self._thread = threading.Thread(target=self._run_in_thread, daemon=True)
        self._thread.start()

    def _run_in_thread(self) -> None:
        try:
            self._run_locked(raise_errors=False)
        finally:
            self._lock.release()

    @property
    def busy(self) -> bool:
        """Whether a run is going."""
        return self._lock.locked()

    def wait(self, timeout: float = 60.0) -> None:
        """Wait for a run started by a click to finish."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _repr_mimebundle_(self, **_kwargs: Any) -> dict[str, Any]:
        head = f"<p><strong>{html.escape(self.title)}</strong> ({_describe(self.values())})</p>"
        bundle = {"text/html": head + self.last_html, "text/plain": f"Panel: {self.title}"}
        view = self.widget._repr_mimebundle_().get("application/vnd.jupyter.widget-view+json")
        if view:
            bundle["application/vnd.jupyter.widget-view+json"] = view
        return bundle


def panel(
    run: Callable[..., Any], controls: Mapping[str, Any], *, title: str, alt: str = ""
) -> Panel:
    """A panel that has already done its default run (a failing run fails the cell)."""
    built = Panel(run, controls, title=title, alt=alt)
    built.run()
    return built
