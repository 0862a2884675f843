"""Stand-ins for the gateway's adapters (event sink, broker health) and a double of the catalog's
request/reply contract (videos, keys, quotas, webhook endpoints), in-process for unit tests or
served over NATS for integration tests; image bytes in every format."""

from __future__ import annotations

import base64
import io
import random
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import PubAck
from PIL import Image
from pydantic import BaseModel, ValidationError
from reelvault_common.contracts.catalog import (
    RPC_OF,
    ApiKeyInfo,
    CatalogErrorCode,
    CatalogStats,
    CreatedWebhookEndpoint,
    CreateWebhookEndpoint,
    DeletedVideo,
    DeleteVideo,
    DeleteWebhookEndpoint,
    GetStats,
    GetUsage,
    GetVideo,
    GetWebhookEndpoint,
    KeyAuth,
    ListVideos,
    ListWebhookDeliveries,
    ListWebhookEndpoints,
    LookupKey,
    QuotaExceededInfo,
    Release,
    ReplayWebhookDelivery,
    Reserve,
    RpcErrorBody,
    RpcReply,
    UsageItem,
    UsageReport,
    VideoPage,
    VideoRecord,
    WebhookDeliveryInfo,
    WebhookEndpointInfo,
    WebhookEventType,
)
from reelvault_common.contracts.tenancy import (
    DEFAULT_ORG,
    DEFAULT_SCOPES,
    Scope,
    generate_key,
    public_id_of,
)
from reelvault_common.messaging.topology import Topology
from reelvault_common.storage import ObjectStorage
from reelvault_common.storage.filesystem import FilesystemStorage
from reelvault_common.storage.layout import Buckets, thumbnail_key, video_key
from reelvault_gateway.auth import Authenticator
from reelvault_gateway.broker import BrokerUnavailable
from reelvault_gateway.catalog import NatsCatalogClient
from reelvault_gateway.context import GatewayContext
from reelvault_gateway.flags import FixedFlags
from reelvault_gateway.idempotency import IdempotencyRecord
from reelvault_gateway.key_cache import KeyCache
from reelvault_gateway.sessions import SessionSigner
from reelvault_gateway.settings import GatewaySettings
from reelvault_gateway.webhook_endpoints import WebhookEndpointsClient


def image_bytes(fmt: str, width: int = 32, height: int = 24, color: Any = (10, 120, 200)) -> bytes:
    buffer = io.BytesIO()
    mode = "P" if fmt == "GIF" else "RGB"
    Image.new(mode, (width, height), color if mode == "RGB" else 3).save(buffer, format=fmt)
    return buffer.getvalue()


def noisy_image_bytes(fmt: str, width: int = 64, height: int = 64, seed: int = 1) -> bytes:
    """An image that does not compress away (so cutting it in half really truncates it)."""
    pixels = random.Random(seed).randbytes(width * height * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def make_record(**overrides: Any) -> VideoRecord:
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "id": uuid.uuid4(),
        "status": "queued",
        "progress": 0,
        "prompt": "a cat",
        "model": "sora-2",
        "seconds": "4",
        "size": "720x1280",
        "org": "default",
        "image1_url": None,
        "image2_url": None,
        "reference_image_keys": [],
        "provider": None,
        "provider_job_id": None,
        "video_url": None,
        "openai_url": None,
        "video_bucket": None,
        "video_key": None,
        "thumbnail_url": None,
        "thumbnail_bucket": None,
        "thumbnail_key": None,
        "bytes": None,
        "sha256": None,
        "error_stage": None,
        "error_code": None,
        "error_message": None,
        "expires_at": None,
        "stored_at": None,
        "created_at": now,
        "updated_at": now,
    }
    fields.update(overrides)
    return VideoRecord(**fields)


def _error(code: CatalogErrorCode, message: str) -> RpcReply:
    return RpcReply(ok=False, error=RpcErrorBody(code=code, message=message))


