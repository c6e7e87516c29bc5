"""opslab.start_app: the real app as a uvicorn process, ready only when every worker is."""

from __future__ import annotations

import pytest

import opslab


@pytest.mark.slow
def test_start_app_with_two_workers_waits_for_both() -> None:
    server = opslab.start_app(name="two-workers", workers=2)
    try:
        assert server.log_text().count("Application startup complete") == 2
        with server.client() as client:
            statuses = {
                client.get("/api/todos", headers={"Connection": "close"}).status_code
                for _ in range(20)
            }
        assert statuses == {200}
    finally:
        server.stop()
