"""Dump the catalog's database to COPY files, and restore them into an empty database.

Dump: one REPEATABLE READ, READ ONLY transaction (every table from the same snapshot), each
table of the catalog's schema copied out with ``COPY ... TO STDOUT`` (asyncpg), plus the
alembic revision, the sequences and the object keys the rows refer to.

Restore: one transaction on the target that takes the catalog's migration lock, refuses a
database whose schema holds anything, runs the catalog's migrations up to the recorded
revision (they create the tables, the row-level security policies and, if the cluster lacks
it, the ``reelvault_tenant`` role), empties what those migrations seeded, copies every table
back in dependency order, checks every row count and sets the sequences. Any failure rolls all
of it back: the database is left as empty as it was.

Row-level security: both sessions run with ``row_security = off``, which makes PostgreSQL
raise an error instead of silently leaving out rows a policy would hide. The catalog's user
owns the tables and is not subject to their policies, so nothing is refused in practice; a
user that would see or write only some rows gets an error, never a partial backup or restore.

Text COPY depends on a few session settings (date style, time zone, float digits); both sides
fix them, as pg_dump does, so the files read back the same on any server.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.script import ScriptDirectory
from reelvault_catalog.migrate import MIGRATION_LOCK_KEY, alembic_config
from reelvault_catalog.settings import normalise_database_url
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from reelvault.backup.manifest import TABLES_FOLDER, SequenceRecord, TableRecord
from reelvault.backup.rules import dependency_order, non_empty_reason

MIGRATIONS_TABLE = "alembic_version"
SESSION_SETTINGS = (
    "SET LOCAL row_security = off",
    "SET LOCAL DateStyle = 'ISO, YMD'",
    "SET LOCAL IntervalStyle = 'postgres'",
    "SET LOCAL TimeZone = 'UTC'",
    "SET LOCAL extra_float_digits = 3",
    "SET LOCAL bytea_output = 'hex'",
)
_RELATIONS_OF_SCHEMA = """
    SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = current_schema() AND c.relkind::text = ANY(CAST(:kinds AS text[]))
    ORDER BY c.relname
"""
_FOREIGN_KEYS = """
    SELECT child.relname, parent.relname FROM pg_constraint k
    JOIN pg_class child ON child.oid = k.conrelid
    JOIN pg_class parent ON parent.oid = k.confrelid
    JOIN pg_namespace n ON n.oid = child.relnamespace
    WHERE k.contype = 'f' AND n.nspname = current_schema()
"""
_COLUMNS = """
    SELECT a.attname FROM pg_attribute a
    WHERE a.attrelid = format('%I.%I', current_schema(), CAST(:table AS text))::regclass
      AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
    ORDER BY a.attnum
"""
# Every stored object the catalog refers to. Reference images name only their key: they live
# in the images bucket.
_OBJECT_REFERENCES = """
    SELECT video_bucket, video_key FROM videos
        WHERE video_bucket IS NOT NULL AND video_key IS NOT NULL
    UNION SELECT thumbnail_bucket, thumbnail_key FROM videos
        WHERE thumbnail_bucket IS NOT NULL AND thumbnail_key IS NOT NULL
    UNION SELECT CAST(:images AS text), unnest(reference_image_keys) FROM videos
    ORDER BY 1, 2
"""


class DatabaseProblem(Exception):
    """A database the command cannot work with, said in one line."""


class DatabaseNotEmpty(DatabaseProblem):
    pass


@dataclass(frozen=True)
class DatabaseDump:
    revision: str
    server: str
    tables: tuple[TableRecord, ...]
    sequences: tuple[SequenceRecord, ...]
    references: tuple[tuple[str, str], ...]  # (bucket, key) of every object rows refer to


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def open_engine(url: str) -> AsyncEngine:
    """An engine for one command: the catalog's URL rules (``postgres://``, ``sslmode``...),
    no pool to leave behind."""
    return create_async_engine(normalise_database_url(url), poolclass=NullPool)


async def _driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under ``conn``, inside the same transaction (for COPY)."""
    raw = await conn.get_raw_connection()
    return raw.driver_connection


async def _apply_session_settings(conn: AsyncConnection) -> None:
    for statement in SESSION_SETTINGS:
        await conn.execute(text(statement))


async def _relations(conn: AsyncConnection, kinds: list[str]) -> list[str]:
    rows = await conn.execute(text(_RELATIONS_OF_SCHEMA), {"kinds": kinds})
    return [str(row[0]) for row in rows]


async def _tables_in_order(conn: AsyncConnection) -> list[str]:
    tables = [t for t in await _relations(conn, ["r"]) if t != MIGRATIONS_TABLE]
    references = [(str(a), str(b)) for a, b in await conn.execute(text(_FOREIGN_KEYS))]
    try:
        return dependency_order(tables, references)
    except ValueError as exc:
        raise DatabaseProblem(str(exc)) from None


async def _columns(conn: AsyncConnection, table: str) -> tuple[str, ...]:
    rows = await conn.execute(text(_COLUMNS), {"table": table})
    return tuple(str(row[0]) for row in rows)


async def _revision(conn: AsyncConnection) -> str:
    exists = await conn.scalar(text("SELECT to_regclass(CAST(:name AS text)) IS NOT NULL"),
                               {"name": MIGRATIONS_TABLE})
    revision = (await conn.scalar(text(f"SELECT max(version_num) FROM {MIGRATIONS_TABLE}"))
                if exists else None)
    if revision is None:
        raise DatabaseProblem("the database has no catalog schema (no alembic revision): is "
                              "DATABASE_URL the catalog's database?")
    return str(revision)


