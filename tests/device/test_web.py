"""The simulator's JSON API and event stream, served by aiohttp's test server, over real lamps.

The lamps are the real agent on gpiozero's mock pins, each with its own MQTT connection to the
broker fixture; ``led`` in the API is read back from their PWM pins.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from tests.e2e.world import WAIT, BrokerLike, World, same_hue
from touchlamp.device.sim import Simulator
from touchlamp.device.web import create_app

AMBER = "#ff8c1a"
BLUE = "#3c78ff"

Lamps = list[dict[str, Any]]


@pytest.fixture
def world(broker: BrokerLike, tmp_path: Path) -> Iterator[World]:
    made = World(broker, tmp_path)
    yield made
    made.close()


@pytest.fixture
def simulator(world: World) -> Iterator[Simulator]:
    lamps = (
        world.lamp("lamp-a", color=AMBER, name="Kitchen"),
        world.lamp("lamp-b", color=BLUE, name="Grandma"),
    )
    with world.simulator(*lamps) as running:
        yield running


def _serve(board: Simulator, scenario: Callable[[TestClient[Any, Any]], Awaitable[None]]) -> None:
    async def main() -> None:
        async with TestClient(TestServer(create_app(board=board))) as client:
            await asyncio.wait_for(scenario(client), WAIT)

    asyncio.run(main())


async def _events(response: ClientResponse) -> Lamps:
    """The next snapshot from an event stream (``data: [...]`` followed by a blank line)."""
    while True:
        line = await response.content.readline()
        if not line:
            raise AssertionError("the event stream ended")
        if line.startswith(b"data: "):
            snapshot: Lamps = json.loads(line[len(b"data: ") :])
            return snapshot


async def _until(response: ClientResponse, check: Callable[[Lamps], bool]) -> Lamps:
    while True:
        snapshot = await _events(response)
        if check(snapshot):
            return snapshot


def _lamp(snapshot: Lamps, lamp_id: str) -> dict[str, Any]:
    return next(lamp for lamp in snapshot if lamp["id"] == lamp_id)


def test_the_api_lists_each_lamp_with_its_pins(simulator: Simulator) -> None:
    async def scenario(client: TestClient[Any, Any]) -> None:
        response = await client.get("/api/lamps")
        assert response.status == 200
        lamps = await response.json()
        assert [(lamp["id"], lamp["name"], lamp["color"]) for lamp in lamps] == [
            ("lamp-a", "Kitchen", AMBER),
            ("lamp-b", "Grandma", BLUE),
        ]
        for lamp in lamps:
            assert set(lamp) == {"id", "name", "online", "led", "color", "gamma"}
            assert len(lamp["led"]) == 3
            assert all(0.0 <= value <= 1.0 for value in lamp["led"])

    _serve(simulator, scenario)


def test_the_event_stream_pushes_presence_and_a_press(simulator: Simulator) -> None:
    """Both lamps come online; pressing lamp A lights A's own pins in its colour (the tap's
    feedback), pushed to the stream as it happens."""

    async def scenario(client: TestClient[Any, Any]) -> None:
        stream = await client.get("/api/events")
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        await _until(stream, lambda lamps: all(lamp["online"] for lamp in lamps))

        assert (await client.post("/api/lamps/lamp-a/press")).status == 200
        assert (await client.post("/api/lamps/lamp-a/release")).status == 200
        lit = await _until(
            stream,
            lambda lamps: same_hue(_lamp(lamps, "lamp-a")["led"], AMBER, gamma=2.2),
        )
        assert _lamp(lit, "lamp-a")["online"]
        stream.close()

    _serve(simulator, scenario)


def test_pressing_an_unknown_lamp_says_which_lamps_exist(simulator: Simulator) -> None:
    async def scenario(client: TestClient[Any, Any]) -> None:
        response = await client.post("/api/lamps/lamp-z/press")
        assert response.status == 404
        body = await response.json()
        assert "lamp-z" in body["error"]
        assert "/api/lamps" in body["error"]

    _serve(simulator, scenario)


def test_the_page_and_its_files_are_served(simulator: Simulator) -> None:
    async def scenario(client: TestClient[Any, Any]) -> None:
        page = await client.get("/")
        assert page.status == 200
        text = await page.text()
        assert "static/app.js" in text
        assert "static/style.css" in text
        script = await client.get("/static/app.js")
        assert script.status == 200
        assert script.headers["Content-Type"].startswith("text/javascript")
        assert "api/events" in await script.text()
        assert (await client.get("/static/secret.txt")).status == 404

    _serve(simulator, scenario)
