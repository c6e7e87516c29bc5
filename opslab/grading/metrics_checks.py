"""Checks for checkpoint 05: an ASGI metrics middleware that labels requests by route template.

The learner's `MetricsMiddleware(app, requests_total)` is mounted on a small real FastAPI app
(in process, Starlette's TestClient: the thing under test is the middleware). The check sends
many requests whose paths differ only in an id, and requires the counter's series to stay
flat: one series per route template, one fixed label for paths no route matches.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.connection import Connection
from typing import Any

from opslab.grading.common import CheckFailed, friendly, require_answer
from opslab.sandbox.remote import learner_side

UNMATCHED = "<unmatched>"
LIMIT_SECONDS = 20.0
LABELS = ("method", "route", "status")


def build_app(middleware: type) -> tuple[Any, Any]:
    """A small FastAPI app with the learner's middleware and a counter in a private registry."""
    from fastapi import FastAPI, HTTPException
    from prometheus_client import CollectorRegistry, Counter

    registry = CollectorRegistry()
    counter = Counter("http_requests_total", "HTTP requests", list(LABELS), registry=registry)
    app = FastAPI()

    @app.get("/items/{item_id}")
    def item(item_id: int) -> dict[str, int]:
        if item_id == 0:
            raise HTTPException(status_code=404, detail="no such item")
        return {"id": item_id}

    @app.get("/users/{user_id}/orders/{order_id}")
    def order(user_id: int, order_id: int) -> dict[str, int]:
        return {"user": user_id, "order": order_id}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(middleware, requests_total=counter)
    return app, registry


def series(registry: Any) -> dict[tuple[str, str, str], float]:
    """Every (method, route, status) series of http_requests_total and its count."""
    found = {}
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == "http_requests_total":
                found[tuple(sample.labels.get(k, "") for k in LABELS)] = sample.value
    return found


def _requests(middleware: Any, paths: list[str], out: Connection) -> None:
    """In the forked child: send the requests, report the series (or the error) to the parent."""
    from starlette.testclient import TestClient

    try:
        app, registry = build_app(middleware)
        with TestClient(app, raise_server_exceptions=False) as client:
            for path in paths:
                client.get(path)
        out.send(("ok", series(registry)))
    except BaseException as exc:
        out.send(("error", f"{type(exc).__name__}: {exc}"))


@learner_side  # a class cannot cross the sandbox's wall: this runs next to it, returns data
def _run(middleware: Any, paths: list[str]) -> dict[tuple[str, str, str], float]:
    """The series after the requests; the app runs in a forked child that is killed if it hangs.

    A thread could not be stopped: a middleware stuck in a busy loop holds the event loop, and
    the test client then waits for it forever. A child process can always be killed.
    """
    require_answer(middleware, "MetricsMiddleware class")
    if not callable(middleware):
        raise CheckFailed("`MetricsMiddleware` should be a class (an ASGI middleware).")
    import fastapi  # noqa: F401 - imported before the fork, not in every child
    import starlette.testclient  # noqa: F401

    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_requests, args=(middleware, paths, sender), daemon=True)
    child.start()
    sender.close()
    try:
        answered = receiver.poll(LIMIT_SECONDS)
        kind, payload = receiver.recv() if answered else ("hang", "")
    except EOFError:
        kind, payload = "error", f"the process exited (code {child.exitcode})"
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        receiver.close()
    if kind == "hang":
        raise CheckFailed(
            f"The app with your middleware was still running after {LIMIT_SECONDS:g} s and was "
            "stopped: look for a loop that never ends or an await that waits forever."
        )
    if kind == "error":
        raise CheckFailed(
            f"Requests through your middleware raised {payload}. "
            "Hint: always `await self.app(scope, receive, send_wrapper)` and then count."
        )
    return payload


def _show(found: dict[tuple[str, str, str], float], limit: int = 4) -> str:
    shown = ", ".join(f"{m} {r} {s}" for m, r, s in list(found)[:limit])
    return shown + (f" ... ({len(found)} series)" if len(found) > limit else "")


@friendly
def check_route_labels(middleware: Any, *, count: int = 50) -> None:
    """GET /items/1..count: one series, labelled with the route template, counting every request."""
    found = _run(middleware, [f"/items/{i}" for i in range(1, count + 1)])
    if len(found) > 1:
        raise CheckFailed(
            f"{count} requests to /items/<id> made {len(found)} series ({_show(found)}): one per "
            "id, so the series grow without bound. Hint: after the app has run, "
            'scope["route"].path is the template, e.g. /items/{item_id}.'
        )
    expected = ("GET", "/items/{item_id}", "200")
    if found.get(expected) != count:
        raise CheckFailed(
            f"Expected one series {expected} counting {count} requests, got: {_show(found)}."
        )


@friendly
def check_nested_template(middleware: Any, *, count: int = 30) -> None:
    """A template with two parameters stays one series, whatever the ids."""
    found = _run(middleware, [f"/users/{i}/orders/{i * 7}" for i in range(count)])
    expected = ("GET", "/users/{user_id}/orders/{order_id}", "200")
    if list(found) != [expected] or found[expected] != count:
        raise CheckFailed(
            f"{count} requests to /users/<id>/orders/<id> should give one series {expected}; "
            f"got {_show(found)}."
        )


@friendly
def check_unmatched(middleware: Any, *, count: int = 40) -> None:
    """Paths no route matches (scanners, typos) share one fixed label, not one series each."""
    found = _run(middleware, [f"/wp-admin/{i}.php" for i in range(count)] + ["/health"])
    expected = {("GET", UNMATCHED, "404"): count, ("GET", "/health", "200"): 1}
    if found != expected:
        raise CheckFailed(
            f"{count} requests to paths with no route, then /health: expected {expected}, got "
            f"{_show(found)}. Hint: when the scope has no route after the call, use the label "
            f"{UNMATCHED!r}."
        )


@friendly
def check_matched_not_found(middleware: Any, *, count: int = 20) -> None:
    """A matched route that answers 404 keeps its template: the status says 404, not the route."""
    found = _run(middleware, ["/items/0"] * count + ["/items/5"])
    expected = {("GET", "/items/{item_id}", "404"): count, ("GET", "/items/{item_id}", "200"): 1}
    if found != expected:
        raise CheckFailed(
            f"/items/0 is a matched route whose handler answers 404: expected {expected}, got "
            f"{_show(found)}. Hint: decide the label from the route, the status from the response."
        )
