"""``Idempotency-Key`` on ``POST /v1/videos`` and ``POST /api/create-video`` against the real
NATS KV bucket and stream: a repeat gets the same video and requests nothing new, another body
under the key is a 409, keys are per client and kept >= 24 h, two racing requests make one
video, and a publish that fails after the key was reserved is finished by the retry. A catalog
double answers the key lookups and quota reservations."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_harness import RunningGateway, StreamProbe, gateway_settings, run_gateway
from nats.js.api import PubAck
from pydantic import BaseModel
from reelvault_common.contracts.events import VideoRequested
from reelvault_common.contracts.tenancy import public_id_of
from reelvault_common.messaging.topology import Topology
from reelvault_gateway.broker import BrokerUnavailable
from reelvault_gateway.idempotency import IdempotencyRecord, client_identity, scope_of

from tests.support.gateway_fakes import CatalogDouble, ServedDouble

pytestmark = pytest.mark.integration

BODY = {"prompt": "a lighthouse, once", "model": "sora-2", "seconds": "4", "size": "720x1280"}


@pytest.fixture
async def gateway(
    nats_url: str, namespace: str, tmp_path: Path, served: ServedDouble, key: str
) -> AsyncIterator[RunningGateway]:
    # No catalog here: answer right after the stream's ack instead of waiting for it.
    settings = gateway_settings(nats_url, namespace, tmp_path, create_visibility_timeout_s=0)
    async with run_gateway(settings, key) as running:
        yield running


async def create(gateway: RunningGateway, key: str | None, body: dict[str, Any] = BODY,
                 path: str = "/v1/videos", **headers: str) -> httpx.Response:
    sent = {**headers, **({"Idempotency-Key": key} if key is not None else {})}
    return await gateway.client.post(path, json=body, headers=sent)


async def requested_ids(stream: StreamProbe) -> list[str]:
    return [e["video_id"] for e in await stream.all() if e["type"] == "video.requested"]


async def test_same_key_same_body_gives_the_same_video_and_requests_nothing_new(
    gateway: RunningGateway, stream: StreamProbe
) -> None:
    first = await create(gateway, "order-17")
    assert first.status_code == 202, first.text
    assert "idempotent-replayed" not in first.headers
    # The same request, spelled differently (seconds as a number, keys in another order).
    again = await create(gateway, "order-17", {"size": "720x1280", "seconds": 4,
                                               "prompt": BODY["prompt"]})
    assert again.status_code == 202, again.text
    assert again.json() == first.json()  # the same 202 body, byte for byte equal JSON
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    assert await requested_ids(stream) == [first.json()["id"]]

    other = await create(gateway, "order-18")
    assert other.status_code == 202
    assert other.json()["id"] != first.json()["id"]
    plain = await create(gateway, None)
    assert plain.json()["id"] not in (first.json()["id"], other.json()["id"])
    assert len(await requested_ids(stream)) == 3


async def test_same_key_with_another_body_is_a_409_and_requests_nothing(
    gateway: RunningGateway, stream: StreamProbe
) -> None:
    first = await create(gateway, "k-1")
    conflict = await create(gateway, "k-1", {**BODY, "prompt": "a different lighthouse"})
    assert conflict.status_code == 409, conflict.text
    error = conflict.json()["error"]
    assert error["code"] == "idempotency_key_reused"
    assert "different request" in error["message"]
    assert error["details"]["video_id"] == first.json()["id"]
    assert await requested_ids(stream) == [first.json()["id"]]


async def test_keys_are_per_api_key_and_organization(
    gateway: RunningGateway, stream: StreamProbe, double: CatalogDouble
) -> None:
    alice_key, bob_key, carol_key = double.add_key(), double.add_key(), double.add_key("acme")

    async def as_(key: str, body: dict[str, Any] = BODY) -> httpx.Response:
        return await create(gateway, "shared-key", body, Authorization=f"Bearer {key}")

    alice, bob, carol = await as_(alice_key), await as_(bob_key), await as_(carol_key)
    alice_again = await as_(alice_key)
    assert {a.status_code for a in (alice, bob, carol, alice_again)} == {202}
    assert len({alice.json()["id"], bob.json()["id"], carol.json()["id"]}) == 3
    assert alice_again.json()["id"] == alice.json()["id"]
    assert carol.json()["org"] == "acme"
    # Bob's record under the key is his own: another body is a conflict for him only.
    assert (await as_(bob_key, {**BODY, "prompt": "bob's"})).status_code == 409
    assert len(await requested_ids(stream)) == 3


async def test_the_seed_route_takes_the_key_too(gateway: RunningGateway,
                                                stream: StreamProbe) -> None:
    body = {"prompt": "a seed-style request"}
    first = await create(gateway, "seed-1", body, path="/api/create-video")
    again = await create(gateway, "seed-1", body, path="/api/create-video")
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert await requested_ids(stream) == [first.json()["id"]]


async def test_two_racing_identical_requests_make_one_video(
    gateway: RunningGateway, stream: StreamProbe
) -> None:
    answers = await asyncio.gather(*(create(gateway, "race-1") for _ in range(8)))
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(a.headers.get("idempotent-replayed") != "true" for a in answers) == 1
    assert len(await requested_ids(stream)) == 1


async def test_keys_are_kept_at_least_a_day_and_hold_a_hash_of_the_body(
    gateway: RunningGateway
) -> None:
    first = await create(gateway, "kept")
    link = gateway.app.state.context.broker
    bucket = link.idempotency_bucket()
    status = await bucket.status()
    assert status.bucket == Topology(namespace=gateway.settings.namespace).idempotency_bucket
    assert status.ttl is not None and status.ttl >= 24 * 3600
    [key] = [k for k in await bucket.keys()]
    entry = await bucket.get(key)
    record = IdempotencyRecord.from_bytes(entry.value or b"")
    assert record.state == "done"
    assert str(record.video_id) == first.json()["id"]
    assert len(record.fingerprint) == 64 and BODY["prompt"] not in record.fingerprint
    assert gateway.key is not None
    public_id = public_id_of(gateway.key)
    assert public_id is not None
    assert key == scope_of(client_identity("default", public_id), "kept")


async def test_a_malformed_key_is_a_400(gateway: RunningGateway, stream: StreamProbe) -> None:
    for bad in ("", "has space", "x" * 256):
        answer = await create(gateway, bad)
        assert answer.status_code == 400, (bad, answer.text)
        assert answer.json()["error"]["code"] == "invalid_idempotency_key"
    assert await stream.count() == 0


class FlakyEvents:
    """The gateway's event sink, failing the first publish: before it reaches the stream
    (``landed=False``) or after (the stream has it, the ack was lost: ``landed=True``)."""

    def __init__(self, real: Any, *, landed: bool) -> None:
        self.real = real
        self.landed = landed
        self.failures = 1

    async def publish(self, event: BaseModel) -> PubAck:
        if self.failures:
            self.failures -= 1
            if self.landed:
                await self.real.publish(event)
            raise BrokerUnavailable("simulated: no ack")
        return await self.real.publish(event)  # type: ignore[no-any-return]


@pytest.mark.parametrize("landed", [False, True])
async def test_a_publish_failing_after_the_key_was_reserved_is_finished_by_the_retry(
    gateway: RunningGateway, stream: StreamProbe, double: CatalogDouble, landed: bool
) -> None:
    context = gateway.app.state.context
    context.events = FlakyEvents(context.events, landed=landed)
    failed = await create(gateway, "flaky-1")
    assert failed.status_code == 503, failed.text
    # The key is reserved (pending) and names its video, whether or not the stream has it.
    assert len(await requested_ids(stream)) == (1 if landed else 0)

    retried = await create(gateway, "flaky-1")
    assert retried.status_code == 202, retried.text
    video_id = retried.json()["id"]
    # Exactly one request in the stream: republished when it was missing, deduplicated
    # (same event id, same Nats-Msg-Id) when it had landed.
    assert await requested_ids(stream) == [video_id]
    event, headers = await stream.last("video.requested")
    assert isinstance(event, VideoRequested)
    assert headers["Nats-Msg-Id"] == str(event.event_id)
    assert (await create(gateway, "flaky-1")).json() == retried.json()
    assert len(await requested_ids(stream)) == 1
    # The quota counted the video once, and kept it through the failure (no release).
    assert double.reserved["default"] == {uuid.UUID(video_id)}
    assert double.released == []


class CountingStore:
    """The real store, counting its KV round trips."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls: list[str] = []

    async def reserve(self, scope: str, record: IdempotencyRecord) -> int | None:
        self.calls.append("reserve")
        return await self.real.reserve(scope, record)  # type: ignore[no-any-return]

    async def read(self, scope: str) -> Any:
        self.calls.append("read")
        return await self.real.read(scope)

    async def complete(self, scope: str, record: IdempotencyRecord, *, last: int) -> bool:
        self.calls.append("complete")
        return await self.real.complete(scope, record, last=last)  # type: ignore[no-any-return]


async def test_a_new_key_costs_a_reservation_and_its_completion_only(
    gateway: RunningGateway, stream: StreamProbe
) -> None:
    context = gateway.app.state.context
    counting = context.idempotency = CountingStore(context.idempotency)
    first = await create(gateway, "cheap-1")
    assert first.status_code == 202, first.text
    assert counting.calls == ["reserve", "complete"]  # no read: the key was new
    counting.calls.clear()
    again = await create(gateway, "cheap-1")
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert counting.calls == ["reserve", "read"]  # taken: the record decides
    assert await requested_ids(stream) == [first.json()["id"]]