# The catalog's default ``max_endpoints_per_org``.
WEBHOOK_ENDPOINTS_PER_ORG = 20


def _month_bounds(now: datetime) -> tuple[datetime, datetime]:
    start = datetime(now.year, now.month, 1, tzinfo=UTC)
    following = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    return start, following


@dataclass
class CatalogDouble:
    """The catalog's side of its request/reply contract, in memory: videos by organization,
    API keys, a ``videos_per_month`` quota per organization, webhook endpoints and their
    deliveries. ``answer`` takes a request message and gives the ``RpcReply`` the catalog
    would; it is served in-process (``LocalRequester``) or over NATS
    (``serve_catalog_double``)."""

    records: dict[uuid.UUID, VideoRecord] = field(default_factory=dict)
    keys: dict[str, KeyAuth] = field(default_factory=dict)
    # Organization -> videos per month (absent: no limit).
    limits: dict[str, int] = field(default_factory=dict)
    reserved: dict[str, set[uuid.UUID]] = field(default_factory=dict)
    released: list[uuid.UUID] = field(default_factory=list)
    lookups: int = 0
    # Deleted videos' tombstones: their reads answer not_found, as the catalog's do.
    tombstones: dict[uuid.UUID, DeletedVideo] = field(default_factory=dict)
    # Webhook endpoints (with their signing secrets) and their deliveries, by id. The catalog
    # records deliveries from the stream's events; here ``record_delivery`` stands for that.
    webhook_endpoints: dict[uuid.UUID, WebhookEndpointInfo] = field(default_factory=dict)
    webhook_secrets: dict[uuid.UUID, str] = field(default_factory=dict)
    webhook_deliveries: dict[uuid.UUID, WebhookDeliveryInfo] = field(default_factory=dict)
    max_webhook_endpoints: int = WEBHOOK_ENDPOINTS_PER_ORG
    # For the in-process requester: no answer at all, or an unexpected failure.
    down: bool = False
    failure: Exception | None = None

    def add_key(self, org: str = DEFAULT_ORG, scopes: Sequence[Scope] = DEFAULT_SCOPES,
                expires_at: datetime | None = None) -> str:
        """A new key of ``org``; the whole key (its secret)."""
        new = generate_key()
        info = ApiKeyInfo(id=uuid.uuid4(), public_id=new.public_id, org=org, name="test",
                          scopes=list(scopes), expires_at=expires_at,
                          created_at=datetime.now(UTC), last_used_at=None, revoked_at=None)
        self.keys[new.public_id] = KeyAuth(key=info, key_hash=new.key_hash)
        return new.key

    def revoke(self, key: str) -> str:
        """Revoke a key (whole key or public id); its public id."""
        public_id = public_id_of(key) or key
        auth = self.keys[public_id]
        revoked = auth.key.model_copy(update={"revoked_at": datetime.now(UTC)})
        self.keys[public_id] = auth.model_copy(update={"key": revoked})
        return public_id

    def answer(self, message: BaseModel) -> RpcReply:
        match message:
            case GetVideo(org=org, video_id=video_id):
                record = self.records.get(video_id)
                if record is None or record.org != org or video_id in self.tombstones:
                    return _error(CatalogErrorCode.NOT_FOUND, "no such video")
                return RpcReply(ok=True, video=record)
            case DeleteVideo():
                return self._delete(message)
            case ListVideos():
                return self._list(message)
            case GetStats():
                total = len(self.records)
                return RpcReply(ok=True, stats=CatalogStats(by_status={}, total=total,
                                                            stored_bytes=0))
            case LookupKey(public_id=public_id):
                self.lookups += 1
                found = self.keys.get(public_id)
                if found is None:
                    return _error(CatalogErrorCode.NOT_FOUND, "no such key")
                return RpcReply(ok=True, key_auth=found)
            case Reserve():
                return self._reserve(message)
            case Release(org=org, video_id=video_id):
                self.reserved.get(org, set()).discard(video_id)
                self.released.append(video_id)
                return RpcReply(ok=True)
            case GetUsage(org=org):
                return RpcReply(ok=True, usage=self._usage(org))
            case (CreateWebhookEndpoint() | ListWebhookEndpoints() | GetWebhookEndpoint()
                  | DeleteWebhookEndpoint() | ListWebhookDeliveries() | ReplayWebhookDelivery()):
                return self._webhooks(message)
        return _error(CatalogErrorCode.INVALID_REQUEST, f"{type(message).__name__}: not served")

    def _list(self, message: ListVideos) -> RpcReply:
        rows = sorted(self.records.values(), key=lambda r: (r.created_at, r.id), reverse=True)
        rows = [r for r in rows if r.org == message.org and r.id not in self.tombstones
                and (message.status is None or r.status == message.status)]
        start = 0
        if message.cursor is not None:
            ids = [str(r.id) for r in rows]
            if message.cursor not in ids:
                return _error(CatalogErrorCode.INVALID_CURSOR, "unknown cursor")
            start = ids.index(message.cursor) + 1
        page = rows[start : start + message.limit]
        more = start + message.limit < len(rows)
        cursor = str(page[-1].id) if more and page else None
        return RpcReply(ok=True, page=VideoPage(items=page, next_cursor=cursor))

    def _reserve(self, message: Reserve) -> RpcReply:
        mine = self.reserved.setdefault(message.org, set())
        limit = self.limits.get(message.org)
        if message.video_id in mine:
            return RpcReply(ok=True)  # idempotent per video id
        if limit is not None and len(mine) + 1 > limit:
            _, resets_at = _month_bounds(datetime.now(UTC))
            quota = QuotaExceededInfo(quota="videos_per_month", used=Decimal(len(mine)),
                                      limit=Decimal(limit), requested=Decimal(1),
                                      resets_at=resets_at)
            return RpcReply(ok=False, quota=quota, error=RpcErrorBody(
                code=CatalogErrorCode.QUOTA_EXCEEDED, message="videos_per_month used up"))
        mine.add(message.video_id)
        return RpcReply(ok=True)

    def _delete(self, message: DeleteVideo) -> RpcReply:
        """A tombstone, the same on every repeat (the catalog also cancels and announces)."""
        gone = self.tombstones.get(message.video_id)
        if gone is None:
            record = self.records.get(message.video_id)
            if record is None or record.org != message.org:
                return _error(CatalogErrorCode.NOT_FOUND, "no such video")
            gone = DeletedVideo(id=record.id, org=record.org, deleted_at=datetime.now(UTC),
                                deleted_by=message.deleted_by)
            self.tombstones[record.id] = gone
        if gone.org != message.org:
            return _error(CatalogErrorCode.NOT_FOUND, "no such video")
        return RpcReply(ok=True, deleted=gone)

    # --- webhook endpoints, as the catalog's ``WebhookRepository`` keeps them ------------------
    def record_delivery(self, endpoint_id: uuid.UUID,
                        event_type: WebhookEventType = "video.completed") -> WebhookDeliveryInfo:
        """A delivery to ``endpoint_id`` that gave up after a 500 (what a replay is for)."""
        now = datetime.now(UTC)
        delivery = WebhookDeliveryInfo(
            id=uuid.uuid4(), endpoint_id=endpoint_id, event_id=uuid.uuid4(),
            event_type=event_type, status="failed", attempts=8, last_attempt_at=now,
            last_response_code=500, last_error="HTTP 500", next_attempt_at=None,
            delivered_at=None, created_at=now)
        self.webhook_deliveries[delivery.id] = delivery
        return delivery

    def _endpoint(self, org: str, endpoint_id: uuid.UUID) -> WebhookEndpointInfo | None:
        found = self.webhook_endpoints.get(endpoint_id)
        return found if found is not None and found.org == org else None

    def _webhooks(self, message: BaseModel) -> RpcReply:
        match message:
            case CreateWebhookEndpoint():
                return self._create_endpoint(message)
            case ListWebhookEndpoints(org=org):
                mine = sorted((e for e in self.webhook_endpoints.values() if e.org == org),
                              key=lambda e: (e.created_at, e.id))
                return RpcReply(ok=True, webhook_endpoints=mine)
            case GetWebhookEndpoint(org=org, endpoint_id=endpoint_id):
                found = self._endpoint(org, endpoint_id)
                if found is None:
                    return _error(CatalogErrorCode.NOT_FOUND, "no such webhook endpoint")
                return RpcReply(ok=True, webhook_endpoint=found)
            case DeleteWebhookEndpoint(org=org, endpoint_id=endpoint_id):
                return self._delete_endpoint(org, endpoint_id)
            case ListWebhookDeliveries(org=org, endpoint_id=endpoint_id, limit=limit):
                if self._endpoint(org, endpoint_id) is None:
                    return _error(CatalogErrorCode.NOT_FOUND, "no such webhook endpoint")
                log = sorted((d for d in self.webhook_deliveries.values()
                              if d.endpoint_id == endpoint_id),
                             key=lambda d: (-d.created_at.timestamp(), d.id))
                return RpcReply(ok=True, webhook_deliveries=log[:limit])
            case ReplayWebhookDelivery():
                return self._replay(message)
        return _error(CatalogErrorCode.INVALID_REQUEST, f"{type(message).__name__}: not served")

    def _create_endpoint(self, message: CreateWebhookEndpoint) -> RpcReply:
        # The production deployment's rule (the double resolves no names: any https host is
        # taken as public).
        parts = urlsplit(message.url)
        if parts.scheme != "https" or not parts.hostname:
            return _error(CatalogErrorCode.INVALID_REQUEST, "url: the URL must be https")
        if parts.username is not None or parts.password is not None:
            return _error(CatalogErrorCode.INVALID_REQUEST,
                          "url: the URL must not carry credentials")
        if sum(e.org == message.org for e in self.webhook_endpoints.values()) >= (
                self.max_webhook_endpoints):
            return _error(CatalogErrorCode.INVALID_REQUEST,
                          f"an organization has at most {self.max_webhook_endpoints} "
                          "webhook endpoints")
        endpoint = WebhookEndpointInfo(
            id=uuid.uuid4(), org=message.org, url=message.url, description=message.description,
            event_types=list(dict.fromkeys(message.event_types)), enabled=True,
            disabled_reason=None, disabled_at=None, consecutive_failures=0,
            failing_since=None, created_at=datetime.now(UTC))
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        self.webhook_endpoints[endpoint.id] = endpoint
        self.webhook_secrets[endpoint.id] = secret
        return RpcReply(ok=True, created_webhook_endpoint=CreatedWebhookEndpoint(
            endpoint=endpoint, secret=secret))

    def _delete_endpoint(self, org: str, endpoint_id: uuid.UUID) -> RpcReply:
        found = self._endpoint(org, endpoint_id)
        if found is None:
            return _error(CatalogErrorCode.NOT_FOUND, "no such webhook endpoint")
        del self.webhook_endpoints[endpoint_id], self.webhook_secrets[endpoint_id]
        # Its delivery log goes with it.
        for delivery in [d for d in self.webhook_deliveries.values()
                         if d.endpoint_id == endpoint_id]:
            del self.webhook_deliveries[delivery.id]
        return RpcReply(ok=True, webhook_endpoint=found)

    def _replay(self, message: ReplayWebhookDelivery) -> RpcReply:
        endpoint = self._endpoint(message.org, message.endpoint_id)
        delivery = self.webhook_deliveries.get(message.delivery_id)
        if endpoint is None or delivery is None or delivery.endpoint_id != endpoint.id:
            return _error(CatalogErrorCode.NOT_FOUND, "no such webhook delivery")
        # Due now for one more attempt; replaying enables a disabled endpoint again.
        again = delivery.model_copy(update={"status": "pending",
                                            "next_attempt_at": datetime.now(UTC)})
        self.webhook_deliveries[again.id] = again
        self.webhook_endpoints[endpoint.id] = endpoint.model_copy(update={
            "enabled": True, "disabled_reason": None, "disabled_at": None,
            "consecutive_failures": 0, "failing_since": None})
        return RpcReply(ok=True, webhook_delivery=again)

    def _usage(self, org: str) -> UsageReport:
        start, resets_at = _month_bounds(datetime.now(UTC))
        limit = self.limits.get(org)
        item = UsageItem(quota="videos_per_month", used=Decimal(len(self.reserved.get(org, ()))),
                         limit=Decimal(limit) if limit is not None else None,
                         resets_at=resets_at)
        return UsageReport(org=org, period_start=start, items=[item])


