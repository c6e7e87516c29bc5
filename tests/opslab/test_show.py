"""Code listings of the app's real files."""

from __future__ import annotations

from opslab.show import show_file, show_source
from sample_app.config import Settings


def test_show_source_is_the_real_code() -> None:
    listing = show_source(Settings.problems)
    assert listing.title.startswith("sample_app/config.py:")
    assert "def problems(self)" in listing.text
    assert listing._repr_markdown_().startswith("**`sample_app/config.py:")


def test_show_file_lines_and_grep() -> None:
    assert show_file("pyproject.toml", (1, 1)).text == "[build-system]"
    assert show_file("Makefile", grep="check-clean:").language == "makefile"
    assert "check-clean:" in show_file("Makefile", grep="check-clean:").text


def test_show_file_between_markers() -> None:
    listing = show_file("sample_app/metrics.py", between=("LATENCY_BUCKETS = ", "REQUESTS = "))
    assert listing.text.startswith("LATENCY_BUCKETS = ")
    assert "REQUESTS = " not in listing.text
