"""The catalog's metrics: videos by status and their transitions, stored bytes from its rows,
quota usage, the database (pool, query durations, size, rows, connections) and the time of
the last successful backup.

Everything read from the database or NATS is read by periodic collectors (asyncio tasks, see
``reelvault_common.runtime.metrics``); query durations are measured on the engine's cursor
events and transitions when the projection has committed them.

The rows know each stored video's and thumbnail's bucket and size (thumbnails stored before
``thumbnail_bytes`` existed count as 0 bytes). Uploads have no rows, so their bucket is in
neither family (the archiver's ``reelvault_storage_object_size_bytes`` sees every object it
stores).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from prometheus_client import Counter, Gauge, Histogram
from reelvault_common.contracts.catalog import QUOTA_NAMES, VIDEO_STATUSES, QuotaLimits
from reelvault_common.contracts.events import VideoEvent
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime.metrics import (
    OTHER,
    GaugeSnapshot,
    PeriodicCollectors,
    bounded,
    watch_jetstream,
)
from sqlalchemy import event, func, select, text
from sqlalchemy.engine import Connection, ExceptionContext
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import QueuePool

from reelvault_catalog.models import OrganizationRow, OrgQuotaRow, UsageReservationRow, VideoRow
from reelvault_catalog.projection import Insert, Update
from reelvault_catalog.quotas import Usage, limit_of, period_start
from reelvault_catalog.repository import Applied, CatalogRepository
from reelvault_catalog.settings import CatalogSettings
from reelvault_catalog.usage_repository import STORED_BYTES

log = logging.getLogger(__name__)

# KV key of the unix time (seconds, as text) of the last successful backup, in the ops bucket.
BACKUP_KEY = "backup.last_success"

VIDEOS_BY_STATUS = Gauge(
    "reelvault_videos_by_status", "Videos in the catalog by status (read periodically).",
    ["status"],
)
VIDEOS_TOTAL = Counter(
    "reelvault_videos",
    "Videos that entered a status, counted by the catalog replica that committed the change.",
    ["status"],
)
STORAGE_BYTES = Gauge(
    "reelvault_storage_bytes",
    "Bytes of stored videos and thumbnails per bucket, from the catalog's rows.",
    ["bucket"],
)
STORAGE_OBJECTS = Gauge(
    "reelvault_storage_objects",
    "Stored videos and thumbnails per bucket, from the catalog's rows.", ["bucket"],
)
QUOTA_USAGE = GaugeSnapshot(
    "reelvault_quota_usage_ratio",
    "Used / limit of each limit of each organization that has one (monthly limits count this "
    "UTC month; a limit of 0 is left out).",
    ["org", "limit"],
)
# 0: no backup recorded; absent: not read yet (or the catalog cannot read it).
BACKUP_LAST_SUCCESS = GaugeSnapshot(
    "reelvault_backup_last_success_timestamp_seconds",
    "Unix time of the last successful backup (0: none recorded).", (),
)
DB_POOL = Gauge(
    "reelvault_db_pool_connections",
    "The catalog's SQLAlchemy pool: connections checked out, idle in the pool, and opened "
    "beyond the pool size (overflow).", ["state"],
)
DB_POOL_MAX = Gauge(
    "reelvault_db_pool_max_connections",
    "The most connections the pool opens (pool size + max overflow).",
)
DB_QUERY_DURATION = Histogram(
    "reelvault_db_query_duration_seconds",
    "Duration of the catalog's statements (cursor execute), by kind.", ["statement"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
DB_SIZE = Gauge("reelvault_db_size_bytes", "Size of the catalog's database (pg_database_size).")
DB_TABLE_ROWS = Gauge(
    "reelvault_db_table_rows", "Estimated live rows per table (pg_stat_user_tables).", ["table"],
)
DB_CONNECTIONS = Gauge(
    "reelvault_db_connections",
    "Server connections to the catalog's database by state (pg_stat_activity), every client's.",
    ["state"],
)

STATEMENT_KINDS = frozenset({"select", "insert", "update", "delete", "with", "set", "begin",
                             "commit", "rollback"})
CONNECTION_STATES = {
    "active": "active",
    "idle": "idle",
    "idle in transaction": "idle_in_transaction",
    "idle in transaction (aborted)": "idle_in_transaction_aborted",
}
_STARTED = "reelvault_metrics_started"


# --- pure rules -------------------------------------------------------------------------------
def entered_status(applied: Applied) -> str | None:
    """The status a committed projection step moved its video into, if it moved one."""
    outcome = applied.outcome
    if isinstance(outcome, Insert):
        return str(outcome.values.get("status", "queued")) if applied.written else None
    if isinstance(outcome, Update):
        status = outcome.changes.get("status")
        return None if status is None else str(status)
    return None


def statement_kind(statement: str) -> str:
    """``select``, ``insert``, ... from a statement's first word; ``other`` for the rest."""
    words = statement.lstrip().split(None, 1)
    return bounded(words[0].lower() if words else "", STATEMENT_KINDS)


