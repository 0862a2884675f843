"""Reads go to the catalog service over NATS request/reply (the gateway never opens Postgres)."""

from __future__ import annotations

import logging
import uuid
from typing import Protocol

from pydantic import BaseModel, ValidationError
from reelvault_common.contracts.catalog import (
    CatalogErrorCode,
    DeletedVideo,
    DeleteVideo,
    GetStats,
    GetUsage,
    GetVideo,
    KeyAuth,
    ListVideos,
    LookupKey,
    QuotaExceededInfo,
    Release,
    Reserve,
    RpcReply,
    UsageReport,
    VideoPage,
    VideoRecord,
    VideoStatus,
)
from reelvault_common.messaging.topology import Topology

from reelvault_gateway.broker import BrokerUnavailable, Requester

log = logging.getLogger(__name__)


class CatalogUnavailable(Exception):
    """No catalog answered in time (or the broker is down)."""


class CatalogError(Exception):
    """The catalog answered with an error we have no better mapping for."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class InvalidCursor(Exception):
    pass


class CatalogClient(Protocol):
    """Every call about videos or usage names the caller's organization: the catalog answers
    ``not_found`` for another organization's video."""

    async def get(
        self, org: str, video_id: uuid.UUID, *, timeout_s: float | None = None
    ) -> VideoRecord | None: ...

    async def list(
        self,
        org: str,
        *,
        status: VideoStatus | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> VideoPage: ...

    async def ping(self, *, timeout_s: float | None = None) -> None: ...

    async def delete(
        self, org: str, video_id: uuid.UUID, deleted_by: str | None
    ) -> DeletedVideo | None: ...

    async def lookup_key(self, public_id: str) -> KeyAuth | None: ...

    async def reserve(
        self, org: str, video_id: uuid.UUID, model: str, seconds: int
    ) -> QuotaExceededInfo | None: ...

    async def release(self, org: str, video_id: uuid.UUID) -> None: ...

    async def usage(self, org: str) -> UsageReport: ...


class NatsCatalogClient:
    def __init__(self, requester: Requester, topology: Topology, timeout_s: float) -> None:
        self._requester = requester
        self._topology = topology
        self._timeout_s = timeout_s

    async def _ask(self, subject: str, message: BaseModel, timeout_s: float | None) -> RpcReply:
        try:
            raw = await self._requester.request(
                subject, message.model_dump_json().encode(), timeout_s or self._timeout_s
            )
        except BrokerUnavailable as exc:
            raise CatalogUnavailable(str(exc)) from exc
        try:
            reply = RpcReply.model_validate_json(raw)
        except ValidationError as exc:
            log.error("undecodable catalog reply on %s: %s", subject, exc)
            raise CatalogError(
                "bad_reply", "the catalog sent a reply the gateway cannot read"
            ) from exc
        # The catalog runs but its database does not answer: for callers, no catalog.
        error = reply.error
        if not reply.ok and error is not None and error.code is CatalogErrorCode.UNAVAILABLE:
            raise CatalogUnavailable(f"{error.code}: {error.message}")
        return reply

    async def _call(self, message: BaseModel, timeout_s: float | None = None) -> RpcReply:
        return await self._ask(self._topology.rpc_subject(message), message, timeout_s)

    async def get(
        self, org: str, video_id: uuid.UUID, *, timeout_s: float | None = None
    ) -> VideoRecord | None:
        reply = await self._call(GetVideo(org=org, video_id=video_id), timeout_s)
        if reply.ok and reply.video is not None:
            return reply.video
        if _is(reply, CatalogErrorCode.NOT_FOUND):
            return None
        raise _unexpected(reply, "get")

    async def list(
        self,
        org: str,
        *,
        status: VideoStatus | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> VideoPage:
        reply = await self._call(ListVideos(org=org, status=status, limit=limit, cursor=cursor))
        if reply.ok and reply.page is not None:
            return reply.page
        if reply.error is not None and _is(reply, CatalogErrorCode.INVALID_CURSOR):
            raise InvalidCursor(reply.error.message)
        raise _unexpected(reply, "list")

    async def delete(
        self, org: str, video_id: uuid.UUID, deleted_by: str | None
    ) -> DeletedVideo | None:
        """Delete the organization's video: its tombstone (the same on every call), None when
        the organization has no such video."""
        reply = await self._call(DeleteVideo(org=org, video_id=video_id, deleted_by=deleted_by))
        if reply.ok and reply.deleted is not None:
            return reply.deleted
        if _is(reply, CatalogErrorCode.NOT_FOUND):
            return None
        raise _unexpected(reply, "delete")

    async def ping(self, *, timeout_s: float | None = None) -> None:
        """Return if a catalog replica answers and its database works; ``CatalogUnavailable``
        (or ``CatalogError`` for an unexpected answer) otherwise."""
        reply = await self._ask(self._topology.rpc_ping, GetStats(), timeout_s)
        if not reply.ok:
            raise _unexpected(reply, "ping")

    async def lookup_key(self, public_id: str) -> KeyAuth | None:
        """The key's record and hash, None for a key the catalog does not know."""
        reply = await self._call(LookupKey(public_id=public_id))
        if reply.ok and reply.key_auth is not None:
            return reply.key_auth
        if _is(reply, CatalogErrorCode.NOT_FOUND):
            return None
        raise _unexpected(reply, "key lookup")

    async def reserve(
        self, org: str, video_id: uuid.UUID, model: str, seconds: int
    ) -> QuotaExceededInfo | None:
        """Count the video against the organization's quotas: None when admitted (again, for
        a video already counted), else which quota refused it."""
        message = Reserve(org=org, video_id=video_id, model=model, seconds=seconds)
        reply = await self._call(message)
        if reply.ok:
            return None
        if _is(reply, CatalogErrorCode.QUOTA_EXCEEDED) and reply.quota is not None:
            return reply.quota
        raise _unexpected(reply, "reserve")

    async def release(self, org: str, video_id: uuid.UUID) -> None:
        reply = await self._call(Release(org=org, video_id=video_id))
        if not reply.ok:
            raise _unexpected(reply, "release")

    async def usage(self, org: str) -> UsageReport:
        reply = await self._call(GetUsage(org=org))
        if reply.ok and reply.usage is not None:
            return reply.usage
        raise _unexpected(reply, "usage")


def _is(reply: RpcReply, code: CatalogErrorCode) -> bool:
    return reply.error is not None and reply.error.code is code


def _unexpected(reply: RpcReply, what: str) -> CatalogError:
    if reply.error is not None:
        return CatalogError(reply.error.code, reply.error.message)
    return CatalogError("bad_reply", f"the catalog answered a {what} request without a result")
