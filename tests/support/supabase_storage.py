"""A small Supabase-Storage-compatible server for tests (Starlette, run by uvicorn on loopback).

Faithful to ``docs/storage/supabase-storage.md`` and the open-source server where it matters
to a client: the routes storage3 uses (buckets; object upload POST/PUT as binary or multipart
``file`` part with ``x-upsert``, cache-control and metadata; download on the plain,
authenticated and public routes with Range; info/HEAD; list; remove; server-side copy with
``x-metadata``; sign single + batch with expiring tokens), TUS ``/upload/resumable`` (OPTIONS,
POST create, PATCH with offset checks, HEAD, DELETE, real statuses, plain-text errors), HS256
JWT auth (``role`` claim; ``service_role`` bypasses row-level security, other roles may only
read public buckets), bucket size limits and MIME rules (wildcards, the server's own matching),
and the error quirks: HTTP 400 with ``{"statusCode": "<real status>", "error", "message"}`` (no
``code``; 5xx stay 5xx). Also as the real server (v1.26.5) behaves: every write checks that its
key is free when it starts and upserts when it ends (concurrent writers of one key can all
succeed, the last bytes staying); a copy is a byte copy, with its cost, and ignores the
destination bucket's rules; sizes like "5MB" are decimal; a multipart upload of a refused type
answers 400 InvalidRequest (a binary one and TUS 415); ``/object/info`` with a bad key answers
404 "Bucket not found"; no Authorization header answers 400 "Error"; an expired signed link
answers 400 InvalidJWT; listings put folders first; a TUS PATCH without Content-Type answers 403.
Keys are checked against the documented character set.

Object bytes live on disk under ``root`` (a 500 MB object never sits in RAM); the catalogue of
buckets and objects is in memory (a server lives for one test session).

Served both at ``/`` (a bare storage server) and at ``/storage/v1/`` (a project URL; like the
platform's proxy, that prefix requires an ``apikey`` header and sets ``X-Forwarded-Prefix``).

Fault injection (``server.faults``): answer the next N matching requests with an error before
or after handling them, delay requests, and cut a TUS PATCH after N body bytes (the bytes up to
the cut are kept, as a TUS server does when a connection drops). ``server.requests`` records
what was asked, ``server.patches`` what each TUS PATCH carried.

Run standalone (for tests that want it in another process):
``python -m tests.support.supabase_storage --root DIR --jwt-secret S [--port-file F]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jwt
import uvicorn
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MB = 1024 * 1024
KEY_PATTERN = re.compile(r"^(\w|/|!|-|\.|\*|'|\(|\)| |&|\$|@|=|;|:|\+|,|\?)*$", re.ASCII)
BUCKET_PATTERN = re.compile(r"^(\w|!|-|\.|\*|'|\(|\)| |&|\$|@|=|;|:|\+|,|\?)*$", re.ASCII)
SIZE_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB)?\s*$", re.IGNORECASE)
# The server's units are decimal: "5MB" is 5,000,000 bytes.
SIZE_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
TUS_VERSION = "1.0.0"
PROJECT_PREFIX = "/storage/v1"
RLS_MESSAGE = "new row violates row-level security policy"
SIGN_PATHS_MAX = 1000


def make_jwt(
    secret: str, role: str = "service_role", expires_in_s: int = 3600, **claims: Any
) -> str:
    """A Supabase-style API key: HS256 with a ``role`` claim."""
    now = int(time.time())
    payload = {
        "iss": "supabase-test",
        "role": role,
        "iat": now,
        "exp": now + expires_in_s,
        **claims,
    }
    return jwt.encode(payload, secret, algorithm="HS256")


def parse_size(value: Any) -> int | None:
    """``file_size_limit`` as bytes: an integer, or a string like "500MB"."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("bool is not a size")
    if isinstance(value, int | float):
        return int(value)
    match = SIZE_PATTERN.match(str(value))
    if not match:
        raise ValueError(f"bad size {value!r}")
    return int(float(match.group(1)) * SIZE_UNITS[(match.group(2) or "B").upper()])


def mime_allowed(mime: str, allowed: list[str] | None) -> bool:
    """The server's own matching: split on the first "/", compare type and subtype, where a
    subtype ``*`` matches anything. Parameters are NOT stripped (``video/mp4; codecs=x`` only
    passes a ``video/*`` rule)."""
    if not allowed:
        return True
    parts = mime.split("/")
    if len(parts) < 2:
        return False
    kind, sub = parts[0], parts[1]
    for rule in allowed:
        rule_parts = rule.split("/")
        if len(rule_parts) < 2:
            continue
        if rule_parts[0] == kind and rule_parts[1] in ("*", sub):
            return True
    return False


# --- state -------------------------------------------------------------------------------------
@dataclass
class Bucket:
    id: str
    name: str
    public: bool
    file_size_limit: int | None
    allowed_mime_types: list[str] | None
    owner: str = ""
    created_at: str = ""
    updated_at: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "owner": self.owner,
            "public": self.public,
            "file_size_limit": self.file_size_limit,
            "allowed_mime_types": self.allowed_mime_types,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "type": "STANDARD",
        }


@dataclass
class StoredObject:
    id: str
    bucket: str
    name: str
    version: str
    path: Path
    size: int
    mimetype: str
    cache_control: str
    etag: str
    user_metadata: dict[str, Any] | None
    created_at: str
    updated_at: str

    def system_metadata(self) -> dict[str, Any]:
        return {
            "eTag": self.etag,
            "size": self.size,
            "mimetype": self.mimetype,
            "cacheControl": self.cache_control,
            "lastModified": self.updated_at,
            "contentLength": self.size,
            "httpStatusCode": 200,
        }


@dataclass
class TusUpload:
    id: str
    bucket: str
    name: str
    version: str
    length: int
    offset: int
    metadata_header: str
    metadata: dict[str, str]
    upsert: bool
    part: Path
    expires_at: float
    completed: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # md5 of the part file, kept up to date as PATCHes append (bytes are only ever appended
    # at the current offset), so completing a 500 MB upload does not re-read it.
    md5: Any = field(default_factory=lambda: hashlib.md5(usedforsecurity=False))


@dataclass
class Fault:
    """Answer ``count`` matching requests with ``status``/``body``; ``when="before"`` skips the
    handler, ``"after"`` runs it (the effect happens) and then replaces its answer, like a
    proxy that loses the response."""

    count: int
    status: int = 503
    body: str | bytes = "upstream connect error or disconnect/reset before headers"
    content_type: str = "text/plain"
    method: str | None = None
    path: str | None = None  # a regex searched in the path (without /storage/v1)
    when: str = "before"

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path is None or re.search(self.path, path) is not None


@dataclass
class PatchCut:
    after_bytes: int
    skip: int = 0  # let this many PATCHes through first


