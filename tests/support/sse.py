"""A small Server-Sent Events reader for tests: parses ``text/event-stream`` as the HTML
standard says (fields ``id``, ``event``, ``data``, comments) from an httpx streaming response,
in a background task, so a test can wait for events with a deadline."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass(frozen=True)
class SseEvent:
    id: str | None
    event: str | None
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


_END = object()


@dataclass
class SseReader:
    response: httpx.Response
    comments: list[str] = field(default_factory=list)
    closed: bool = False
    _queue: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    _comment_seen: asyncio.Event = field(default_factory=asyncio.Event)
    _ended: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def status(self) -> int:
        return self.response.status_code

    async def pump(self) -> None:
        lines: list[str] = []
        try:
            async for line in self.response.aiter_lines():
                if line:
                    lines.append(line)
                    continue
                self._dispatch(lines)
                lines = []
        except (httpx.HTTPError, asyncio.CancelledError):
            pass
        finally:
            self.closed = True
            self._ended.set()
            self._queue.put_nowait(_END)
            self._comment_seen.set()

    def _dispatch(self, lines: list[str]) -> None:
        event_id, event, data = None, None, []
        for line in lines:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                self.comments.append(value)
                self._comment_seen.set()
            elif name == "id":
                event_id = value
            elif name == "event":
                event = value
            elif name == "data":
                data.append(value)
        if data:
            self._queue.put_nowait(SseEvent(event_id, event, "\n".join(data)))

    async def events(
        self, count: int, timeout_s: float = 10.0, *, allow_fewer: bool = False
    ) -> list[SseEvent]:
        """The next ``count`` events; fewer only with ``allow_fewer`` (deadline or end)."""
        got: list[SseEvent] = []
        deadline = time.monotonic() + timeout_s
        while len(got) < count:
            left = deadline - time.monotonic()
            try:
                item = await asyncio.wait_for(self._queue.get(), max(left, 0.001))
            except TimeoutError:
                break
            if item is _END:
                self._queue.put_nowait(_END)
                break
            assert isinstance(item, SseEvent)
            got.append(item)
        assert allow_fewer or len(got) == count, f"{len(got)} of {count} events: {got}"
        return got

    async def comment(self, text: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while text not in self.comments:
            self._comment_seen.clear()
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return text in self.comments
            try:
                await asyncio.wait_for(self._comment_seen.wait(), left)
            except TimeoutError:
                return text in self.comments
        return True

    async def ended(self, timeout_s: float) -> bool:
        """Did the server end the stream within ``timeout_s``?"""
        with suppress(TimeoutError):
            await asyncio.wait_for(self._ended.wait(), timeout_s)
        return self.closed


@asynccontextmanager
async def open_sse(
    client: httpx.AsyncClient, path: str, headers: Mapping[str, str],
    *, retry_429_s: float = 0.0,
) -> AsyncIterator[SseReader]:
    """An open event stream (status 200, else an assertion with the body); ``retry_429_s``:
    keep asking that long while the answer is 429."""
    deadline = time.monotonic() + retry_429_s
    timeout = httpx.Timeout(10.0, read=60.0)
    while True:
        async with client.stream("GET", path, headers=dict(headers), timeout=timeout) as answer:
            if answer.status_code == 429 and time.monotonic() < deadline:
                await answer.aread()
                await asyncio.sleep(0.1)
                continue
            if answer.status_code != 200:
                await answer.aread()
                raise AssertionError(f"GET {path}: {answer.status_code} {answer.text}")
            assert answer.headers["content-type"].startswith("text/event-stream")
            reader = SseReader(answer)
            pump = asyncio.create_task(reader.pump())
            try:
                yield reader
            finally:
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)
            return


def stream_opens(client: httpx.Client, path: str) -> httpx.Response:
    """GET an event stream and leave after its first bytes: the answer (an error read whole,
    or a 200 whose stream was open), for tests that only need to know whether it opens."""
    with client.stream("GET", path, timeout=httpx.Timeout(30.0)) as answer:
        if answer.status_code == 200:
            next(answer.iter_raw(), b"")
        else:
            answer.read()
    return answer
