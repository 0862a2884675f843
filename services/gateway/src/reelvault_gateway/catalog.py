"""Reads go to the catalog service over NATS request/reply (the gateway never opens Postgres)."""

from __future__ import annotations

import logging
import uuid
from typing import Protocol

from pydantic import BaseModel, ValidationError
from reelvault_common.contracts.catalog import (
    CatalogErrorCode,
    GetStats,
    GetVideo,
    ListVideos,
    RpcReply,
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
    async def get(
        self, video_id: uuid.UUID, *, timeout_s: float | None = None
    ) -> VideoRecord | None: ...

    async def list(
        self, *, status: VideoStatus | None = None, limit: int = 20, cursor: str | None = None
    ) -> VideoPage: ...

    async def ping(self, *, timeout_s: float | None = None) -> None: ...


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

    async def get(
        self, video_id: uuid.UUID, *, timeout_s: float | None = None
    ) -> VideoRecord | None:
        reply = await self._ask(self._topology.rpc_get, GetVideo(video_id=video_id), timeout_s)
        if reply.ok and reply.video is not None:
            return reply.video
        if reply.error is not None and reply.error.code is CatalogErrorCode.NOT_FOUND:
            return None
        raise _unexpected(reply, "get")

    async def list(
        self, *, status: VideoStatus | None = None, limit: int = 20, cursor: str | None = None
    ) -> VideoPage:
        message = ListVideos(status=status, limit=limit, cursor=cursor)
        reply = await self._ask(self._topology.rpc_list, message, None)
        if reply.ok and reply.page is not None:
            return reply.page
        if reply.error is not None and reply.error.code is CatalogErrorCode.INVALID_CURSOR:
            raise InvalidCursor(reply.error.message)
        raise _unexpected(reply, "list")

    async def ping(self, *, timeout_s: float | None = None) -> None:
        """Return if a catalog replica answers and its database works; ``CatalogUnavailable``
        (or ``CatalogError`` for an unexpected answer) otherwise."""
        reply = await self._ask(self._topology.rpc_ping, GetStats(), timeout_s)
        if not reply.ok:
            raise _unexpected(reply, "ping")


def _unexpected(reply: RpcReply, what: str) -> CatalogError:
    if reply.error is not None:
        return CatalogError(reply.error.code, reply.error.message)
    return CatalogError("bad_reply", f"the catalog answered a {what} request without a result")
