"""Supabase Storage's error answers, turned into the typed errors of ``interface.py``.

The REST routes answer HTTP 400 for almost every client error; the real status is only the body's
``statusCode`` string (``{"statusCode": "409", "error": "Duplicate", "message": ...}``, newer
releases add ``code``). TUS routes answer real HTTP statuses with a plain-text message. 5xx keep a
real 5xx status, and a proxy in front may answer 502/503/504 with no JSON at all. Everything here
is pure: the backend and the TUS client feed it responses or storage3 exceptions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx

from reelvault_common.storage.interface import (
    BucketNotFound,
    InvalidKey,
    MimeTypeNotAllowed,
    ObjectConflict,
    ObjectNotFound,
    PayloadTooLarge,
    StorageError,
    TransientStorageError,
    Unauthorized,
)

# Statuses worth another try: server faults, gateways, rate limits, locks, the DB timing out.
_TRANSIENT_STATUSES = {"408", "423", "425", "429", "544"}
_MAX_MESSAGE = 300


class ObjectExists(ObjectConflict):
    """The server answered 409 Duplicate: something is already stored at this key (maybe the
    same bytes). Raised inside the backend, which compares checksums before deciding."""

    code = "object_exists"


@dataclass(frozen=True)
class ServerError:
    """One error answer: the real status (``statusCode``) and the server's own words."""

    status: str
    error: str
    message: str
    code: str | None = None

    @classmethod
    def from_response(cls, response: httpx.Response) -> ServerError:
        """From a read response (REST JSON body or TUS plain text)."""
        text = response.text if response.content else ""
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = None
        if isinstance(body, dict) and ("statusCode" in body or "error" in body):
            return cls(
                status=str(body.get("statusCode") or response.status_code),
                error=str(body.get("error") or ""),
                message=_clip(str(body.get("message") or "")),
                code=str(body["code"]) if body.get("code") else None,
            )
        return cls(
            status=str(response.status_code),
            error=response.reason_phrase,
            message=_clip(text.strip()) or response.reason_phrase,
        )

    @classmethod
    def from_storage3(cls, exc: Exception) -> ServerError:
        """From ``storage3.exceptions.StorageApiError`` (``.status`` is the body's statusCode
        string, or the int HTTP status when the body did not parse; ``.code`` the body's
        ``error``)."""
        status = getattr(exc, "status", "") or ""
        return cls(
            status=str(status),
            error=str(getattr(exc, "code", "") or ""),
            message=_clip(str(getattr(exc, "message", "") or exc)),
        )

    def describe(self) -> str:
        detail = ", ".join(p for p in (self.error, self.code) if p)
        return f"{self.message} (statusCode {self.status}{', ' + detail if detail else ''})"


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "..."


def _is(err: ServerError, *names: str) -> bool:
    wanted = {n.lower() for n in names}
    return err.error.lower() in wanted or (err.code or "").lower() in wanted


def is_transient(err: ServerError) -> bool:
    return (
        err.status.startswith("5")
        or err.status in _TRANSIENT_STATUSES
        or _is(err, "SlowDown", "ResourceLocked", "DatabaseTimeout", "acquiring_lock_timeout")
    )


def to_storage_error(err: ServerError, what: str) -> StorageError:
    """The typed error for ``err``; ``what`` names the operation and object (never secrets)."""
    text = f"{what}: {err.describe()}"
    message_lower = err.message.lower()
    if is_transient(err):
        return TransientStorageError(text)
    if _is(
        err, "Duplicate", "KeyAlreadyExists", "ResourceAlreadyExists", "BucketAlreadyExists"
    ) or (err.status == "409" and "already exists" in message_lower):
        return ObjectExists(text)
    if err.status == "404" or _is(err, "NoSuchBucket", "NoSuchKey", "not_found"):
        if _is(err, "Bucket not found", "NoSuchBucket") or "bucket not found" in message_lower:
            return BucketNotFound(text)
        return ObjectNotFound(text)
    if err.status == "413" or _is(err, "Payload too large", "EntityTooLarge"):
        return PayloadTooLarge(text)
    if (
        err.status == "415"
        or _is(err, "invalid_mime_type", "InvalidMimeType")
        # Older releases: multipart uploads of a refused type answer "400" "InvalidRequest".
        or (err.status in {"400", "422"} and "mime type" in message_lower)
    ):
        return MimeTypeNotAllowed(text)
    if err.status in {"401", "403"} or _is(err, "Unauthorized", "AccessDenied", "InvalidJWT"):
        return Unauthorized(text)
    if _is(err, "InvalidKey") or message_lower.startswith("invalid key"):
        return InvalidKey(text)
    return StorageError(text)


def transport_error(exc: httpx.HTTPError, what: str) -> TransientStorageError:
    """Connection refused/reset, timeouts, a peer that hung up mid-body: all worth a retry.
    Only the exception's type and text are kept (httpx puts no headers in them)."""
    detail = str(exc) or type(exc).__name__
    return TransientStorageError(f"{what}: {type(exc).__name__}: {_clip(detail)}")