TOPOLOGY = Topology(namespace="reelvault")
# What the gateway asks the catalog to authenticate and admit requests: a double answering only
# these stands for a system whose catalog's read side is down.
KEYS_AND_QUOTAS = ("keys.lookup", "usage.reserve", "usage.release")


def request_types(topology: Topology) -> dict[str, type[BaseModel]]:
    """Subject -> the request message it carries (the ping subject carries ``GetStats``)."""
    types = {topology.rpc(name): cls for cls, name in RPC_OF.items()}
    types[topology.rpc_ping] = GetStats
    return types


def reply_to(double: CatalogDouble, types: dict[str, type[BaseModel]], subject: str,
             payload: bytes) -> bytes:
    try:
        message = types[subject].model_validate_json(payload)
    except ValidationError:
        reply = _error(CatalogErrorCode.INVALID_REQUEST, "the request did not match its model")
    else:
        reply = double.answer(message)
    return reply.model_dump_json().encode()


class LocalRequester:
    """Carries the gateway's catalog requests to a ``CatalogDouble`` in-process (the bytes go
    through the same encoding as over NATS)."""

    def __init__(self, double: CatalogDouble, topology: Topology = TOPOLOGY) -> None:
        self.double = double
        self._types = request_types(topology)

    async def request(self, subject: str, payload: bytes, timeout_s: float) -> bytes:
        if self.double.failure is not None:
            raise self.double.failure
        if self.double.down:
            raise BrokerUnavailable("fake catalog is down")
        return reply_to(self.double, self._types, subject, payload)


