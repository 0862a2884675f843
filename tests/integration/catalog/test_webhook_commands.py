"""``reelvault webhooks add|list|deliveries|replay|remove`` against a running catalog (real
JetStream and PostgreSQL) and a local receiver on loopback (a dev deployment): the secret the
command prints once signs what the receiver gets; the delivery log and a replay with the same
``webhook-id``; another organization's endpoint is not found; what the catalog refuses exits 1
with one line."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from reelvault_catalog.app import CatalogService
from reelvault_catalog.settings import CatalogSettings
from reelvault_catalog.tenancy_repository import TenancyRepository
from reelvault_common.messaging.publisher import EventPublisher
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime.settings import ServiceSettings
from sqlalchemy.ext.asyncio import create_async_engine
from standardwebhooks import Webhook

from tests.support.catalog_events import VideoStory
from tests.support.webhook_receiver import WebhookReceiver, webhook_receiver

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Ran:
    code: int
    out: list[str]
    err: list[str]


@dataclass
class Setup:
    receiver: WebhookReceiver
    publisher: EventPublisher
    data_dir: Path
    capsys: pytest.CaptureFixture[str]

    async def cli(self, *argv: str) -> Ran:
        """``reelvault webhooks ARGV`` in-process (in a thread: the command runs its own event
        loop, and the catalog and the receiver serve from this one)."""
        from reelvault.cli import main

        def run() -> Ran:
            with pytest.raises(SystemExit) as exit_info:
                main(["webhooks", *argv, "--data-dir", str(self.data_dir)])
            out, err = self.capsys.readouterr()
            return Ran(int(exit_info.value.code or 0), out.splitlines(), err.splitlines())

        return await asyncio.to_thread(run)

    async def ok(self, *argv: str) -> list[str]:
        ran = await self.cli(*argv)
        assert ran.code == 0 and ran.err == [], ran
        return ran.out

    async def settled_log(self, org: str, endpoint_id: str) -> list[list[str]]:
        """The endpoint's delivery log once its newest is no longer pending (the answer is
        recorded just after the receiver got the request), or after 10 s."""
        deadline = time.monotonic() + 10
        while True:
            log = rows(await self.ok("deliveries", "--org", org, endpoint_id))
            if not log or log[0][2] != "pending" or time.monotonic() > deadline:
                return log
            await asyncio.sleep(0.05)

    async def refused(self, *argv: str) -> str:
        """What the catalog refuses: exit 1, nothing on stdout, one line on stderr."""
        ran = await self.cli(*argv)
        assert ran.code == 1 and ran.out == [] and len(ran.err) == 1, ran
        assert ran.err[0].startswith("reelvault: "), ran
        return ran.err[0]


@pytest.fixture
async def setup(service_settings: ServiceSettings, database_url: str, tmp_path: Path,
                capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
                ) -> AsyncIterator[Setup]:
    import nats

    settings = CatalogSettings(
        NATS_URL=service_settings.nats_url, namespace=service_settings.namespace,
        DATABASE_URL=database_url, deployment="dev", retention_sweep_interval_s=0,
        webhooks={"retry_schedule_s": [0.3], "retry_jitter": 0, "timeout_s": 2.0,
                  "poll_s": 0.1},
    )
    service = CatalogService(settings)
    engine = create_async_engine(database_url)
    monkeypatch.setenv("NATS_URL", service_settings.nats_url)
    monkeypatch.setenv("REELVAULT_NAMESPACE", service_settings.namespace)
    async with webhook_receiver() as receiver:
        await service.start()
        nc = await nats.connect(settings.nats_url)
        try:
            for org in ("acme", "globex"):
                await TenancyRepository(engine).create_org(org)
            publisher = EventPublisher(nc, Topology.from_settings(settings))
            yield Setup(receiver, publisher, tmp_path / "no-system", capsys)
        finally:
            await nc.close()
            await service.stop()
            await engine.dispose()


async def until(check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.05)


def rows(table: list[str]) -> list[list[str]]:
    """A printed table's rows under its heading, split into columns."""
    return [line.split() for line in table[1:]]


