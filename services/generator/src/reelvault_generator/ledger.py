"""The job ledger's entries and the decision "what to do with this VideoRequested". Pure.

A generation costs money and the provider has no idempotency key, so every video gets at most
one provider job through a durable ledger entry (key: the video id):

- no entry                      -> claim it (atomic create) and create the job;
- ``created``                   -> the job exists: re-publish Started, never create again;
- ``failed``                    -> the request was refused for good: re-publish the failure;
- ``creating``, fresh           -> someone (another replica, an earlier delivery) is creating
                                   it right now: look again when its claim would go stale;
- ``creating``, stale           -> the owner died between create and recording the result:
                                   recover (adopt the provider's matching job, else re-claim).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

LedgerState = Literal["creating", "created", "failed"]

# A claim younger than this is never treated as stale, whatever the settings say.
MIN_WAIT_S = 1.0


class LedgerEntry(BaseModel):
    """What the ledger holds for one video (JSON in the KV bucket)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    state: LedgerState
    owner: str
    claimed_at: AwareDatetime
    # Claims made for this video so far (1 unless recovery had to create again).
    attempts: int = 1
    provider: str | None = None
    provider_job_id: str | None = None
    # When the job was created (deadlines count from here, across restarts).
    job_created_at: AwareDatetime | None = None
    adopted: bool = False
    failure_code: str | None = None
    failure_message: str | None = None
    # What a completion needs without the original request (the webhook path).
    correlation_id: str | None = None
    org: str | None = None
    requested_at: AwareDatetime | None = None
    # What was asked (a webhook that adopts the job announces it without the request).
    model: str | None = None
    seconds: str | None = None
    size: str | None = None

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> LedgerEntry:
        return cls.model_validate_json(raw)

    def created(
        self,
        *,
        provider: str,
        provider_job_id: str,
        job_created_at: datetime,
        adopted: bool = False,
    ) -> LedgerEntry:
        return self.model_copy(
            update={
                "state": "created",
                "provider": provider,
                "provider_job_id": provider_job_id,
                "job_created_at": job_created_at,
                "adopted": adopted,
            }
        )

    def failed(self, *, code: str, message: str) -> LedgerEntry:
        return self.model_copy(
            update={"state": "failed", "failure_code": code, "failure_message": message}
        )

    def reclaimed(self, *, owner: str, now: datetime) -> LedgerEntry:
        return self.model_copy(
            update={"state": "creating", "owner": owner, "claimed_at": now,
                    "attempts": self.attempts + 1}
        )


class JobBinding(BaseModel):
    """What ``job.<provider>.<job id>`` holds: the video that owns the job and what finishing
    the video needs (so a webhook, which names only the job, finds it with one KV read).

    Bindings written before the details were added hold the bare video id: ``from_bytes``
    reads both, and such a binding is not ``complete`` (the ledger entry has the rest)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    video_id: uuid.UUID
    correlation_id: str | None = None
    org: str | None = None
    requested_at: AwareDatetime | None = None
    job_created_at: AwareDatetime | None = None
    # The trace of the request that created the job (``traceparent``...), when traced.
    trace: dict[str, str] | None = None

    @property
    def complete(self) -> bool:
        return None not in (self.correlation_id, self.org, self.requested_at,
                            self.job_created_at)

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> JobBinding:
        if raw.lstrip().startswith(b"{"):
            return cls.model_validate_json(raw)
        return cls(video_id=uuid.UUID(raw.decode().strip()))


@dataclass(frozen=True)
class ClaimAndCreate:
    """Nobody has touched this video: claim it, then create the job."""


@dataclass(frozen=True)
class RepublishStarted:
    entry: LedgerEntry


@dataclass(frozen=True)
class RepublishFailure:
    entry: LedgerEntry


@dataclass(frozen=True)
class WaitForOwner:
    delay_s: float
    owner: str


@dataclass(frozen=True)
class Recover:
    """The claim is stale. Adopt a provider job created in [since, until] if one matches, else
    take the claim over (``revision`` guards against a second recoverer) and create."""

    entry: LedgerEntry
    revision: int
    since: datetime
    until: datetime


Decision = ClaimAndCreate | RepublishStarted | RepublishFailure | WaitForOwner | Recover


@dataclass(frozen=True)
class ClaimTiming:
    create_timeout_s: float
    claim_margin_s: float
    recovery_margin_s: float

    @property
    def stale_after_s(self) -> float:
        return self.create_timeout_s + self.claim_margin_s


def decide(
    current: tuple[LedgerEntry, int] | None, now: datetime, timing: ClaimTiming
) -> Decision:
    """What to do for a VideoRequested, given the ledger entry (and its revision) and the clock."""
    if current is None:
        return ClaimAndCreate()
    entry, revision = current
    if entry.state == "created":
        return RepublishStarted(entry)
    if entry.state == "failed":
        return RepublishFailure(entry)
    age = (now - entry.claimed_at).total_seconds()
    if age < timing.stale_after_s:
        # A negative age (clocks apart) waits the full period rather than recovering early.
        wait = min(timing.stale_after_s - age, timing.stale_after_s)
        return WaitForOwner(delay_s=max(wait, MIN_WAIT_S), owner=entry.owner)
    margin = timedelta(seconds=timing.recovery_margin_s)
    return Recover(
        entry=entry,
        revision=revision,
        since=entry.claimed_at - margin,
        # The create was sent right after the claim and bounded by create_timeout_s.
        until=entry.claimed_at + timedelta(seconds=timing.create_timeout_s) + margin,
    )


def new_claim(
    *, owner: str, now: datetime, correlation_id: str, org: str, requested_at: datetime,
    provider: str | None = None, model: str | None = None, seconds: str | None = None,
    size: str | None = None,
) -> LedgerEntry:
    return LedgerEntry(
        state="creating",
        owner=owner,
        claimed_at=now,
        provider=provider,
        model=model,
        seconds=seconds,
        size=size,
        correlation_id=correlation_id,
        org=org,
        requested_at=requested_at,
    )


def video_key(video_id: uuid.UUID) -> str:
    return str(video_id)
