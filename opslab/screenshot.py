"""A picture of a web page, taken in headless Chromium (Debian's, never a downloaded one).

Jupyter runs an asyncio loop in the kernel's main thread, where Playwright's sync API refuses
to start: the browser is driven from a worker thread instead.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from opslab.caps import MissingCapability, find_binary, strict_mode

log = logging.getLogger(__name__)

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
INSTALL_HINT = "Debian/Ubuntu: sudo apt-get install -y chromium"


def chromium_path() -> str | None:
    """Chromium's executable: $CHROMIUM, else `chromium` on the PATH; None without one."""
    return os.environ.get("CHROMIUM") or find_binary("chromium")


def _take(executable: str, url: str, path: Path, width: int, height: int) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url)
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(path))
        finally:
            browser.close()


def screenshot(url: str, path: str | os.PathLike[str], *, width: int = 900, height: int = 640
               ) -> Path | None:  # fmt: skip
    """Save a PNG of `url` to `path` and return it; None (with a notice) without Chromium."""
    executable = chromium_path()
    if executable is None:
        message = f"Chromium is not installed, so no screenshot: {INSTALL_HINT}"
        if strict_mode():
            raise MissingCapability(message)
        log.warning("%s", message)
        return None
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(_take, executable, url, target, width, height).result()
    return target
