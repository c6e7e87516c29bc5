"""What a load run measured: one record per request, counts by outcome, latency percentiles."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

OUTCOMES = ("2xx", "3xx", "4xx", "5xx", "error")


def outcome_of(status: int | None) -> str:
    """'2xx'..'5xx' for an HTTP status, 'error' when no response arrived."""
    if status is None or not 200 <= status < 600:
        return "error"
    return f"{status // 100}xx"


@dataclass(frozen=True)
class RequestRecord:
    """One request: when it started (s after the run began), how long, and how it ended."""

    start: float
    latency: float
    status: int | None
    outcome: str
    header: str | None
    error: str | None
    retried: bool = False  # sent again after the server closed its connection unanswered


@dataclass
class LoadResult:
    """All requests of one load run."""

    records: list[RequestRecord]
    elapsed: float
    header_name: str | None = None
    counts: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        found = Counter(record.outcome for record in self.records)
        self.counts = {outcome: found.get(outcome, 0) for outcome in OUTCOMES}

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in self.counts.items() if v) or "none"
        return f"<LoadResult {self.total} requests in {self.elapsed:.1f}s: {counts}>"

    @property
    def total(self) -> int:
        """Number of requests sent."""
        return len(self.records)

    @property
    def retried(self) -> int:
        """Requests sent a second time because the server closed the connection unanswered."""
        return sum(r.retried for r in self.records)

    @property
    def throughput(self) -> float:
        """Completed requests per second."""
        return self.total / self.elapsed if self.elapsed > 0 else 0.0

    def percentiles(self, qs: tuple[int, ...] = (50, 90, 95, 99)) -> dict[str, float | None]:
        """Latency percentiles in seconds over requests that got a response ('p95': ...)."""
        latencies = sorted(r.latency for r in self.records if r.status is not None)
        if len(latencies) < 2:
            only = latencies[0] if latencies else None
            return {f"p{q}": only for q in qs}
        cuts = statistics.quantiles(latencies, n=100, method="inclusive")
        return {f"p{q}": cuts[q - 1] for q in qs}

    def header_counts(self) -> dict[str | None, int]:
        """How many responses carried each value of the recorded header (e.g. which instance)."""
        return dict(Counter(r.header for r in self.records if r.status is not None))

    def errors(self) -> dict[str, int]:
        """Failed requests by error type (ConnectError, ReadTimeout, ...)."""
        return dict(Counter(r.error for r in self.records if r.error is not None))

    def to_dataframe(self) -> pd.DataFrame:
        """One row per request: start, latency, status, outcome, header, error, retried."""
        import pandas as pd

        columns = ["start", "latency", "status", "outcome", "header", "error", "retried"]
        frame = pd.DataFrame([asdict(r) for r in self.records], columns=columns)
        return frame.astype({"status": "Int64"})

    def summary(self) -> dict[str, Any]:
        """Totals, rate, counts by outcome and latency percentiles in milliseconds."""
        millis = {
            f"{name}_ms": None if value is None else round(value * 1000, 2)
            for name, value in self.percentiles((50, 95, 99)).items()
        }
        return {
            "requests": self.total,
            "elapsed_s": round(self.elapsed, 3),
            "rps": round(self.throughput, 1),
            **self.counts,
            **millis,
        }
