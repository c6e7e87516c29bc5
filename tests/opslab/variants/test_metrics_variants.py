"""The metrics variants: raw-path labels grow with every URL; the app's route labels do not."""

from __future__ import annotations

import pytest

from opslab import metrics_lab, start_app
from opslab.app import AppServer

pytestmark = pytest.mark.slow


def _series_after_ids(app: AppServer, counts: tuple[int, ...]) -> list[int]:
    """The http_request* series count after requests to the first n todo ids, for each n."""
    metrics_lab.scrape(f"{app.url}/metrics")  # the scrape's own series exist from here on
    found, sent = [], 0
    for n in counts:
        metrics_lab.request_todo_ids(app.url, range(sent + 1, n + 1))
        sent = n
        found.append(metrics_lab.count_series(metrics_lab.scrape(f"{app.url}/metrics")))
    return found


def test_raw_path_variant_series_grow_with_ids() -> None:
    with start_app(name="t-raw-path", variant="metrics_raw_path") as app:
        small, large = _series_after_ids(app, (5, 25))
        text = metrics_lab.scrape(f"{app.url}/metrics")

    assert large - small >= 10 * 20  # a counter and a whole histogram per id
    assert metrics_lab.sample_value(text, "http_requests_total", route="/api/todos/17") == 1


def test_real_app_series_flat_with_ids() -> None:
    with start_app(name="t-route-template") as app:
        small, large = _series_after_ids(app, (5, 25))
        text = metrics_lab.scrape(f"{app.url}/metrics")

    assert large == small
    assert (
        metrics_lab.sample_value(
            text, "http_requests_total", route="/api/todos/{todo_id}", status="404"
        )
        == 25
    )