@dataclass
class Faults:
    errors: list[Fault] = field(default_factory=list)
    delay_s: float = 0.0
    delay_count: int = 0
    delay_path: str | None = None
    delay_skip: int = 0  # let this many matching requests through undelayed first
    patch_cuts: list[PatchCut] = field(default_factory=list)
    response_cuts: list[tuple[str, int]] = field(default_factory=list)  # (path regex, bytes)

    def fail(self, count: int = 1, **kwargs: Any) -> Fault:
        fault = Fault(count=count, **kwargs)
        self.errors.append(fault)
        return fault

    def delay(
        self, seconds: float, count: int = 1, path: str | None = None, skip: int = 0
    ) -> None:
        self.delay_s, self.delay_count, self.delay_path = seconds, count, path
        self.delay_skip = skip

    def cut_patch(self, after_bytes: int, skip: int = 0) -> None:
        """Drop the connection of a TUS PATCH once ``after_bytes`` of its body arrived."""
        self.patch_cuts.append(PatchCut(after_bytes, skip))

    def cut_response(self, after_bytes: int, path: str = ".") -> None:
        """Drop the connection of the next GET matching ``path`` after ``after_bytes`` of
        its response body."""
        self.response_cuts.append((path, after_bytes))

    def take_response_cut(self, method: str, path: str) -> int | None:
        for cut in self.response_cuts:
            if method == "GET" and re.search(cut[0], path):
                self.response_cuts.remove(cut)
                return cut[1]
        return None

    def take_error(self, method: str, path: str, when: str) -> Fault | None:
        for fault in self.errors:
            if fault.count > 0 and fault.when == when and fault.matches(method, path):
                fault.count -= 1
                return fault
        return None

    def take_cut(self) -> int | None:
        for cut in self.patch_cuts:
            if cut.skip > 0:
                cut.skip -= 1
                return None
            self.patch_cuts.remove(cut)
            return cut.after_bytes
        return None

    def clear(self) -> None:
        self.errors.clear()
        self.patch_cuts.clear()
        self.response_cuts.clear()
        self.delay_s, self.delay_count, self.delay_path, self.delay_skip = 0.0, 0, None, 0


@dataclass
class RequestRecord:
    method: str
    path: str
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    query: str = ""


@dataclass
class PatchRecord:
    upload_id: str
    offset: int  # Upload-Offset the client sent
    received: int  # body bytes the server stored from this PATCH
    status: int
    cut: bool = False


