"""The heartbeat helper and the settings' own rules."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError
from reelvault_archiver.heartbeat import keep_alive
from reelvault_archiver.settings import ArchiverSettings


async def test_keep_alive_beats_while_work_runs_and_stops_after() -> None:
    beats: list[float] = []

    async def beat() -> None:
        beats.append(asyncio.get_running_loop().time())

    async with keep_alive(beat, 0.02):
        await asyncio.sleep(0.15)
    count = len(beats)
    assert count >= 4
    await asyncio.sleep(0.06)
    assert len(beats) == count


async def test_a_failing_beat_does_not_break_the_work() -> None:
    calls = 0

    async def beat() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("nats down")

    async with keep_alive(beat, 0.01):
        await asyncio.sleep(0.05)
    assert calls >= 2


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4333")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9999/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("REELVAULT_MAX_WORKERS", "2")
    monkeypatch.setenv("REELVAULT_BUCKET_VIDEOS", "vids")
    settings = ArchiverSettings()
    assert settings.nats_url == "nats://127.0.0.1:4333"
    assert settings.openai_base_url == "http://127.0.0.1:9999/v1"
    assert settings.openai_api_key.get_secret_value() == "sk-test"
    assert "sk-test" not in repr(settings)
    assert settings.max_workers == 2
    assert settings.bucket_videos == "vids"
    assert settings.download_chunk_bytes == 1024 * 1024


def test_heartbeat_must_be_shorter_than_ack_wait() -> None:
    with pytest.raises(ValidationError, match="heartbeat_interval_s"):
        ArchiverSettings(ack_wait_s=10, heartbeat_interval_s=10)


def test_intake_holds_at_least_one_message_per_copy_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REELVAULT_MAX_WORKERS", "6")
    monkeypatch.setenv("REELVAULT_MAX_PENDING", "3")
    monkeypatch.setenv("REELVAULT_THUMBNAIL_MAX_SIDE", "320")
    settings = ArchiverSettings()
    assert settings.intake_per_consumer == 6  # raised to max_workers
    assert settings.thumbnail_max_side == 320
    assert ArchiverSettings(max_workers=2, max_pending=10).intake_per_consumer == 10
