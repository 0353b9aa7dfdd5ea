"""Pairing by code: lifecycle, single use, expiry, group size and the guessing lockout."""

from __future__ import annotations

import pytest

from tests.relay.helpers import add_lamps, group_of
from tests.support.clock import FakeClock
from touchlamp.config.relay import PairingSettings
from touchlamp.protocol import PairAction, PairRequest, PairResponse
from touchlamp.server.pairing import CODE_ALPHABET, Pairing, PairOutcome, bad_request
from touchlamp.server.store import Store


def make_pairing(store: Store, clock: FakeClock, **settings: float) -> Pairing:
    return Pairing(store=store, settings=PairingSettings(**settings), clock=clock)


def create(pairing: Pairing, lamp_id: str) -> str:
    outcome = pairing.handle(lamp_id, PairRequest(action=PairAction.CREATE))
    assert outcome.response.ok, outcome.response.reason
    assert outcome.response.code is not None
    return outcome.response.code


def join(pairing: Pairing, lamp_id: str, code: str) -> PairOutcome:
    return pairing.handle(lamp_id, PairRequest(action=PairAction.JOIN, code=code))


def refused(outcome: PairOutcome, error: str) -> PairResponse:
    response = outcome.response
    assert not response.ok
    assert response.error == error, response
    assert response.reason
    return response


def test_create_then_join_pairs_the_two_lamps(store: Store) -> None:
    clock = FakeClock()
    add_lamps(store, "lamp-a", "lamp-b")
    pairing = make_pairing(store, clock)
    outcome = pairing.handle("lamp-a", PairRequest(action=PairAction.CREATE))
    response = outcome.response
    assert response.ok
    assert response.code is not None
    assert len(response.code) == 8
    assert set(response.code) <= set(CODE_ALPHABET)
    assert response.expires_at == round((clock.now + 600) * 1000)
    assert response.members == ["lamp-a"]
    assert outcome.changed == ("lamp-a",)  # it now has a group (of one)

    joined = join(pairing, "lamp-b", response.code)
    assert joined.response.ok
    assert joined.response.members == ["lamp-a", "lamp-b"]
    assert set(joined.changed) == {"lamp-a", "lamp-b"}
    assert [lamp.id for lamp in group_of(store, "lamp-b").members] == ["lamp-a", "lamp-b"]


def test_the_code_alphabet_has_no_look_alikes() -> None:
    assert not set(CODE_ALPHABET) & set("0O1IL")
    assert len(CODE_ALPHABET) == 30


def test_codes_are_typed_forgivingly(store: Store) -> None:
    add_lamps(store, "lamp-a", "lamp-b")
    pairing = make_pairing(store, FakeClock())
    code = create(pairing, "lamp-a")
    typed = f" {code[:4].lower()}-{code[4:]} "
    # The wire allows only [A-Za-z0-9-]; spaces are trimmed by the lamp, dashes by the relay.
    assert join(pairing, "lamp-b", typed.strip()).response.ok


def test_a_code_works_once(store: Store) -> None:
    add_lamps(store, "lamp-a", "lamp-b", "lamp-c")
    pairing = make_pairing(store, FakeClock())
    code = create(pairing, "lamp-a")
    assert join(pairing, "lamp-b", code).response.ok
    refused(join(pairing, "lamp-c", code), "bad-code")
    assert store.group_of("lamp-c") is None


def test_a_code_expires(store: Store) -> None:
    clock = FakeClock()
    add_lamps(store, "lamp-a", "lamp-b")
    pairing = make_pairing(store, clock, code_ttl_seconds=600)
    code = create(pairing, "lamp-a")
    clock.advance(600)
    response = refused(join(pairing, "lamp-b", code), "expired-code")
    assert "10 minutes" in (response.reason or "")


def test_a_code_just_before_expiry_still_works(store: Store) -> None:
    clock = FakeClock()
    add_lamps(store, "lamp-a", "lamp-b")
    pairing = make_pairing(store, clock, code_ttl_seconds=600)
    code = create(pairing, "lamp-a")
    clock.advance(599.9)
    assert join(pairing, "lamp-b", code).response.ok


def test_wrong_codes_lock_the_lamp_out_then_it_may_try_again(store: Store) -> None:
    clock = FakeClock()
    add_lamps(store, "lamp-a", "lamp-b")
    pairing = make_pairing(
        store, clock, lockout_failures=5, lockout_seconds=900, code_ttl_seconds=7200
    )
    code = create(pairing, "lamp-a")
    wrong = "".join("2" if c != "2" else "3" for c in code)
    for _ in range(5):
        refused(join(pairing, "lamp-b", wrong), "bad-code")
    # Locked out: even the right code is refused, and is not used up by the refusal.
    response = refused(join(pairing, "lamp-b", code), "locked-out")
    assert "15 minutes" in (response.reason or "")
    clock.advance(899)
    refused(join(pairing, "lamp-b", code), "locked-out")
    clock.advance(1)
    assert join(pairing, "lamp-b", code).response.ok


def test_impossible_codes_are_refused_without_counting_as_guesses(store: Store) -> None:
    add_lamps(store, "lamp-a", "lamp-b")
    pairing = make_pairing(store, FakeClock(), lockout_failures=2)
    code = create(pairing, "lamp-a")
    for typo in ("ABCD", "OOOOOOOO", "11111111", "ABCDEFGHJK"):
        response = refused(join(pairing, "lamp-b", typo), "bad-code")
        assert CODE_ALPHABET in (response.reason or "")
    assert join(pairing, "lamp-b", code).response.ok