def fake_webhook_endpoints(double: CatalogDouble) -> WebhookEndpointsClient:
    """The gateway's own webhook endpoints client, asking ``double`` without a broker (tests
    give it to an app with ``app.dependency_overrides[get_webhook_endpoints]``)."""
    return WebhookEndpointsClient(LocalRequester(double), TOPOLOGY, timeout_s=1.0)


class FakeCatalog(NatsCatalogClient):
    """The gateway's own catalog client, asking a ``CatalogDouble`` without a broker."""

    def __init__(self, double: CatalogDouble | None = None) -> None:
        self.double = double if double is not None else CatalogDouble()
        super().__init__(LocalRequester(self.double), TOPOLOGY, timeout_s=1.0)


@asynccontextmanager
async def serve_catalog_double(
    nats_url: str, namespace: str, double: CatalogDouble,
    rpcs: Collection[str] | None = None,
) -> AsyncIterator[ServedDouble]:
    """Answer the catalog's subjects of ``namespace`` from ``double`` over NATS (``rpcs``:
    only these request subjects' names, e.g. ``{"keys.lookup"}``; the ping is ``"ping"``)."""
    topology = Topology(namespace=namespace)
    types = request_types(topology)
    if rpcs is not None:
        types = {subject: cls for subject, cls in types.items()
                 if subject.removeprefix(f"{namespace}.catalog.") in rpcs}
    connection = await nats.connect(nats_url, max_reconnect_attempts=-1,
                                    reconnect_time_wait=0.2)

    async def on_request(msg: Msg) -> None:
        await msg.respond(reply_to(double, types, msg.subject, msg.data))

    try:
        for subject in types:
            await connection.subscribe(subject, cb=on_request)
        await connection.flush()
        yield ServedDouble(double, connection, topology)
    finally:
        await connection.close()


