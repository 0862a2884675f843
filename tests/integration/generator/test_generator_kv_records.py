"""The generator's KV records against real NATS: job bindings (with what a webhook needs, and
the bare ids written before) and webhook ids claimed atomically and released on failure."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import nats
import pytest
from nats.js.api import KeyValueConfig, StorageType
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime.settings import ServiceSettings
from reelvault_generator.ledger import JobBinding
from reelvault_generator.ledger_store import JobLedger, open_bucket
from reelvault_generator.webhooks import KvSeenWebhooks

pytestmark = pytest.mark.integration

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


async def test_job_bindings_and_webhook_claims(service_settings: ServiceSettings) -> None:
    topology = Topology.from_settings(service_settings)
    nc = await nats.connect(service_settings.nats_url)
    try:
        js = nc.jetstream()
        ledger = await JobLedger.open(js, topology.kv_bucket("generator", "jobs"))
        mine, other = uuid.uuid4(), uuid.uuid4()
        full = JobBinding(video_id=mine, correlation_id="c", org="acme", requested_at=T0,
                          job_created_at=T0)
        assert await ledger.bind_job("openai", "video_1", mine, binding=full)
        assert await ledger.bind_job("openai", "video_1", mine)  # ours already: still ours
        assert not await ledger.bind_job("openai", "video_1", other)
        assert await ledger.job_binding("openai", "video_1") == full
        assert await ledger.job_owner("openai", "video_1") == mine
        # A binding as written before it carried details (the bare video id).
        kv = await js.key_value(topology.kv_bucket("generator", "jobs"))
        await kv.put("job.openai.video_0", str(other).encode())
        assert await ledger.job_owner("openai", "video_0") == other
        assert not await ledger.bind_job("openai", "video_0", mine)

        seen = KvSeenWebhooks(await open_bucket(js, topology.kv_bucket("generator", "webhooks"),
                                                config=KeyValueConfig(
            bucket=topology.kv_bucket("generator", "webhooks"), history=1,
            storage=StorageType.FILE, ttl=60)))
        assert await seen.claim("wh_1")
        assert not await seen.claim("wh_1")  # a duplicate delivery
        await seen.release("wh_1")  # not processed: the sender's retry must be
        assert await seen.claim("wh_1")
        assert not await seen.claim("wh_1")
    finally:
        await nc.close()
