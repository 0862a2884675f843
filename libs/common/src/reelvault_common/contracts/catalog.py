"""The catalog's request/reply API over core NATS (queue group, so replicas share the load).

The gateway and other services never open the database; they ask the catalog with these
messages on the subjects in ``Topology.rpc_*``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from reelvault_common.contracts.tenancy import OrgSlug, Scope

VideoStatus = Literal["queued", "processing", "completed", "failed"]
VIDEO_STATUSES: tuple[VideoStatus, ...] = ("queued", "processing", "completed", "failed")


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class VideoRecord(_Message):
    """One video as the catalog knows it. ``provider_job_id`` is the seed's ``video_id`` column."""

    id: uuid.UUID
    status: VideoStatus
    progress: int
    prompt: str
    model: str
    seconds: str
    size: str
    org: str
    image1_url: str | None
    image2_url: str | None
    reference_image_keys: list[str]
    provider: str | None
    provider_job_id: str | None
    video_url: str | None
    openai_url: str | None
    video_bucket: str | None
    video_key: str | None
    thumbnail_url: str | None
    thumbnail_bucket: str | None
    thumbnail_key: str | None
    bytes: int | None
    sha256: str | None
    error_stage: str | None
    error_code: str | None
    error_message: str | None
    expires_at: datetime | None
    stored_at: datetime | None
    created_at: datetime
    updated_at: datetime
    # What the provider reported charging, when it says.
    cost_usd: Decimal | None = None
    # A queued video the provider's request budget holds back: when it should start, and the
    # creates of its organization ahead of it.
    estimated_start_at: datetime | None = None
    queue_position: int | None = None


class GetVideo(_Message):
    """One video of ``org`` (another organization's video is ``not_found``)."""

    org: OrgSlug
    video_id: uuid.UUID


class ListVideos(_Message):
    org: OrgSlug
    status: VideoStatus | None = None
    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = None


class GetStats(_Message):
    pass


class DeleteVideo(_Message):
    """Delete ``org``'s video: tombstone its row, announce ``video.deleted`` (its objects are
    then removed), cancel it first if it is still being generated. Idempotent."""

    org: OrgSlug
    video_id: uuid.UUID
    deleted_by: str | None = Field(default=None, max_length=200)


class DeletedVideo(_Message):
    """A video's tombstone: what a delete answers, the first time and every time after."""

    id: uuid.UUID
    org: OrgSlug
    status: Literal["deleted"] = "deleted"
    deleted_at: datetime
    deleted_by: str | None


class VideoPage(_Message):
    items: list[VideoRecord]
    next_cursor: str | None


class CatalogStats(_Message):
    by_status: dict[str, int]
    total: int
    stored_bytes: int
    # Queued videos whose create a provider's request budget holds back, per provider.
    waiting_by_provider: dict[str, int] = Field(default_factory=dict)


# --- organizations and keys ------------------------------------------------------------------
class OrgInfo(_Message):
    id: uuid.UUID
    slug: OrgSlug
    name: str
    created_at: datetime
    # Videos older than this many days are deleted; None or 0: kept forever.
    delete_after_days: int | None = None


class CreateOrg(_Message):
    slug: OrgSlug
    name: str = Field(default="", max_length=200)


class ListOrgs(_Message):
    pass


class SetRetention(_Message):
    """``delete_after_days``: videos older than this are deleted; 0 keeps them forever."""

    org: OrgSlug
    delete_after_days: int = Field(ge=0, le=36500)


class ApiKeyInfo(_Message):
    """A key as lists show it: never its secret nor its hash."""

    id: uuid.UUID
    public_id: str
    org: OrgSlug
    name: str
    scopes: list[Scope]
    expires_at: datetime | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class KeyAuth(_Message):
    """What the gateway needs to check a presented key (``LookupKey``'s answer)."""

    key: ApiKeyInfo
    key_hash: str