def connection_state(state: str | None) -> str:
    return CONNECTION_STATES.get(state or "", OTHER)


def quota_ratios(
    limits: Mapping[str, QuotaLimits], usage: Mapping[str, Usage]
) -> dict[tuple[str, ...], float]:
    """``(org, limit) -> used / limit`` for every limit that is set and above 0."""
    ratios: dict[tuple[str, ...], float] = {}
    for org, org_limits in limits.items():
        used = usage.get(org, Usage())
        for quota in QUOTA_NAMES:
            limit = limit_of(org_limits, quota)
            if limit is not None and limit > 0:
                ratios[(org, quota)] = float(used.of(quota) / limit)
    return ratios


def parse_backup_time(value: bytes | None) -> float:
    """The KV value: a unix time in seconds, as text."""
    seconds = float((value or b"").decode().strip())
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"not a unix time: {seconds}")
    return seconds


# --- transitions ------------------------------------------------------------------------------
class CountingRepository(CatalogRepository):
    """The repository, counting the status each committed step moved a video into."""

    async def apply_many(
        self, events: Sequence[VideoEvent], *, now: datetime | None = None
    ) -> list[Applied]:
        applied = await super().apply_many(events, now=now)
        for result in applied:
            status = entered_status(result)
            if status is not None:
                VIDEOS_TOTAL.labels(status=bounded(status, VIDEO_STATUSES)).inc()
        return applied


def start_counting() -> None:
    """Every status exported from the start, at 0."""
    for status in VIDEO_STATUSES:
        VIDEOS_TOTAL.labels(status=status)


# --- query durations --------------------------------------------------------------------------
def instrument_engine(engine: AsyncEngine) -> None:
    """Time every statement the engine runs (the collectors' own included)."""
    target = engine.sync_engine
    event.listen(target, "before_cursor_execute", _before_execute)
    event.listen(target, "after_cursor_execute", _after_execute)
    event.listen(target, "handle_error", _failed_execute)


def _before_execute(conn: Connection, *_: Any) -> None:
    conn.info.setdefault(_STARTED, []).append(time.perf_counter())


def _after_execute(conn: Connection, cursor: Any, statement: str, *_: Any) -> None:
    started: list[float] = conn.info.get(_STARTED) or []
    if started:
        DB_QUERY_DURATION.labels(statement=statement_kind(statement)).observe(
            time.perf_counter() - started.pop())


def _failed_execute(context: ExceptionContext) -> None:
    conn = context.connection
    started: list[float] = conn.info.get(_STARTED) or [] if conn is not None else []
    if started and context.statement is not None:
        DB_QUERY_DURATION.labels(statement=statement_kind(context.statement)).observe(
            time.perf_counter() - started.pop())


# --- periodic collectors ----------------------------------------------------------------------
_STATUS_COUNTS = select(VideoRow.status, func.count()).group_by(VideoRow.status)
_VIDEO_FILES = (
    select(VideoRow.video_bucket, func.count(), func.coalesce(func.sum(VideoRow.bytes), 0))
    .where(VideoRow.video_key.is_not(None), VideoRow.video_bucket.is_not(None))
    .group_by(VideoRow.video_bucket)
)
_THUMBNAIL_FILES = (
    select(VideoRow.thumbnail_bucket, func.count(),
           func.coalesce(func.sum(VideoRow.thumbnail_bytes), 0))
    .where(VideoRow.thumbnail_key.is_not(None), VideoRow.thumbnail_bucket.is_not(None))
    .group_by(VideoRow.thumbnail_bucket)
)
_DB_SIZE = text("SELECT pg_database_size(current_database())")
_TABLE_ROWS = text(
    "SELECT relname, n_live_tup FROM pg_stat_user_tables"
    " WHERE schemaname = ANY(current_schemas(false))"
)
_CONNECTIONS = text(
    "SELECT state, count(*) FROM pg_stat_activity WHERE datname = current_database()"
    " GROUP BY state"
)


async def collect_videos(engine: AsyncEngine) -> None:
    """Videos by status; stored videos and thumbnails (count, bytes) per bucket."""
    async with engine.connect() as conn:
        statuses: dict[str, int] = {
            str(status): int(count) for status, count in await conn.execute(_STATUS_COUNTS)}
        videos = (await conn.execute(_VIDEO_FILES)).all()
        thumbnails = (await conn.execute(_THUMBNAIL_FILES)).all()
    for status in VIDEO_STATUSES:
        VIDEOS_BY_STATUS.labels(status=status).set(statuses.get(status, 0))
    objects: dict[str, int] = {}
    stored: dict[str, int] = {}
    for bucket, count, total in (*videos, *thumbnails):
        objects[str(bucket)] = objects.get(str(bucket), 0) + int(count)
        stored[str(bucket)] = stored.get(str(bucket), 0) + int(total or 0)
    for bucket, count in objects.items():
        STORAGE_OBJECTS.labels(bucket=bucket).set(count)
        STORAGE_BYTES.labels(bucket=bucket).set(stored[bucket])


