"""The archiver's settings and its consumers' policies: nested per-consumer settings over the
archiver's own defaults, intake never below the copy slots."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from reelvault_archiver.app import retry_policy
from reelvault_archiver.consumers import INPUTS, consumer_policies
from reelvault_archiver.settings import ArchiverSettings, archive_consumer_defaults
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime.settings import ConsumerSettings


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


def test_consumer_defaults_are_the_archivers() -> None:
    settings = ArchiverSettings()
    for rules in (settings.completed, settings.rearchive):
        assert rules == ConsumerSettings(ack_wait_s=60, max_deliver=500, max_ack_pending=1000,
                                         workers=8, retry_base_s=1.0, retry_max_s=30.0)
    policy = retry_policy(settings)
    assert (policy.base_delay_s, policy.max_delay_s) == (1.0, 30.0)


def test_one_nested_variable_keeps_the_other_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REELVAULT_COMPLETED__ACK_WAIT_S", "20")
    monkeypatch.setenv("REELVAULT_COMPLETED__RETRY_MAX_S", "5")
    monkeypatch.setenv("REELVAULT_REARCHIVE__MAX_DELIVER", "40")
    settings = ArchiverSettings()
    assert settings.completed == archive_consumer_defaults().model_copy(
        update={"ack_wait_s": 20.0, "retry_max_s": 5.0})
    assert settings.rearchive == archive_consumer_defaults().model_copy(
        update={"max_deliver": 40})
    # Download retries are paced like the consumer's deliveries.
    assert retry_policy(settings, settings.completed).max_delay_s == 5.0
    assert ArchiverSettings(completed={"workers": 3}).completed.max_deliver == 500


def test_retry_bounds_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REELVAULT_REARCHIVE__RETRY_BASE_S", "40")  # above retry_max_s (30)
    with pytest.raises(ValidationError, match="retry_max_s"):
        ArchiverSettings()


def test_intake_holds_at_least_one_message_per_copy_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REELVAULT_MAX_WORKERS", "6")
    monkeypatch.setenv("REELVAULT_COMPLETED__WORKERS", "3")
    monkeypatch.setenv("REELVAULT_REARCHIVE__WORKERS", "10")
    monkeypatch.setenv("REELVAULT_THUMBNAIL_MAX_SIDE", "320")
    settings = ArchiverSettings()
    completed, rearchive = INPUTS
    assert completed.settings(settings).workers == 6  # raised to max_workers
    assert rearchive.settings(settings).workers == 10
    assert settings.thumbnail_max_side == 320


def test_three_durables_one_subject_each_without_server_backoff() -> None:
    settings = ArchiverSettings(namespace="unit", rearchive={"ack_wait_s": 90})
    completed, rearchive, deletions = consumer_policies(settings,
                                                        Topology.from_settings(settings))
    assert deletions.durable == "unit-archiver-deletions"
    assert deletions.filter_subjects == ("unit.events.*.video.deleted",)
    assert deletions.backoff_s == ()
    assert completed.durable == "unit-archiver-completed"
    assert completed.filter_subjects == ("unit.events.*.video.completed",)
    assert rearchive.durable == "unit-archiver-rearchive"
    assert rearchive.filter_subjects == ("unit.events.*.video.archive.requested",)
    assert (completed.ack_wait_s, rearchive.ack_wait_s) == (60.0, 90.0)
    assert completed.max_deliver == rearchive.max_deliver == 500
    assert completed.backoff_s == rearchive.backoff_s == ()
