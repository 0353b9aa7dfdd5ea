"""The lamp's own page's API over HTTP, on real simulated lamps (the real agent on mock pins,
the broker fixture, the real relay): who may change what, the claim by a hold on the lamp,
settings, pairing. SECURITY.md's owner-page rows point here."""

from __future__ import annotations

import http.client
import json
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr

from tests.e2e.world import BrokerLike, World, served_page
from tests.support.ports import free_port
from tests.support.waiting import WAIT, wait_until
from touchlamp.config.device import DeviceSettings, MqttSettings
from touchlamp.config.lamp_file import LAMP_FILE
from touchlamp.device.lamp_board import LampBoard
from touchlamp.device.looks import Rgb
from touchlamp.device.owner_auth import OWNER_FILE, RESET_HOLD_SECONDS
from touchlamp.device.sim import SimulatedLamp, Simulator
from touchlamp.device.web import WebServer

AMBER = "#ff8c1a"
BLUE = "#3c78ff"
PASSWORD = "correct horse battery"
HOLD = 1.0  # these lamps' hold; the claim's hold must be at least this


class Answer(NamedTuple):
    status: int
    headers: http.client.HTTPMessage
    data: Any


class Browser:
    """A client that keeps cookies (as a browser does for the page's own origin)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        assert parts.hostname is not None
        assert parts.port is not None
        self.host, self.port = parts.hostname, parts.port
        self.origin = f"http://{self.host}:{self.port}"
        self.cookies: dict[str, str] = {}

    def request(
        self, method: str, path: str, body: object = None, *, origin: str | None = "same"
    ) -> Answer:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=WAIT + 10)
        headers = {"Content-Type": "application/json"}
        if origin is not None:
            headers["Origin"] = self.origin if origin == "same" else origin
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            payload = None if body is None else json.dumps(body).encode()
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        for header in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            value = rest.split(";")[0]
            if "Max-Age=0" in header:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        try:
            data = json.loads(raw)
        except ValueError:
            data = raw.decode(errors="replace")
        return Answer(response.status, response.headers, data)

    def get(self, lamp: str, what: str = "owner") -> Answer:
        return self.request("GET", f"/api/lamps/{lamp}/{what}")

    def post(self, lamp: str, what: str, body: object = None, **kwargs: Any) -> Answer:
        return self.request(
            "POST", f"/api/lamps/{lamp}/{what}", {} if body is None else body, **kwargs
        )


def _quick_hold(settings: DeviceSettings) -> DeviceSettings:
    return settings.model_copy(
        update={"looks": settings.looks.model_copy(update={"hold_seconds": HOLD})}
    )


@pytest.fixture
def world(broker: BrokerLike, tmp_path: Path) -> Iterator[World]:
    made = World(broker, tmp_path)
    yield made
    made.close()


@pytest.fixture
def simulator(world: World) -> Iterator[Simulator]:
    lamps = (
        _quick_hold(world.lamp("lamp-a", color=AMBER, name="Kitchen")),
        _quick_hold(world.lamp("lamp-b", color=BLUE, name="Grandma")),
    )
    with world.relay(), world.simulator(*lamps) as running:
        wait_until(lambda: all(lamp.agent.online for lamp in running.lamps), "both lamps online")
        yield running


@pytest.fixture
def page(simulator: Simulator) -> Iterator[str]:
    with served_page(simulator) as url:
        yield url


def claim(
    browser: Browser, lamp: SimulatedLamp, *, hold: float = HOLD * 1.5, password: str = PASSWORD
) -> Answer:
    """POST …/claim and hold the lamp (through its simulated sensor) for ``hold`` seconds."""
    answers: list[Answer] = []
    asking = threading.Thread(
        target=lambda: answers.append(browser.post(lamp.lamp_id, "claim", {"password": password}))
    )
    asking.start()
    try:
        wait_until(lambda: lamp.auth.claim_waiting, "the claim waits for a hold")
        lamp.press()
        time.sleep(hold)
        lamp.release()
    finally:
        asking.join(WAIT + 10)
    return answers[0]


def owner_of(browser: Browser, simulator: Simulator, lamp_id: str = "lamp-a") -> None:
    answer = claim(browser, simulator.lamp(lamp_id))
    assert answer.status == 200, answer.data


CHANGES: list[tuple[str, dict[str, object]]] = [
    ("settings", {"changes": {"looks.glow.fade_seconds": 60}}),
    ("pair/new", {}),
    ("pair/join", {"code": "ABCD1234"}),
    ("pair/leave", {"confirm": True}),
    ("quiet", {"on": True}),
]


def test_anyone_may_look_but_without_the_owners_session_every_change_is_403(
    page: str, simulator: Simulator
) -> None:
    owner = Browser(page)
    owner_of(owner, simulator)
    stranger = Browser(page)

    look = stranger.get("lamp-a")
    assert look.status == 200
    assert look.data["lamp"]["name"] == "Kitchen"
    assert look.data["claimed"] is True
    assert look.data["signed_in"] is False
    for path, body in CHANGES:
        refused = stranger.post("lamp-a", path, body)
        assert refused.status == 403, path
        assert "only the lamp's owner" in refused.data["error"]
    assert not (simulator.lamp("lamp-a").settings.state_dir / LAMP_FILE).exists()
    assert simulator.lamp("lamp-a").agent.status().quiet_now is False
    # The owner's own cookie does not open another lamp served on the same page.
    assert owner.post("lamp-b", "quiet", {"on": True}).status == 403


def test_a_cross_origin_post_is_refused_even_with_the_owners_cookie(
    page: str, simulator: Simulator
) -> None:
    owner = Browser(page)
    owner_of(owner, simulator)

    for path, body in CHANGES:
        refused = owner.post("lamp-a", path, body, origin="http://evil.example")
        assert refused.status == 403, path
        assert "evil.example" in str(refused.data)
    assert owner.post("lamp-a", "login", {"password": PASSWORD}, origin="null").status == 403
    assert owner.post("lamp-a", "quiet", {"on": True}).status == 200  # same origin: accepted


def test_the_claim_sets_a_hashed_password_and_a_strict_httponly_cookie(
    page: str, simulator: Simulator, world: World
) -> None:
    lamp = simulator.lamp("lamp-a")
    browser = Browser(page)
    assert browser.get("lamp-a").data["claimed"] is False

    answer = claim(browser, lamp)

    assert answer.status == 200
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    stored = lamp.settings.state_dir / OWNER_FILE
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    record = json.loads(stored.read_text())
    assert record["scheme"] == "scrypt"
    assert PASSWORD not in stored.read_text()
    assert lamp.agent.color == AMBER  # the hold confirmed the claim, it picked no colour
    look = browser.get("lamp-a")
    assert look.data["signed_in"] is True
    # No secret is ever sent to the browser: not the broker's password, not the hash.
    password = lamp.settings.mqtt.password
    assert password is not None
    for text in (password.get_secret_value(), record["hash"], record["salt"], PASSWORD):
        assert text not in json.dumps(look.data)
    del world


def test_without_a_hold_the_claim_fails_and_the_lamp_stays_unclaimed(
    simulator: Simulator, page: str
) -> None:
    lamp = simulator.lamp("lamp-a")
    lamp.auth._claim_seconds = 1.0
    browser = Browser(page)

    answer = browser.post("lamp-a", "claim", {"password": PASSWORD})

    assert answer.status == 409
    assert "was not held within" in answer.data["error"]
    assert not (lamp.settings.state_dir / OWNER_FILE).exists()
    assert "Set-Cookie" not in answer.headers
    short = browser.post("lamp-a", "claim", {"password": "short"})
    assert short.status == 400
    assert "8 to 200 characters" in short.data["error"]


def test_login_attempts_are_rate_limited(page: str, simulator: Simulator) -> None:
    owner_of(Browser(page), simulator)
    guesser = Browser(page)

    statuses = [
        guesser.post("lamp-a", "login", {"password": f"guess-{n}"}).status for n in range(5)
    ]
    throttled = guesser.post("lamp-a", "login", {"password": PASSWORD})

    assert statuses == [401] * 5
    assert throttled.status == 429
    assert int(throttled.headers["Retry-After"]) > 0
    assert "too many wrong passwords" in throttled.data["error"]
    assert "Set-Cookie" not in throttled.headers  # not even the right password gets in now


def test_forgot_password_a_longer_hold_sets_a_new_one_and_ends_old_sessions(
    page: str, simulator: Simulator
) -> None:
    lamp = simulator.lamp("lamp-a")
    old = Browser(page)
    owner_of(old, simulator)

    short = claim(Browser(page), lamp, password="someone else's")
    assert short.status == 409
    assert f"hold the lamp for {RESET_HOLD_SECONDS:g} seconds" in short.data["error"]
    assert old.post("lamp-a", "quiet", {"on": False}).status == 200

    new = Browser(page)
    assert claim(new, lamp, hold=RESET_HOLD_SECONDS + 0.5, password="a new password").status == 200

    assert new.post("lamp-a", "quiet", {"on": False}).status == 200
    assert old.post("lamp-a", "quiet", {"on": False}).status == 403
    assert Browser(page).post("lamp-a", "login", {"password": PASSWORD}).status == 401
    assert Browser(page).post("lamp-a", "login", {"password": "a new password"}).status == 200


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({"name": ""}, "name", "name = '' is not accepted"),
        ({"name": "tab\there"}, "name", "printable"),
        ({"color": "orange"}, "color", "write #rrggbb"),
        ({"looks.max_brightness": 1.5}, "looks.max_brightness", "less than or equal to 1"),
        ({"looks.glow.attack_seconds": "soon"}, "looks.glow.attack_seconds", "valid number"),
        ({"looks.glow.breaths": 2.5}, "looks.glow.breaths", "valid integer"),
        ({"looks.glow.fade_seconds": 0}, "looks.glow.fade_seconds", "greater than 0"),
        ({"quiet_hours.start": ""}, "quiet_hours.start", "quiet_hours.start"),
        ({"quiet_hours.enabled": True, "quiet_hours.start": "07:00"}, "quiet_hours.start", "span"),
        ({"looks.ambient_level": -0.1}, "looks.ambient_level", "greater than or equal to 0"),
        ({"looks.glow_max_age_seconds": "a day"}, "looks.glow_max_age_seconds", "valid number"),
        ({"mqtt.host": "evil.example"}, None, "not a setting the owner may change"),
        ({"looks.glow.breaths": 3, "looks.glow.fade_seconds": -1}, "looks.glow.fade_seconds", ""),
    ],
)
def test_a_bad_value_is_named_with_its_field_and_changes_nothing(
    page: str, simulator: Simulator, changes: dict[str, object], field: str | None, expected: str
) -> None:
    lamp = simulator.lamp("lamp-a")
    owner = Browser(page)
    owner_of(owner, simulator)
    before = lamp.agent.settings

    answer = owner.post("lamp-a", "settings", {"changes": changes})

    assert answer.status == 400
    assert answer.data["field"] == field
    assert expected in answer.data["error"]
    assert "nothing was changed" in answer.data["error"] or field is None
    assert not (lamp.settings.state_dir / LAMP_FILE).exists()
    assert lamp.agent.settings == before
    assert lamp.agent.color == AMBER


def test_pairing_from_the_pages_a_code_on_a_joined_on_b_then_leave(
    world: World, broker: BrokerLike
) -> None:
    # Two lamps nobody has paired: the pages do it.
    lamps = (
        _quick_hold(world.lamp("lamp-a", color=AMBER, name="Kitchen")),
        _quick_hold(world.lamp("lamp-b", color=BLUE, name="Grandma")),
    )
    with world.relay(), world.simulator(*lamps) as simulator, served_page(simulator) as url:
        wait_until(lambda: all(lamp.agent.online for lamp in simulator.lamps), "both online")
        a, b = Browser(url), Browser(url)
        owner_of(a, simulator, "lamp-a")
        owner_of(b, simulator, "lamp-b")

        made = a.post("lamp-a", "pair/new")
        assert made.status == 200, made.data
        assert made.data["expires_at"] > time.time()
        bad = b.post("lamp-b", "pair/join", {"code": "no such!"})
        assert bad.status == 400
        assert "not a pairing code" in bad.data["error"]
        joined = b.post("lamp-b", "pair/join", {"code": made.data["code"]})
        assert joined.status == 200, joined.data

        def members(browser: Browser, lamp: str) -> list[tuple[str, bool]]:
            return [(m["name"], m["online"]) for m in browser.get(lamp).data["lamp"]["members"]]

        wait_until(lambda: members(a, "lamp-a") == [("Grandma", True)], "A sees B")
        # B's own group state is a message of its own, which may come after A's.
        wait_until(lambda: members(b, "lamp-b") == [("Kitchen", True)], "B sees A")

        assert b.post("lamp-b", "pair/leave", {}).status == 400  # no confirmation
        assert members(b, "lamp-b") == [("Kitchen", True)]
        assert b.post("lamp-b", "pair/leave", {"confirm": True}).status == 200
        wait_until(lambda: members(b, "lamp-b") == [], "B is alone")
    del broker


def test_unknown_lamps_are_404_and_each_lamp_has_its_page(page: str) -> None:
    browser = Browser(page)
    assert browser.get("lamp-z").status == 404
    assert browser.request("GET", "/lamp/lamp-z/").status == 404
    own = browser.request("GET", "/lamp/lamp-a/")
    assert own.status == 200
    assert "frame-ancestors 'none'" in own.headers["Content-Security-Policy"]


def test_a_real_lamps_page_opens_on_the_lamp_and_cannot_touch_it(simulator: Simulator) -> None:
    # A real lamp's board (device run) around the same agent: a touch from the page is
    # refused, since a hold on the lamp is what proves its owner is there.
    lamp = simulator.lamp("lamp-a")
    board = LampBoard(agent=lamp.agent, owner=lamp.owner_lamp)
    server = WebServer(board=board)
    url = server.start()
    try:
        browser = Browser(url)
        home = browser.request("GET", "/")
        assert home.status == 303
        assert home.headers["Location"] == "/lamp/lamp-a/"
        refused = browser.post("lamp-a", "press")
        assert refused.status == 403
        assert "touched by hand" in refused.data["error"]
        assert browser.get("lamp-a").data["lamp"]["online"] is True
        assert browser.request("GET", "/api/lamps").data[0]["id"] == "lamp-a"
        # Drawn from the frame the LED was given, as it is given (not the status snapshot,
        # which is replaced only after the frame: the last frame of a fade would never show).
        board.changed(Rgb(0.5, 0.0, 0.25))
        assert browser.request("GET", "/api/lamps").data[0]["led"] == [0.5, 0.0, 0.25]
    finally:
        server.stop()


def test_a_lamp_that_is_not_connected_says_why_and_the_fix(tmp_path: Path) -> None:
    # No broker where its settings say: the page's status names the doctor's finding.
    settings = DeviceSettings(
        lamp_id="lamp-x",
        state_dir=tmp_path / "lamp-x",
        mqtt=MqttSettings(host="127.0.0.1", port=free_port(), password=SecretStr("p" * 22)),
    )
    simulator = Simulator(lamps=[settings])
    simulator.start()
    try:
        with served_page(simulator) as url:
            browser = Browser(url)
            assert browser.get("lamp-x").data["lamp"]["online"] is False
            doctor = browser.get("lamp-x", "doctor").data
            assert doctor["connected"] is False
            [finding] = doctor["findings"]
            assert "is not reachable" in finding["text"]
            assert "TOUCHLAMP_DEVICE_MQTT__HOST/PORT" in finding["fix"]
    finally:
        simulator.stop()