class CreatedKey(_Message):
    key: ApiKeyInfo
    secret: str = Field(description="The whole key: shown once, stored only as a hash.")


class CreateKey(_Message):
    org: OrgSlug
    name: str = Field(default="", max_length=200)
    scopes: list[Scope] = Field(min_length=1)
    expires_at: datetime | None = None


class ListKeys(_Message):
    org: OrgSlug


class RevokeKey(_Message):
    """``key_or_id``: the whole key, its public id or its row id."""

    key_or_id: str = Field(min_length=1, max_length=200)


class LookupKey(_Message):
    """Sent by the gateway on a cache miss; also records the key as used now."""

    public_id: str = Field(pattern=r"^[0-9a-f]{16}$")


# --- quotas and usage ---------------------------------------------------------------------
QuotaName = Literal[
    "videos_per_month", "generation_seconds_per_month", "cost_usd_per_month", "storage_bytes"
]
QUOTA_NAMES: tuple[QuotaName, ...] = (
    "videos_per_month",
    "generation_seconds_per_month",
    "cost_usd_per_month",
    "storage_bytes",
)


class QuotaLimits(_Message):
    """An organization's limits; None: no limit."""

    videos_per_month: int | None = Field(default=None, ge=0)
    generation_seconds_per_month: int | None = Field(default=None, ge=0)
    cost_usd_per_month: Decimal | None = Field(default=None, ge=0, decimal_places=4)
    storage_bytes: int | None = Field(default=None, ge=0)


class SetQuotas(_Message):
    """Sets the limits named in ``limits``'s explicitly set fields (None there removes one);
    the others stay."""

    org: OrgSlug
    limits: QuotaLimits


class GetUsage(_Message):
    org: OrgSlug


class UsageItem(_Message):
    quota: QuotaName
    used: Decimal
    limit: Decimal | None
    # Calendar month (UTC) for the monthly quotas; None for stored bytes (a running total).
    resets_at: datetime | None


class UsageReport(_Message):
    org: OrgSlug
    period_start: datetime
    items: list[UsageItem]


class Reserve(_Message):
    """Count a video against ``org``'s quotas before it is requested, or refuse it.
    Idempotent per ``video_id``."""

    org: OrgSlug
    video_id: uuid.UUID
    model: str
    seconds: int = Field(ge=0)


class Release(_Message):
    """Give a reservation back (the request was never published)."""

    org: OrgSlug
    video_id: uuid.UUID


class QuotaExceededInfo(_Message):
    quota: QuotaName
    used: Decimal
    limit: Decimal
    requested: Decimal
    resets_at: datetime | None


# --- outbound webhooks --------------------------------------------------------------------
WebhookEventType = Literal["video.completed", "video.failed", "video.deleted", "quota.warning"]
WEBHOOK_EVENT_TYPES: tuple[WebhookEventType, ...] = (
    "video.completed", "video.failed", "video.deleted", "quota.warning",
)
WebhookDeliveryStatus = Literal["pending", "succeeded", "failed"]


class WebhookEndpointInfo(_Message):
    """An endpoint as lists show it: never its secret."""

    id: uuid.UUID
    org: OrgSlug
    url: str
    description: str
    event_types: list[WebhookEventType]
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    consecutive_failures: int
    failing_since: datetime | None
    created_at: datetime


class CreatedWebhookEndpoint(_Message):
    endpoint: WebhookEndpointInfo
    secret: str = Field(description="The signing secret (`whsec_...`): shown once.")


class CreateWebhookEndpoint(_Message):
    org: OrgSlug
    url: str = Field(min_length=1, max_length=2000)
    event_types: list[WebhookEventType] = Field(min_length=1)
    description: str = Field(default="", max_length=500)


class ListWebhookEndpoints(_Message):
    org: OrgSlug


class GetWebhookEndpoint(_Message):
    """One endpoint of ``org`` (another organization's is ``not_found``)."""

    org: OrgSlug
    endpoint_id: uuid.UUID


