"""A NATS user granted one organization's subjects, as ``docs/events-permissions.md`` shows,
receives that organization's events and nothing of another's: live (a core subscription) and
from the stream (a JetStream consumer of its own). The test runs its own nats-server, on a free
loopback port, with that page's configuration for the test's namespace."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig
from reelvault_common.contracts.events import OrgQuotaWarning, VideoCompleted
from reelvault_common.messaging.publisher import EventPublisher
from reelvault_common.messaging.topology import Topology, ensure_stream

from reelvault.embedded import free_port, nats_server_binary, wait_for_port
from tests.support.catalog_events import VideoStory

pytestmark = pytest.mark.integration

PASSWORDS = {"services": "services-secret", "acme": "acme-secret"}
CONSUMER = "ext_acme_events"
REFUSED_S = 1.0  # a refused request gets no answer: how long to wait for one


def server_config(topology: Topology, port: int, store: Path, inbox: str) -> str:
    """The page's configuration, for ``topology``'s namespace and a test port and folder."""
    stream, acme = topology.stream, topology.org_events("acme")
    allowed = [
        f"$JS.API.CONSUMER.CREATE.{stream}.{CONSUMER}.{acme}",
        f"$JS.API.CONSUMER.INFO.{stream}.{CONSUMER}",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{CONSUMER}",
        f"$JS.ACK.{stream}.{CONSUMER}.>",
    ]
    return f"""
listen: 127.0.0.1:{port}
jetstream {{ store_dir: {json.dumps(str(store))} }}
accounts {{
  REELVAULT {{
    jetstream: enabled
    users: [
      {{ user: services, password: {PASSWORDS["services"]} }}
      {{
        user: acme, password: {PASSWORDS["acme"]}
        permissions: {{
          subscribe: {{ allow: {json.dumps([acme, f"{inbox}.>"])} }}
          publish: {{ allow: {json.dumps(allowed)} }}
        }}
      }}
    ]
  }}
}}
"""


@dataclass
class SecuredNats:
    port: int
    topology: Topology
    inbox: str
    errors: list[str] = field(default_factory=list)  # what the server told the acme user

    async def connect(self, user: str) -> Client:
        async def on_error(exc: Exception) -> None:
            self.errors.append(str(exc).lower())

        return await nats.connect(
            f"nats://{user}:{PASSWORDS[user]}@127.0.0.1:{self.port}",
            inbox_prefix=self.inbox if user == "acme" else "_INBOX",
            error_cb=on_error if user == "acme" else None,
            max_reconnect_attempts=1,
        )

    async def refused(self, what: str, subject: str) -> None:
        """Until the server has reported refusing ``what`` (subscription or publish) on
        ``subject`` to the acme user."""
        wanted = f'permissions violation for {what} to "{subject.lower()}"'
        await until(lambda: any(wanted in error for error in self.errors), wanted)


@contextlib.asynccontextmanager
async def secured_nats(tmp_path: Path, namespace: str,
                       inbox: str = "_INBOX") -> AsyncIterator[SecuredNats]:
    topology = Topology(namespace)
    port = free_port()
    config = tmp_path / "nats-server.conf"
    config.write_text(server_config(topology, port, tmp_path / "jetstream", inbox))
    with (tmp_path / "nats-server.log").open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            nats_server_binary(), "-c", str(config), stdout=log,
            stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
        )
    try:
        await asyncio.to_thread(wait_for_port, port)
        yield SecuredNats(port, topology, inbox)
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)


async def until(check: Any, what: str, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def events_of(org: str) -> list[Any]:
    """A few events of ``org``: one video's way to completion, and a quota warning."""
    story = VideoStory(org=org)
    warning = OrgQuotaWarning.crossed(org=org, quota="videos_per_month", period="2026-01",
                                      used=Decimal(8), limit=Decimal(10), resets_at=None)
    return [story.requested(), story.started(), story.completed(), warning]


async def publish_both(server: SecuredNats) -> tuple[list[Any], list[Any]]:
    """As the services: the stream, then globex's events and acme's (in that order)."""
    services = await server.connect("services")
    try:
        await ensure_stream(services.jetstream(), server.topology)
        publisher = EventPublisher(services, server.topology)
        globex, acme = events_of("globex"), events_of("acme")
        for event in globex + acme:
            await publisher.publish(event)
        return acme, globex
    finally:
        await services.close()


def event_id(msg: Msg) -> str:
    return str(json.loads(msg.data)["event_id"])