@dataclass
class ServedDouble:
    double: CatalogDouble
    connection: Client
    topology: Topology

    async def revoke(self, key: str, *, announce: bool = True) -> None:
        """Revoke, and (unless ``announce`` is False: a lost message) tell the gateways on
        ``Topology.key_changes`` as the catalog does."""
        public_id = self.double.revoke(key)
        if announce:
            await self.connection.publish(self.topology.key_changes, public_id.encode())
            await self.connection.flush()


@dataclass
class FakeEvents:
    published: list[BaseModel] = field(default_factory=list)
    down: bool = False
    # Called after a publish is "acked" (e.g. to project it into the fake catalog).
    on_publish: Any = None

    async def publish(self, event: BaseModel) -> PubAck:
        if self.down:
            raise BrokerUnavailable("fake broker is down")
        self.published.append(event)
        if self.on_publish is not None:
            self.on_publish(event)
        return PubAck(stream="FAKE", seq=len(self.published))


@dataclass
class FakeBroker:
    connected: bool = True


@dataclass
class MemoryIdempotencyStore:
    """``IdempotencyStore`` in a dict, with the KV bucket's compare-and-set rules."""

    records: dict[str, tuple[IdempotencyRecord, int]] = field(default_factory=dict)
    revision: int = 0

    async def reserve(self, scope: str, record: IdempotencyRecord) -> int | None:
        if scope in self.records:
            return None
        self.revision += 1
        self.records[scope] = (record, self.revision)
        return self.revision

    async def read(self, scope: str) -> tuple[IdempotencyRecord, int] | None:
        return self.records.get(scope)

    async def complete(self, scope: str, record: IdempotencyRecord, *, last: int) -> bool:
        current = self.records.get(scope)
        if current is None or current[1] != last:
            return False
        self.revision += 1
        self.records[scope] = (record, self.revision)
        return True