async def _sequences(conn: AsyncConnection) -> tuple[SequenceRecord, ...]:
    records = []
    for name in await _relations(conn, ["S"]):
        row = (await conn.execute(text(f"SELECT last_value, is_called FROM {quoted(name)}"))).one()
        records.append(SequenceRecord(name=name, last_value=int(row[0]), is_called=bool(row[1])))
    return tuple(records)


def copied_rows(status: str) -> int:
    """``COPY 42`` -> 42."""
    return int(status.split()[-1])


async def dump_database(url: str, folder: Path, images_bucket: str) -> DatabaseDump:
    """Copy every table of the catalog's schema into ``folder/tables`` from one snapshot."""
    (folder / TABLES_FOLDER).mkdir(parents=True, exist_ok=True)
    engine = open_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="REPEATABLE READ",
                                         postgresql_readonly=True)
            async with conn.begin():
                await _apply_session_settings(conn)
                revision = await _revision(conn)
                server = str(await conn.scalar(text("SHOW server_version")))
                schema = str(await conn.scalar(text("SELECT current_schema()")))
                driver = await _driver(conn)
                tables = []
                for table in await _tables_in_order(conn):
                    columns = await _columns(conn, table)
                    relative = f"{TABLES_FOLDER}/{table}.copy"
                    status = await driver.copy_from_table(
                        table, schema_name=schema, columns=list(columns),
                        output=str(folder / relative), format="text")
                    tables.append(TableRecord(name=table, columns=columns,
                                              rows=copied_rows(status), file=relative))
                sequences = await _sequences(conn)
                rows = await conn.execute(text(_OBJECT_REFERENCES), {"images": images_bucket})
                references = tuple((str(bucket), str(key)) for bucket, key in rows)
    finally:
        await engine.dispose()
    return DatabaseDump(revision, server, tuple(tables), sequences, references)


def known_revisions() -> set[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return {revision.revision for revision in script.walk_revisions()}


def _upgrade_to(connection: Connection, revision: str) -> None:
    command.upgrade(alembic_config(connection), revision)


@dataclass(frozen=True)
class RestoredTable:
    name: str
    rows: int


async def _check_schema(conn: AsyncConnection, tables: tuple[TableRecord, ...],
                        revision: str) -> list[str]:
    """The schema the migrations made must be the one the backup was taken from; returns the
    tables in the order their rows go in."""
    order = await _tables_in_order(conn)
    recorded = {table.name: table for table in tables}
    if set(order) != set(recorded):
        raise DatabaseProblem(
            f"the schema at revision {revision} has tables {', '.join(sorted(order))}, the "
            f"backup {', '.join(sorted(recorded))}")
    for name in order:
        columns = await _columns(conn, name)
        if set(columns) != set(recorded[name].columns):
            raise DatabaseProblem(
                f"table {name} at revision {revision} has columns {', '.join(columns)}, the "
                f"backup {', '.join(recorded[name].columns)}")
    return order


async def _copy_in(conn: AsyncConnection, folder: Path, tables: tuple[TableRecord, ...],
                   order: list[str]) -> list[RestoredTable]:
    recorded = {table.name: table for table in tables}
    schema = str(await conn.scalar(text("SELECT current_schema()")))
    # What the migrations seeded (the default organization) goes: the backup has its own.
    await conn.execute(text("TRUNCATE " + ", ".join(quoted(name) for name in order)))
    driver = await _driver(conn)
    restored = []
    for name in order:
        table = recorded[name]
        status = await driver.copy_to_table(
            name, schema_name=schema, columns=list(table.columns),
            source=str(folder / table.file), format="text")
        if copied_rows(status) != table.rows:
            raise DatabaseProblem(f"table {name}: {copied_rows(status)} rows went in, the "
                                  f"backup recorded {table.rows}")
        restored.append(RestoredTable(name, table.rows))
    return restored


async def _set_sequences(conn: AsyncConnection, sequences: tuple[SequenceRecord, ...]) -> None:
    present = set(await _relations(conn, ["S"]))
    for sequence in sequences:
        if sequence.name not in present:
            raise DatabaseProblem(f"sequence {sequence.name} of the backup is not in the schema")
        await conn.execute(
            text("SELECT setval(format('%I.%I', current_schema(), CAST(:name AS text))"
                 "::regclass, :value, :called)"),
            {"name": sequence.name, "value": sequence.last_value, "called": sequence.is_called})


async def restore_database(
    url: str, folder: Path, revision: str, tables: tuple[TableRecord, ...],
    sequences: tuple[SequenceRecord, ...],
) -> list[RestoredTable]:
    """Restore into the empty database at ``url``, all or nothing."""
    if revision not in known_revisions():
        raise DatabaseProblem(
            f"the backup's schema revision {revision} is unknown to this version of reelvault: "
            "restore with the version that made the backup (or a newer one)")
    engine = open_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": MIGRATION_LOCK_KEY})
            schema = str(await conn.scalar(text("SELECT current_schema()")))
            reason = non_empty_reason(schema, await _relations(conn, ["r", "p", "v", "m", "S",
                                                                      "f"]))
            if reason is not None:
                raise DatabaseNotEmpty(reason)
            await conn.run_sync(_upgrade_to, revision)
            await _apply_session_settings(conn)
            order = await _check_schema(conn, tables, revision)
            restored = await _copy_in(conn, folder, tables, order)
            await _set_sequences(conn, sequences)
    finally:
        await engine.dispose()
    return restored