async def test_a_core_subscriber_receives_its_organizations_events_only(
    tmp_path: Path, namespace: str
) -> None:
    async with secured_nats(tmp_path, namespace) as server:
        topology = server.topology
        acme = await server.connect("acme")
        try:
            mine: list[Msg] = []
            leaked: list[Msg] = []

            async def keep(msg: Msg) -> None:
                mine.append(msg)

            async def leak(msg: Msg) -> None:
                leaked.append(msg)

            await acme.subscribe(topology.org_events("acme"), cb=keep)
            broader = [f"{topology.namespace}.events.>", topology.org_events("globex"),
                       topology.subject_for(VideoCompleted)]
            for subject in broader:
                await acme.subscribe(subject, cb=leak)
            await acme.flush()
            for subject in broader:
                await server.refused("subscription", subject)

            sent, _ = await publish_both(server)
            # globex's events were published first, on the same connection: once acme's have
            # all arrived, any of globex's that could reach this client would have too.
            await until(lambda: len(mine) == len(sent), "acme's events")
            await acme.flush()
            assert [event_id(msg) for msg in mine] == [str(e.event_id) for e in sent]
            assert {msg.subject for msg in mine} == {
                topology.subject(e.type, "acme") for e in sent
            }
            assert leaked == []

            # Nor may it publish, not even on its own organization's subjects.
            forged = topology.subject("video.requested", "acme")
            await acme.publish(forged, sent[0].model_dump_json().encode())
            await acme.flush()
            await server.refused("publish", forged)
        finally:
            await acme.close()


@pytest.mark.parametrize("inbox", ["_INBOX", "_INBOX_acme"])
async def test_a_jetstream_consumer_is_held_to_its_organization(
    tmp_path: Path, namespace: str, inbox: str
) -> None:
    async with secured_nats(tmp_path, namespace, inbox) as server:
        topology = server.topology
        sent, _ = await publish_both(server)  # stored before the consumer exists
        acme = await server.connect("acme")
        try:
            js = acme.jetstream()
            await js.add_consumer(topology.stream, consumer_config(topology.org_events("acme")))
            sub = await js.pull_subscribe_bind(durable=CONSUMER, stream=topology.stream)
            got = await sub.fetch(batch=len(sent) + 4, timeout=5)
            assert [event_id(msg) for msg in got] == [str(e.event_id) for e in sent]
            assert all(msg.subject.startswith(f"{topology.namespace}.events.acme.")
                       for msg in got)
            for msg in got:
                await msg.ack()
            with pytest.raises(nats.errors.TimeoutError):  # and nothing of globex's
                await sub.fetch(batch=1, timeout=0.5)

            info = await js.consumer_info(topology.stream, CONSUMER)
            assert (info.num_pending, info.num_ack_pending) == (0, 0)
            # One event type of its organization is inside the grant too.
            narrowed = topology.subject("video.completed", "acme")
            assert (await js.add_consumer(topology.stream, consumer_config(narrowed))
                    ).config.filter_subject == narrowed
            await refused_requests(server, acme)
        finally:
            await acme.close()


def consumer_config(filter_subject: str | None, name: str = CONSUMER) -> ConsumerConfig:
    return ConsumerConfig(name=name, durable_name=name, filter_subject=filter_subject,
                          ack_policy=AckPolicy.EXPLICIT)


async def refused_requests(server: SecuredNats, acme: Client) -> None:
    """Everything outside the grant: other filters, other consumers, reading by sequence,
    and (with an inbox of its own) other clients' replies."""
    topology, js = server.topology, acme.jetstream()
    stream = topology.stream
    create = f"$JS.API.CONSUMER.CREATE.{stream}"
    ours = topology.durable("catalog", "projection")
    attempts = [
        (consumer_config(topology.org_events("globex")),
         f"{create}.{CONSUMER}.{topology.org_events('globex')}"),
        (consumer_config(f"{topology.namespace}.events.>"),
         f"{create}.{CONSUMER}.{topology.namespace}.events.>"),
        (consumer_config(None), f"{create}.{CONSUMER}"),
        # One of reelvault's own durables, even with acme's filter.
        (consumer_config(topology.org_events("acme"), ours),
         f"{create}.{ours}.{topology.org_events('acme')}"),
    ]
    for config, api_subject in attempts:
        with pytest.raises(nats.errors.TimeoutError):
            await js.add_consumer(stream, config, timeout=REFUSED_S)
        await server.refused("publish", api_subject)
    with pytest.raises(nats.errors.TimeoutError):  # what ``js.get_msg(stream, 1)`` sends
        await acme.request(f"$JS.API.STREAM.MSG.GET.{stream}", b'{"seq": 1}', timeout=REFUSED_S)
    await server.refused("publish", f"$JS.API.STREAM.MSG.GET.{stream}")

    # The granted API subject with another filter in the request body: the server refuses.
    body = {"stream_name": stream,
            "config": consumer_config(topology.org_events("globex")).as_dict()}
    reply = await acme.request(f"{create}.{CONSUMER}.{topology.org_events('acme')}",
                               json.dumps(body).encode(), timeout=5)
    assert "error" in json.loads(reply.data)
    services = await server.connect("services")
    try:
        info = await services.jetstream().consumer_info(stream, CONSUMER)
        assert info.config.filter_subject == topology.subject("video.completed", "acme")
    finally:
        await services.close()
    if server.inbox != "_INBOX":
        await acme.subscribe("_INBOX.>")
        await server.refused("subscription", "_INBOX.>")
