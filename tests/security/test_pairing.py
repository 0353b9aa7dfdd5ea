"""Pairing codes against the live relay: guessing, full groups, and coming back uninvited.

Limits (server/pairing.py, defaults): 5 wrong codes per lamp per 15 minutes, then that lamp is
locked out; 60 wrong codes per hour from all lamps together, then every join on the relay is
refused as "busy" until the hour has moved on. SECURITY.md has the arithmetic.
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from collections.abc import Callable

import pytest

from tests.relay.lamps import TestLamp
from tests.security.world import Mischief, SecureWorld
from touchlamp.cli import main
from touchlamp.protocol import PairAction, PairResponse
from touchlamp.server.pairing import CODE_ALPHABET

LOCKOUT = 5
GLOBAL = 60


def _guess() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))


def _ask(lamp: TestLamp, action: PairAction, code: str | None = None) -> PairResponse:
    response = lamp.pair(action, code=code)
    assert response is not None
    return response


def _code(lamp: TestLamp) -> str:
    response = _ask(lamp, PairAction.CREATE)
    assert response.ok, response
    assert response.code is not None
    return response.code


def _joins(*codes: str) -> list[bytes]:
    return [json.dumps({"action": "join", "code": code}).encode() for code in codes]


def _flood(world: SecureWorld, attacker: Mischief, count: int) -> Counter[str | None]:
    """``count`` random well-formed codes, sent all at once; how often each answer came."""
    responses = attacker.ask(world.topics, _joins(*(_guess() for _ in range(count))))
    assert not any(response.ok for response in responses), "a guessed code worked"
    return Counter(response.error for response in responses)


def _attacker(world: SecureWorld, lamp_id: str) -> Mischief:
    """An enrolled lamp's login in an attacker's hands."""
    return world.mischief(lamp_id, world.enroll(lamp_id))


def test_hundreds_of_guesses_from_one_lamp_lock_only_that_lamp_out(world: SecureWorld) -> None:
    owner, friend = world.lamp("lamp-c"), world.lamp("lamp-d")
    code = _code(owner)
    guesser = _attacker(world, "lamp-g")

    answers = _flood(world, guesser, 150)
    world.exchange()  # during the attack
    answers += _flood(world, guesser, 150)

    assert answers == {"bad-code": LOCKOUT, "locked-out": 300 - LOCKOUT}
    # The right code does not help a locked-out lamp (and is not used up by trying).
    (answer,) = guesser.ask(world.topics, _joins(code))
    assert answer.error == "locked-out"
    # Every other lamp pairs as usual: 5 failures are far below the relay-wide 60 an hour.
    joined = _ask(friend, PairAction.JOIN, code)
    assert joined.ok, joined
    assert joined.members == ["lamp-c", "lamp-d"]
    assert world.store.group_of("lamp-g") is None
    world.exchange()


def test_junk_that_cannot_be_a_code_costs_nothing_and_opens_nothing(world: SecureWorld) -> None:
    owner, junker = world.lamp("lamp-c"), _attacker(world, "lamp-j")
    code = _code(owner)
    junk = _joins(*["0000OOOO", "IIIILLLL", "ABCD", "A" * 16, "UUUUUUUU"] * 40)
    assert {answer.error for answer in junker.ask(world.topics, junk)} == {"bad-code"}
    # Not counted as guesses (it reveals nothing), so the lamp is not locked out by typos.
    (answer,) = junker.ask(world.topics, _joins(code))
    assert answer.ok, answer
    world.exchange()


def test_guesses_from_many_lamps_hit_the_relay_wide_limit_then_pairing_waits(
    world: SecureWorld,
) -> None:
    owner, friend, late = world.lamp("lamp-c"), world.lamp("lamp-d"), world.lamp("lamp-e")
    guessers = [_attacker(world, f"lamp-g{n:02d}") for n in range(12)]

    # 11 stolen lamps x 25 guesses: each is locked out after 5, 55 wrong codes in all.
    answers: Counter[str | None] = Counter()
    for guesser in guessers[:11]:
        answers += _flood(world, guesser, 25)
    assert answers == {"bad-code": 11 * LOCKOUT, "locked-out": 11 * (25 - LOCKOUT)}
    # Under the relay-wide limit: a legitimate pairing still works.
    assert _ask(friend, PairAction.JOIN, _code(owner)).ok
    world.exchange()

    # A 12th lamp takes the relay to 60 wrong codes this hour.
    answers = _flood(world, guessers[11], 25)
    assert answers == {"bad-code": LOCKOUT, "busy": 25 - LOCKOUT}
    assert 11 * LOCKOUT + LOCKOUT == GLOBAL
    # Now every join is refused for the rest of the hour, the legitimate one too: the price
    # of a bound that does not grow with the number of stolen lamps. Touches still flow.
    refused = _ask(late, PairAction.JOIN, _code(owner))
    assert refused.error == "busy", refused
    assert "try again in" in (refused.reason or "")
    world.exchange()

    world.clock.advance(3600)  # the hour moves on (the relay's injected wall clock)
    assert _ask(late, PairAction.JOIN, _code(owner)).ok
    assert not any(world.store.group_of(f"lamp-g{n:02d}") for n in range(12))
    world.exchange()


def test_a_lamp_cannot_join_a_full_group(make_world: Callable[..., SecureWorld]) -> None:
    world = make_world(pairing={"max_group_size": 2})
    owner, first, second = world.lamp("lamp-c"), world.lamp("lamp-d"), world.lamp("lamp-e")
    code_1, code_2 = _code(owner), _code(owner)
    assert _ask(first, PairAction.JOIN, code_1).ok

    assert _ask(second, PairAction.JOIN, code_2).error == "group-full"
    # A full group hands out no codes either (lamp-a and lamp-b are a full group of 2).
    assert _ask(world.a, PairAction.CREATE).error == "group-full"
    group = world.store.group_of("lamp-c")
    assert group is not None
    assert [member.id for member in group.members] == ["lamp-c", "lamp-d"]
    world.exchange()


def test_a_lamp_that_left_cannot_come_back_with_its_used_code(world: SecureWorld) -> None:
    owner, friend = world.lamp("lamp-c"), world.lamp("lamp-d")
    code = _code(owner)
    assert _ask(friend, PairAction.JOIN, code).ok
    assert _ask(friend, PairAction.LEAVE).ok

    assert _ask(friend, PairAction.JOIN, code).error == "bad-code"  # single use
    assert world.store.group_of("lamp-d") is None
    assert _ask(friend, PairAction.JOIN, _code(owner)).ok  # a new code from the group: fine
    world.exchange()


def test_a_lamp_removed_by_the_operator_is_in_no_group_when_added_again(
    world: SecureWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    env_file = str(world.relay_env_file())
    owner = world.lamp("lamp-c")
    capsys.readouterr()
    assert main(["relay", "lamp", "add", "lamp-d", "--json", "--env-file", env_file]) == 0
    password = json.loads(capsys.readouterr().out)["password"]
    removed = TestLamp(world.site.endpoint, "lamp-d", password)
    removed.connect()
    code = _code(owner)
    assert _ask(removed, PairAction.JOIN, code).ok

    assert main(["relay", "lamp", "remove", "lamp-d", "--env-file", env_file]) == 0
    assert main(["relay", "lamp", "add", "lamp-d", "--json", "--env-file", env_file]) == 0
    password = json.loads(capsys.readouterr().out.splitlines()[-1])["password"]
    again = TestLamp(world.site.endpoint, "lamp-d", password)
    again.connect()
    try:
        status = _ask(again, PairAction.STATUS)
        assert status.group is None
        assert status.members == []
        assert _ask(again, PairAction.JOIN, code).error == "bad-code"
        group = world.store.group_of("lamp-c")
        assert group is not None
        assert [member.id for member in group.members] == ["lamp-c"]
    finally:
        again.disconnect()
        removed.disconnect()
    world.exchange()