def fake_settings(tmp_path: Path, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "storage_dir": tmp_path / "storage",
        "public_base_url": "http://testserver",
        "create_visibility_timeout_s": 0.2,
        "max_upload_bytes": 200_000,
    }
    values.update(overrides)
    return GatewaySettings(**values)


async def fake_context(settings: GatewaySettings) -> GatewayContext:
    """Every adapter in memory; the catalog client and the authenticator are the gateway's
    own, over a ``CatalogDouble`` (``context.catalog.double``)."""
    buckets = Buckets.from_settings(settings)
    storage = FilesystemStorage(settings.storage_dir, settings.public_base_url, b"k" * 32)
    await storage.ensure_buckets(buckets.all())
    catalog = FakeCatalog()
    keys = KeyCache(catalog.lookup_key, settings.key_cache_ttl_s)
    return GatewayContext(
        settings=settings,
        buckets=buckets,
        storage=storage,
        events=FakeEvents(),
        catalog=catalog,
        broker=FakeBroker(),
        auth=Authenticator(keys, SessionSigner(b"s" * 32), settings.session_ttl_s),
        flags=FixedFlags(),
        idempotency=MemoryIdempotencyStore(),
    )


# --- every route, how it is scoped and what another organization gets ----------------------------
RouteCall = Callable[[httpx.AsyncClient, dict[str, str]], Coroutine[Any, Any, httpx.Response]]


@dataclass(frozen=True)
class ScopedRoute:
    """How to call one operation against an organization's things (``org_things``, plus
    ``key``: its key) and what it needs."""

    scope: str | None  # None: public
    call: RouteCall
    # With another organization's key: "404" (names the thing), "422" (references its
    # upload), "list" (must not show its things) or "own" (acts on the caller's own things).
    # "stream": a live stream, whose answer never ends: only its credentials are checked here
    # (the e2e tenancy test opens it for each organization).
    other_org: str = "own"


NEW_ENDPOINT = {"url": "https://hooks.example.com/reelvault", "event_types": ["video.completed"]}


