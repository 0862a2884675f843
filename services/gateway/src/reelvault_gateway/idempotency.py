"""``Idempotency-Key`` on video creation: what a key means and what a repeat gets. Pure.

A key is scoped per client: the same key sent by two clients names two requests. The client is
the caller's organization and API key (a gallery session counts as the key that signed in), so
no organization can replay, or collide with, another's requests.

The record of a key (kept in a NATS KV bucket for at least 24 h) holds a fingerprint of the
canonical request (the validated fields, defaults applied: ``{"prompt": "x"}`` and
``{"prompt": "x", "model": "sora-2"}`` are the same request), the video id and the exact
``VideoRequested`` event. The video id is derived from (client, key), so every attempt with the
key builds the same event with the same ``Nats-Msg-Id``:

- first request: reserve the key (``pending``, atomic create: of two racing requests one wins),
  publish the event, mark the key ``done``;
- a repeat with the same request: the same answer (the stored event), nothing new requested.
  If the key is still ``pending`` (the first attempt's publish failed or is in flight), the
  stored event is published again: JetStream's duplicate window drops it if the first publish
  did land (after the window, the duplicate is a no-op downstream: the catalog and the
  generator's ledger already know the video);
- a repeat with a different request: 409 ``idempotency_key_reused``.

A key never points at a video that was never requested: it is either pending (and every retry
republishes its event) or done (the event is in the stream).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict
from reelvault_common.contracts.events import VideoRequested

from reelvault_gateway.errors import ApiError
from reelvault_gateway.video_requests import VideoSpec

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MIN_TTL_S = 24 * 3600.0
# Printable ASCII without spaces, as long as Stripe's (a UUID fits several times).
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_VIDEO_IDS = uuid.UUID("0c9f4d62-5a3b-4c1e-9a57-3e3f1b2d7a10")

IdempotencyState = Literal["pending", "done"]


class IdempotencyRecord(BaseModel):
    """What the bucket keeps per (client, key)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    state: IdempotencyState
    fingerprint: str
    video_id: uuid.UUID
    # The VideoRequested exactly as first published (JSON): repeats answer and republish it.
    event: str
    created_at: AwareDatetime

    def requested(self) -> VideoRequested:
        return VideoRequested.model_validate_json(self.event)

    def done(self) -> IdempotencyRecord:
        return self.model_copy(update={"state": "done"})

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> IdempotencyRecord:
        return cls.model_validate_json(data)


class IdempotencyStore(Protocol):
    """Records of keys (``KvIdempotencyStore`` in the gateway; a dict in unit tests)."""

    async def reserve(self, scope: str, record: IdempotencyRecord) -> int | None:
        """Write ``record`` if ``scope`` has none; its revision, or None if one exists."""
        ...

    async def read(self, scope: str) -> tuple[IdempotencyRecord, int] | None: ...

    async def complete(self, scope: str, record: IdempotencyRecord, *, last: int) -> bool:
        """Replace the record if it is still at revision ``last``."""
        ...


def checked_key(raw: str | None) -> str | None:
    """The header's key, None without one; a 400 for a malformed one."""
    if raw is None:
        return None
    if not _KEY.fullmatch(raw):
        raise ApiError(
            400,
            "invalid_idempotency_key",
            f"The {HEADER} header must be 1 to 255 printable ASCII characters without spaces.",
        )
    return raw


def client_identity(org: str, key_id: str) -> str:
    """Who a key belongs to (see the module docstring): the organization and the public id of
    the caller's API key (never its secret)."""
    return f"org:{org}:key:{key_id}"


def scope_of(client: str, key: str) -> str:
    """The bucket key of (client, key): a hash, so any key is a valid KV key and no client
    learns another's keys from the bucket."""
    return "k." + hashlib.sha256(f"{client}\n{key}".encode()).hexdigest()


def video_id_for(scope: str) -> uuid.UUID:
    """Every attempt with one key builds the same video id (and so the same event id)."""
    return uuid.uuid5(_VIDEO_IDS, scope)


def fingerprint(spec: VideoSpec, org: str) -> str:
    """The canonical request: the validated fields, in a fixed order."""
    canonical = {
        "prompt": spec.prompt,
        "model": spec.model,
        "seconds": spec.seconds,
        "size": spec.size,
        "reference_images": list(spec.reference_keys),
        "org": org,
    }
    encoded = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode()).hexdigest()


def new_record(event: VideoRequested, fingerprint_: str, now: datetime) -> IdempotencyRecord:
    return IdempotencyRecord(
        state="pending",
        fingerprint=fingerprint_,
        video_id=event.video_id,
        event=event.model_dump_json(),
        created_at=now,
    )


@dataclass(frozen=True)
class Replay:
    """Answer with the stored request; ``republish`` when it may not be in the stream yet."""

    event: VideoRequested
    republish: bool


def on_repeat(record: IdempotencyRecord, fingerprint_: str) -> Replay:
    """What a request with an already used key gets (``ApiError`` 409 for another body)."""
    if record.fingerprint != fingerprint_:
        raise ApiError(
            409,
            "idempotency_key_reused",
            f"This {HEADER} was already used for a different request (another prompt, model, "
            "seconds, size or reference images). Send a new key for a new request; the same "
            "key only repeats the original request.",
            details={"video_id": str(record.video_id)},
        )
    return Replay(record.requested(), republish=record.state == "pending")
