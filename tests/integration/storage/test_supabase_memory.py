"""Memory stays flat: putting and reading a ~100 MB object through the Supabase backend grows
this process's RSS by far less than the object. The test server runs in its own process so only
the client is measured."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import pytest
from reelvault_common.storage.layout import MB, Buckets
from reelvault_common.storage.supabase import SupabaseStorage, SupabaseStorageOptions

from tests.support.supabase_storage import make_jwt

pytestmark = pytest.mark.integration

SIZE = 100 * MB + 4321
CHUNK = MB
MAX_GROWTH = 40 * MB  # the object is 100 MB; spooling, TUS chunks and buffers stay well under
SECRET = "memory-test-jwt-secret-of-enough-length"


@pytest.fixture
def server_process(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    port_file = tmp_path / "port"
    log = tmp_path / "server.log"
    with log.open("wb") as log_handle:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.supabase_storage",
                "--root",
                str(tmp_path / "srv"),
                "--jwt-secret",
                SECRET,
                "--port-file",
                str(port_file),
            ],
            cwd=request.config.rootpath,
            stdout=subprocess.DEVNULL,
            stderr=log_handle,
        )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"test server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port_file.read_text()}/"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class PeakRss:
    """Samples this process's RSS every few ms in a thread; ``growth`` is peak minus start."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self.start = self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def growth(self) -> int:
        return self.peak - self.start


async def generated(size: int, digest: hashlib._Hash) -> AsyncIterator[bytes]:
    """Fresh random chunks, never the whole object at once."""
    sent = 0
    while sent < size:
        chunk = os.urandom(min(CHUNK, size - sent))
        digest.update(chunk)
        sent += len(chunk)
        yield chunk


async def test_a_100_mb_object_streams_in_and_out_with_flat_memory(
    server_process: str, tmp_path: Path, buckets: Buckets, record_property: pytest.RecordProperty
) -> None:
    store = SupabaseStorage.for_storage_server(
        server_process, make_jwt(SECRET), SupabaseStorageOptions(spool_dir=tmp_path / "spool")
    )
    try:
        await store.ensure_buckets(buckets.all())
        # Warm up allocator and connection pool with a small TUS upload first.
        await store.put(
            "videos", "warm/video.mp4", generated(7 * MB, hashlib.sha256()), "video/mp4"
        )
        expected = hashlib.sha256()
        with PeakRss() as put_rss:
            started = time.perf_counter()
            stored = await store.put(
                "videos", "big/video.mp4", generated(SIZE, expected), "video/mp4"
            )
            put_s = time.perf_counter() - started
        assert (stored.bytes, stored.sha256) == (SIZE, expected.hexdigest())
        assert not list((tmp_path / "spool").iterdir())  # the spool file is gone

        got = hashlib.sha256()
        size = 0
        with PeakRss() as read_rss:
            started = time.perf_counter()
            async for chunk in store.read("videos", "big/video.mp4"):
                got.update(chunk)
                size += len(chunk)
            read_s = time.perf_counter() - started
        assert (size, got.hexdigest()) == (SIZE, expected.hexdigest())
    finally:
        await store.aclose()

    record_property("put_mb_s", round(SIZE / MB / put_s, 1))
    record_property("read_mb_s", round(SIZE / MB / read_s, 1))
    record_property("put_rss_growth_mb", round(put_rss.growth / MB, 1))
    record_property("read_rss_growth_mb", round(read_rss.growth / MB, 1))
    print(
        f"\n100 MB put: {SIZE / MB / put_s:.0f} MB/s, peak RSS growth {put_rss.growth / MB:.1f} MB;"
        f" read: {SIZE / MB / read_s:.0f} MB/s, peak RSS growth {read_rss.growth / MB:.1f} MB"
    )
    assert put_rss.growth < MAX_GROWTH, f"put grew RSS by {put_rss.growth / MB:.1f} MB"
    assert read_rss.growth < MAX_GROWTH, f"read grew RSS by {read_rss.growth / MB:.1f} MB"
