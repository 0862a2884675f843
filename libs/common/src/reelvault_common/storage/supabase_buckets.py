"""Bucket management of the Supabase backend: look up (and remember) a bucket's rules, create a
missing bucket, refuse one whose rules differ from the configuration. Rules are never changed."""

from __future__ import annotations

import logging
from typing import Any

from storage3.types import CreateOrUpdateBucketOptions

from reelvault_common.storage.interface import (
    BucketNotFound,
    BucketRulesMismatch,
    BucketSpec,
    ObjectNotFound,
    StorageError,
)
from reelvault_common.storage.supabase_connection import SupabaseConnection
from reelvault_common.storage.supabase_errors import ObjectExists

log = logging.getLogger(__name__)


def normalized_rules(spec: BucketSpec) -> tuple[bool, int | None, tuple[str, ...] | None]:
    """What makes two buckets' rules the same: order and case of MIME types do not matter,
    and no limit / no list is the same as 0 / an empty list."""
    mimes = tuple(sorted({m.strip().lower() for m in spec.allowed_mime_types or ()})) or None
    return spec.public, spec.file_size_limit or None, mimes


def rules_from_bucket_json(name: str, body: dict[str, Any]) -> BucketSpec:
    limit = body.get("file_size_limit")
    mimes = body.get("allowed_mime_types")
    return BucketSpec(
        name=name,
        public=bool(body.get("public")),
        file_size_limit=int(limit) if limit not in (None, "") else None,
        allowed_mime_types=tuple(str(m) for m in mimes) if mimes else None,
    )


def describe_rules(spec: BucketSpec) -> str:
    limit = f"{spec.file_size_limit} bytes" if spec.file_size_limit else "none"
    mimes = ", ".join(spec.allowed_mime_types) if spec.allowed_mime_types else "any"
    return f"public={spec.public}, file_size_limit={limit}, allowed_mime_types=[{mimes}]"


class SupabaseBuckets:
    """The buckets' rules as the server has them, remembered once seen."""

    def __init__(self, connection: SupabaseConnection) -> None:
        self._connection = connection
        self._known: dict[str, BucketSpec] = {}

    def known(self, name: str) -> BucketSpec | None:
        """The rules if already seen (no request)."""
        return self._known.get(name)

    async def spec(self, name: str) -> BucketSpec:
        """The rules, asked for once; ``BucketNotFound`` if there is no such bucket."""
        spec = self._known.get(name)
        if spec is None:
            spec = await self.fetch(name)
            if spec is None:
                raise BucketNotFound(f"Bucket not found: {name}")
            self._known[name] = spec
        return spec

    async def fetch(self, name: str) -> BucketSpec | None:
        """The bucket's rules, or None if it does not exist. Plain httpx on ``GET /bucket/{id}``:
        storage3's ``get_bucket`` model rejects answers whose ``owner`` is null."""
        what = f"get bucket {name}"

        async def call() -> BucketSpec | None:
            try:
                response = await self._connection.request(
                    "GET", self._connection.bucket_url("bucket", name), what
                )
            except (BucketNotFound, ObjectNotFound):
                return None
            return rules_from_bucket_json(name, response.json())

        return await self._connection.retry(what, call)

    async def ensure(self, spec: BucketSpec) -> BucketSpec:
        """Create the bucket if it is missing; ``BucketRulesMismatch`` if it has other rules."""
        existing = await self.fetch(spec.name)
        if existing is None:
            await self._create(spec)
            existing = await self.fetch(spec.name)
            if existing is None:
                raise StorageError(f"bucket {spec.name} was created but cannot be read back")
        if normalized_rules(existing) != normalized_rules(spec):
            raise BucketRulesMismatch(
                f"bucket {spec.name} exists with rules {describe_rules(existing)} but the "
                f"configuration wants {describe_rules(spec)}; reelvault never changes bucket "
                "rules by itself: update the bucket or the configuration deliberately"
            )
        self._known[spec.name] = existing
        return existing

    async def _create(self, spec: BucketSpec) -> None:
        options: CreateOrUpdateBucketOptions = {"public": spec.public}
        if spec.file_size_limit:
            options["file_size_limit"] = spec.file_size_limit
        if spec.allowed_mime_types:
            options["allowed_mime_types"] = list(spec.allowed_mime_types)
        storage = self._connection.storage
        try:
            await self._connection.retried_storage3(
                f"create bucket {spec.name}",
                lambda: storage.create_bucket(spec.name, spec.name, options),
            )
            log.info("created bucket %s (%s)", spec.name, describe_rules(spec))
        except ObjectExists:
            # Another process created it between our look and our create (or our own earlier
            # attempt did, and its answer was lost): fine if the rules match, checked next.
            log.info("bucket %s appeared concurrently; checking its rules", spec.name)
