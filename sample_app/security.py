"""Security middleware: response headers on every response, CSRF checks on HTML form requests.

Content-Security-Policy choice: scripts come only from our own `/static` (htmx and the
*CSP build* of Alpine.js, vendored), with no inline scripts and no `'unsafe-eval'`.
Standard Alpine.js compiles `x-data`/`@click` expressions with `new Function`, which
needs `'unsafe-eval'`; that would also let any injected string run as code, so the UI
uses `@alpinejs/csp` (its own expression parser) and keeps its components in
`static/js/app.js`. htmx is configured (meta `htmx-config`, routes/ui.py) not to eval,
not to inject its indicator `<style>` and not to copy `style` attributes while
settling a swap, so `style-src 'self'` holds as well: no inline styles at all.

CSRF: signed double-submit cookie. The cookie holds a random value; the token sent in
forms (hidden `csrf_token`) and by htmx (`X-CSRF-Token`, from `hx-headers`) is that
value signed with CSRF_SECRET. A cross-site page can make the browser send the cookie
but can neither read it nor forge the signature. The JSON API under `/api/` is exempt:
it only accepts `application/json`, which a cross-site form cannot send without a CORS
preflight. A present `Origin` must also be this host or one of ALLOWED_ORIGINS.

Both are pure ASGI middleware: nothing is buffered, so SSE streams flow as written.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI
from itsdangerous import BadData, URLSafeTimedSerializer
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.requests import Request, cookie_parser
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sample_app.config import Settings

log = logging.getLogger(__name__)

CSRF_COOKIE = "csrftoken"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
CSRF_MAX_AGE = 7 * 24 * 3600  # a tab left open for a week still submits
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_EXEMPT_PREFIXES = ("/api/",)
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
DISCONNECTED = "client disconnected"

CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",  # EventSource('/chat/stream') and htmx requests
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
# FastAPI's Swagger UI (/docs, development only) loads its bundle from a CDN and starts
# it with an inline script: it gets a looser policy, and only in development.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "img-src 'self' data: https://fastapi.tiangolo.com; frame-ancestors 'none'"
)
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect"})
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"
HSTS = "max-age=63072000; includeSubDomains"


def security_headers(settings: Settings) -> list[tuple[bytes, bytes]]:
    """The headers every response carries (CSP is chosen per path)."""
    headers = {
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "referrer-policy": "strict-origin-when-cross-origin",
        "permissions-policy": PERMISSIONS_POLICY,
        "cross-origin-opener-policy": "same-origin",
    }
    if not settings.is_development:  # browsers ignore HSTS over plain http anyway
        headers["strict-transport-security"] = HSTS
    return [(name.encode(), value.encode()) for name, value in headers.items()]


class SecurityHeadersMiddleware:
    """Adds the security headers to every HTTP response, errors included."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.headers = security_headers(settings)
        self.docs_paths = DOCS_PATHS if settings.is_development else frozenset()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = DOCS_CSP if scope["path"] in self.docs_paths else CSP
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message.setdefault("headers", [])  # optional in ASGI
                headers = MutableHeaders(scope=message)
                for name, value in (*self.headers, (b"content-security-policy", csp.encode())):
                    if name.decode() not in headers:  # a route may set its own
                        headers.raw.append((name, value))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            # Starlette's ServerErrorMiddleware answers 500 outside every user middleware,
            # so its response would lack these headers: answer here, then re-raise so the
            # server still logs the exception (it sees the response already started).
            if not started:
                plain = [(b"content-type", b"text/plain; charset=utf-8")]
                await send_wrapper({"type": "http.response.start", "status": 500, "headers": plain})
                await send({"type": "http.response.body", "body": b"Internal Server Error"})
            raise


class CSRFProtection:
    """Issues and checks signed double-submit CSRF tokens."""

    def __init__(self, settings: Settings) -> None:
        self.serializer = URLSafeTimedSerializer(settings.secret("csrf_secret"), salt="csrf")
        self.secure_cookie = not settings.is_development
        self.allowed_origins = {origin.rstrip("/").lower() for origin in settings.allowed_origins}

    def token_for(self, cookie_value: str) -> str:
        return self.serializer.dumps(cookie_value)

    def token_matches(self, token: str | None, cookie_value: str | None) -> bool:
        if not token or not cookie_value:
            return False
        try:
            signed: object = self.serializer.loads(token, max_age=CSRF_MAX_AGE)
        except BadData:
            return False
        return isinstance(signed, str) and hmac.compare_digest(signed, cookie_value)

    def origin_allowed(self, headers: Headers, scheme: str) -> bool:
        """No Origin header (some older browsers), this origin, or one of ALLOWED_ORIGINS."""
        origin = headers.get("origin")
        if origin is None:
            return True
        origin = origin.rstrip("/").lower()
        return origin in self.allowed_origins or _same_origin(
            origin, scheme, headers.get("host", "")
        )

    def set_cookie_header(self, value: str) -> tuple[bytes, bytes]:
        secure = "; Secure" if self.secure_cookie else ""
        cookie = f"{CSRF_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax{secure}"
        return b"set-cookie", cookie.encode("latin-1")


def _same_origin(origin: str, scheme: str, host_header: str) -> bool:
    """Does `Origin` name this request's scheme, host and port?

    Behind nginx the scheme is the client's: uvicorn applies X-Forwarded-Proto from
    FORWARDED_ALLOW_IPS only. nginx passes `Host $host:$server_port`, with the port.
    """
    defaults = {"http": 80, "https": 443}
    try:
        sent, host = urlsplit(origin), urlsplit("//" + host_header.lower())
        origin_port = sent.port or defaults.get(sent.scheme)
        host_port = host.port or defaults.get(scheme)
    except ValueError:  # a malformed port
        return False
    if not sent.hostname or sent.hostname != host.hostname or sent.scheme != scheme:
        return False
    return host_port == origin_port