class DeleteWebhookEndpoint(_Message):
    """Delete the endpoint and its delivery log (``not_found`` when it is not ``org``'s)."""

    org: OrgSlug
    endpoint_id: uuid.UUID


class WebhookDeliveryInfo(_Message):
    """One event sent (or to be sent) to one endpoint; ``id`` is its ``webhook-id``."""

    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    event_type: WebhookEventType
    status: WebhookDeliveryStatus
    attempts: int
    last_attempt_at: datetime | None
    last_response_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime


class ListWebhookDeliveries(_Message):
    """An endpoint's deliveries, newest first."""

    org: OrgSlug
    endpoint_id: uuid.UUID
    limit: int = Field(default=50, ge=1, le=200)


class ReplayWebhookDelivery(_Message):
    """Send one delivery again now, with the same ``webhook-id`` (one attempt; an endpoint
    disabled for failing is enabled again)."""

    org: OrgSlug
    endpoint_id: uuid.UUID
    delivery_id: uuid.UUID


# --- storage hygiene: orphaned uploads and the audit --------------------------------------
class FindReferencedUploads(_Message):
    """Which of ``keys`` (uploads in the images bucket) some video of ``org`` references, a
    deleted video's included; the answer is ``referenced_keys``."""

    org: OrgSlug
    keys: list[str] = Field(min_length=1, max_length=1000)


class ListStoredRows(_Message):
    """Every row that names a stored object (tombstones too), ``org``'s or every
    organization's, in id order after ``after``: the audit's view of the catalog."""

    org: OrgSlug | None = None
    after: uuid.UUID | None = None
    limit: int = Field(default=500, ge=1, le=2000)


class StoredRow(_Message):
    id: uuid.UUID
    org: OrgSlug
    status: str
    video_bucket: str | None
    video_key: str | None
    thumbnail_bucket: str | None
    thumbnail_key: str | None
    sha256: str | None
    bytes: int | None
    storage_missing_at: datetime | None


class StoredRowPage(_Message):
    items: list[StoredRow]
    # Pass as ``after`` for the next page; None: this was the last.
    next_after: uuid.UUID | None


class MarkStorageMissing(_Message):
    """Record that the audit found a live video's stored object missing (``storage_missing_at``,
    set once); ``not_found`` for an unknown video or a tombstone."""

    org: OrgSlug
    video_id: uuid.UUID


class CatalogErrorCode(StrEnum):
    """Every code a catalog reply can carry; callers branch on these, never on the message.

    The set is closed: a code a caller does not know fails to decode, so adding one is a
    contract change.
    """

    INVALID_REQUEST = "invalid_request"  # the request did not match its model
    NOT_FOUND = "not_found"  # no such video (in this organization), key or organization
    ALREADY_EXISTS = "already_exists"  # an organization with this slug exists
    QUOTA_EXCEEDED = "quota_exceeded"  # ``Reserve`` refused: ``RpcReply.quota`` says which
    INVALID_CURSOR = "invalid_cursor"  # not a cursor this catalog handed out
    UNAVAILABLE = "unavailable"  # the catalog runs but its database does not answer; retry
    INTERNAL = "internal"  # an unexpected failure in the catalog


class RpcErrorBody(_Message):
    code: CatalogErrorCode
    message: str


