"""LoadResult arithmetic: outcomes, percentiles, table and summary."""

from __future__ import annotations

import pytest

from opslab.loadresult import LoadResult, RequestRecord, outcome_of


def _record(start: float, latency: float, status: int | None) -> RequestRecord:
    error = None if status is not None else "ConnectError"
    return RequestRecord(start, latency, status, outcome_of(status), "blue", error)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, "2xx"), (204, "2xx"), (302, "3xx"), (404, "4xx"), (503, "5xx"), (None, "error")],
)
def test_outcome_of_maps_status_to_class(status: int | None, outcome: str) -> None:
    assert outcome_of(status) == outcome


def test_percentiles_ignore_failed_requests() -> None:
    records = [_record(i / 100, (i + 1) / 1000, 200) for i in range(100)]
    records.append(_record(1.0, 9.0, None))  # a timeout must not count as a latency
    result = LoadResult(records, elapsed=1.0)

    p = result.percentiles()

    assert p["p50"] == pytest.approx(0.0505)
    assert p["p99"] == pytest.approx(0.09901)
    assert p["p50"] <= p["p90"] <= p["p95"] <= p["p99"]


def test_percentiles_of_empty_result_are_none() -> None:
    assert LoadResult([], elapsed=0.0).percentiles((50,)) == {"p50": None}


def test_to_dataframe_has_one_row_per_request() -> None:
    result = LoadResult([_record(0.0, 0.01, 200), _record(0.1, 0.02, None)], elapsed=0.2)

    frame = result.to_dataframe()

    assert list(frame.columns) == [
        "start",
        "latency",
        "status",
        "outcome",
        "header",
        "error",
        "retried",
    ]
    assert list(frame["outcome"]) == ["2xx", "error"]
    assert frame["status"].isna().tolist() == [False, True]


def test_summary_reports_counts_rate_and_milliseconds() -> None:
    records = [_record(i / 10, 0.010, 200) for i in range(8)] + [_record(0.9, 0.02, 500)] * 2
    summary = LoadResult(records, elapsed=2.0).summary()

    assert summary["requests"] == 10
    assert summary["rps"] == 5.0
    assert summary["2xx"] == 8
    assert summary["5xx"] == 2
    assert summary["p50_ms"] == 10.0
