"""Experiment panels: one run at a time, output replaced in place, servers always stopped."""

from __future__ import annotations

import threading

import httpx
import ipywidgets as widgets
import pandas as pd
import pytest

import opslab
from opslab.panel import BUSY_LABEL, RUN_LABEL, figure, panel, slider


def _table(rate: int) -> pd.DataFrame:
    return pd.DataFrame({"rate": [rate]})


def test_the_default_run_is_in_the_book_html_and_in_the_widget() -> None:
    def run(rate: int) -> list:
        fig = figure(4, 2)
        fig.add_subplot().plot([0, 1], [0, rate])
        return [fig, _table(rate)]

    built = panel(run, {"rate": widgets.IntSlider(value=7)}, title="Load <rate>", alt="a line")
    bundle = built._repr_mimebundle_()

    page = bundle["text/html"]
    assert "application/vnd.jupyter.widget-view+json" in bundle  # JupyterLab: the live panel
    assert "<strong>Load &lt;rate&gt;</strong> (rate=7)" in page
    assert '<img src="data:image/png;base64,' in page
    assert 'alt="a line (rate=7; run 1)"' in page
    assert "<table" in page
    assert built.output.outputs[0]["data"]["text/html"] in page


def test_a_click_replaces_the_output_with_the_new_values() -> None:
    rate = widgets.IntSlider(value=1, max=100)
    built = panel(_table, {"rate": rate}, title="t")

    rate.value = 42
    built.button.click()
    built.wait()

    assert built.runs == 2
    assert len(built.output.outputs) == 1
    assert "<td>42</td>" in built.output.outputs[0]["data"]["text/html"]


def test_a_second_click_during_a_run_starts_nothing() -> None:
    calls, release = [], threading.Event()

    def run(rate: int) -> pd.DataFrame:
        calls.append(rate)
        if len(calls) > 1:
            assert release.wait(10)
        return _table(rate)

    rate = widgets.IntSlider(value=3)
    built = panel(run, {"rate": rate}, title="t")
    built.button.click()
    built.button.click()  # the double click
    assert built.busy
    assert built.button.disabled
    assert rate.disabled
    assert built.button.description == BUSY_LABEL
    release.set()
    built.wait()

    assert calls == [3, 3]
    assert not built.button.disabled
    assert built.button.description == RUN_LABEL


def test_a_server_a_run_started_is_stopped_even_when_the_run_fails() -> None:
    started = []

    def run(drain: float) -> str:
        app = opslab.start_app(name="panel-test", drain_seconds=drain)
        started.append(app)
        assert httpx.get(f"{app.url}/health").status_code == 200
        raise ValueError("the experiment broke")

    with pytest.raises(ValueError, match="the experiment broke"):
        panel(run, {"drain": widgets.FloatSlider(value=0)}, title="t")

    assert len(started) == 1
    assert not started[0].running


def test_a_failed_click_run_shows_the_error_and_frees_the_button() -> None:
    def run(fail: bool) -> str:
        if fail:
            raise RuntimeError("boom")
        return "fine"

    fail = widgets.Checkbox(value=False)
    built = panel(run, {"fail": fail}, title="t")
    fail.value = True
    built.button.click()
    built.wait()

    assert isinstance(built.error, RuntimeError)
    assert "RuntimeError: boom" in built.output.outputs[0]["data"]["text/html"]
    assert not built.button.disabled


def test_a_slider_shows_its_whole_label_and_keeps_its_bounds() -> None:
    knob = slider("SHUTDOWN_TIMEOUT", 3, 1, 5)

    assert (knob.description, knob.value, knob.min, knob.max) == ("SHUTDOWN_TIMEOUT", 3, 1, 5)
    assert knob.style.description_width == "initial"
    assert slider("requests per second", 40, 5, 150, step=5).readout_format == ".0f"


def test_a_click_run_moves_the_bar_on_the_previous_run_s_time() -> None:
    pause = widgets.FloatSlider(value=0.5, max=2)
    built = panel(
        lambda pause: threading.Event().wait(pause) or "done", {"pause": pause}, title="t"
    )
    first = built.last_seconds
    assert first >= 0.5

    pause.value = 1.0
    built.button.click()
    threading.Event().wait(0.45)
    early = built.progress.value
    assert built.progress.layout.visibility == "visible"
    built.wait()

    assert 0.3 < early <= 0.95  # about 0.45 s of the 0.5 s the last run took
    assert built.progress.description == f"~{first:.1f} s"
    assert built.progress.value == 1.0
    assert built.progress.layout.visibility == "hidden"  # no full bar at rest


def test_the_status_names_a_run_only_once_its_result_is_on_screen() -> None:
    """A browser that sees "run 2" must find run 2's output, not run 1's."""
    rate = widgets.IntSlider(value=1, max=100)
    built = panel(_table, {"rate": rate}, title="t")
    seen: list[tuple[str, str]] = []
    built.status.observe(
        lambda change: seen.append((change["new"], built.output.outputs[0]["data"]["text/html"])),
        names="value",
    )

    rate.value = 42
    built.button.click()
    built.wait()

    [(status, shown)] = seen
    assert status.startswith("run 2:")
    assert "<td>42</td>" in shown
