"""The simulator's page in a real headless Chromium: pressing lamp A makes lamp B glow in A's
colour, through the broker fixture and the real relay. A screenshot is kept in artifacts/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.world import BrokerLike, World, served_page
from tests.support.waiting import WAIT
from touchlamp.device.looks import Rgb

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
AMBER = "#ff8c1a"
BLUE = "#3c78ff"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"Debian's chromium is not installed at {CHROMIUM} (scripts/setup installs it)",
    ),
]

# Lamp B's glass as drawn: its colour (the hue at full strength) and its opacity (brightness).
_DRAWN = """
(id) => {
  const light = document.querySelector(`.lamp[data-id="${id}"] .light`);
  if (!light) return null;
  const style = getComputedStyle(light);
  return [style.backgroundColor, Number(style.opacity)];
}
"""

_GLOWS_IN = """
([id, want, tolerance]) => {
  const light = document.querySelector(`.lamp[data-id="${id}"] .light`);
  if (!light) return false;
  const style = getComputedStyle(light);
  const got = style.backgroundColor.match(/\\d+/g).map(Number);
  return Number(style.opacity) > 0.5 &&
    got.every((value, index) => Math.abs(value - want[index]) <= tolerance);
}
"""


@pytest.fixture
def world(broker: BrokerLike, tmp_path: Path) -> Iterator[World]:
    made = World(broker, tmp_path)
    yield made
    made.close()


def _rgb255(color: str) -> list[int]:
    return [round(channel * 255) for channel in Rgb.from_hex(color)]


def test_pressing_lamp_a_on_the_page_lights_lamp_b_in_a_colour(world: World) -> None:
    from playwright.sync_api import sync_playwright

    lamps = (
        world.lamp("lamp-a", color=AMBER, name="Kitchen"),
        world.lamp("lamp-b", color=BLUE, name="Grandma"),
    )
    world.pair("lamp-a", "lamp-b")
    with (
        world.relay(),
        world.simulator(*lamps) as simulator,
        served_page(simulator) as url,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 520})
            page.set_default_timeout(WAIT * 1000)
            page.goto(url)
            for lamp_id in ("lamp-a", "lamp-b"):
                page.locator(f'.lamp[data-id="{lamp_id}"] .presence', has_text="online").wait_for()
            assert page.evaluate(_DRAWN, "lamp-b")[1] == 0.0  # dark before the touch

            page.locator('.lamp[data-id="lamp-a"] .shade').click()

            page.wait_for_function(_GLOWS_IN, arg=["lamp-b", _rgb255(AMBER), 3])
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "browser-lamp-b-glows.png"))
            color, opacity = page.evaluate(_DRAWN, "lamp-b")
            drawn = [int(value) for value in re.findall(r"\d+", color)]
            assert drawn == pytest.approx(_rgb255(AMBER), abs=3)
            assert opacity > 0.5
        finally:
            browser.close()
