"""A catalog worth backing up, for the backup tests: its own databases on the test server,
owned by a role that is no superuser (as the catalog's user in production: it owns the tables
and so is not subject to their row-level security, but nothing else lets it through), real
rows in every table for several organizations (tombstones, retention, webhook endpoints with
their secrets and deliveries included), and real objects in filesystem storage."""


from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import asyncpg
import nats
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError
from reelvault_catalog.migrate import migrate
from reelvault_catalog.repository import CatalogRepository
from reelvault_catalog.tenancy_repository import TenancyRepository
from reelvault_catalog.usage_repository import UsageRepository
from reelvault_catalog.webhooks.payloads import webhook_message
from reelvault_catalog.webhooks.repository import Attempt, WebhookRepository
from reelvault_catalog.webhooks.settings import WebhookDeliverySettings
from reelvault_catalog.webhooks.signing import new_secret
from reelvault_common.contracts.catalog import QuotaLimits
from reelvault_common.contracts.events import ReferenceImage
from reelvault_common.contracts.tenancy import Scope
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime.settings import StorageSettings
from reelvault_common.storage.filesystem import FilesystemStorage
from reelvault_common.storage.layout import Buckets
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.support.byte_streams import chunks
from tests.support.catalog_events import VideoStory

ORGS = ("acme", "globex", "initech")
TENANT_ROLE = "reelvault_tenant"


def dsn(url: str) -> str:
    """An asyncpg DSN for an SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass
class Cluster:
    """Databases and one owner role on the test server, all dropped afterwards."""

    server_url: str
    role: str = field(default_factory=lambda: f"rv_backup_{uuid.uuid4().hex[:10]}")
    password: str = field(default_factory=lambda: uuid.uuid4().hex)
    databases: list[str] = field(default_factory=list)
    extra_roles: list[str] = field(default_factory=list)

    async def admin(self) -> asyncpg.Connection:
        return await asyncpg.connect(dsn(self.server_url))

    async def create_role(self) -> None:
        conn = await self.admin()
        try:
            await conn.execute(f"CREATE ROLE {self.role} LOGIN CREATEROLE "
                               f"PASSWORD '{self.password}'")
            # The migration grants the (cluster-wide) tenant role to its own user: let it, on
            # servers where CREATEROLE alone no longer does.
            await conn.execute(f"""
                DO $$ BEGIN
                    CREATE ROLE {TENANT_ROLE} NOLOGIN;
                EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
                END $$""")
            await conn.execute(f"GRANT {TENANT_ROLE} TO {self.role} WITH ADMIN OPTION")
        finally:
            await conn.close()

    async def database(self) -> str:
        """A new empty database owned by the role; its URL, as the role."""
        name = f"t_backup_{uuid.uuid4().hex[:12]}"
        conn = await self.admin()
        try:
            await conn.execute(f'CREATE DATABASE "{name}" OWNER {self.role}')
        finally:
            await conn.close()
        self.databases.append(name)
        return make_url(self.server_url).set(
            database=name, username=self.role, password=self.password
        ).render_as_string(hide_password=False)

    async def reader(self, url: str) -> str:
        """``url`` as a new role that may read every table but does not own them (so the
        tables' row-level security applies to it)."""
        reader = f"{self.role}_reader"
        conn = await self.admin()
        try:
            await conn.execute(f"CREATE ROLE {reader} LOGIN PASSWORD '{self.password}'")
        finally:
            await conn.close()
        self.extra_roles.append(reader)
        conn = await asyncpg.connect(dsn(url))  # as the owner
        try:
            await conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader}")
        finally:
            await conn.close()
        return make_url(url).set(username=reader).render_as_string(hide_password=False)

    async def drop(self) -> None:
        conn = await self.admin()
        try:
            for name in self.databases:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            for role in (*self.extra_roles, self.role):
                await conn.execute(f"DROP ROLE IF EXISTS {role}")
        finally:
            await conn.close()


@dataclass
class Catalog:
    url: str
    storage_dir: Path
    storage: FilesystemStorage
    objects: list[tuple[str, str]]  # (bucket, key) of every object the rows refer to
    videos: dict[str, list[uuid.UUID]]
    webhook_secrets: list[str]  # every webhook endpoint's signing secret


async def _put(storage: FilesystemStorage, bucket: str, key: str, data: bytes,
               content_type: str) -> None:
    await storage.put(bucket, key, chunks(data, 7), content_type, size=len(data))


async def _org_videos(repository: CatalogRepository, storage: FilesystemStorage, org: str,
                      objects: list[tuple[str, str]]) -> list[uuid.UUID]:
    """A stored video (with a thumbnail and a reference image), a failed one and a queued
    one of ``org``, with their objects."""
    stories = [VideoStory(org=org, job_id=f"job_{org}_{i}") for i in range(3)]
    image_key = f"{org}/uploads/ab/{uuid.uuid4().hex}.png"
    await _put(storage, "hug-images", image_key, f"png of {org}".encode(), "image/png")
    objects.append(("hug-images", image_key))
    image = ReferenceImage(bucket="hug-images", key=image_key, content_type="image/png")
    for story in stories:
        await repository.apply(story.requested(images=0, reference_images=(image,),
                                               prompt=f"a 'quoted'\tprompt\nof {org}"))
    done = stories[0]
    content = f"video of {org} " * 50
    stored = done.stored(content=content, size=len(content))
    assert stored.thumbnail is not None
    await _put(storage, "videos", stored.video.key, content.encode(), "video/mp4")
    await _put(storage, "thumbnails", stored.thumbnail.key, b"thumb " + org.encode(),
               "image/webp")
    objects += [("videos", stored.video.key), ("thumbnails", stored.thumbnail.key)]
    for event in (done.started(), done.progressed(50), done.completed(), stored):
        await repository.apply(event)
    await repository.apply(stories[1].started())
    await repository.apply(stories[1].failed())
    return [story.video_id for story in stories]


