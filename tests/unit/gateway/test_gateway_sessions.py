"""Session cookies: signed with the session secret, refused when tampered with, signed with
another secret or expired; the Set-Cookie attributes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from reelvault_gateway.sessions import (
    COOKIE_NAME,
    SessionClaim,
    SessionSigner,
    cleared_cookie,
    session_cookie,
    session_may_write,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
KEY_ID = "0123456789abcdef"
SIGNER = SessionSigner(b"a session secret of some length")


def test_a_cookie_round_trips() -> None:
    ends = NOW + timedelta(hours=2)
    value = SIGNER.issue(KEY_ID, ends)
    assert value.startswith(f"v1.{KEY_ID}.")
    assert SIGNER.read(value, NOW) == SessionClaim(KEY_ID, ends)


def test_an_expired_cookie_is_refused() -> None:
    value = SIGNER.issue(KEY_ID, NOW + timedelta(seconds=10))
    assert SIGNER.read(value, NOW + timedelta(seconds=9)) is not None
    assert SIGNER.read(value, NOW + timedelta(seconds=10)) is None
    assert SIGNER.read(value, NOW + timedelta(days=1)) is None


def _flip(text: str, index: int) -> str:
    swapped = "1" if text[index] != "1" else "2"
    return text[:index] + swapped + text[index + 1:]


def test_tampering_with_any_part_is_refused() -> None:
    value = SIGNER.issue(KEY_ID, NOW + timedelta(hours=1))
    _, key_id, expires, signature = value.split(".")
    longer = str(int(expires) + 86400)
    other_key = "fedcba9876543210"
    for tampered in (
        f"v1.{other_key}.{expires}.{signature}",  # another key
        f"v1.{key_id}.{longer}.{signature}",  # a longer life
        f"v1.{key_id}.{expires}.{_flip(signature, 5)}",
        f"v2.{key_id}.{expires}.{signature}",
        f"v1.{key_id}.{expires}",
        f"v1.{key_id}.{expires}.{signature}.x",
        value + "A",
        "",
        "garbage",
        "v1." + "é" * 16 + f".{expires}.{signature}",
        "v1." + key_id + ".9" * 200,
    ):
        assert SIGNER.read(tampered, NOW) is None, tampered
    assert SessionSigner(b"another secret, another gateway").read(value, NOW) is None
    assert SIGNER.read(value, NOW) is not None


def test_a_far_future_expiry_cannot_crash_the_reader() -> None:
    # Even correctly signed, a timestamp beyond what a datetime holds is refused, not raised.
    body = f"v1.{KEY_ID}.999999999999"
    value = f"{body}.{SIGNER._sign(body)}"
    assert SIGNER.read(value, NOW) is None


@pytest.mark.parametrize("secure", [False, True])
def test_cookie_attributes(secure: bool) -> None:
    header = session_cookie("v1.x", 3600, secure=secure)
    parts = header.split("; ")
    assert parts[0] == f"{COOKIE_NAME}=v1.x"
    assert {"HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=3600"} <= set(parts)
    assert ("Secure" in parts) is secure
    assert "Domain" not in header  # host-only
    cleared = cleared_cookie(secure=secure)
    assert cleared.startswith(f"{COOKIE_NAME}=;") and "Max-Age=0" in cleared


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", True),  # the public URL and the host
        ("HTTP://127.0.0.1:8000", None, True),  # the public URL, spelled otherwise
        ("https://videos.example", "videos.example", True),  # the host, behind a proxy
        ("https://videos.example:443", "videos.example", True),
        ("http://videos.example", "videos.example:80", True),
        (None, "127.0.0.1:8000", False),  # no Origin: not a browser's same-origin write
        ("null", "127.0.0.1:8000", False),  # sandboxed frames, file: pages
        ("https://evil.example", "videos.example", False),
        ("https://evil.videos.example", "videos.example", False),  # a sibling: same site
        ("http://127.0.0.1:8001", "127.0.0.1:8000", False),  # another port, another origin
        ("ftp://127.0.0.1:8000", "127.0.0.1:8000", False),
        ("http://[::1", "127.0.0.1:8000", False),  # garbage
    ],
)
def test_a_session_makes_changes_only_from_the_gateways_own_pages(
    origin: str | None, host: str | None, allowed: bool
) -> None:
    assert session_may_write(origin, host, "http://127.0.0.1:8000") is allowed
