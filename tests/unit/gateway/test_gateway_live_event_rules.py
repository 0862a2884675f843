"""The pure rules of ``GET /v1/events``: resuming from ``Last-Event-ID``, the type filter,
the subjects an organization's stream reads, the SSE frame and the per-organization bound;
and the stream body's pacing (keep-alives, credential checks, ending) with a fake clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from reelvault_common.messaging.topology import Topology
from reelvault_gateway.errors import ApiError
from reelvault_gateway.live_events import (
    KEEPALIVE_FRAME,
    VIDEO_EVENT_TYPES,
    EventStreamSettings,
    EventTail,
    StreamSlots,
    event_frame,
    event_stream,
    filter_subjects,
    requested_types,
    resume_after,
)

TOPOLOGY = Topology(namespace="rv")


@pytest.mark.parametrize(("given", "expected"), [
    (None, None), ("", None), ("  ", None), ("0", 0), ("42", 42), (" 7 ", 7),
    ("18446744073709551615", 18446744073709551615),
])
def test_last_event_id_is_a_sequence_or_nothing(given: str | None, expected: int | None) -> None:
    assert resume_after(given) == expected


@pytest.mark.parametrize("given", ["-1", "1.5", "abc", "12abc", "\uff11\uff12", "1" * 21])
def test_anything_else_as_last_event_id_is_a_400(given: str) -> None:
    with pytest.raises(ApiError) as info:
        resume_after(given)
    assert (info.value.status_code, info.value.code) == (400, "invalid_last_event_id")


def test_types_are_known_video_event_types() -> None:
    assert requested_types(None) == frozenset()
    assert requested_types(" video.completed, video.failed ,") == {"video.completed",
                                                                   "video.failed"}
    assert {"video.requested", "video.stored", "video.failed"} <= VIDEO_EVENT_TYPES
    for bad in ("video.nope", "org.quota.warning", "video.>", "*"):
        with pytest.raises(ApiError) as info:
            requested_types(f"video.completed,{bad}")
        assert info.value.status_code == 422


def test_an_organization_reads_only_its_own_subjects() -> None:
    assert filter_subjects(TOPOLOGY, "acme", frozenset()) == ["rv.events.acme.video.>"]
    assert filter_subjects(TOPOLOGY, "acme", frozenset({"video.failed", "video.stored"})) == [
        "rv.events.acme.video.failed", "rv.events.acme.video.stored"]


def test_a_frame_carries_sequence_type_and_json_on_single_lines() -> None:
    frame = event_frame(1042, "video.failed", b'{"message": "a\\nb"}')
    assert frame == b'event: video.failed\ndata: {"message": "a\\nb"}\nid: 1042\n\n'
    # Raw line breaks (never in compact JSON, but never trusted) become data lines.
    assert event_frame(1, "video.failed", b"{\n}").count(b"data: ") == 2


def test_slots_bound_each_organization_separately() -> None:
    slots = StreamSlots(2)
    assert slots.take("acme") and slots.take("acme")
    assert not slots.take("acme")
    assert slots.take("globex")
    slots.give_back("acme")
    assert slots.take("acme")
    slots.give_back("acme")
    slots.give_back("acme")
    assert slots.count("acme") == 0


class Msg:
    def __init__(self, subject: str, seq: int, data: bytes) -> None:
        self.subject, self.data = subject, data
        self.metadata: Any = type("M", (), {"sequence": type("S", (), {"stream": seq})()})()


class FakeLive:
    def __init__(self, limits: EventStreamSettings) -> None:
        self.limits = limits
        self.slots = StreamSlots(5)
        self.ended: list[EventTail] = []
        self.closing = False

    def is_current(self, tail: EventTail) -> bool:
        return not tail.stopped and not self.closing

    async def end(self, tail: EventTail) -> None:
        tail.stop()
        self.ended.append(tail)


async def test_the_body_sends_events_keeps_alive_rechecks_and_gives_everything_back() -> None:
    limits = EventStreamSettings(events_keepalive_s=0.05, events_recheck_s=0.12,
                                 events_retry_ms=1500)
    live = FakeLive(limits)
    assert live.slots.take("acme")
    tail = EventTail(prefix="rv.events.acme.", generation=0)
    checks: list[bool] = []

    async def still_allowed() -> bool:
        checks.append(True)
        return len(checks) < 2  # the second check finds the key revoked

    await tail.deliver(Msg("rv.events.acme.video.stored", 7, b"{}"))  # type: ignore[arg-type]
    await tail.deliver(Msg("rv.events.globex.video.stored", 8, b"{}"))  # type: ignore[arg-type]
    frames = [frame async for frame in event_stream(live, tail, "acme", still_allowed)]  # type: ignore[arg-type]
    assert frames[0].startswith(b": connected\n") and b"retry: 1500" in frames[0]
    assert frames[1] == b"event: video.stored\ndata: {}\nid: 7\n\n"
    assert all(b"globex" not in f and b"id: 8" not in f for f in frames)
    assert KEEPALIVE_FRAME in frames
    assert len(checks) == 2
    assert live.ended == [tail] and live.slots.count("acme") == 0


async def test_the_body_ends_when_its_tail_is_stopped() -> None:
    live = FakeLive(EventStreamSettings(events_keepalive_s=10, events_recheck_s=10))
    live.slots.take("acme")
    tail = EventTail(prefix="rv.events.acme.", generation=0)

    async def allowed() -> bool:
        return True

    body = event_stream(live, tail, "acme", allowed)  # type: ignore[arg-type]
    assert (await anext(body)).startswith(b": connected")
    waiting = asyncio.ensure_future(anext(body))
    await asyncio.sleep(0.05)
    tail.stop()  # what a shutdown or a lost connection does
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 1)
    assert live.ended == [tail] and live.slots.count("acme") == 0