def upload_files() -> dict[str, Any]:
    """The ``files`` of an image upload."""
    return {"file": ("b.png", image_bytes("PNG", 9, 9), "image/png")}


SCOPED_ROUTES: dict[tuple[str, str], ScopedRoute] = {
    ("post", "/v1/videos"): ScopedRoute("videos:write", lambda c, a: c.post(
        "/v1/videos", json={"prompt": "p", "reference_images": [a["upload_key"]]}), "422"),
    ("get", "/v1/videos"): ScopedRoute("videos:read", lambda c, a: c.get("/v1/videos"), "list"),
    ("get", "/v1/videos/{video_id}"): ScopedRoute(
        "videos:read", lambda c, a: c.get(f"/v1/videos/{a['video_id']}"), "404"),
    # A spare video: the owner's call deletes it, and the others need theirs.
    ("delete", "/v1/videos/{video_id}"): ScopedRoute(
        "videos:write", lambda c, a: c.delete(f"/v1/videos/{a['spare_video_id']}"), "404"),
    ("get", "/v1/videos/{video_id}/content"): ScopedRoute(
        "videos:read", lambda c, a: c.get(f"/v1/videos/{a['video_id']}/content"), "404"),
    ("post", "/v1/uploads"): ScopedRoute("videos:write", lambda c, a: c.post(
        "/v1/uploads", files=upload_files())),
    ("get", "/v1/usage"): ScopedRoute("videos:read", lambda c, a: c.get("/v1/usage")),
    ("get", "/v1/models"): ScopedRoute("videos:read", lambda c, a: c.get("/v1/models")),
    ("get", "/v1/events"): ScopedRoute("videos:read", lambda c, a: c.get("/v1/events"),
                                       "stream"),
    ("post", "/v1/videos/{video_id}/cancel"): ScopedRoute("videos:write", lambda c, a: c.post(
        f"/v1/videos/{a['generating_video_id']}/cancel"), "404"),
    ("post", "/api/upload"): ScopedRoute("videos:write", lambda c, a: c.post(
        "/api/upload", files=upload_files())),
    ("post", "/api/create-video"): ScopedRoute("videos:write", lambda c, a: c.post(
        "/api/create-video", json={"prompt": "p", "image1_url": a["upload_url"]}), "422"),
    ("post", "/api/check-video"): ScopedRoute("videos:read", lambda c, a: c.post(
        "/api/check-video", json={"id": a["video_id"]}), "404"),
    ("post", "/api/download-and-store-video"): ScopedRoute("videos:write", lambda c, a: c.post(
        "/api/download-and-store-video", json={"id": a["video_id"]}), "404"),
    ("get", "/api/list-videos"): ScopedRoute(
        "videos:read", lambda c, a: c.get("/api/list-videos"), "list"),
    ("get", "/healthz"): ScopedRoute(None, lambda c, a: c.get("/healthz")),
    ("get", "/readyz"): ScopedRoute(None, lambda c, a: c.get("/readyz")),
    ("get", "/"): ScopedRoute(None, lambda c, a: c.get("/")),
    ("get", "/files/{bucket}/{key}"): ScopedRoute(None, lambda c, a: c.get(a["thumbnail_path"])),
    ("post", "/v1/session"): ScopedRoute(
        None, lambda c, a: c.post("/v1/session", json={"key": a["key"]})),
    ("delete", "/v1/session"): ScopedRoute(None, lambda c, a: c.delete("/v1/session")),
    ("get", "/v1/session"): ScopedRoute("videos:read", lambda c, a: c.get("/v1/session")),
    ("post", "/v1/webhook-endpoints"): ScopedRoute("videos:write", lambda c, a: c.post(
        "/v1/webhook-endpoints", json=NEW_ENDPOINT)),
    ("get", "/v1/webhook-endpoints"): ScopedRoute(
        "videos:read", lambda c, a: c.get("/v1/webhook-endpoints"), "list"),
    ("get", "/v1/webhook-endpoints/{endpoint_id}"): ScopedRoute("videos:read", lambda c, a: c.get(
        f"/v1/webhook-endpoints/{a['endpoint_id']}"), "404"),
    # A spare endpoint: the owner's call deletes it, and the others need theirs.
    ("delete", "/v1/webhook-endpoints/{endpoint_id}"): ScopedRoute(
        "videos:write", lambda c, a: c.delete(f"/v1/webhook-endpoints/{a['spare_endpoint_id']}"),
        "404"),
    ("get", "/v1/webhook-endpoints/{endpoint_id}/deliveries"): ScopedRoute(
        "videos:read", lambda c, a: c.get(f"/v1/webhook-endpoints/{a['endpoint_id']}/deliveries"),
        "404"),
    ("post", "/v1/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/replay"): ScopedRoute(
        "videos:write", lambda c, a: c.post(
            f"/v1/webhook-endpoints/{a['endpoint_id']}/deliveries/{a['delivery_id']}/replay"),
        "404"),
}
# What ``org_things`` names that another organization must never see, not even in a 404.
ORG_THING_IDS = ("video_id", "generating_video_id", "spare_video_id", "endpoint_id",
                 "spare_endpoint_id", "delivery_id")