def test_the_global_limit_stops_guessing_from_many_lamps(store: Store) -> None:
    clock = FakeClock()
    guessers = [f"lamp-g{index}" for index in range(4)]
    add_lamps(store, "lamp-a", "lamp-b", *guessers)
    pairing = make_pairing(
        store,
        clock,
        lockout_failures=5,
        global_failures=4,
        global_window_seconds=3600,
        code_ttl_seconds=7200,
    )
    code = create(pairing, "lamp-a")
    for guesser in guessers:
        refused(join(pairing, guesser, "ZZZZZZZZ"), "bad-code")
    # Nobody is locked out individually, but the relay as a whole now refuses joins.
    refused(join(pairing, "lamp-b", code), "busy")
    clock.advance(3600)
    assert join(pairing, "lamp-b", code).response.ok


def test_a_full_group_refuses_a_joiner_and_keeps_the_code(store: Store) -> None:
    add_lamps(store, "lamp-a", "lamp-b", "lamp-c")
    pairing = make_pairing(store, FakeClock(), max_group_size=2)
    first, second = create(pairing, "lamp-a"), create(pairing, "lamp-a")
    assert join(pairing, "lamp-b", first).response.ok
    refused(join(pairing, "lamp-c", second), "group-full")
    refused(pairing.handle("lamp-a", PairRequest(action=PairAction.CREATE)), "group-full")
    assert pairing.handle("lamp-b", PairRequest(action=PairAction.LEAVE)).response.ok
    assert join(pairing, "lamp-c", second).response.ok


def test_joining_your_own_group_is_refused_and_the_code_survives(store: Store) -> None:
    add_lamps(store, "lamp-a", "lamp-b")
    pairing = make_pairing(store, FakeClock())
    code = create(pairing, "lamp-a")
    refused(join(pairing, "lamp-a", code), "already-paired")
    assert join(pairing, "lamp-b", code).response.ok


def test_a_lamp_holds_a_few_live_codes_at_most(store: Store) -> None:
    clock = FakeClock()
    add_lamps(store, "lamp-a")
    pairing = make_pairing(store, clock, max_codes_per_lamp=3, code_ttl_seconds=600)
    for _ in range(3):
        create(pairing, "lamp-a")
    refused(pairing.handle("lamp-a", PairRequest(action=PairAction.CREATE)), "busy")
    clock.advance(600)
    create(pairing, "lamp-a")


def test_joining_moves_a_lamp_out_of_its_old_group(store: Store) -> None:
    add_lamps(store, "lamp-a", "lamp-b", "lamp-c", "lamp-d")
    store.create_group(["lamp-c", "lamp-d"], name="old", group_id="g-old")
    pairing = make_pairing(store, FakeClock())
    outcome = join(pairing, "lamp-c", create(pairing, "lamp-a"))
    assert outcome.response.ok
    # D lost a member, so its group state changed too.
    assert set(outcome.changed) == {"lamp-a", "lamp-c", "lamp-d"}
    assert [lamp.id for lamp in group_of(store, "lamp-d").members] == ["lamp-d"]


def test_leave_and_status(store: Store) -> None:
    add_lamps(store, "lamp-a", "lamp-b", group="home")
    pairing = make_pairing(store, FakeClock())
    status = pairing.handle("lamp-b", PairRequest(action=PairAction.STATUS)).response
    assert status.ok
    assert status.group == "home"
    assert status.members == ["lamp-a", "lamp-b"]
    left = pairing.handle("lamp-b", PairRequest(action=PairAction.LEAVE))
    assert left.response.ok
    assert set(left.changed) == {"lamp-a", "lamp-b"}
    status = pairing.handle("lamp-b", PairRequest(action=PairAction.STATUS)).response
    assert status.ok
    assert status.group is None
    assert status.members == []
    refused(pairing.handle("lamp-b", PairRequest(action=PairAction.LEAVE)), "not-paired")


def test_a_new_colour_reaches_the_whole_group(store: Store) -> None:
    add_lamps(store, "lamp-a", "lamp-b", group="home")
    pairing = make_pairing(store, FakeClock())
    outcome = pairing.handle(
        "lamp-a", PairRequest(action=PairAction.COLOR, color="#ABCDEF", name="Kitchen")
    )
    assert outcome.response.ok
    assert set(outcome.changed) == {"lamp-a", "lamp-b"}
    lamp = store.get_lamp("lamp-a")
    assert lamp is not None
    assert (lamp.color, lamp.name) == ("#abcdef", "Kitchen")
    refused(pairing.handle("lamp-a", PairRequest(action=PairAction.COLOR)), "bad-request")


def test_a_lamp_the_relay_does_not_know_is_told_to_enroll(store: Store) -> None:
    pairing = make_pairing(store, FakeClock())
    response = refused(
        pairing.handle("lamp-x", PairRequest(action=PairAction.CREATE)), "not-enrolled"
    )
    assert "relay lamp add" in (response.reason or "")


def test_join_without_a_code_says_what_is_missing(store: Store) -> None:
    add_lamps(store, "lamp-a")
    pairing = make_pairing(store, FakeClock())
    refused(pairing.handle("lamp-a", PairRequest(action=PairAction.JOIN)), "bad-request")


@pytest.mark.parametrize(
    ("payload", "action"),
    [
        (b'{"action": "join", "code": "!!"}', PairAction.JOIN),
        (b'{"action": "dance"}', PairAction.STATUS),
        (b"\xff\xfe", PairAction.STATUS),
        (b"[" * 10_000, PairAction.STATUS),
    ],
)
def test_an_undecodable_request_is_answered_as_a_bad_request(
    payload: bytes, action: PairAction
) -> None:
    response = bad_request(payload, "not a valid PairRequest")
    assert response.action is action
    assert response.error == "bad-request"
    assert not response.ok
