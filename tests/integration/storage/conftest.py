"""Storage backends under test: the Supabase backend against the Supabase-Storage-compatible test
server (one per session, reset between tests), against a real Supabase Storage server when one is
at hand (``REELVAULT_TEST_SUPABASE_STORAGE_URL`` and ``REELVAULT_TEST_SUPABASE_SERVICE_KEY``, or
the ``supabase/storage-api`` image when a Docker engine answers; skipped with the reason
otherwise), and the filesystem backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from reelvault_common.runtime.settings import StorageSettings
from reelvault_common.storage.layout import Buckets
from reelvault_common.storage.retry import RetryPolicy
from reelvault_common.storage.supabase import SupabaseStorage, SupabaseStorageOptions

from tests.support.supabase_storage import (
    ExternalStorage,
    SupabaseStorageServer,
    external_storage,
    running_server,
)

# Retries that do not slow the suite down; still exponential and bounded.
FAST_RETRY = RetryPolicy(attempts=4, base_delay_s=0.01, max_delay_s=0.05)


@pytest.fixture(scope="session")
def supabase_session_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SupabaseStorageServer]:
    with running_server(tmp_path_factory.mktemp("supabase-storage")) as server:
        yield server


@pytest.fixture
def storage_server(supabase_session_server: SupabaseStorageServer) -> SupabaseStorageServer:
    """The session's server with no buckets, objects, faults or request log."""
    supabase_session_server.reset()
    return supabase_session_server


@pytest.fixture
def storage_options(tmp_path: Path) -> SupabaseStorageOptions:
    return SupabaseStorageOptions(spool_dir=tmp_path / "spool", retry=FAST_RETRY, timeout_s=20)


@pytest.fixture
def buckets() -> Buckets:
    return Buckets.from_settings(StorageSettings())


@pytest.fixture
async def supabase_storage(
    storage_server: SupabaseStorageServer, storage_options: SupabaseStorageOptions
) -> AsyncIterator[SupabaseStorage]:
    store = SupabaseStorage.for_storage_server(
        storage_server.url, storage_server.service_key(), storage_options
    )
    yield store
    await store.aclose()


@pytest.fixture(scope="session")
def real_storage_session() -> Iterator[ExternalStorage | str]:
    with external_storage() as found:
        yield found


@pytest.fixture
def real_storage(real_storage_session: ExternalStorage | str, buckets: Buckets) -> ExternalStorage:
    """A real storage server with the configured buckets emptied (tests reuse fixed keys)."""
    if isinstance(real_storage_session, str):
        pytest.skip(real_storage_session)
    real_storage_session.empty_buckets([spec.name for spec in buckets.all()])
    return real_storage_session