async def test_add_list_deliver_replay_and_remove(setup: Setup) -> None:
    receiver = setup.receiver
    added = await setup.ok("add", "--org", "acme", "--url", receiver.url("cli"),
                           "--event", "video.completed", "--description", "from-the-cli")
    first, secret = added[0], added[-1]
    assert first.startswith("created webhook endpoint ") and "shown once" in first
    endpoint_id = first.split()[3]
    uuid.UUID(endpoint_id)
    assert secret.startswith("whsec_") and len(added) == 2
    [[listed_id, url, events, state, failures, *_, description]] = rows(
        await setup.ok("list", "--org", "acme"))
    assert (listed_id, url, events, state, failures, description) == (
        endpoint_id, receiver.url("cli"), "video.completed", "enabled", "0", "from-the-cli")
    assert secret not in "\n".join(await setup.ok("list", "--org", "acme"))
    assert rows(await setup.ok("list", "--org", "globex")) == []

    story = VideoStory(org="acme")
    await setup.publisher.publish(story.stored())
    await until(lambda: len(receiver.of("cli")) == 1)
    [got] = receiver.of("cli")
    assert Webhook(secret).verify(got.body, got.headers)["data"]["id"] == str(story.video_id)
    log = await setup.settled_log("acme", endpoint_id)
    [[delivery_id, event_type, status, attempts, code, *_]] = log
    assert delivery_id == got.headers["webhook-id"]
    assert (event_type, status, attempts, code) == ("video.completed", "succeeded", "1", "204")

    replayed = await setup.ok("replay", "--org", "acme", endpoint_id, delivery_id)
    assert replayed == [f"replaying webhook delivery {delivery_id} (video.completed) to "
                        f"endpoint {endpoint_id} now"]
    await until(lambda: len(receiver.of("cli")) == 2)
    again = receiver.of("cli")[1]
    assert again.headers["webhook-id"] == delivery_id and again.body == got.body
    Webhook(secret).verify(again.body, again.headers)

    removed = await setup.ok("remove", "--org", "acme", endpoint_id)
    assert removed == [f"removed webhook endpoint {endpoint_id} of acme"]
    assert rows(await setup.ok("list", "--org", "acme")) == []
    said = await setup.refused("deliveries", "--org", "acme", endpoint_id)
    assert "no such webhook endpoint" in said


async def test_what_the_catalog_refuses_is_one_line_and_exit_1(setup: Setup) -> None:
    added = await setup.ok("add", "--org", "acme", "--url", setup.receiver.url("mine"))
    endpoint_id = added[0].split()[3]
    assert "video.completed,video.failed,video.deleted,quota.warning" in added[0]
    # Another organization's endpoint is not there for it.
    for argv in (("remove", "--org", "globex", endpoint_id),
                 ("deliveries", "--org", "globex", endpoint_id)):
        assert "no such webhook endpoint" in await setup.refused(*argv)
    said = await setup.refused("replay", "--org", "globex", endpoint_id, str(uuid.uuid4()))
    assert "no such webhook delivery" in said
    said = await setup.refused("replay", "--org", "acme", endpoint_id, str(uuid.uuid4()))
    assert "no such webhook delivery" in said
    # Unsafe URLs, even in a dev deployment, and an unknown organization.
    for url, why in (("http://10.1.2.3/hook", "a private address"),
                     ("https://10.1.2.3/hook", "a private address"),
                     ("https://user:pw@hooks.example.com/in", "credentials"),
                     ("ftp://hooks.example.com/in", "must be https")):
        said = await setup.refused("add", "--org", "acme", "--url", url)
        assert why in said and "user:pw" not in said, said
    assert "no-such-org" in await setup.refused(
        "add", "--org", "no-such-org", "--url", setup.receiver.url("x"))
    # Nothing of it was added, and the endpoint is still acme's.
    assert [row[0] for row in rows(await setup.ok("list", "--org", "acme"))] == [endpoint_id]