async def _org_webhooks(engine: AsyncEngine, repository: CatalogRepository, org: str
                        ) -> str:
    """An endpoint of ``org`` and a delivery to it (of the stored video's event, as the
    catalog records it); the endpoint's secret."""
    webhooks = WebhookRepository(engine, WebhookDeliverySettings())
    created = await webhooks.create_endpoint(
        org, url=f"https://hooks.example.com/{org}", event_types=["video.completed"],
        description=f"{org}'s hook", secret=new_secret())
    message = webhook_message(VideoStory(org=org).stored(), "http://gateway.test")
    assert message is not None and await webhooks.record(message) == 1
    # One attempt failed: the delivery has its answer, its error and its next attempt.
    [claimed] = [c for c in await webhooks.claim(total=10, per_endpoint=1, busy=[])
                 if c.org == org]
    await webhooks.finish(claimed, Attempt(succeeded=False, response_code=500,
                                           error="HTTP 500: try later"))
    return created.secret


async def _deletion_columns(engine: AsyncEngine, org: str, failed: uuid.UUID) -> None:
    """A tombstone (the failed video deleted) and a retention rule, as ``0005_deletion``
    keeps them."""
    async with engine.begin() as conn:
        await conn.execute(text(
            "UPDATE videos SET status = 'deleted', deleted_at = now(), deleted_by = 'k1', "
            "deletion_announced_at = now() WHERE id = :id"), {"id": failed})
        await conn.execute(text(
            "UPDATE organizations SET delete_after_days = 30 WHERE slug = :org"), {"org": org})


async def make_catalog(cluster: Cluster, storage_dir: Path) -> Catalog:
    """Rows in every table of the catalog, for three organizations, and their objects."""
    url = await cluster.database()
    engine = create_async_engine(url)
    settings = StorageSettings(storage_dir=storage_dir)
    storage = FilesystemStorage(storage_dir, settings.public_base_url, b"k" * 32)
    await storage.ensure_buckets(Buckets.from_settings(settings).all())
    objects: list[tuple[str, str]] = []
    videos: dict[str, list[uuid.UUID]] = {}
    secrets: list[str] = []
    try:
        await migrate(engine)
        tenancy = TenancyRepository(engine)
        usage = UsageRepository(engine, {"sora-2": Decimal("0.1")})
        repository = CatalogRepository(engine, "http://gateway.test")
        for org in ORGS:
            await tenancy.create_org(org, name=f"{org.title()} Inc.")
            await tenancy.create_key(org, name="ci", scopes=[Scope.VIDEOS_READ], expires_at=None)
            old = await tenancy.create_key(org, name="old", scopes=[Scope.ADMIN], expires_at=None)
            await tenancy.revoke_key(old.key.public_id)
            await usage.set_quotas(org, QuotaLimits(videos_per_month=1,
                                                    cost_usd_per_month=Decimal("12.5")))
            videos[org] = await _org_videos(repository, storage, org, objects)
            # 100 % of the one-video limit: a reservation and both notices.
            assert (await usage.reserve(org, videos[org][0], model="sora-2", seconds=4)).admitted
            await usage.release(org, videos[org][1])
            await _deletion_columns(engine, org, videos[org][1])
            secrets.append(await _org_webhooks(engine, repository, org))
    finally:
        await engine.dispose()
    return Catalog(url, storage_dir, storage, objects, videos, secrets)


async def table_rows(url: str) -> dict[str, list[str]]:
    """Every row of every table, as text, sorted; and what else a restore must bring back:
    the schema revision, sequences, policies, row security, the tenant role's grants."""
    conn = await asyncpg.connect(dsn(url))
    try:
        tables = [r[0] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1")]
        found = {table: [r[0] for r in await conn.fetch(
            f'SELECT row_to_json(t)::text FROM "{table}" t ORDER BY 1')] for table in tables}
        queries = {
            "(sequences)": "SELECT sequencename || ' ' || coalesce(last_value, 0) FROM "
                           "pg_sequences WHERE schemaname = current_schema()",
            "(policies)": "SELECT tablename || ' ' || policyname || ' ' || qual FROM pg_policies",
            "(row security)": "SELECT relname FROM pg_class WHERE relrowsecurity",
            "(tenant grants)": "SELECT table_name || ' ' || privilege_type FROM "
                               "information_schema.role_table_grants WHERE grantee = "
                               f"'{TENANT_ROLE}' AND table_catalog = current_database()",
        }
        for name, query in queries.items():
            found[name] = sorted(r[0] for r in await conn.fetch(query))
        return found
    finally:
        await conn.close()



Cli = Callable[..., Awaitable[tuple[int, str, list[str]]]]


async def read_state(nats_url: str, namespace: str, key: str) -> str | None:
    """A key of the ops state bucket, or None."""
    connection = await nats.connect(nats_url)
    try:
        bucket = await connection.jetstream().key_value(
            Topology(namespace).kv_bucket("ops", "state"))
        return (await bucket.get(key)).value.decode()
    except (BucketNotFoundError, NotFoundError, KeyNotFoundError):
        return None
    finally:
        await connection.close()


def backup_folders(data_dir: Path) -> list[str]:
    root = data_dir / "backups"
    return sorted(path.name for path in root.iterdir()) if root.is_dir() else []
