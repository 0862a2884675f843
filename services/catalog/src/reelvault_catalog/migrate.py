"""Bring the database schema to the newest migration, safely from several replicas at once.

The migrations ship inside the package, so no ``alembic.ini`` is needed at runtime. Everything
runs in ONE transaction that first takes a transaction-scoped advisory lock: a second replica
starting at the same moment waits for the lock, then finds the schema at head and does nothing.
Postgres DDL is transactional, so a crash half-way leaves no half-built schema.
"""

from __future__ import annotations

import logging
from pathlib import Path

import asyncpg.exceptions
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from reelvault_common.runtime.startup import causes, is_unreachable
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

# Postgres is there but cannot take us yet: starting up or shutting down (57P03), out of
# connection slots, or the connection broke (class 08).
_NOT_READY = (
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.PostgresConnectionError,
)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any fixed 64-bit number unique to "catalog schema migrations" (advisory locks are per
# database, so tests with their own databases do not contend).
MIGRATION_LOCK_KEY = 0x7265656C7661756C  # "reelvaul"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _upgrade(connection: Connection) -> tuple[str | None, str | None]:
    before = current_revision(connection)
    command.upgrade(alembic_config(connection), "head")
    return before, current_revision(connection)


async def migrate(engine: AsyncEngine) -> str | None:
    """Apply every pending migration; returns the revision the database is now at."""
    async with engine.begin() as conn:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        before, after = await conn.run_sync(_upgrade)
    if before != after:
        log.info("catalog schema migrated %s -> %s", before or "(empty)", after)
    else:
        log.info("catalog schema at %s", after)
    return after


def database_unreachable(exc: BaseException) -> bool:
    """At start-up: is this the database not being there (yet)? Worth another try, unlike a
    wrong password or a missing database."""
    # SQLAlchemy wraps asyncpg's error (``orig`` -> ``__cause__``): look through the chain.
    return is_unreachable(exc) or any(isinstance(cause, _NOT_READY) for cause in causes(exc))
