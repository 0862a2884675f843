"""Waiting for the catalog to show a video just requested, without polling it.

The catalog announces each new row on ``Topology.catalog_recorded`` (core NATS) right after its
commit. A create registers its video here before publishing, then waits for that word, up to
``create_visibility_timeout_s``. The word is a hint (at most once): when it does not come, one
last look at the catalog decides, and a slow catalog never fails the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator


class RecordedWatch:
    def __init__(self) -> None:
        self._waiting: dict[uuid.UUID, asyncio.Future[None]] = {}

    @contextlib.contextmanager
    def expect(self, video_id: uuid.UUID) -> Iterator[asyncio.Future[None]]:
        """Register before publishing (the word may come back before the publish's ack)."""
        future = self._waiting.get(video_id)
        if future is None or future.done():
            future = self._waiting[video_id] = asyncio.get_running_loop().create_future()
        try:
            yield future
        finally:
            if self._waiting.get(video_id) is future:
                del self._waiting[video_id]

    def recorded(self, video_id: uuid.UUID) -> None:
        future = self._waiting.get(video_id)
        if future is not None and not future.done():
            future.set_result(None)

    def on_message(self, data: bytes) -> None:
        try:
            video_id = uuid.UUID(data.decode())
        except (ValueError, UnicodeDecodeError):
            return
        self.recorded(video_id)

    def __len__(self) -> int:
        return len(self._waiting)
