"""The page in a real headless Chromium (Debian's ``chromium``), driven over the DevTools protocol.

One browser for the whole module.  Screenshots at desktop and phone widths are written to the
test's directory, and also to ``$POWERPLANE_SCREENSHOTS`` when set (``docs/img`` for the docs).
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import require_binary

from .cdp import Chromium, Tab
from .conftest import HOSTILE, Served, World

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    browser = Chromium(require_binary("chromium"), tmp_path_factory.mktemp("chromium"))
    yield browser
    browser.close()


@pytest.fixture
def tab(chromium: Chromium) -> Iterator[Tab]:
    page = chromium.tab()
    yield page
    page.close()


@pytest.fixture(scope="module")
def live(world: World) -> Served:
    """A page whose data and content refresh every second or two."""
    return world.serve(world.config(refresh={"data_seconds": 1, "page_seconds": 2}))


@pytest.fixture(scope="module")
def steady(world: World) -> Served:
    """The page for the screenshots (without the hostile announcement the other tests use)."""
    doc = yaml.safe_load(world.outages.read_text())
    doc["outages"] = [o for o in doc["outages"] if o["title"] != HOSTILE]
    outages = world.tmp / "outages-docs.yaml"
    outages.write_text(yaml.safe_dump(doc))
    return world.serve(world.config(outages_file=str(outages)))


def test_loads_without_errors_and_the_tabs_switch(tab: Tab, live: Served) -> None:
    tab.send("Emulation.setTimezoneOverride", timezoneId="America/New_York")
    tab.navigate(live.url + "/")
    assert tab.eval("document.title") == "Example HPC centre"
    assert tab.eval("document.querySelector('main').dataset.view") == "overview"
    # Times in the viewer's zone, not the page's (Europe/Berlin).
    times = tab.eval("[...document.querySelectorAll('time')].map(t => t.textContent)")
    assert times and all(("EST" in t or "GMT-5" in t) for t in times), times
    tab.eval("window.marker = 'kept'")
    tab.click('nav.tabs a[data-tab="alpha"]')
    tab.wait_for("document.querySelector('main').dataset.view === 'alpha'")
    assert tab.eval("location.pathname") == "/system/alpha"
    assert tab.eval("document.title") == "Alpha (H100) — Example HPC centre"
    assert tab.eval("document.querySelector('nav.tabs a[aria-current=page]').dataset.tab") == "alpha"
    assert (
        tab.eval(
            "document.querySelector('#availability tr[data-partition=gpu] td:nth-of-type(4)').textContent"
        )
        == "1"
    )
    assert tab.eval("window.marker") == "kept", "the tab switched without reloading the page"
    tab.eval("history.back()")
    tab.wait_for("document.querySelector('main').dataset.view === 'overview'")
    assert tab.eval("location.pathname") == "/"
    tab.click('nav.tabs a[data-tab="beta"]')
    tab.wait_for("document.querySelector('main').dataset.view === 'beta'")
    assert "no data" in tab.eval("document.querySelector('.system-head .badge').textContent")
    assert tab.errors == []


def test_the_content_refreshes_in_place(tab: Tab, live: Served) -> None:
    tab.navigate(live.url + "/system/alpha")
    first = int(tab.eval("document.querySelector('main').dataset.generation"))
    tab.eval("window.marker = 'kept'")
    tab.wait_for(f"Number(document.querySelector('main').dataset.generation) > {first}", timeout=30)
    assert tab.eval("window.marker") == "kept"
    assert tab.eval("document.querySelector('main').dataset.view") == "alpha"
    assert tab.errors == []


def test_without_javascript_links_and_meta_refresh_do_the_work(tab: Tab, live: Served) -> None:
    tab.send("Emulation.setScriptExecutionDisabled", value=True)
    tab.navigate(live.url + "/")
    mark = len(tab.events)
    tab.click('nav.tabs a[data-tab="alpha"]')
    tab.wait_event("Page.loadEventFired", after=mark)
    assert tab.send("Runtime.evaluate", expression="1")  # the protocol still answers
    mark = len(tab.events)
    # The page reloads itself after refresh_seconds (2 s here) through <noscript><meta refresh>.
    navigated = tab.wait_event("Page.frameNavigated", timeout=30, after=mark)
    assert navigated["params"]["frame"]["url"].endswith("/system/alpha")
    assert tab.errors == []


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.parametrize(
    ("name", "width", "height", "mobile"), [("desktop", 1280, 900, False), ("phone", 390, 844, True)]
)
def test_screenshots(
    tab: Tab, steady: Served, tmp_path: Path, name: str, width: int, height: int, mobile: bool
) -> None:
    tab.viewport(width, height, mobile=mobile)
    tab.send("Emulation.setTimezoneOverride", timezoneId="Europe/Berlin")
    out = os.environ.get("POWERPLANE_SCREENSHOTS")
    for view, path in (("overview", "/"), ("system", "/system/alpha")):
        tab.navigate(steady.url + path)
        # Nothing wider than the screen: tables scroll inside their card.
        assert tab.eval("document.documentElement.scrollWidth") <= width
        target = tmp_path / f"status-page-{view}-{name}.png"
        shot_width, shot_height = _png_size(tab.screenshot(target))
        assert shot_width == width and shot_height >= height // 2
        if out:
            shutil.copy(target, Path(out) / target.name)
    assert tab.errors == []
