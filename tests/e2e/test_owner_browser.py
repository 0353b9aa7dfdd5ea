"""The lamp's own page in a real headless Chromium, over real simulated lamps, the broker fixture
and the real relay: claim by holding the lamp, looks, pairing by code between two pages, a
touch that lights the other lamp, leaving, a restart, and what a stranger cannot do.
Screenshots go to artifacts/ (one is in the README, docs/owner-page.png)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from tests.e2e.world import BrokerLike, World, served_page
from tests.support.waiting import WAIT, wait_until
from touchlamp.config.device import DeviceSettings

AMBER = "#ff8c1a"
BLUE = "#3c78ff"
PASSWORD = "correct horse battery"
HOLD = 1.0

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"Debian's chromium is not installed at {CHROMIUM} (scripts/setup installs it)",
    ),
]

_LEVEL = """(id) => Number(document.querySelector(`.lamp[data-id="${id}"]`)?.dataset.level ?? -1)"""


def _lamps(world: World) -> tuple[DeviceSettings, DeviceSettings]:
    def quick(settings: DeviceSettings) -> DeviceSettings:
        return settings.model_copy(
            update={"looks": settings.looks.model_copy(update={"hold_seconds": HOLD})}
        )

    return (
        quick(world.lamp("lamp-a", color=AMBER, name="Kitchen")),
        quick(world.lamp("lamp-b", color=BLUE, name="Grandma")),
    )


@pytest.fixture
def world(broker: BrokerLike, tmp_path: Path) -> Iterator[World]:
    made = World(broker, tmp_path)
    yield made
    made.close()


@pytest.fixture
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _open(chromium: Any, url: str) -> Any:
    page = chromium.new_context(viewport={"width": 760, "height": 1500}).new_page()
    page.set_default_timeout(WAIT * 1000)
    page.goto(url)
    page.locator("#connection", has_text=re.compile("^Connected")).wait_for()
    return page


def _hold(page: Any, lamp_id: str, seconds: float) -> None:
    """Press the lamp drawn on the page (the simulated sensor) for ``seconds``."""
    page.locator(f'.lamp[data-id="{lamp_id}"] .shade').hover()
    page.mouse.down()
    page.wait_for_timeout(seconds * 1000)
    page.mouse.up()


def _claim(page: Any, lamp_id: str) -> None:
    page.fill("#claim-password", PASSWORD)
    page.click("#claim-form button[type=submit]")
    page.locator("#owner-message", has_text="hold the lamp").wait_for()
    _hold(page, lamp_id, HOLD * 1.6)
    page.locator("#signed-in").wait_for()


def _save(page: Any, values: dict[str, str]) -> None:
    for name, value in values.items():
        page.fill(f'#looks-form [name="{name}"]', value)
    page.click("#looks-form button[type=submit]")


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_claim_looks_pairing_touch_leave_and_restart_in_the_browser(
    world: World, chromium: Any
) -> None:
    lamps = _lamps(world)
    with world.relay():
        with world.simulator(*lamps) as simulator, served_page(simulator) as url:
            a = _open(chromium, url + "lamp/lamp-a/")
            b = _open(chromium, url + "lamp/lamp-b/")
            assert a.locator('#looks-form [name="name"]').is_disabled()  # not the owner yet

            _claim(a, "lamp-a")
            _claim(b, "lamp-b")
            assert "Sign in" not in b.locator("#looks-message").inner_text()
            assert simulator.lamp("lamp-a").agent.color == AMBER  # the hold picked no colour

            # Pairing: a code made on A's page, joined on B's.
            assert b.locator("#members", has_text="Not paired").is_visible()
            a.click("#make-code")
            a.locator("#pairing-message", has_text="Enter this code").wait_for()
            code = a.locator("#code").inner_text()
            b.fill("#join-code", code)
            b.click("#join-form button[type=submit]")
            b.locator('.member[data-id="lamp-a"]', has_text="online").wait_for()
            a.locator('.member[data-id="lamp-b"]', has_text="Grandma").wait_for()

            # A short glow on A: no breaths, a 3-second fade.
            _save(a, {"looks.glow.breaths": "0", "looks.glow.fade_seconds": "0.05"})
            a.locator("#looks-message", has_text="Saved").wait_for()
            lamp_a = simulator.lamp("lamp-a")
            wait_until(lambda: lamp_a.agent.settings.looks.glow.fade_seconds == 3.0, "A took it")

            # A touch on B lights A, which then goes dark again within seconds (30 min before).
            b.locator('.lamp[data-id="lamp-b"] .shade').click()
            a.wait_for_function(f"() => ({_LEVEL})('lamp-a') > 0.5")
            a.locator("#last-touch", has_text="from Grandma").wait_for()
            _shot(a, "owner-page-lamp-a.png")
            a.wait_for_function(f"() => ({_LEVEL})('lamp-a') === 0")
            assert (
                "from this lamp's settings"
                in a.locator('.field[data-key="looks.glow.fade_seconds"] .source').inner_text()
            )

            # Leave, with the page's own confirmation.
            b.click("#leave")
            b.locator("#leave-confirm").wait_for()
            b.click("#leave-no")
            assert b.locator('.member[data-id="lamp-a"]').is_visible()
            b.click("#leave")
            b.click("#leave-yes")
            b.locator("#members", has_text="Not paired").wait_for()
            _shot(b, "owner-page-lamp-b-left.png")

        # The lamps restart: the settings are there, the owner signs in again.
        with world.simulator(*lamps) as simulator, served_page(simulator) as url:
            a = _open(chromium, url + "lamp/lamp-a/")
            assert simulator.lamp("lamp-a").agent.settings.looks.glow.fade_seconds == 3.0
            assert a.locator("#login-form").is_visible()
            a.fill("#login-password", PASSWORD)
            a.click("#login-form button[type=submit]")
            a.locator("#signed-in").wait_for()
            fade = a.locator('#looks-form [name="looks.glow.fade_seconds"]')
            assert fade.input_value() == "0.05"
            assert a.locator('#looks-form [name="looks.glow.breaths"]').input_value() == "0"


# Each field with a value the lamp refuses, and the words that say why.
BAD_FIELDS = [
    ("name", "x" * 41, "at most 40 characters"),
    ("looks.max_brightness", "150", "less than or equal to 1"),
    ("looks.glow.attack_seconds", "soon", "valid number"),
    ("looks.glow.breaths", "2.5", "valid integer"),
    ("looks.glow.fade_seconds", "0", "greater than 0"),
    ("quiet_hours.start", "", "quiet_hours.start"),
    ("quiet_hours.end", "", "quiet_hours.end"),
    ("looks.ambient_level", "-5", "greater than or equal to 0"),
    ("looks.glow_max_age_seconds", "a day", "valid number"),
]


def test_every_bad_field_shows_a_clear_message_and_changes_nothing(
    world: World, chromium: Any
) -> None:
    lamps = _lamps(world)
    with world.relay(), world.simulator(*lamps) as simulator, served_page(simulator) as url:
        page = _open(chromium, url + "lamp/lamp-a/")
        _claim(page, "lamp-a")
        lamp = simulator.lamp("lamp-a")
        before = lamp.agent.settings
        for name, value, why in BAD_FIELDS:
            page.reload()
            page.locator("#signed-in").wait_for()
            page.locator(f'.field[data-key="{name}"] .source').wait_for()
            _save(page, {name: value})
            error = page.locator(f'.field[data-key="{name}"] .error')
            error.wait_for()
            assert why in error.inner_text(), name
            assert "nothing was changed" in error.inner_text()
            assert lamp.agent.settings == before, name
        _shot(page, "owner-page-bad-field.png")
        assert not (lamp.settings.state_dir / "settings.json").exists()


def test_a_stranger_gets_403_and_another_site_cannot_post(world: World, chromium: Any) -> None:
    lamps = _lamps(world)
    with world.relay(), world.simulator(*lamps) as simulator, served_page(simulator) as url:
        owner = _open(chromium, url + "lamp/lamp-a/")
        _claim(owner, "lamp-a")

        stranger = _open(chromium, url + "lamp/lamp-a/")
        assert stranger.locator("#login-form").is_visible()
        assert stranger.locator('#looks-form [name="name"]').is_disabled()
        statuses = stranger.evaluate(
            """async () => {
              const post = (path, body) => fetch(`/api/lamps/lamp-a/${path}`, {
                method: "POST", headers: {"Content-Type": "application/json"},
                body: JSON.stringify(body)}).then((r) => r.status);
              return [
                await post("settings", {changes: {"looks.glow.breaths": 1}}),
                await post("pair/new", {}),
                await post("pair/join", {code: "ABCD1234"}),
                await post("pair/leave", {confirm: true}),
                await post("quiet", {on: true}),
              ];
            }"""
        )
        assert statuses == [403] * 5

        # Another site open in the owner's own browser posts to the lamp: its request carries
        # a foreign Origin (refused, see tests/device/test_owner_page.py) and, the cookie being
        # SameSite=Strict, not even the owner's session. (The browser may also stop it first.)
        evil = owner.context.new_page()
        evil.route(
            "http://evil.test/",
            lambda route: route.fulfill(
                body="<html><body>evil</body></html>", content_type="text/html"
            ),
        )
        evil.goto("http://evil.test/")
        evil.evaluate(
            """async (target) => {
              try {
                await fetch(target, {method: "POST", mode: "no-cors", credentials: "include",
                  headers: {"Content-Type": "text/plain"}, body: '{"on": true}'});
              } catch (error) {
                return String(error);
              }
              return "sent";
            }""",
            url + "api/lamps/lamp-a/quiet",
        )
        lamp = simulator.lamp("lamp-a")
        assert lamp.agent.status().quiet_now is False
        assert lamp.agent.settings.looks.glow.breaths == 6
        # The owner's own page may.
        assert (
            owner.evaluate(
                """() => fetch("/api/lamps/lamp-a/quiet", {method: "POST",
                 headers: {"Content-Type": "application/json"}, body: '{"on": true}'})
                 .then((r) => r.status)"""
            )
            == 200
        )
        wait_until(lambda: lamp.agent.status().quiet_now, "quiet now")
        # The page's own switch for it.
        owner.reload()
        owner.locator("#signed-in").wait_for()
        assert owner.locator("#quiet-now").is_checked()
        owner.uncheck("#quiet-now")
        wait_until(lambda: not lamp.agent.status().quiet_now, "quiet now off")
        assert stranger.locator("#quiet-now").is_disabled()
