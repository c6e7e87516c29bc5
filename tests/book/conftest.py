"""The built book, served on loopback, and a headless Chromium to read it (`make test-book`)."""

from __future__ import annotations

import functools
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from opslab.book import INSTRUCTOR_HTML, LEARNER_HTML
from opslab.caps import strict_mode
from opslab.screenshot import CHROMIUM_ARGS


class QuietHandler(SimpleHTTPRequestHandler):
    """A static file handler that does not log every request to stderr."""

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(folder: Path) -> Iterator[str]:
    """Serve `folder` on a free loopback port for as long as the generator is open."""
    if not (folder / "index.html").exists():
        pytest.fail(f"no built book in {folder}: run `make book` (and `make book-instructor`)")
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def site() -> Iterator[str]:
    """The learner book's base URL."""
    yield from serve(LEARNER_HTML)


@pytest.fixture(scope="session")
def instructor_site() -> Iterator[str]:
    """The instructor book's base URL."""
    yield from serve(INSTRUCTOR_HTML)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium driven by Playwright (never a downloaded browser)."""
    executable = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not executable:
        message = "Chromium is not installed: sudo apt-get install -y chromium"
        if strict_mode():
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page whose JavaScript errors are collected in `page.errors`."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    tab.errors = errors  # type: ignore[attr-defined]
    yield tab
    context.close()