async def collect_database(engine: AsyncEngine) -> None:
    """The database's size, rows per table and server connections by state."""
    async with engine.connect() as conn:
        size = int((await conn.execute(_DB_SIZE)).scalar_one())
        tables = (await conn.execute(_TABLE_ROWS)).all()
        connections = (await conn.execute(_CONNECTIONS)).all()
    DB_SIZE.set(size)
    for table, rows in tables:
        DB_TABLE_ROWS.labels(table=str(table)).set(int(rows))
    by_state = dict.fromkeys([*CONNECTION_STATES.values(), OTHER], 0)
    for state, count in connections:
        by_state[connection_state(state)] += int(count)
    for state, count in by_state.items():
        DB_CONNECTIONS.labels(state=state).set(count)


def collect_pool(engine: AsyncEngine, max_connections: int) -> None:
    """The pool's connections by state (no I/O: read from the pool itself)."""
    DB_POOL_MAX.set(max_connections)
    pool = engine.sync_engine.pool
    if isinstance(pool, QueuePool):
        DB_POOL.labels(state="checked_out").set(pool.checkedout())
        DB_POOL.labels(state="idle").set(pool.checkedin())
        DB_POOL.labels(state="overflow").set(max(0, pool.overflow()))


async def collect_quotas(engine: AsyncEngine, *, now: datetime | None = None) -> None:
    """Used / limit of every organization's limits (the system's view: every organization)."""
    async with engine.connect() as conn:
        limits = await _quota_limits(conn)
        usage = await _quota_usage(conn, list(limits), period_start(now or datetime.now(UTC)))
    QUOTA_USAGE.replace(quota_ratios(limits, usage))


async def _quota_limits(conn: AsyncConnection) -> dict[str, QuotaLimits]:
    """The limits of every organization that has a quota row."""
    rows = await conn.execute(
        select(OrganizationRow.slug, *(getattr(OrgQuotaRow, name) for name in QUOTA_NAMES))
        .join(OrgQuotaRow, OrgQuotaRow.org_id == OrganizationRow.id)
    )
    return {
        str(row.slug): QuotaLimits.model_validate({name: getattr(row, name)
                                                   for name in QUOTA_NAMES})
        for row in rows
    }


async def _quota_usage(
    conn: AsyncConnection, orgs: list[str], period: date
) -> dict[str, Usage]:
    """This period's reservations that count and the stored bytes of each of ``orgs``."""
    if not orgs:
        return {}
    held = UsageReservationRow
    counted = await conn.execute(
        select(held.org, func.count(), func.coalesce(func.sum(held.seconds), 0),
               func.coalesce(func.sum(held.cost_usd), 0))
        .where(held.period_start == period, held.released_at.is_(None), held.org.in_(orgs))
        .group_by(held.org)
    )
    stored: dict[str, int] = {
        str(org): int(total or 0) for org, total in await conn.execute(
            select(VideoRow.org, STORED_BYTES)
            .where(VideoRow.status == "completed", VideoRow.org.in_(orgs))
            .group_by(VideoRow.org)
        )
    }
    usage = {org: Usage(stored_bytes=stored.get(org, 0)) for org in orgs}
    for org, videos, seconds, cost in counted:
        usage[org] = Usage(videos=int(videos), seconds=int(seconds), cost_usd=Decimal(cost),
                           stored_bytes=stored.get(org, 0))
    return usage


async def read_backup_time(js: JetStreamContext, bucket: str) -> float | None:
    """The last successful backup's unix time; None when none is recorded."""
    try:
        kv = await js.key_value(bucket)
        entry = await kv.get(BACKUP_KEY)
    except (BucketNotFoundError, KeyNotFoundError):  # includes a deleted key
        return None
    return parse_backup_time(entry.value)


def start_collectors(
    settings: CatalogSettings, engine: AsyncEngine, js: JetStreamContext, topology: Topology,
    consumers: Sequence[str],
) -> PeriodicCollectors:
    """The catalog's periodic collectors, running until ``stop()``."""
    collectors = PeriodicCollectors(settings.metrics_interval_s)
    max_connections = settings.db_pool_size + settings.db_max_overflow

    async def pool() -> None:
        collect_pool(engine, max_connections)

    async def backup() -> None:
        BACKUP_LAST_SUCCESS.set(await read_backup_time(js, topology.ops_bucket) or 0)

    collectors.start("videos", lambda: collect_videos(engine))
    collectors.start("database", lambda: collect_database(engine))
    collectors.start("database pool", pool)
    collectors.start("quotas", lambda: collect_quotas(engine))
    collectors.start("backup", backup)
    watch_jetstream(collectors, js, topology, consumers)
    return collectors