class CSRFToken:
    """The request's token, made on first use; a new cookie is only sent if one was used."""

    def __init__(self, protection: CSRFProtection, cookie_value: str | None) -> None:
        self.protection = protection
        self.cookie_value = cookie_value
        self.new_cookie = False
        self._token: str | None = None

    def __str__(self) -> str:
        if self._token is None:
            if not self.cookie_value:
                self.cookie_value = secrets.token_urlsafe(32)
                self.new_cookie = True
            self._token = self.protection.token_for(self.cookie_value)
        return self._token


def csrf_token(request: Request) -> str:
    """The CSRF token to put in this request's forms (and htmx headers)."""
    return str(request.state.csrf)


class CSRFMiddleware:
    """Refuses state-changing HTML requests (403) without a valid token or with a foreign Origin."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.protection = CSRFProtection(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        cookie_value = cookie_parser(headers.get("cookie", "")).get(CSRF_COOKIE) or None
        token = CSRFToken(self.protection, cookie_value)
        scope.setdefault("state", {})["csrf"] = token

        if (
            scope["method"] in UNSAFE_METHODS
            and not scope["path"].startswith(CSRF_EXEMPT_PREFIXES)
            and _routed(scope)
        ):
            problem, receive = await self.check(scope, headers, receive, cookie_value)
            if problem is DISCONNECTED:
                return  # the client left mid-body: nothing to answer, nothing to run
            if problem:
                log.warning("CSRF check failed: %s %s: %s", scope["method"], scope["path"], problem)
                await forbidden(headers, problem)(scope, receive, send)
                return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start" and token.new_cookie:
                message["headers"] = [
                    *message.get("headers", []),
                    self.protection.set_cookie_header(token.cookie_value or ""),
                ]
            await send(message)

        await self.app(scope, receive, send_wrapper)

    async def check(
        self, scope: Scope, headers: Headers, receive: Receive, cookie_value: str | None
    ) -> tuple[str | None, Receive]:
        """Why this request must be refused (or None), and the `receive` to pass on.

        The cheap checks come first: a foreign Origin is refused before a byte of the
        body is read, and a token in the header means the body is never read here.
        """
        if not self.protection.origin_allowed(headers, scope.get("scheme", "http")):
            return "cross-origin request refused (Origin does not match this site)", receive
        sent = headers.get(CSRF_HEADER)
        if not sent and _media_type(headers) == FORM_MEDIA_TYPE:
            body, receive = await _buffer_body(receive)  # bounded by MAX_BODY_BYTES
            if body is None:
                return DISCONNECTED, receive
            sent = _form_field(body, CSRF_FIELD)
        if not sent:
            return "CSRF token missing: reload the page and try again", receive
        if not self.protection.token_matches(sent, cookie_value):
            return "CSRF token invalid or expired: reload the page and try again", receive
        return None, receive


def _routed(scope: Scope) -> bool:
    """Does a route take this method at this path?

    If not, the router answers 404 or 405 and no handler runs: there is nothing to
    protect, and the client should learn the real error, not "CSRF token missing".
    """
    routes = getattr(getattr(scope.get("app"), "router", None), "routes", None)
    if routes is None:
        return True  # no route table to consult: check, to be safe
    return any(route.matches(scope)[0] is Match.FULL for route in routes)


def _media_type(headers: Headers) -> str:
    return headers.get("content-type", "").split(";")[0].strip().lower()


def _form_field(body: bytes, name: str) -> str | None:
    """A field of a urlencoded form body (multipart clients must send the header)."""
    values = parse_qs(body.decode("latin-1"), keep_blank_values=True).get(name)
    return values[0] if values else None


async def _buffer_body(receive: Receive) -> tuple[bytes | None, Receive]:
    """The whole request body (None if the client left first), and a `receive` replaying it.

    A partial body must never be replayed as if complete: a handler would act on a
    truncated form. The size bound comes from the body-limit middleware outside.
    """
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return None, receive  # http.disconnect
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


def forbidden(headers: Headers, detail: str) -> Response:
    """A 403 in the form the client understands: htmx fragment, HTML page or JSON."""
    if headers.get("hx-request") == "true":
        # Swapped into the page's #flash region (htmx-config lets 403 responses swap).
        fragment = f'<p class="flash-error" role="alert">{detail}</p>'
        return HTMLResponse(
            fragment, 403, headers={"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"}
        )
    if "text/html" in headers.get("accept", ""):
        page = (
            "<!doctype html><meta charset=utf-8><title>403 Forbidden</title>"
            f"<h1>403 Forbidden</h1><p>{detail}</p><p><a href=/>Back to the todo list</a></p>"
        )
        return HTMLResponse(page, 403)
    return JSONResponse({"detail": detail}, 403)


def add_security(app: FastAPI, settings: Settings) -> None:
    """Security headers, a body-size limit, CSRF protection (outermost first).

    Headers outermost, so a 403 or 413 carries them too; the body limit outside the
    CSRF check, so reading a form for its token is bounded. Starlette's limit refuses
    an oversized Content-Length before reading (413) and cuts a chunked body at the
    limit.
    """
    app.add_middleware(CSRFMiddleware, settings=settings)
    app.add_middleware(RequestBodyLimitMiddleware, max_body_size=settings.max_body_bytes)
    app.add_middleware(SecurityHeadersMiddleware, settings=settings)
