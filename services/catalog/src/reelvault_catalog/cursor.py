"""Opaque list cursors: the (created_at, id) of the last row a page returned.

Lists are newest first, ordered by ``(created_at DESC, id DESC)``; the next page starts strictly
after the cursor's position, so rows inserted meanwhile never make a page repeat or skip one.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime

_SEPARATOR = "|"


class InvalidCursor(ValueError):
    """The client sent a cursor this catalog did not make."""


def encode_cursor(created_at: datetime, video_id: uuid.UUID) -> str:
    if created_at.tzinfo is None:
        raise ValueError("cursor timestamps must be timezone-aware")
    raw = f"{created_at.isoformat()}{_SEPARATOR}{video_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
        stamp, _, ident = raw.partition(_SEPARATOR)
        created_at = datetime.fromisoformat(stamp)
        video_id = uuid.UUID(ident)
    except (ValueError, binascii.Error, UnicodeError):
        raise InvalidCursor("malformed cursor") from None
    if created_at.tzinfo is None:
        raise InvalidCursor("malformed cursor")
    return created_at, video_id
