"""The app's Dockerfile read as text: what it configures, without building it."""

from __future__ import annotations

import json
import re
import shlex
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sample_app import cli
from sample_app.deploy.nginxconf import NGINX_DIR

DOCKERFILE = NGINX_DIR.parent / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) for every instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = (line.strip() for line in text.splitlines())
    return [
        (head.upper(), rest.strip())
        for line in lines
        if line and not line.startswith("#")
        for head, _, rest in [line.partition(" ")]
    ]


def _env() -> dict[str, str]:
    pairs = [shlex.split(args) for name, args in _instructions() if name == "ENV"]
    return dict(pair.split("=", 1) for args in pairs for pair in args)


def test_dockerfile_sets_the_port_in_one_place() -> None:
    cmd = json.loads(next(args for name, args in _instructions() if name == "CMD"))
    health = next(args for name, args in _instructions() if name == "HEALTHCHECK")
    exposed = [args for name, args in _instructions() if name == "EXPOSE"]

    assert "--port" not in cmd  # was: CMD --port 8080, so -e PORT=9000 moved only the probe
    assert "--host" not in cmd
    assert "--url" not in health  # health-check reads PORT too
    assert exposed == [_env()["PORT"]]


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_serve_and_health_check_read_port(
    monkeypatch: pytest.MonkeyPatch, health_server: int
) -> None:
    import uvicorn

    seen: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *_a, **kwargs: seen.update(kwargs))
    monkeypatch.setenv("PORT", str(health_server))
    monkeypatch.setenv("APP_ENV", "development")

    cli.main(["serve"])
    assert seen["port"] == health_server
    assert cli.main(["health-check", "--timeout", "2"]) == 0


def test_dockerfile_sets_app_env_production_explicitly() -> None:
    # The app's default is production too, but an image should not depend on a default.
    assert _env()["APP_ENV"] == "production"
