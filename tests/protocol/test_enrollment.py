"""Enrollment tokens: what `relay lamp add` prints, `device enroll` reads back."""

from __future__ import annotations

import pytest

from touchlamp.protocol import Enrollment, ProtocolError, decode_token, encode_token

ENROLLMENT = Enrollment(
    lamp="lamp-a", password="p" * 22, host="mqtt.example.net", port=8883, tls=True, ca="PEM"
)


def test_round_trip_is_one_line() -> None:
    token = encode_token(ENROLLMENT)
    assert token.startswith("tl1.")
    assert "\n" not in token
    assert " " not in token
    assert decode_token(f"  {token}\n") == ENROLLMENT


@pytest.mark.parametrize(
    ("token", "complaint"),
    [
        ("hello", "must start with 'tl1.'"),
        ("tl1.!!!", "damaged"),
        ("tl1.e30", "lamp: Field required"),
        ("tl1." + "A" * 20_000, "too long"),
    ],
)
def test_bad_tokens_say_what_is_wrong(token: str, complaint: str) -> None:
    with pytest.raises(ProtocolError, match=complaint):
        decode_token(token)


def test_truncated_token_is_refused() -> None:
    token = encode_token(ENROLLMENT)
    with pytest.raises(ProtocolError):
        decode_token(token[: len(token) // 2])
