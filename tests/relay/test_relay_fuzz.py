"""Hypothesis throws arbitrary payloads at the live relay; it keeps forwarding the valid ones."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.relay.lamps import TestLamp
from tests.relay.live import Site, running_relay
from touchlamp.protocol import Topics
from touchlamp.server.relay import Relay

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
_almost_touches = st.fixed_dictionaries(
    {
        "seq": st.one_of(st.integers(), st.text(max_size=5), st.none()),
        "stream": st.one_of(st.integers(), st.floats(allow_nan=False)),
        "color": st.text(max_size=9),
        "ts": st.integers(),
    },
    optional={"from": st.text(max_size=10)},
)
garbage = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
    _json.map(lambda value: json.dumps(value).encode()),
    _almost_touches.map(lambda value: json.dumps(value).encode()),
    st.integers(min_value=4000, max_value=60_000).map(lambda size: b"{" * size),
)


class _Live:
    """The relay and lamps shared by every example of one test (starting them is slow)."""

    def __init__(self, site: Site, relay: Relay, a: TestLamp, b: TestLamp) -> None:
        self.site, self.relay, self.a, self.b = site, relay, a, b
        self.seq = 0


@pytest.fixture
def live(site: Site) -> Iterator[_Live]:
    a, b = site.lamp("lamp-a"), site.lamp("lamp-b")
    site.pair(a, b)
    with running_relay(site) as relay:
        yield _Live(site, relay, a, b)


@settings(
    max_examples=40,
    deadline=None,
    # One relay serves every example on purpose: a relay that survived garbage must go on.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    payloads=st.lists(garbage, min_size=1, max_size=5),
    where=st.sampled_from(["touch", "pair", "availability"]),
)
def test_garbage_never_stops_the_relay(live: _Live, payloads: list[bytes], where: str) -> None:
    topics = Topics(live.site.root)
    topic = {
        "touch": topics.touch("lamp-a"),
        "pair": topics.pair("lamp-a"),
        "availability": topics.availability("lamp-a"),
    }[where]
    for payload in payloads:
        live.a.publish_raw(topic, payload)
    live.seq += 1
    live.a.touch(live.seq)
    glows = live.b.wait_glows(live.seq)
    assert glows[-1].touch == f"lamp-a:{live.a.stream}:{live.seq}"
    assert live.relay.connected