class StorageError(Exception):
    """An error answer in the server's REST shape."""

    def __init__(self, status: int, error: str, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.code = status, error, message, code

    def response(self) -> Response:
        # The server's bodies carry no ``code`` (``self.code`` is kept for the tests' reading).
        body = {"statusCode": str(self.status), "error": self.error, "message": self.message}
        # The quirk: the HTTP status is 400 for every client error; 5xx stay 5xx.
        return JSONResponse(body, status_code=self.status if self.status >= 500 else 400)

    def tus_response(self) -> Response:
        # TUS routes answer with the real status and the message as plain text.
        return PlainTextResponse(self.message, status_code=self.status, headers=_tus_headers())


def bucket_not_found() -> StorageError:
    return StorageError(404, "Bucket not found", "Bucket not found", "NoSuchBucket")


def object_not_found() -> StorageError:
    return StorageError(404, "not_found", "Object not found", "NoSuchKey")


def duplicate() -> StorageError:
    return StorageError(409, "Duplicate", "The resource already exists", "KeyAlreadyExists")


def too_large() -> StorageError:
    return StorageError(
        413, "Payload too large", "The object exceeded the maximum allowed size", "EntityTooLarge"
    )


def bad_mime(mime: str) -> StorageError:
    return StorageError(
        415, "invalid_mime_type", f"mime type {mime} is not supported", "InvalidMimeType"
    )


def unauthorized(message: str) -> StorageError:
    return StorageError(403, "Unauthorized", message, "AccessDenied")


def invalid_key(key: str) -> StorageError:
    return StorageError(400, "InvalidKey", f"Invalid key: {key}", "InvalidKey")


def _now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _tus_headers(**extra: str) -> dict[str, str]:
    return {"Tus-Resumable": TUS_VERSION, **extra}


class StorageState:
    def __init__(
        self,
        root: Path,
        jwt_secret: str,
        *,
        global_file_size_limit: int = 5 * 1024 * MB,
        standard_upload_limit: int | None = None,
        tus_expiry_s: float = 24 * 3600,
    ) -> None:
        self.root = root
        self.jwt_secret = jwt_secret
        self._limits = (global_file_size_limit, standard_upload_limit, tus_expiry_s)
        self.faults = Faults()
        self.requests: list[RequestRecord] = []
        self.patches: list[PatchRecord] = []
        self.buckets: dict[str, Bucket] = {}
        self.objects: dict[tuple[str, str], StoredObject] = {}
        self.uploads: dict[str, TusUpload] = {}
        self.lock = asyncio.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget everything (between tests), limits back to how the server started."""
        # The free plan caps a single standard upload at 50 MB (TUS goes further).
        self.global_file_size_limit, self.standard_upload_limit, self.tus_expiry_s = self._limits
        self.faults.clear()
        self.requests.clear()
        self.patches.clear()
        self.buckets.clear()
        self.objects.clear()
        self.uploads.clear()
        for sub in ("data", "tus", "tmp"):
            shutil.rmtree(self.root / sub, ignore_errors=True)
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def tmp_path(self) -> Path:
        return self.root / "tmp" / uuid.uuid4().hex

    def requests_to(self, method: str, path_regex: str) -> list[RequestRecord]:
        return [
            r
            for r in self.requests
            if r.method == method and re.search(path_regex, r.path) is not None
        ]

    # --- auth -----------------------------------------------------------------------------
    def role(self, request: Request) -> str:
        header = request.headers.get("authorization")
        if header is None:
            raise StorageError(
                400, "Error", "headers must have required property 'authorization'"
            )
        if not header.lower().startswith("bearer "):
            raise unauthorized("Missing authorization header")
        token = header[7:].strip()
        try:
            claims = jwt.decode(
                token, self.jwt_secret, algorithms=["HS256"], options={"verify_aud": False}
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized("jwt expired") from None
        except jwt.InvalidSignatureError:
            raise unauthorized("invalid signature") from None
        except jwt.InvalidTokenError:
            raise unauthorized("jwt malformed") from None
        return str(claims.get("role") or "anon")

    def bucket(self, bucket_id: str) -> Bucket:
        bucket = self.buckets.get(bucket_id)
        if bucket is None:
            raise bucket_not_found()
        return bucket

    def upload_limit(self, bucket: Bucket, standard: bool) -> int:
        limit = self.global_file_size_limit
        if bucket.file_size_limit:
            limit = min(limit, bucket.file_size_limit)
        if standard and self.standard_upload_limit:
            limit = min(limit, self.standard_upload_limit)
        return limit

    def commit(
        self,
        bucket: Bucket,
        name: str,
        data: Path,
        size: int,
        md5: str,
        mimetype: str,
        cache_control: str,
        user_metadata: dict[str, Any] | None,
        upsert: bool,
        version: str | None = None,
    ) -> StoredObject:
        # No check here: like the server, every route checks that the key is free when it
        # starts (before the body arrives) and upserts when it ends, so two writers that both
        # passed the check both succeed and the later one's bytes stay (``upsert`` only names
        # the event).
        existing = self.objects.get((bucket.id, name))
        target = self.root / "data" / uuid.uuid4().hex
        data.replace(target)
        now = _now_iso()
        obj = StoredObject(
            id=existing.id if existing else str(uuid.uuid4()),
            bucket=bucket.id,
            name=name,
            version=version or str(uuid.uuid4()),
            path=target,
            size=size,
            mimetype=mimetype,
            cache_control=cache_control,
            etag=f'"{md5}"',
            user_metadata=user_metadata,
            created_at=existing.created_at if existing else now,
            updated_at=now,
        )
        self.objects[(bucket.id, name)] = obj
        if existing is not None:
            existing.path.unlink(missing_ok=True)
        return obj


def check_key(key: str) -> None:
    if not key or not KEY_PATTERN.match(key) or key.startswith("/") or "//" in key:
        raise invalid_key(key)


def _bool_header(request: Request, name: str) -> bool:
    return request.headers.get(name, "").lower() == "true"


def _cache_control(value: str | None) -> str:
    if value and re.fullmatch(r"-?\d+", value.strip()):
        return f"max-age={value.strip()}"
    return value or "no-cache"


async def _drain(request: Request) -> None:
    # RuntimeError: Starlette's "Stream consumed" when the body was read to its end already.
    with contextlib.suppress(ClientDisconnect, RuntimeError):
        async for _ in request.stream():
            pass


async def _write_stream(request: Request, target: Path, limit: int) -> tuple[int, str]:
    """Stream the body to ``target``; raise 413 (after draining) once it passes ``limit``."""
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    with target.open("wb") as handle:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                continue  # read (and drop) the rest, so the client sees the answer
            md5.update(chunk)
            handle.write(chunk)
    if size > limit:
        target.unlink(missing_ok=True)  # noqa: ASYNC240 (test server)
        raise too_large()
    return size, md5.hexdigest()


def _decode_user_metadata(raw: str | None, base64_encoded: bool) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        text = base64.b64decode(raw).decode() if base64_encoded else raw
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# --- the app -----------------------------------------------------------------------------------
class SupabaseStorageApp:
    def __init__(self, state: StorageState) -> None:
        self.state = state
        routes = [
            Route("/bucket", self.create_bucket, methods=["POST"]),
            Route("/bucket", self.list_buckets, methods=["GET"]),
            Route("/bucket/{bucket_id}", self.get_bucket, methods=["GET"]),
            Route("/bucket/{bucket_id}", self.update_bucket, methods=["PUT"]),
            Route("/bucket/{bucket_id}", self.delete_bucket, methods=["DELETE"]),
            Route("/bucket/{bucket_id}/empty", self.empty_bucket, methods=["POST"]),
            Route("/object/copy", self.copy_object, methods=["POST"]),
            Route("/object/list/{bucket}", self.list_objects, methods=["POST"]),
            Route("/object/sign/{bucket}", self.sign_many, methods=["POST"]),
            Route("/object/sign/{bucket}/{key:path}", self.sign_one, methods=["POST"]),
            Route("/object/sign/{bucket}/{key:path}", self.signed_download, methods=["GET"]),
            Route("/object/info/public/{bucket}/{key:path}", self.info_public, methods=["GET"]),
            Route("/object/info/authenticated/{bucket}/{key:path}", self.info, methods=["GET"]),
            Route("/object/info/{bucket}/{key:path}", self.info, methods=["GET"]),
            Route("/object/public/{bucket}/{key:path}", self.download_public, methods=["GET"]),
            Route("/object/authenticated/{bucket}/{key:path}", self.download, methods=["GET"]),
            Route("/object/{bucket}", self.remove_objects, methods=["DELETE"]),
            Route("/object/{bucket}/{key:path}", self.upload_post, methods=["POST"]),
            Route("/object/{bucket}/{key:path}", self.upload_put, methods=["PUT"]),
            Route("/object/{bucket}/{key:path}", self.download, methods=["GET"]),
            Route("/object/{bucket}/{key:path}", self.remove_one, methods=["DELETE"]),
            Route("/upload/resumable", self.tus_options, methods=["OPTIONS"]),
            Route("/upload/resumable", self.tus_create, methods=["POST"]),
            Route("/upload/resumable/{upload_id}", self.tus_options, methods=["OPTIONS"]),
            Route("/upload/resumable/{upload_id}", self.tus_head, methods=["HEAD"]),
            Route("/upload/resumable/{upload_id}", self.tus_patch, methods=["PATCH"]),
            Route("/upload/resumable/{upload_id}", self.tus_delete, methods=["DELETE"]),
        ]
        # A bare Router: no middleware that would answer 500 before _Front renders our errors.
        self.router = Router(routes=routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.router(scope, receive, send)
            return
        await _Front(self.state, self.router)(scope, receive, send)

    # --- buckets --------------------------------------------------------------------------
    async def create_bucket(self, request: Request) -> Response:
        if self.state.role(request) != "service_role":
            raise unauthorized(RLS_MESSAGE)
        body = await request.json()
        bucket_id = str(body.get("id") or body.get("name") or "")
        if not bucket_id or not BUCKET_PATTERN.match(bucket_id) or "/" in bucket_id:
            raise StorageError(400, "Invalid Input", "Bucket name invalid", "InvalidBucketName")
        limit, mimes = self._bucket_rules(body)
        async with self.state.lock:
            if bucket_id in self.state.buckets:
                raise StorageError(
                    409, "Duplicate", "The resource already exists", "BucketAlreadyExists"
                )
            now = _now_iso()
            self.state.buckets[bucket_id] = Bucket(
                id=bucket_id,
                name=str(body.get("name") or bucket_id),
                public=bool(body.get("public", False)),
                file_size_limit=limit,
                allowed_mime_types=mimes,
                created_at=now,
                updated_at=now,
            )
        return JSONResponse({"name": bucket_id})

    def _bucket_rules(self, body: dict[str, Any]) -> tuple[int | None, list[str] | None]:
        try:
            limit = parse_size(body.get("file_size_limit"))
        except ValueError:
            raise StorageError(
                400,
                "InvalidRequest",
                "Invalid file size format, hint: use 20GB / 20MB / 30KB / 3B",
                "InvalidRequest",
            ) from None
        if limit is not None and limit > self.state.global_file_size_limit:
            raise StorageError(
                413,
                "Payload too large",
                "The file size limit exceeded the maximum allowed size",
                "EntityTooLarge",
            )
        mimes = body.get("allowed_mime_types")
        if mimes is not None:
            if not isinstance(mimes, list) or not all(
                isinstance(m, str) and re.fullmatch(r"[\w.+-]+/[\w.+*-]+", m) for m in mimes
            ):
                raise StorageError(400, "InvalidRequest", "Invalid mime type", "InvalidRequest")
            mimes = mimes or None
        return limit or None, mimes

    async def list_buckets(self, request: Request) -> Response:
        role = self.state.role(request)
        buckets = [
            b.as_json() for b in self.state.buckets.values() if role == "service_role" or b.public
        ]
        return JSONResponse(buckets)

    async def get_bucket(self, request: Request) -> Response:
        role = self.state.role(request)
        bucket = self.state.bucket(request.path_params["bucket_id"])
        if role != "service_role" and not bucket.public:
            raise bucket_not_found()
        return JSONResponse(bucket.as_json())

    async def update_bucket(self, request: Request) -> Response:
        if self.state.role(request) != "service_role":
            raise unauthorized(RLS_MESSAGE)
        bucket = self.state.bucket(request.path_params["bucket_id"])
        body = await request.json()
        limit, mimes = self._bucket_rules(body)
        if "public" in body:
            bucket.public = bool(body["public"])
        if "file_size_limit" in body:
            bucket.file_size_limit = limit
        if "allowed_mime_types" in body:
            bucket.allowed_mime_types = mimes
        bucket.updated_at = _now_iso()
        return JSONResponse({"message": "Successfully updated"})

    async def empty_bucket(self, request: Request) -> Response:
        if self.state.role(request) != "service_role":
            raise unauthorized(RLS_MESSAGE)
        bucket = self.state.bucket(request.path_params["bucket_id"])
        for name in [n for (b, n) in self.state.objects if b == bucket.id]:
            self.state.objects.pop((bucket.id, name)).path.unlink(missing_ok=True)
        return JSONResponse({"message": "Successfully emptied"})

    async def delete_bucket(self, request: Request) -> Response:
        if self.state.role(request) != "service_role":
            raise unauthorized(RLS_MESSAGE)
        bucket = self.state.bucket(request.path_params["bucket_id"])
        if any(b == bucket.id for (b, _) in self.state.objects):
            raise StorageError(
                409,
                "InvalidRequest",
                "The bucket you tried to delete is not empty",
                "InvalidRequest",
            )
        del self.state.buckets[bucket.id]
        return JSONResponse({"message": "Successfully deleted"})

    # --- objects: upload ------------------------------------------------------------------
    async def upload_post(self, request: Request) -> Response:
        return await self._upload(request, upsert=_bool_header(request, "x-upsert"))

    async def upload_put(self, request: Request) -> Response:
        return await self._upload(request, upsert=True)

    async def _upload(self, request: Request, upsert: bool) -> Response:
        try:
            role = self.state.role(request)
            bucket = self.state.bucket(request.path_params["bucket"])
            key = request.path_params["key"]
            check_key(key)
            if role != "service_role":
                raise unauthorized(RLS_MESSAGE)
            if not upsert and (bucket.id, key) in self.state.objects:
                raise duplicate()  # checked before reading the body, as the server does
        except StorageError:
            await _drain(request)
            raise
        limit = self.state.upload_limit(bucket, standard=True)
        target = self.state.tmp_path()
        try:
            if request.headers.get("content-type", "").startswith("multipart/form-data"):
                size, md5, mimetype, cache, user = await self._multipart(request, target, limit)
                if not mime_allowed(mimetype, bucket.allowed_mime_types):
                    # Multipart refusals keep an older error shape on this server.
                    raise StorageError(
                        400, "InvalidRequest", f"mime type {mimetype} is not supported"
                    )
            else:
                # A binary body's type is taken whole, parameters included.
                mimetype = request.headers.get("content-type") or "application/octet-stream"
                if not mime_allowed(mimetype, bucket.allowed_mime_types):
                    await _drain(request)
                    raise bad_mime(mimetype)
                size, md5 = await _write_stream(request, target, limit)
                cache = _cache_control(request.headers.get("cache-control"))
                user = _decode_user_metadata(request.headers.get("x-metadata"), True)
            async with self.state.lock:
                obj = self.state.commit(
                    bucket, key, target, size, md5, mimetype, cache, user, upsert
                )
        finally:
            target.unlink(missing_ok=True)
        return JSONResponse({"Key": f"{bucket.id}/{key}", "Id": obj.id})

    async def _multipart(
        self, request: Request, target: Path, limit: int
    ) -> tuple[int, str, str, str, dict[str, Any] | None]:
        # python-multipart spools file parts to disk past 1 MB: memory stays flat.
        async with request.form(max_files=1, max_fields=20) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise StorageError(400, "InvalidRequest", "No content provided", "InvalidRequest")
            size = upload.size if upload.size is not None else 0
            if size > limit:
                raise too_large()
            md5 = hashlib.md5(usedforsecurity=False)
            with target.open("wb") as handle:
                while block := await upload.read(MB):
                    md5.update(block)
                    handle.write(block)
            content_type = form.get("contentType")
            mimetype = (
                content_type
                if isinstance(content_type, str) and content_type
                else upload.content_type or "application/octet-stream"
            )
            # The multipart parser keeps the part's type without its parameters.
            mimetype = mimetype.split(";", 1)[0].strip()
            cache = form.get("cacheControl")
            raw_meta = form.get("metadata") or form.get("userMetadata")
            user = _decode_user_metadata(raw_meta if isinstance(raw_meta, str) else None, False)
            cache_control = _cache_control(cache if isinstance(cache, str) else None)
        return size, md5.hexdigest(), mimetype, cache_control, user

    async def copy_object(self, request: Request) -> Response:
        """``POST /object/copy``: server-side. ``copyMetadata`` (default true) carries the
        source's user metadata over; when false, the ``x-metadata`` header (base64 JSON) is the
        copy's, and the body's ``metadata`` may change ``mimetype``/``cacheControl`` (the rest of
        the source's file metadata is kept). Checks the destination key is free, then copies the
        bytes (a real byte copy, as the server's file backend does, with its cost), then
        upserts: concurrent copies to one key may all succeed. The destination bucket's rules
        are NOT applied (the server does not check them on a copy)."""
        role = self.state.role(request)
        body = await request.json()
        for field_name in ("bucketId", "sourceKey", "destinationKey"):
            if not isinstance(body.get(field_name), str) or not body[field_name]:
                raise StorageError(
                    400, "Error", f"body must have required property '{field_name}'",
                    "InvalidRequest",
                )
        source_bucket = self.state.bucket(body["bucketId"])
        destination_bucket = self.state.bucket(body.get("destinationBucket") or body["bucketId"])
        key = body["destinationKey"]
        check_key(key)
        if role != "service_role":
            raise unauthorized(RLS_MESSAGE)
        source = self.state.objects.get((source_bucket.id, body["sourceKey"]))
        if source is None:
            raise object_not_found()
        mimetype, cache_control = source.mimetype, source.cache_control
        user_metadata = source.user_metadata
        if body.get("copyMetadata", True) is False:
            given = body.get("metadata") or {}
            mimetype = str(given.get("mimetype") or mimetype)
            cache_control = str(given.get("cacheControl") or cache_control)
            user_metadata = _decode_user_metadata(request.headers.get("x-metadata"), True)
        upsert = _bool_header(request, "x-upsert")
        if not upsert and (destination_bucket.id, key) in self.state.objects:
            raise duplicate()
        target = self.state.tmp_path()
        await asyncio.to_thread(shutil.copyfile, source.path, target)
        try:
            async with self.state.lock:
                obj = self.state.commit(
                    destination_bucket, key, target, source.size, source.etag.strip('"'),
                    mimetype, cache_control, user_metadata, upsert,
                )
        finally:
            target.unlink(missing_ok=True)
        return JSONResponse(
            {
                "Id": obj.id,
                "Key": f"{destination_bucket.id}/{key}",
                "id": obj.id,
                "name": obj.name,
                "bucket_id": obj.bucket,
                "version": obj.version,
                "metadata": obj.system_metadata(),
                "user_metadata": obj.user_metadata,
            }
        )

    # --- objects: read --------------------------------------------------------------------
    def _readable(self, request: Request, public_route: bool) -> StoredObject:
        bucket_id, key = request.path_params["bucket"], request.path_params["key"]
        if public_route:
            bucket = self.state.buckets.get(bucket_id)
            if bucket is None or not bucket.public:
                raise bucket_not_found()  # also for a private bucket
        else:
            role = self.state.role(request)
            bucket = self.state.bucket(bucket_id)
            if role != "service_role" and not bucket.public:
                raise object_not_found()  # row-level security hides the row
        obj = self.state.objects.get((bucket.id, key))
        if obj is None:
            raise object_not_found()
        return obj

    def _file(self, obj: StoredObject) -> Response:
        return FileResponse(
            obj.path,
            media_type=obj.mimetype,
            headers={
                "etag": obj.etag,
                "cache-control": obj.cache_control,
                "last-modified": format_datetime(
                    datetime.fromisoformat(obj.updated_at.replace("Z", "+00:00")), usegmt=True
                ),
            },
        )

    async def download(self, request: Request) -> Response:
        return self._file(self._readable(request, public_route=False))

    async def download_public(self, request: Request) -> Response:
        return self._file(self._readable(request, public_route=True))

    def _info_body(self, obj: StoredObject) -> Response:
        return JSONResponse(
            {
                "id": obj.id,
                "name": obj.name,
                "version": obj.version,
                "bucket_id": obj.bucket,
                "size": obj.size,
                "content_type": obj.mimetype,
                "cache_control": obj.cache_control,
                "etag": obj.etag,
                "metadata": obj.user_metadata,
                "last_modified": obj.updated_at,
                "created_at": obj.created_at,
            },
            headers={"etag": obj.etag, "cache-control": obj.cache_control},
        )

    async def info(self, request: Request) -> Response:
        try:
            self.state.role(request)
        except StorageError as exc:
            if exc.status == 403:  # a wrong or expired key: the server answers as if no bucket
                raise bucket_not_found() from None
            raise
        return self._info_body(self._readable(request, public_route=False))

    async def info_public(self, request: Request) -> Response:
        return self._info_body(self._readable(request, public_route=True))

    async def list_objects(self, request: Request) -> Response:
        role = self.state.role(request)
        bucket = self.state.bucket(request.path_params["bucket"])
        if role != "service_role" and not bucket.public:
            return JSONResponse([])
        body = await request.json()
        prefix = str(body.get("prefix") or "").strip("/")
        search = str(body.get("search") or "")
        limit, offset = int(body.get("limit") or 100), int(body.get("offset") or 0)
        order = (body.get("sortBy") or {}).get("order", "asc")
        base = f"{prefix}/" if prefix else ""
        files: dict[str, dict[str, Any]] = {}
        folders: set[str] = set()
        for (b, name), obj in self.state.objects.items():
            if b != bucket.id or not name.startswith(base):
                continue
            rest = name[len(base) :]
            if not rest.lower().startswith(search.lower()):
                continue
            if "/" in rest:
                folders.add(rest.split("/", 1)[0])
            else:
                files[rest] = {
                    "name": rest,
                    "id": obj.id,
                    "updated_at": obj.updated_at,
                    "created_at": obj.created_at,
                    "last_accessed_at": obj.updated_at,
                    "metadata": obj.system_metadata(),
                }
        entries = [
            {
                "name": f,
                "id": None,
                "updated_at": None,
                "created_at": None,
                "last_accessed_at": None,
                "metadata": None,
            }
            for f in folders
        ]
        # Folders first, each group sorted.
        entries.sort(key=lambda e: e["name"], reverse=order == "desc")
        entries += sorted(files.values(), key=lambda e: e["name"], reverse=order == "desc")
        return JSONResponse(entries[offset : offset + limit])

    # --- objects: delete ------------------------------------------------------------------
    async def remove_objects(self, request: Request) -> Response:
        if self.state.role(request) != "service_role":
            return JSONResponse([])  # RLS: nothing visible to delete
        bucket = self.state.bucket(request.path_params["bucket"])
        body = await request.json()
        prefixes = body.get("prefixes")
        if not isinstance(prefixes, list) or not prefixes:
            raise StorageError(
                400,
                "InvalidRequest",
                "body must have required property 'prefixes'",
                "InvalidRequest",
            )
        removed = []
        for name in prefixes:
            obj = self.state.objects.pop((bucket.id, str(name)), None)
            if obj is not None:  # missing names are skipped
                obj.path.unlink(missing_ok=True)
                removed.append(
                    {
                        "name": obj.name,
                        "bucket_id": obj.bucket,
                        "id": obj.id,
                        "metadata": obj.system_metadata(),
                    }
                )
        return JSONResponse(removed)

    async def remove_one(self, request: Request) -> Response:
        if self.state.role(request) != "service_role":
            raise object_not_found()
        bucket = self.state.bucket(request.path_params["bucket"])
        obj = self.state.objects.pop((bucket.id, request.path_params["key"]), None)
        if obj is None:
            raise object_not_found()
        obj.path.unlink(missing_ok=True)
        return JSONResponse({"message": "Successfully deleted"})

    # --- signed URLs ----------------------------------------------------------------------
    def _sign(self, bucket: str, name: str, expires_in: int) -> str:
        now = int(time.time())
        return jwt.encode(
            {"url": f"{bucket}/{name}", "iat": now, "exp": now + expires_in},
            self.state.jwt_secret,
            algorithm="HS256",
        )

    @staticmethod
    def _expires_in(body: dict[str, Any]) -> int:
        try:
            value = int(body.get("expiresIn"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise StorageError(
                400, "Error", "body must have required property 'expiresIn'", "InvalidRequest"
            ) from None
        if value < 1:
            raise StorageError(400, "Error", "body/expiresIn must be >= 1", "InvalidRequest")
        return value

    async def sign_one(self, request: Request) -> Response:
        obj = self._readable(request, public_route=False)  # the object must exist
        expires_in = self._expires_in(await request.json())
        # The server echoes the path as the client sent it (percent-encoding included).
        raw = request.scope["raw_path"].decode("latin-1").split("/object/sign/", 1)[1]
        token = self._sign(obj.bucket, obj.name, expires_in)
        return JSONResponse({"signedURL": f"/object/sign/{raw}?token={token}"})

    async def sign_many(self, request: Request) -> Response:
        role = self.state.role(request)
        bucket = self.state.bucket(request.path_params["bucket"])
        body = await request.json()
        expires_in = self._expires_in(body)
        paths = body.get("paths")
        if not isinstance(paths, list) or not 1 <= len(paths) <= SIGN_PATHS_MAX:
            raise StorageError(
                400, "Error", "body/paths must have 1 to 1000 items", "InvalidRequest"
            )
        answer = []
        for path in paths:
            visible = role == "service_role" or bucket.public
            if visible and (bucket.id, str(path)) in self.state.objects:
                token = self._sign(bucket.id, str(path), expires_in)
                encoded = quote(str(path), safe="/;,?:@&=+$-_.!~*'()#")  # like encodeURI
                answer.append(
                    {
                        "error": None,
                        "path": path,
                        "signedURL": f"/object/sign/{bucket.id}/{encoded}?token={token}",
                    }
                )
            else:
                answer.append(
                    {
                        "error": "Either the object does not exist or you do not have access to it",
                        "path": path,
                        "signedURL": None,
                    }
                )
        return JSONResponse(answer)

    async def signed_download(self, request: Request) -> Response:
        token = request.query_params.get("token")
        if not token:
            raise StorageError(
                400, "Error", "querystring must have required property 'token'", "InvalidRequest"
            )
        try:
            claims = jwt.decode(token, self.state.jwt_secret, algorithms=["HS256"])
        except jwt.InvalidTokenError as exc:
            message = (
                '"exp" claim timestamp check failed'
                if isinstance(exc, jwt.ExpiredSignatureError)
                else "Invalid Compact JWS"
            )
            raise StorageError(400, "InvalidJWT", message, "InvalidJWT") from None
        bucket_id, key = request.path_params["bucket"], request.path_params["key"]
        if claims.get("url") != f"{bucket_id}/{key}":
            raise StorageError(
                400, "InvalidSignature", "The url do not match the signature", "InvalidSignature"
            )
        obj = self.state.objects.get((bucket_id, key))
        if obj is None:
            raise object_not_found()
        return self._file(obj)

    # --- TUS ------------------------------------------------------------------------------
    async def tus_options(self, request: Request) -> Response:
        return Response(
            status_code=204,
            headers=_tus_headers(
                **{
                    "Tus-Version": TUS_VERSION,
                    "Tus-Extension": "creation,creation-with-upload,termination,expiration",
                    "Tus-Max-Size": str(self.state.global_file_size_limit),
                }
            ),
        )

    def _tus_preamble(self, request: Request) -> str:
        if request.headers.get("tus-resumable") != TUS_VERSION:
            raise _TusAnswer(412, "Unsupported version", {"Tus-Version": TUS_VERSION})
        return self.state.role(request)

    def _tus_upload(self, upload_id: str) -> TusUpload:
        upload = self.state.uploads.get(upload_id)
        if upload is None:
            raise _TusAnswer(404, "The file for this url was not found\n")
        if upload.expires_at < time.time():
            raise _TusAnswer(410, "The upload has expired\n")
        return upload

    async def tus_create(self, request: Request) -> Response:
        role = self._tus_preamble(request)
        raw_length = request.headers.get("upload-length")
        if raw_length is None or not raw_length.isdigit():
            raise _TusAnswer(400, "Upload-Length or Upload-Defer-Length header required\n")
        length = int(raw_length)
        header = request.headers.get("upload-metadata")
        if not header:
            raise StorageError(400, "InvalidRequest", "Metadata header is required")
        try:
            metadata = _decode_tus_metadata(header)
        except ValueError:
            raise _TusAnswer(
                400,
                "Upload-Metadata is invalid. It MUST consist of one or more "
                "comma-separated key-value pairs\n",
            ) from None
        bucket_id, name = metadata.get("bucketName", ""), metadata.get("objectName", "")
        check_key(name)
        bucket = self.state.bucket(bucket_id)
        if role != "service_role":
            raise unauthorized(RLS_MESSAGE)
        upsert = _bool_header(request, "x-upsert")
        if not upsert and (bucket.id, name) in self.state.objects:
            raise duplicate()
        if length > self.state.upload_limit(bucket, standard=False):
            raise _TusAnswer(413, "Maximum size exceeded\n")
        content_type = metadata.get("contentType")
        if content_type and not mime_allowed(content_type, bucket.allowed_mime_types):
            raise bad_mime(content_type)
        version = str(uuid.uuid4())
        upload_id = base64.urlsafe_b64encode(f"{bucket.id}/{name}/{version}".encode()).decode()
        upload_id = upload_id.rstrip("=")
        part = self.state.root / "tus" / uuid.uuid4().hex
        part.touch()
        self.state.uploads[upload_id] = TusUpload(
            id=upload_id,
            bucket=bucket.id,
            name=name,
            version=version,
            length=length,
            offset=0,
            metadata_header=header,
            metadata=metadata,
            upsert=upsert,
            part=part,
            expires_at=time.time() + self.state.tus_expiry_s,
        )
        host = request.headers.get("x-forwarded-host") or request.headers.get("host", "")
        proto = request.headers.get("x-forwarded-proto") or request.url.scheme
        prefix = request.headers.get("x-forwarded-prefix", "")
        return Response(
            status_code=201,
            headers=_tus_headers(
                **{
                    "Location": f"{proto}://{host}{prefix}/upload/resumable/{upload_id}",
                    "Upload-Expires": format_datetime(
                        datetime.fromtimestamp(time.time() + self.state.tus_expiry_s, UTC),
                        usegmt=True,
                    ),
                }
            ),
        )

    async def tus_head(self, request: Request) -> Response:
        self._tus_preamble(request)
        upload = self._tus_upload(request.path_params["upload_id"])
        return Response(
            status_code=200,
            headers=_tus_headers(
                **{
                    "Upload-Offset": str(upload.offset),
                    "Upload-Length": str(upload.length),
                    "Upload-Metadata": upload.metadata_header,
                    "Cache-Control": "no-store",
                }
            ),
        )

    async def tus_patch(self, request: Request) -> Response:
        try:
            role = self._tus_preamble(request)
            if "content-type" not in request.headers:
                raise _TusAnswer(403, "Invalid or missing Content-Type header\n")
            if request.headers.get("content-type") != "application/offset+octet-stream":
                raise _TusAnswer(415, "Invalid or missing Content-Type header\n")
            raw_offset = request.headers.get("upload-offset")
            if raw_offset is None or not raw_offset.isdigit():
                raise _TusAnswer(403, "Upload-Offset header required\n")
            upload = self._tus_upload(request.path_params["upload_id"])
            if role != "service_role":
                raise unauthorized(RLS_MESSAGE)
        except (StorageError, _TusAnswer):
            await _drain(request)
            raise
        offset = int(raw_offset)
        async with upload.lock:
            try:
                if offset != upload.offset:
                    raise _TusAnswer(409, "Upload-Offset conflict\n")
                if not upload.upsert and (upload.bucket, upload.name) in self.state.objects:
                    raise duplicate()  # checked on every PATCH, as the server's hook does
            except (StorageError, _TusAnswer):
                await _drain(request)
                raise
            cut = self.state.faults.take_cut()
            received, status = await self._tus_receive(request, upload, cut)
            record = PatchRecord(upload.id, offset, received, status, cut=status == 0)
            self.state.patches.append(record)
            if status == 0:
                raise _ConnectionCut()
            if status == 413:
                raise _TusAnswer(413, "Maximum size exceeded\n")
            if upload.offset == upload.length and not upload.completed:
                await self._tus_finish(upload)
        return Response(
            status_code=204,
            headers=_tus_headers(
                **{
                    "Upload-Offset": str(upload.offset),
                    **({"Tus-Complete": "1"} if upload.completed else {}),
                }
            ),
        )

    async def _tus_receive(
        self, request: Request, upload: TusUpload, cut: int | None
    ) -> tuple[int, int]:
        """Append the body to the part file; returns (bytes kept, status): 204, 413 (too much),
        or 0 when the connection was cut/dropped (what arrived is kept)."""
        received = 0
        with upload.part.open("ab") as handle:
            try:
                async for chunk in request.stream():
                    if cut is not None and received + len(chunk) >= cut:
                        chunk = chunk[: cut - received]
                        handle.write(chunk)
                        upload.md5.update(chunk)
                        received += len(chunk)
                        upload.offset += len(chunk)
                        return received, 0
                    if upload.offset + len(chunk) > upload.length:
                        return received, 413
                    handle.write(chunk)
                    upload.md5.update(chunk)
                    received += len(chunk)
                    upload.offset += len(chunk)
            except ClientDisconnect:
                return received, 0
        return received, 204

    async def _tus_finish(self, upload: TusUpload) -> None:
        bucket = self.state.bucket(upload.bucket)
        meta = upload.metadata
        md5 = upload.md5
        async with self.state.lock:
            self.state.commit(
                bucket,
                upload.name,
                upload.part,
                upload.length,
                md5.hexdigest(),
                meta.get("contentType") or "application/octet-stream",
                _cache_control(meta.get("cacheControl")),
                _decode_user_metadata(meta.get("metadata"), False),
                upload.upsert,
                upload.version,
            )
        upload.completed = True

    async def tus_delete(self, request: Request) -> Response:
        self._tus_preamble(request)
        upload = self._tus_upload(request.path_params["upload_id"])
        self.state.uploads.pop(upload.id, None)
        upload.part.unlink(missing_ok=True)
        return Response(status_code=204, headers=_tus_headers())


def _decode_tus_metadata(header: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for pair in header.split(","):
        parts = pair.strip().split(" ")
        if len(parts) not in (1, 2) or not parts[0]:
            raise ValueError(pair)
        result[parts[0]] = (
            base64.b64decode(parts[1], validate=True).decode() if len(parts) == 2 else ""
        )
    return result


class _TusAnswer(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class _ConnectionCut(Exception):
    """Raised to make uvicorn drop the connection without an answer."""


def _link_route(method: str, path: str) -> bool:
    """Public and signed download links work without an apikey (browsers follow them)."""
    return method in ("GET", "HEAD") and (
        path.startswith("/object/public/") or path.startswith("/object/sign/")
    )


class _Front:
    """Per request: the /storage/v1 prefix (apikey required), faults, error rendering, and the
    request log."""

    def __init__(self, state: StorageState, app: ASGIApp) -> None:
        self.state, self.app = state, app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope = dict(scope)
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        if b";" in raw_path:
            # The server's router ends the path at a literal ";" (storage3 does not encode
            # it): the key is cut there, and the request goes on with the shorter key.
            raw_path = raw_path.split(b";", 1)[0]
            scope["raw_path"] = raw_path
            scope["path"] = scope["path"].split(";", 1)[0]
        path: str = scope["path"]
        if path == PROJECT_PREFIX or path.startswith(PROJECT_PREFIX + "/"):
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            scope["path"] = path[len(PROJECT_PREFIX) :] or "/"
            raw = scope.get("raw_path") or path.encode()
            scope["raw_path"] = raw[len(PROJECT_PREFIX) :]
            scope["headers"] = [*scope["headers"], (b"x-forwarded-prefix", PROJECT_PREFIX.encode())]
            if "apikey" not in headers and not _link_route(scope["method"], scope["path"]):
                await self._answer(
                    scope,
                    receive,
                    send,
                    JSONResponse({"message": "No API key found in request"}, status_code=401),
                )
                return
        path = scope["path"]
        record = RequestRecord(
            method=scope["method"],
            path=path,
            headers={k.decode().lower(): v.decode() for k, v in scope["headers"]},
            query=scope.get("query_string", b"").decode(),
        )
        self.state.requests.append(record)
        faults = self.state.faults
        if faults.delay_count > 0 and (
            faults.delay_path is None or re.search(faults.delay_path, path)
        ):
            if faults.delay_skip > 0:
                faults.delay_skip -= 1
            else:
                faults.delay_count -= 1
                await asyncio.sleep(faults.delay_s)
        fault = faults.take_error(scope["method"], path, "before")
        if fault is not None:
            await self._answer(scope, receive, send, self._fault_response(fault), record)
            return
        after = faults.take_error(scope["method"], path, "after")
        body_cut = faults.take_response_cut(scope["method"], path)
        response_started = False
        body_sent = 0

        async def tracking_send(message: Message) -> None:
            nonlocal response_started, body_sent
            if message["type"] == "http.response.start":
                response_started = True
                record.status = message["status"]
            elif message["type"] == "http.response.body" and body_cut is not None:
                body = message.get("body", b"")
                if body_sent + len(body) > body_cut:
                    await send(
                        {
                            "type": "http.response.body",
                            "body": body[: body_cut - body_sent],
                            "more_body": True,
                        }
                    )
                    raise _ConnectionCut()
                body_sent += len(body)
            await send(message)

        async def swallow(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]

        try:
            await self.app(scope, receive, swallow if after is not None else tracking_send)
        except StorageError as exc:
            response = (
                exc.tus_response() if path.startswith("/upload/resumable") else exc.response()
            )
            if after is None:
                record.status = response.status_code
                await response(scope, receive, send)
                return
        except _TusAnswer as exc:
            response = PlainTextResponse(
                exc.message, status_code=exc.status, headers=_tus_headers(**exc.headers)
            )
            if after is None:
                record.status = exc.status
                await response(scope, receive, send)
                return
        except _ConnectionCut:
            # Start an answer that never completes, then fail: uvicorn closes the socket, and
            # the client sees the connection drop mid-request.
            if not response_started:
                record.status = 0
                await send(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [(b"content-length", b"1")],
                    }
                )
            raise
        if after is not None:
            await self._answer(
                scope, receive, send, self._fault_response(after), record, drain=False
            )

    @staticmethod
    def _fault_response(fault: Fault) -> Response:
        return Response(fault.body, status_code=fault.status, media_type=fault.content_type)

    @staticmethod
    async def _answer(
        scope: Scope,
        receive: Receive,
        send: Send,
        response: Response,
        record: RequestRecord | None = None,
        drain: bool = True,
    ) -> None:
        # Read the body first so the client sees the answer, not a reset while still sending.
        more = drain
        while more:
            message = await receive()
            more = message.get("more_body", False) and message["type"] == "http.request"
        if record is not None:
            record.status = response.status_code
        await response(scope, receive, send)


# --- running it --------------------------------------------------------------------------------
class SupabaseStorageServer:
    """The app on 127.0.0.1 and a free port, in a background thread."""

    def __init__(
        self,
        root: Path,
        jwt_secret: str = "test-jwt-secret-at-least-32-bytes-long!",
        **state_options: Any,
    ) -> None:
        self.state = StorageState(root, jwt_secret, **state_options)
        self.app = SupabaseStorageApp(self.state)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """The bare storage server."""
        return f"http://127.0.0.1:{self.port}/"

    @property
    def project_url(self) -> str:
        """As a Supabase project: storage under /storage/v1/."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def faults(self) -> Faults:
        return self.state.faults

    @property
    def requests(self) -> list[RequestRecord]:
        return self.state.requests

    @property
    def patches(self) -> list[PatchRecord]:
        return self.state.patches

    def service_key(self, expires_in_s: int = 3600) -> str:
        return make_jwt(self.state.jwt_secret, "service_role", expires_in_s)

    def anon_key(self) -> str:
        return make_jwt(self.state.jwt_secret, "anon")

    def start(self) -> SupabaseStorageServer:
        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets; without it every
        # answer waits ~40 ms for a delayed ACK (headers and body are separate writes).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="critical", access_log=False, lifespan="off", timeout_keep_alive=30
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name="supabase-storage-test-server",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the Supabase storage test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def reset(self) -> None:
        self.state.reset()


@contextlib.contextmanager
def running_server(root: Path, **options: Any) -> Iterator[SupabaseStorageServer]:
    server = SupabaseStorageServer(root, **options).start()
    try:
        yield server
    finally:
        server.stop()


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--jwt-secret", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path)
    args = parser.parse_args()
    state = StorageState(args.root, args.jwt_secret)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    port = sock.getsockname()[1]
    if args.port_file:
        tmp = args.port_file.with_suffix(".tmp")
        tmp.write_text(str(port))
        tmp.replace(args.port_file)
    print(f"supabase storage test server on http://127.0.0.1:{port}/", flush=True)
    config = uvicorn.Config(
        SupabaseStorageApp(state), log_level="warning", access_log=False, lifespan="off"
    )
    uvicorn.Server(config).run(sockets=[sock])


__all__ = [
    "Fault",
    "Faults",
    "PatchRecord",
    "RequestRecord",
    "StorageState",
    "SupabaseStorageApp",
    "SupabaseStorageServer",
    "make_jwt",
    "mime_allowed",
    "parse_size",
    "running_server",
]

if __name__ == "__main__":
    _main()


# --- a real Supabase Storage server -------------------------------------------------------------
EXTERNAL_URL_ENV = "REELVAULT_TEST_SUPABASE_STORAGE_URL"
EXTERNAL_KEY_ENV = "REELVAULT_TEST_SUPABASE_SERVICE_KEY"
STORAGE_API_IMAGE = "supabase/storage-api:v1.26.5"


@dataclass(frozen=True)
class ExternalStorage:
    """A real storage server (its root URL, no ``/storage/v1``) and its service-role key."""

    url: str
    service_key: str

    def empty_buckets(self, buckets: list[str]) -> None:
        """Remove every object of ``buckets`` (those that exist): tests reuse fixed keys."""
        import httpx

        headers = {"Authorization": f"Bearer {self.service_key}", "apikey": self.service_key}
        with httpx.Client(base_url=self.url, headers=headers, timeout=60) as client:
            existing = {b["id"] for b in client.get("bucket").json()}
            for bucket in buckets:
                if bucket in existing:
                    client.post(f"bucket/{quote(bucket, safe='')}/empty").raise_for_status()


def external_storage_from_env() -> ExternalStorage | None:
    url, key = os.environ.get(EXTERNAL_URL_ENV), os.environ.get(EXTERNAL_KEY_ENV)
    if not url or not key:
        return None
    return ExternalStorage(url if url.endswith("/") else url + "/", key)


@contextlib.contextmanager
def external_storage() -> Iterator[ExternalStorage | str]:
    """A real server: the one the environment names, else the ``supabase/storage-api`` image
    through testcontainers when a Docker engine answers; else the reason there is none."""
    configured = external_storage_from_env()
    if configured is not None:
        yield configured
        return
    try:
        import docker

        docker.from_env(timeout=2).ping()
    except Exception as exc:  # no client, no engine, no permission
        yield (f"no real Supabase Storage server: set {EXTERNAL_URL_ENV} and {EXTERNAL_KEY_ENV}, "
               f"or run a Docker engine ({type(exc).__name__})")
        return
    with _storage_api_containers() as started:
        yield started


@contextlib.contextmanager
def _storage_api_containers() -> Iterator[ExternalStorage]:
    """PostgreSQL 15 and the storage server's image on one Docker network (file backend)."""
    import httpx
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network
    from testcontainers.postgres import PostgresContainer

    secret = "test-jwt-secret-" + uuid.uuid4().hex
    service_key = make_jwt(secret, "service_role", 24 * 3600)
    with Network() as network:
        database = PostgresContainer("postgres:15", username="postgres", password="postgres",
                                     dbname="storage")
        database.with_network(network).with_network_aliases("db")
        with database:
            storage = (
                DockerContainer(STORAGE_API_IMAGE)
                .with_network(network)
                .with_exposed_ports(5000)
                .with_env("DATABASE_URL", "postgres://postgres:postgres@db:5432/storage")
                .with_env("DB_INSTALL_ROLES", "true")
                .with_env("AUTH_JWT_SECRET", secret)
                .with_env("ANON_KEY", make_jwt(secret, "anon", 24 * 3600))
                .with_env("SERVICE_KEY", service_key)
                .with_env("STORAGE_BACKEND", "file")
                .with_env("STORAGE_FILE_BACKEND_PATH", "/tmp/storage")
                .with_env("STORAGE_S3_BUCKET", "stub")  # bulk deletes answer 500 without it
                .with_env("TENANT_ID", "stub")
                .with_env("REGION", "local")
                .with_env("PG_QUEUE_ENABLE", "false")
                .with_env("IMAGE_TRANSFORMATION_ENABLED", "false")
                .with_env("UPLOAD_FILE_SIZE_LIMIT", str(1024 * 1024 * 1024))
            )
            with storage:
                url = (f"http://{storage.get_container_host_ip()}:"
                       f"{storage.get_exposed_port(5000)}/")
                deadline = time.monotonic() + 120
                while True:
                    try:
                        if httpx.get(f"{url}status", timeout=2).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError("the storage-api container did not answer in 120 s")
                    time.sleep(0.5)
                yield ExternalStorage(url, service_key)
