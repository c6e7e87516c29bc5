"""The published book, read in a real browser: pages, navigation, executed outputs, links."""

from __future__ import annotations

import io
import re
import tarfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import httpx
import pytest
from playwright.sync_api import Browser, Page

from opslab.book import BUILD, DOWNLOAD, LEARNER_HTML, ROOT, load_yaml, toc_files

PAGES = [f"{file}.html" for file in toc_files(load_yaml(ROOT / "_toc.yml"))]
SCREENSHOTS = BUILD / "screenshots"
SECTIONS = [p for p in PAGES if p.startswith("notebooks/") and not p.startswith("notebooks/00")]
ERROR_OUTPUTS = "div.output.traceback, div.output.error, div.output.stderr"
OUTPUT_FIGURES = "div.cell_output img, div.cell_output table"
# An alt text that is only a path or file name (MyST-NB's default is the image's path).
FILE_NAME = re.compile(r"^\S*(/\S*|\.(png|jpe?g|svg|gif))$", re.IGNORECASE)
LONGEST_OPEN_LISTING = 40  # lines of an output listing shown open on a section page
# The sections with a live experiment panel (opslab.panel).
PANEL_SECTIONS = tuple(f"notebooks/{n}" for n in ("03-", "05-", "06-", "07-"))


class IdCollector(HTMLParser):
    """The ids (and legacy anchor names) a page defines."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in {"id", "name"} and value:
                self.ids.add(value)


def page_ids(html: str) -> set[str]:
    """The fragment targets of an HTML page."""
    collector = IdCollector()
    collector.feed(html)
    return collector.ids


@pytest.mark.parametrize("path", PAGES)
def test_toc_page_loads_without_errors(page: Page, site: str, path: str) -> None:
    response = page.goto(site + path)
    assert response is not None
    assert response.status == 200
    assert page.locator("main h1").count() >= 1, f"{path}: no title"
    assert page.locator(ERROR_OUTPUTS).count() == 0, f"{path}: shows error or stderr output"
    assert "Traceback (most recent call last)" not in page.inner_text("main")
    assert page.errors == [], f"{path}: JavaScript errors {page.errors}"  # type: ignore[attr-defined]


def test_start_page_redirects_to_the_introduction(page: Page, site: str) -> None:
    page.goto(site)
    page.wait_for_url("**/book/intro.html")
    assert page.locator("main h1").first.inner_text().strip()


def test_next_links_walk_the_toc_in_order(page: Page, site: str) -> None:
    page.goto(site + PAGES[0])
    visited = [PAGES[0]]
    while page.locator("a.right-next").count():
        page.locator("a.right-next").first.click()
        page.wait_for_load_state()
        visited.append(urlparse(page.url).path.removeprefix("/"))
        assert len(visited) <= len(PAGES), f"the Next links do not end: {visited}"
    assert visited == PAGES


def test_sidebar_lists_every_page(page: Page, site: str) -> None:
    page.goto(site + PAGES[0])
    hrefs = page.eval_on_selector_all(
        "nav.bd-docs-nav a.reference.internal", "links => links.map(a => a.href)"
    )
    listed = {urlparse(h).path.removeprefix("/") for h in hrefs} | {PAGES[0]}
    assert listed == set(PAGES)


@pytest.mark.parametrize("path", SECTIONS)
def test_section_page_shows_an_executed_figure_or_table(page: Page, site: str, path: str) -> None:
    page.goto(site + path)
    outputs = page.locator(OUTPUT_FIGURES)
    assert outputs.count() >= 1, f"{path}: no figure or table in the cell outputs"
    widths = page.eval_on_selector_all(
        "div.cell_output img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)"
    )
    assert all(w > 0 for w in widths), f"{path}: an output image did not load ({widths})"


@pytest.mark.parametrize("path", SECTIONS)
def test_section_self_checks_read_as_questions_with_answers(
    page: Page, site: str, path: str
) -> None:
    page.goto(site + path)
    checks = page.locator("div.opslab-selfcheck")
    assert checks.count() >= 3, f"{path}: the self-checks did not render as HTML"
    first = checks.first
    assert not first.locator("details ul").is_visible()  # the answers start collapsed
    first.locator("summary").click()
    assert first.locator("details ul li").count() >= 2


def test_internal_links_resolve(page: Page, site: str) -> None:
    targets: set[str] = set()
    for path in PAGES:
        page.goto(site + path)
        hrefs = page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)")
        targets |= {h for h in hrefs if h.startswith(site)}
    broken = []
    with httpx.Client(timeout=10) as client:
        documents: dict[str, str] = {}
        for target in sorted(targets):
            url, fragment = urldefrag(target)
            if url not in documents:
                response = client.get(url)
                documents[url] = response.text if response.status_code == 200 else ""
                if response.status_code != 200:
                    broken.append(f"{target}: HTTP {response.status_code}")
                    continue
            if fragment and documents[url] and fragment not in page_ids(documents[url]):
                broken.append(f"{target}: no element with id {fragment!r}")
    assert broken == [], "\n".join(broken)
    assert len(targets) > len(PAGES)


@pytest.mark.parametrize("path", [PAGES[0], SECTIONS[-1]])
def test_every_page_offers_the_course_as_a_download(page: Page, site: str, path: str) -> None:
    page.goto(site + path)
    link = page.locator(f'a[href$="{DOWNLOAD}"]').first
    assert link.is_visible()
    archive = httpx.get(link.evaluate("a => a.href"), timeout=30)
    assert archive.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tar:
        names = set(tar.getnames())
    assert {"opslab-course/Makefile", "opslab-course/notebooks/00-setup.ipynb"} <= names
    assert "opslab-course/sample_app/main.py" in names
    assert not [
        n for n in names if n.startswith(("opslab-course/solutions/", "opslab-course/tests/"))
    ]


def test_learner_book_has_no_solutions() -> None:
    assert not (LEARNER_HTML / "solutions").exists()
    link = re.compile(r'href="[^"]*solutions/[^"]*\.html')
    leaked = [p for p in LEARNER_HTML.rglob("*.html") if link.search(p.read_text())]
    assert leaked == []


def test_instructor_book_adds_the_solutions(page: Page, instructor_site: str) -> None:
    page.goto(instructor_site + PAGES[0])
    hrefs = page.eval_on_selector_all(
        "nav.bd-docs-nav a.reference.internal", "links => links.map(a => a.href)"
    )
    solutions = sorted(urlparse(h).path for h in hrefs if "/solutions/" in h)
    exercises = sorted(urlparse(h).path for h in hrefs if "/exercises/" in h)
    assert [s.replace("/solutions/", "/exercises/") for s in solutions] == exercises
    page.goto(instructor_site + solutions[0].removeprefix("/"))
    assert page.locator(ERROR_OUTPUTS).count() == 0


def test_screenshots_of_start_and_section_pages(page: Page, site: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shots = {"start.png": "book/intro.html", "section-05-metrics.png": "notebooks/05-metrics.html"}
    for name, path in shots.items():
        page.goto(site + path)
        page.wait_for_load_state("networkidle")
        page.screenshot(path=SCREENSHOTS / name)
        assert (SCREENSHOTS / name).stat().st_size > 10_000
    # The section's first executed figure, as the reader sees it.
    figure = page.locator("div.cell_output img").first
    figure.scroll_into_view_if_needed()
    figure.screenshot(path=SCREENSHOTS / "section-05-metrics-figure.png")
    assert (SCREENSHOTS / "section-05-metrics-figure.png").stat().st_size > 10_000


@pytest.mark.parametrize("path", [p for p in PAGES if p.startswith(PANEL_SECTIONS)])
def test_panels_show_their_default_run_in_the_book(page: Page, site: str, path: str) -> None:
    # No kernel in the book: each experiment panel's static output is its default run.
    page.goto(site + path)
    result = page.locator("div.cell_output .opslab-panel-result").first
    result.scroll_into_view_if_needed()
    name = f"book-panel-{Path(path).stem[:2]}.png"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    result.screenshot(path=SCREENSHOTS / name)
    assert result.locator("img, table").count() > 0


PHONE_SHOTS = {
    "notebooks/03-reverse-proxy-nginx.html": "phone-03-reverse-proxy-nginx.png",
    "notebooks/05-metrics.html": "phone-05-metrics.png",
}


@pytest.mark.parametrize("path", PAGES)
def test_page_fits_a_phone_without_sideways_scrolling(
    browser: Browser, site: str, path: str
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        phone = context.new_page()
        phone.goto(site + path)
        width = phone.evaluate("document.documentElement.scrollWidth")
        if path in PHONE_SHOTS:  # what a reader on a phone sees first
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            phone.screenshot(path=SCREENSHOTS / PHONE_SHOTS[path])
        assert width <= 390, f"{path}: the page is {width} px wide at a 390 px viewport"
    finally:
        context.close()


@pytest.mark.parametrize("path", PAGES)
def test_images_have_alt_text_not_a_file_name(page: Page, site: str, path: str) -> None:
    page.goto(site + path)
    alts = page.eval_on_selector_all("main img", "imgs => imgs.map(i => i.getAttribute('alt'))")
    bad = [alt for alt in alts if not alt or not alt.strip() or FILE_NAME.search(alt)]
    assert bad == [], f"{path}: images without real alt text: {bad}"


@pytest.mark.parametrize("path", SECTIONS)
def test_long_listings_start_collapsed(page: Page, site: str, path: str) -> None:
    page.goto(site + path)
    # A listing longer than a screen is behind a toggle (cell tag hide-output), closed.
    lengths = page.eval_on_selector_all(
        "div.cell_output pre",
        "pres => pres.filter(p => p.offsetParent !== null)"
        ".map(p => p.innerText.split('\\n').length)",
    )
    assert max(lengths, default=0) <= LONGEST_OPEN_LISTING, f"{path}: {sorted(lengths)[-3:]} lines"


def test_setup_page_shows_a_screenshot_of_the_app(page: Page, site: str) -> None:
    page.goto(site + "notebooks/00-setup.html")
    shot = page.locator('div.cell_output img[alt^="The sample app\'s todo page"]')
    assert shot.count() == 1
    assert shot.evaluate("i => i.complete && i.naturalWidth") >= 600
