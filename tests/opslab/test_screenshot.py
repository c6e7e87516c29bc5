"""opslab.screenshot: a real page in real Chromium, also from inside a running asyncio loop."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import pytest

import opslab
from opslab import screenshot as shots


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_screenshot_of_the_app_inside_an_event_loop(tmp_path: Path) -> None:
    if shots.chromium_path() is None:
        pytest.skip("Chromium is not installed")
    app = opslab.start_app(name="screenshot-test")
    try:

        async def in_a_kernel() -> Path | None:  # Jupyter's kernel runs an asyncio loop
            return shots.screenshot(app.url + "/", tmp_path / "ui.png", width=640, height=480)

        saved = asyncio.run(in_a_kernel())
    finally:
        app.stop()
    assert saved == tmp_path / "ui.png"
    assert png_size(saved) == (640, 480)


def test_screenshot_without_chromium_returns_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHROMIUM", raising=False)
    monkeypatch.delenv("OPSLAB_STRICT", raising=False)
    monkeypatch.setenv("OPSLAB_MISSING_TOOLS", "chromium")
    assert shots.screenshot("http://127.0.0.1:9/", tmp_path / "x.png") is None
    assert not (tmp_path / "x.png").exists()


def test_screenshot_without_chromium_is_an_error_when_strict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHROMIUM", raising=False)
    monkeypatch.setenv("OPSLAB_STRICT", "1")
    monkeypatch.setenv("OPSLAB_MISSING_TOOLS", "chromium")
    with pytest.raises(opslab.MissingCapability):
        shots.screenshot("http://127.0.0.1:9/", tmp_path / "x.png")
