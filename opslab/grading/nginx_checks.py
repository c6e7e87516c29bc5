"""Checks for checkpoint 03 (reverse proxy): the learner's nginx `http {}` block, run for real.

The learner's text is rendered into a complete nginx.conf in a private prefix with free ports
(`opslab.Nginx`), `{{ port }}` for nginx's port and `{{ upstream }}` for a tiny HTTP server
started by the check. `nginx -t` must accept it (nginx's own message is shown otherwise);
then nginx is started, a burst of requests is fired at it: the first must be proxied (a 200
carrying a token the upstream makes up for each check, so nginx cannot fake it with
`add_header`), and later ones refused (429/503) (a rate limit lets a fresh client's first
request through; a config that refuses at random or from the start does not). nginx and the
upstream are always stopped.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from opslab.caps import require
from opslab.grading.common import CheckFailed, friendly, require_answer
from opslab.procs import free_port

LIMITED = {429, 503}
UPSTREAM_HEADER = "X-Checkpoint-Upstream"
PROXIED = -1  # a 200 that came from the upstream, not from nginx itself


class _Upstream(BaseHTTPRequestHandler):
    token = ""  # set per check: a value the learner's config cannot know

    def do_GET(self) -> None:
        body = b"upstream ok\n"
        self.send_response(200)
        self.send_header(UPSTREAM_HEADER, self.token)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _upstream() -> Iterator[tuple[str, str]]:
    """A tiny upstream (its address, and the token its 200s carry), stopped on the way out."""
    token = secrets.token_hex(8)
    handler = type("Upstream", (_Upstream,), {"token": token})
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", token
    finally:
        server.shutdown()
        server.server_close()


def _tested(nginx: Any, http_config: object, upstream: str) -> str:
    """The learner's text rendered into `nginx`'s prefix and accepted by `nginx -t`."""
    require_answer(http_config, "nginx configuration (a string)")
    if not isinstance(http_config, str):
        raise CheckFailed("`http_config` should be a string holding nginx configuration.")
    try:
        conf = nginx.config(http_config, upstream=upstream)
    except Exception as exc:  # a template error in the learner's text
        raise CheckFailed(
            f"The config could not be rendered ({type(exc).__name__}: {exc}). Use only "
            "`{{ port }}` and `{{ upstream }}` as placeholders."
        ) from None
    ok, message = nginx.test(conf)
    if not ok:
        raise CheckFailed(
            f"`nginx -t` rejected the config:\n{message}\nHint: read the line number and "
            "the directive nginx names (line numbers count the whole nginx.conf built around your "
            "block); which block (context) may that directive appear in?"
        )
    return conf


@contextlib.contextmanager
def _nginx(name: str) -> Iterator[Any]:
    """A private nginx (not started yet); always stopped on the way out."""
    if not require("nginx"):  # strict mode raises; otherwise a clear message
        raise CheckFailed("nginx is not installed on this machine: this check needs it.")
    from opslab.nginx import Nginx

    nginx = Nginx(name=name)
    try:
        yield nginx
    finally:
        nginx.stop(timeout=3)


@friendly
def check_nginx_accepts(http_config: object) -> None:
    """`nginx -t` accepts the learner's http block (rendered with free ports)."""
    require_answer(http_config, "nginx configuration (a string)")
    with _nginx("checkpoint-nginx-test") as nginx:
        _tested(nginx, http_config, f"127.0.0.1:{free_port()}")


def burst(url: str, requests: int, token: str) -> tuple[Counter[int], list[int]]:
    """Status codes of `requests` GETs sent back to back on one connection (bounded), in order.

    A 200 that came from the check's upstream (its header carries `token`) is counted under
    `PROXIED` as well, and listed as PROXIED in the order.
    """
    codes: Counter[int] = Counter()
    order: list[int] = []
    with httpx.Client(timeout=2.0) as client:
        for _ in range(requests):
            try:
                response = client.get(url)
            except httpx.HTTPError:
                codes[0] += 1
                order.append(0)
                continue
            codes[response.status_code] += 1
            proxied = response.status_code == 200 and response.headers.get(UPSTREAM_HEADER) == token
            codes[PROXIED] += proxied
            order.append(PROXIED if proxied else response.status_code)
    return codes, order


@friendly
def check_rate_limited(http_config: object, path: str = "/api/items", requests: int = 40) -> None:
    """Behind the learner's nginx, a burst to `path` is proxied at first, then refused."""
    require_answer(http_config, "nginx configuration (a string)")
    with _upstream() as (upstream, token), _nginx("checkpoint-nginx") as nginx:
        nginx.start(_tested(nginx, http_config, upstream), timeout=5)
        codes, order = burst(nginx.url + path, requests, token)
    shown = ", ".join(
        f"{code or 'error'}: {n}" for code, n in sorted(codes.items()) if code != PROXIED
    )
    if not codes[PROXIED]:
        raise CheckFailed(
            f"No request to {path} was proxied (status codes {shown}). Hint: the location must "
            "`proxy_pass http://{{ upstream }};` (a `return` answers before rate limiting runs)."
        )
    if order[0] != PROXIED:
        first = order[0] or "an error"
        raise CheckFailed(
            f"The first request of the burst to {path} got {first}, not a proxied 200 "
            f"(status codes {shown}): a rate limit lets a new client's first requests through "
            "and refuses only those over the rate. Hint: `limit_req zone=...` (with a `burst=`), "
            "not a `return 429`, decides which requests are refused."
        )
    if not sum(codes[c] for c in LIMITED):
        raise CheckFailed(
            f"{requests} requests back to back to {path} were all let through ({shown}): no "
            "rate limit applies. Hint: the location needs `limit_req zone=...` using a zone "
            "declared with `limit_req_zone`."
        )
