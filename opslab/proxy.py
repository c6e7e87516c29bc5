"""nginx in front of several app instances, configured from the app's own template.

The template and its `include` snippets live with the app (`sample_app/ops/nginx/`): they
are what a deployment ships. This module fills in what a notebook decides at run time
(free ports, a self-signed certificate, a built copy of the static files) and measures
the things the reverse-proxy notebook shows (time to the first SSE event, who answered).
"""

from __future__ import annotations

import json
import logging
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import httpx

from opslab.caps import find_binary
from opslab.load import HasUrl
from opslab.nginx import Nginx, brotli_module_path
from opslab.procs import ManagedProcess, free_port

# The measuring helpers live in opslab.proxy_probe; re-exported for the notebooks.
from opslab.proxy_probe import (  # noqa: F401
    TCP_TIME_WAIT,
    alternate_requests,
    client_seen_by_app,
    first_event_delay,
    new_connections_per_request,
    summarize,
    tcp_time_wait,
    trace_client,
)
from opslab.show import APP_DIR
from sample_app.assets import FINGERPRINTED, MANIFEST_NAME, build_manifest
from sample_app.deploy.nginxconf import APP_TEMPLATE, render_app_conf
from sample_app.deploy.nginxconf import DEFAULTS as DEFAULTS  # re-exported for notebooks
from sample_app.deploy.nginxconf import SNIPPETS as SNIPPETS

log = logging.getLogger(__name__)

NGINX_DIR = APP_TEMPLATE.parent
STATIC_SOURCE = APP_DIR / "static"


@dataclass(frozen=True)
class Certificate:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path


def make_self_signed_cert(
    directory: Path, *, common_name: str = "localhost", days: int = 7
) -> Certificate:
    """A self-signed certificate for localhost and 127.0.0.1, made with the openssl CLI."""
    openssl = find_binary("openssl")
    if openssl is None:
        raise RuntimeError("openssl is not installed (Debian: apt-get install openssl)")
    directory.mkdir(parents=True, exist_ok=True)
    cert = Certificate(directory / "cert.pem", directory / "key.pem")
    cmd = [
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", str(days), "-subj", f"/CN={common_name}",
        "-addext", f"subjectAltName=DNS:{common_name},IP:127.0.0.1",
        "-keyout", str(cert.key), "-out", str(cert.cert),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)
    cert.key.chmod(0o600)
    return cert


def tls_context(cert: Certificate | Path) -> ssl.SSLContext:
    """A client context that trusts exactly this certificate (httpx: `verify=`)."""
    path = cert.cert if isinstance(cert, Certificate) else cert
    return ssl.create_default_context(cafile=str(path))


def build_static(root: Path) -> dict[str, str]:
    """Copy the app's static files to `root/static` and fingerprint them there.

    The same build step as `python -m sample_app build-assets`, into a copy: the source
    tree stays clean, and nginx serves the copy (`root` + `/static/...`).
    """
    target = root / "static"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(
        STATIC_SOURCE,
        target,
        ignore=lambda _dir, names: [
            n for n in names if n == MANIFEST_NAME or FINGERPRINTED.search(n)
        ],
    )
    return build_manifest(target)


def _upstream_address(upstream: HasUrl | str) -> str:
    """'127.0.0.1:8123' from an AppServer (anything with .url) or a host:port string."""
    if isinstance(upstream, str):
        return upstream
    url = httpx.URL(upstream.url)
    return f"{url.host}:{url.port}"


def app_values(
    nginx: Nginx,
    *,
    https_port: int,
    certificate: Certificate,
    static_root: Path,
    brotli: bool | None = None,
    **values: object,
) -> tuple[dict[str, Any], list[Path]]:
    """The template's values for this `nginx`'s prefix and ports, and the modules to load.

    `brotli=None` uses Brotli when the module is installed; `values` override DEFAULTS.
    """
    module = brotli_module_path()
    use_brotli = module is not None if brotli is None else brotli
    if use_brotli and module is None:
        raise RuntimeError("the nginx Brotli module is not installed")
    filled = {
        "port": nginx.port,
        "https_port": https_port,
        "certificate": certificate.cert,
        "certificate_key": certificate.key,
        "static_root": static_root,
        "log_dir": nginx.prefix / "logs",
        "brotli": use_brotli,
        **values,
    }
    return filled, [module] if use_brotli and module else []


def render_app_config(
    nginx: Nginx,
    upstreams: Iterable[HasUrl | str],
    *,
    https_port: int,
    certificate: Certificate,
    static_root: Path,
    brotli: bool | None = None,
    include: Path | None = None,
    **values: object,
) -> str:
    """The app's nginx template as a complete nginx.conf for this `nginx`'s prefix and port.

    The app's deploy tool renders the template (`sample_app.deploy.render_app_conf`: one
    implementation). With `include`, the body is written to that file and the main config
    includes it: the file the deploy tool rewrites when it switches the upstream.
    """
    filled, modules = app_values(
        nginx,
        https_port=https_port,
        certificate=certificate,
        static_root=static_root,
        brotli=brotli,
        **values,
    )
    body = render_app_conf([_upstream_address(u) for u in upstreams], **filled)
    if include is not None:
        include.write_text(body)
        body = f"include {include};\n"
    return nginx.config("{{ app_conf }}", modules=modules, app_conf=body)