class RpcReply(_Message):
    """Every catalog reply: ``ok`` plus the one field the request asks for, or ``error``
    (with ``quota`` for ``quota_exceeded``)."""

    ok: bool
    video: VideoRecord | None = None
    page: VideoPage | None = None
    stats: CatalogStats | None = None
    org: OrgInfo | None = None
    orgs: list[OrgInfo] | None = None
    key: ApiKeyInfo | None = None
    keys: list[ApiKeyInfo] | None = None
    created_key: CreatedKey | None = None
    key_auth: KeyAuth | None = None
    usage: UsageReport | None = None
    deleted: DeletedVideo | None = None
    error: RpcErrorBody | None = None
    quota: QuotaExceededInfo | None = None
    webhook_endpoint: WebhookEndpointInfo | None = None
    webhook_endpoints: list[WebhookEndpointInfo] | None = None
    created_webhook_endpoint: CreatedWebhookEndpoint | None = None
    webhook_delivery: WebhookDeliveryInfo | None = None
    webhook_deliveries: list[WebhookDeliveryInfo] | None = None
    referenced_keys: list[str] | None = None
    stored_rows: StoredRowPage | None = None


class CatalogRpc(StrEnum):
    """The catalog's request/reply subjects (``Topology.rpc(name)``), one per request type."""

    GET = "get"
    LIST = "list"
    STATS = "stats"
    PING = "ping"
    DELETE = "delete"
    ORGS_RETENTION = "orgs.retention"
    ORGS_CREATE = "orgs.create"
    ORGS_LIST = "orgs.list"
    KEYS_CREATE = "keys.create"
    KEYS_LIST = "keys.list"
    KEYS_REVOKE = "keys.revoke"
    KEYS_LOOKUP = "keys.lookup"
    QUOTAS_SET = "quotas.set"
    USAGE_GET = "usage.get"
    USAGE_RESERVE = "usage.reserve"
    USAGE_RELEASE = "usage.release"
    WEBHOOKS_CREATE = "webhooks.create"
    WEBHOOKS_LIST = "webhooks.list"
    WEBHOOKS_GET = "webhooks.get"
    WEBHOOKS_DELETE = "webhooks.delete"
    WEBHOOKS_DELIVERIES = "webhooks.deliveries"
    WEBHOOKS_REPLAY = "webhooks.replay"
    UPLOADS_REFERENCED = "uploads.referenced"
    AUDIT_ROWS = "audit.rows"
    AUDIT_MARK_MISSING = "audit.mark_missing"


# Which subject each request goes to (``GetStats`` serves both stats and ping).
RPC_OF: dict[type[BaseModel], CatalogRpc] = {
    GetVideo: CatalogRpc.GET,
    ListVideos: CatalogRpc.LIST,
    GetStats: CatalogRpc.STATS,
    DeleteVideo: CatalogRpc.DELETE,
    SetRetention: CatalogRpc.ORGS_RETENTION,
    CreateOrg: CatalogRpc.ORGS_CREATE,
    ListOrgs: CatalogRpc.ORGS_LIST,
    CreateKey: CatalogRpc.KEYS_CREATE,
    ListKeys: CatalogRpc.KEYS_LIST,
    RevokeKey: CatalogRpc.KEYS_REVOKE,
    LookupKey: CatalogRpc.KEYS_LOOKUP,
    SetQuotas: CatalogRpc.QUOTAS_SET,
    GetUsage: CatalogRpc.USAGE_GET,
    Reserve: CatalogRpc.USAGE_RESERVE,
    Release: CatalogRpc.USAGE_RELEASE,
    CreateWebhookEndpoint: CatalogRpc.WEBHOOKS_CREATE,
    ListWebhookEndpoints: CatalogRpc.WEBHOOKS_LIST,
    GetWebhookEndpoint: CatalogRpc.WEBHOOKS_GET,
    DeleteWebhookEndpoint: CatalogRpc.WEBHOOKS_DELETE,
    ListWebhookDeliveries: CatalogRpc.WEBHOOKS_DELIVERIES,
    ReplayWebhookDelivery: CatalogRpc.WEBHOOKS_REPLAY,
    FindReferencedUploads: CatalogRpc.UPLOADS_REFERENCED,
    ListStoredRows: CatalogRpc.AUDIT_ROWS,
    MarkStorageMissing: CatalogRpc.AUDIT_MARK_MISSING,
}
