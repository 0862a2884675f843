"""At start-up the catalog waits for PostgreSQL while it is not there (yet), and fails at once
on what waiting cannot fix (wrong password, missing database)."""

from __future__ import annotations

import asyncpg.exceptions
from reelvault_catalog.migrate import database_unreachable
from reelvault_common.runtime.startup import describe_error
from sqlalchemy.exc import DBAPIError, OperationalError


def wrapped(orig: BaseException) -> DBAPIError:
    """What SQLAlchemy's asyncpg dialect raises: its own error around the driver's."""
    return OperationalError("SELECT pg_advisory_xact_lock(:key)", {"key": 1}, orig)


def test_not_up_yet_is_waited_for() -> None:
    starting = asyncpg.exceptions.CannotConnectNowError("the database system is starting up")
    assert database_unreachable(ConnectionRefusedError(111, "Connect call failed"))
    assert database_unreachable(FileNotFoundError(2, "No such file or directory"))  # socket
    assert database_unreachable(wrapped(starting))
    assert database_unreachable(wrapped(asyncpg.exceptions.TooManyConnectionsError("full")))
    assert database_unreachable(wrapped(asyncpg.exceptions.ConnectionDoesNotExistError("gone")))
    assert describe_error(wrapped(starting)) == "the database system is starting up"


def test_what_waiting_cannot_fix_fails_at_once() -> None:
    assert not database_unreachable(
        wrapped(asyncpg.exceptions.InvalidPasswordError("password authentication failed")))
    assert not database_unreachable(
        wrapped(asyncpg.exceptions.InvalidCatalogNameError('database "x" does not exist')))
    assert not database_unreachable(ValueError("a bug"))