def shown_things(things: dict[str, str], text: str) -> list[str]:
    """Which of an organization's things (``ORG_THING_IDS``) ``text`` names."""
    return [name for name in ORG_THING_IDS if things[name] in text]

VIDEO_BYTES = b"\x00\x00\x00\x18ftypmp42" + bytes(256)  # stands in for an MP4


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def org_things(
    client: httpx.AsyncClient, storage: ObjectStorage, double: CatalogDouble, org: str
) -> dict[str, str]:
    """An upload and two webhook endpoints (through ``client``, a client of ``org``), a
    delivery to the first, a finished, stored video of ``org`` with its thumbnail (in
    ``storage`` and the double), one being generated and a failed one: what
    ``SCOPED_ROUTES`` need."""
    upload = await client.post("/v1/uploads", files={"file": ("a.png", image_bytes("PNG"))})
    assert upload.status_code == 201, upload.text
    created = datetime.now(UTC)
    record = make_record(org=org, status="completed", created_at=created)
    stored = await storage.put("videos", video_key(org, created, record.id), _once(VIDEO_BYTES),
                               "video/mp4")
    thumb = await storage.put("thumbnails", thumbnail_key(org, created, record.id),
                              _once(image_bytes("WEBP")), "image/webp")
    double.records[record.id] = record.model_copy(update={
        "video_bucket": "videos", "video_key": stored.key, "provider_job_id": "video_1",
        "openai_url": "http://sim/v1/videos/video_1/content",
        "thumbnail_bucket": "thumbnails", "thumbnail_key": thumb.key})
    generating = make_record(org=org, status="processing", created_at=created)
    spare = make_record(org=org, status="failed", created_at=created)
    double.records.update({generating.id: generating, spare.id: spare})
    endpoints = []
    for _ in range(2):
        added = await client.post("/v1/webhook-endpoints", json=NEW_ENDPOINT)
        assert added.status_code == 201, added.text
        endpoints.append(added.json()["id"])
    delivery = double.record_delivery(uuid.UUID(endpoints[0]))
    return {"upload_key": upload.json()["key"], "upload_url": upload.json()["url"],
            "video_id": str(record.id), "thumbnail_path": f"/files/thumbnails/{thumb.key}",
            "generating_video_id": str(generating.id), "spare_video_id": str(spare.id),
            "endpoint_id": endpoints[0],
            "spare_endpoint_id": endpoints[1], "delivery_id": str(delivery.id)}


def declared_scopes(operation: dict[str, Any]) -> set[str]:
    """The scopes an OpenAPI operation's security requirements name."""
    return {scope for requirement in operation.get("security", [])
            for scopes in requirement.values() for scope in scopes}