class AppProxy:
    """A real nginx (TLS, HTTP/2) in front of app instances: config, start, reload, clients."""

    def __init__(
        self,
        upstreams: Sequence[HasUrl | str],
        *,
        name: str = "proxy",
        certificate: Certificate | None = None,
        brotli: bool | None = None,
        app_conf_file: bool = False,
        **values: object,
    ) -> None:
        self.nginx = Nginx(name=name)
        # A separate app.conf (included by nginx.conf) for a deploy tool to rewrite.
        self.app_conf = self.nginx.prefix / "app.conf" if app_conf_file else None
        self.upstreams = list(upstreams)
        self.https_port = free_port()
        self.certificate = certificate or make_self_signed_cert(self.nginx.prefix / "tls")
        self.static_root = self.nginx.prefix / "www"
        self.manifest = build_static(self.static_root)
        self.brotli = brotli
        self.values: dict[str, object] = dict(values)

    def __repr__(self) -> str:
        return f"<AppProxy {self.http_url} -> {self.https_url} over {len(self.upstreams)} apps>"

    @property
    def http_url(self) -> str:
        """The plain-HTTP listener (it only redirects)."""
        return self.nginx.url

    @property
    def https_url(self) -> str:
        """The TLS listener, https://localhost:<port> (the certificate's name)."""
        return f"https://localhost:{self.https_port}"

    def config(self, **values: object) -> str:
        """The rendered nginx.conf; `values` override the ones given at construction."""
        return render_app_config(
            self.nginx,
            self.upstreams,
            https_port=self.https_port,
            certificate=self.certificate,
            static_root=self.static_root,
            brotli=self.brotli,
            include=self.app_conf,
            **{**self.values, **values},
        )

    def deploy_settings(self) -> dict[str, Any]:
        """What `python -m sample_app.deploy init --nginx FILE` needs to switch this nginx.

        Needs `app_conf_file=True`: the deploy tool rewrites that file and reloads nginx.
        """
        if self.app_conf is None:
            raise ValueError("create the AppProxy with app_conf_file=True")
        values, _modules = app_values(
            self.nginx,
            https_port=self.https_port,
            certificate=self.certificate,
            static_root=self.static_root,
            brotli=self.brotli,
            **self.values,
        )
        return {
            "binary": self.nginx.binary,
            "prefix": str(self.nginx.prefix),
            "conf": str(self.nginx.conf_path),
            "error_log": str(self.nginx.error_log),
            "app_conf": str(self.app_conf),
            "url": self.https_url,
            "cafile": str(self.certificate.cert),
            "values": json.loads(json.dumps(values, default=str)),
        }

    def start(self, **values: object) -> Self:
        """Validate the config with `nginx -t`, start nginx and wait until it listens."""
        self.values.update(values)
        self.nginx.start(self.config())
        self.nginx.wait_port(self.https_port)
        return self

    def reload(self, **values: object) -> None:
        """Apply changed values with `nginx -s reload` (a rejected config keeps the old one)."""
        self.nginx.reload(self.config(**{**self.values, **values}))
        self.values.update(values)

    def revive(self) -> list[str]:
        """Restart upstream apps that have stopped (same ports), then reload nginx.

        The reload starts fresh workers, which forget that a server had failed.
        """
        stopped = [u for u in self.upstreams if isinstance(u, ManagedProcess) and not u.running]
        for app in stopped:
            app.start()
        if stopped:
            self.reload()
        return [app.name for app in stopped]

    def stop(self) -> int | None:
        """Stop nginx gracefully."""
        return self.nginx.stop()

    def __enter__(self) -> Self:
        return self if self.nginx.running else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def client(
        self, *, http2: bool = False, local_address: str | None = None, **kwargs: Any
    ) -> httpx.Client:
        """An httpx client for the HTTPS listener that trusts the self-signed certificate.

        `local_address` picks the client's source address (any 127.x.y.z on Linux), so
        nginx sees a client that is not 127.0.0.1.
        """
        transport = httpx.HTTPTransport(
            verify=tls_context(self.certificate), http2=http2, local_address=local_address
        )
        kwargs.setdefault("timeout", 10.0)
        return httpx.Client(base_url=self.https_url, transport=transport, trust_env=False, **kwargs)

    def tried(self, marker: str) -> dict[str, str]:
        """Which app(s) nginx tried for the request containing `marker`, and what each answered."""
        entry = self.log_entry(marker)
        names = {
            _upstream_address(u): getattr(u, "name", _upstream_address(u)) for u in self.upstreams
        }
        addresses = [addr.strip() for addr in entry["upstream_addr"].split(",") if addr.strip()]
        return {
            "nginx answered": str(entry["status"]),
            "upstreams tried": ", ".join(names.get(addr, addr) for addr in addresses),
            "their answers": entry["upstream_status"],
        }

    def log_entry(self, marker: str, *, timeout: float = 3.0) -> dict[str, Any]:
        """The last access-log entry whose request has `marker` (nginx logs after answering)."""
        path = self.nginx.prefix / "logs" / "upstream.log"
        deadline = time.monotonic() + timeout
        while True:
            text = path.read_text() if path.is_file() else ""
            for line in reversed(text.splitlines()):
                entry: dict[str, Any] = json.loads(line)
                if marker in entry["request"]:
                    return entry
            if time.monotonic() >= deadline:
                raise LookupError(f"no access-log entry for {marker!r} within {timeout:g}s")
            time.sleep(0.05)
