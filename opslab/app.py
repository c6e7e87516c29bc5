"""The sample app as a real process: `python -m sample_app serve` on a free loopback port.

Notebooks run the app exactly as it is deployed (a uvicorn process configured through
its environment), never in-process: signals, workers and shutdown behave for real.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from opslab.procs import ManagedProcess, free_port

SECRET_VARS = ("CSRF_SECRET",)


class AppServer(ManagedProcess):
    """One instance of the sample app; `start()` returns once `/ready` answers 200."""

    def __init__(
        self,
        *,
        name: str = "app",
        host: str = "127.0.0.1",
        port: int | None = None,
        workers: int = 1,
        env: Mapping[str, str] | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        variant: str | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        # A lesson variant runs the same CLI through `python -m opslab.variants NAME`.
        module = ["-m", "opslab.variants", variant] if variant else ["-m", "sample_app"]
        serve = [*module, "serve", "--host", host, "--port", str(self.port)]
        cmd = [sys.executable, *serve, "--workers", str(workers)]
        super().__init__(cmd, name=name, env=env, cwd=cwd)
        # A fresh database per instance unless the caller shares one on purpose.
        self.data_dir = Path(data_dir) if data_dir is not None else self.workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.env.setdefault("DATA_DIR", str(self.data_dir))
        # Unset, APP_ENV means production (the app fails closed): the lessons' local
        # instances are development unless the caller (start_app, a test) says otherwise.
        self.env.setdefault("APP_ENV", "development")

    @property
    def url(self) -> str:
        """The base URL, e.g. http://127.0.0.1:8123."""
        return f"http://{self.host}:{self.port}"

    def ready(self, timeout: float) -> None:
        """Ready means `/ready` answers 200: database reachable, not draining."""
        self.wait_http(f"{self.url}/ready", timeout=timeout)

    def client(self, **kwargs: Any) -> httpx.Client:
        """An httpx.Client with base_url set (proxies from the environment ignored)."""
        kwargs.setdefault("timeout", 10.0)
        return httpx.Client(base_url=self.url, trust_env=False, **kwargs)

    def version(self) -> dict[str, str]:
        """The running build's identity, from `/version`."""
        with self.client() as client:
            response = client.get("/version")
            response.raise_for_status()
            return dict(response.json())


def app_env_vars(
    app_env: str, settings: Mapping[str, object], *, generate_secrets: bool = True
) -> dict[str, str]:
    """Environment variables for the app: settings upper-cased, secrets filled in if missing."""
    env = {key.upper(): str(value) for key, value in settings.items()}
    env["APP_ENV"] = app_env
    if generate_secrets and app_env != "development":
        # Outside development the app refuses to start without real secrets.
        for var in SECRET_VARS:
            if var not in env and var not in os.environ:
                env[var] = secrets.token_urlsafe(32)
    return env


def start_app(
    *,
    name: str = "app",
    port: int | None = None,
    workers: int = 1,
    app_env: str = "development",
    data_dir: str | os.PathLike[str] | None = None,
    multiprocess_metrics: bool = False,
    generate_secrets: bool = True,
    timeout: float = 30.0,
    variant: str | None = None,
    **settings: object,
) -> AppServer:
    """Start the sample app, replacing one of the same name; extra kwargs become env vars."""
    # e.g. drain_seconds=2 -> DRAIN_SECONDS=2, instance_id="blue" -> INSTANCE_ID=blue
    env = app_env_vars(app_env, settings, generate_secrets=generate_secrets)
    server = AppServer(
        name=name, port=port, workers=workers, env=env, data_dir=data_dir, variant=variant
    )
    if multiprocess_metrics:
        server.env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(server.workdir / "metrics"))
    return server.start(timeout=timeout)
