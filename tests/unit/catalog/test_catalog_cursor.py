"""List cursors: opaque, URL-safe, round-trip exactly, and refuse anything they did not make."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from reelvault_catalog.cursor import InvalidCursor, decode_cursor, encode_cursor


@pytest.mark.parametrize("created_at", [
    datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    datetime(1999, 12, 31, 23, 59, 59, 1, tzinfo=timezone(timedelta(hours=-7))),
])
def test_round_trip_is_exact_to_the_microsecond(created_at: datetime) -> None:
    video_id = uuid.uuid4()
    cursor = encode_cursor(created_at, video_id)
    assert decode_cursor(cursor) == (created_at, video_id)


def test_cursor_is_url_safe_and_unpadded() -> None:
    cursor = encode_cursor(datetime.now(UTC), uuid.uuid4())
    assert cursor.isascii()
    assert not set(cursor) & set("+/=")


def test_naive_timestamps_cannot_make_a_cursor() -> None:
    with pytest.raises(ValueError, match="timezone"):
        encode_cursor(datetime(2026, 1, 1), uuid.uuid4())


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [
    "",
    "not a cursor!",
    "a",
    "ÿÿÿ",
    _b64("2026-01-01T00:00:00+00:00"),  # no id
    _b64("2026-01-01T00:00:00+00:00|not-a-uuid"),
    _b64(f"yesterday|{uuid.uuid4()}"),
    _b64(f"2026-01-01T00:00:00|{uuid.uuid4()}"),  # naive timestamp
    base64.urlsafe_b64encode(b"\xff\xfe\xfd").decode(),  # not UTF-8
])
def test_malformed_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor)
