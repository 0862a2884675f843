"""With ``REELVAULT_LOG_FORMAT=json`` every line a service writes is one JSON object --
FastStream's own lines included, none with ANSI colour codes -- and a service with nothing to do
logs no ERROR (an idle pull fetch that times out is not one). A line written while handling an
event names its video, organization and trace (the publisher's, carried in the headers)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from faststream.nats import NatsBroker
from reelvault_common.contracts.events import VideoRequested
from reelvault_common.messaging.consumer import Consumer, ConsumerRunner, Delivery
from reelvault_common.messaging.publisher import EventPublisher
from reelvault_common.messaging.setup import prepare_topology
from reelvault_common.messaging.topology import ConsumerPolicy, Topology
from reelvault_common.runtime import telemetry
from reelvault_common.runtime.logs import broker_logger, configure_logging
from reelvault_common.runtime.settings import ServiceSettings

from tests.support.logging_state import preserved_logging
from tests.support.tracing import recorded_spans

pytestmark = pytest.mark.integration

# Long enough for the consumers' pull fetches (1 s each) to time out several times.
IDLE_S = 4.0


def json_entries(text: str, stream: str) -> list[dict[str, Any]]:
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            entry = json.loads(line)
        except ValueError:
            pytest.fail(f"{stream} line {number} is not JSON: {line!r}\n{text[-4000:]}")
        assert isinstance(entry, dict), f"{stream} line {number}: {line!r}"
        entries.append(entry)
    return entries


async def test_an_idle_catalog_writes_only_json_lines_and_no_error(
    service_settings: ServiceSettings, database_url: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "NATS_URL": service_settings.nats_url,
        "DATABASE_URL": database_url,
        "REELVAULT_NAMESPACE": service_settings.namespace,
        "REELVAULT_LOG_FORMAT": "json",
        "REELVAULT_LOG_LEVEL": "INFO",
    }
    out_path, err_path = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "reelvault_catalog", env=env, stdout=out, stderr=err
        )

    def output() -> str:
        return out_path.read_text(errors="replace") + err_path.read_text(errors="replace")

    try:
        deadline = time.monotonic() + 30
        while "catalog ready" not in output():
            assert process.returncode is None, output()
            assert time.monotonic() < deadline, output()
            await asyncio.sleep(0.05)
        await asyncio.sleep(IDLE_S)  # nothing to consume: the idle case is the point
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=20) == 0, output()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    stdout = out_path.read_text(errors="replace")
    stderr = err_path.read_text(errors="replace")
    assert "\x1b[" not in stdout + stderr
    entries = json_entries(stdout, "stdout") + json_entries(stderr, "stderr")
    messages = [entry.get("msg") for entry in entries]
    assert "catalog ready" in messages and "catalog stopped" in messages
    assert all(entry.get("service") == "catalog" for entry in entries)
    errors = [entry for entry in entries if entry.get("level") in ("ERROR", "CRITICAL")]
    assert errors == []


@pytest.fixture
def restore_logging() -> Iterator[None]:
    with preserved_logging():
        yield


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("own_logger", [False, True], ids=["faststreams-logger", "broker_logger"])
async def test_a_real_faststream_brokers_lines_come_out_as_json(
    nats_url: str, namespace: str, capsys: pytest.CaptureFixture[str], own_logger: bool
) -> None:
    configure_logging("svc", "DEBUG", "json")
    # Without ``logger=``, FastStream builds its broker logger (its own colour handler on
    # stdout, no propagation) when the broker starts, after configure_logging; with it, the
    # broker logs through the logger it is given. Its per-message lines at INFO here.
    options = {"logger": broker_logger()} if own_logger else {}
    broker = NatsBroker(nats_url, log_level=logging.INFO, **options)

    @broker.subscriber(f"{namespace}.echo")
    async def echo(body: str) -> str:
        return body

    await broker.start()
    try:
        reply = await broker.request("hello", f"{namespace}.echo", timeout=5)
        assert await reply.decode() == "hello"
    finally:
        await broker.stop()

    captured = capsys.readouterr()
    assert captured.out == ""  # FastStream's own stdout handler never wrote
    assert "\x1b[" not in captured.err
    entries = json_entries(captured.err, "stderr")
    logger_name = broker_logger().name if own_logger else "faststream.access.nats"
    from_broker = [e["msg"] for e in entries if e["logger"] == logger_name]
    assert "Received" in from_broker and "Processed" in from_broker, captured.err


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("tracing", [True, False], ids=["traced", "untraced"])
async def test_a_handlers_lines_name_the_event_and_continue_the_publishers_trace(
    service_settings: ServiceSettings, capsys: pytest.CaptureFixture[str], tracing: bool
) -> None:
    configure_logging("svc", "INFO", "json")
    topology = Topology.from_settings(service_settings)
    policy = ConsumerPolicy(topology.durable("test", "logs"),
                            (topology.subject_for(VideoRequested),))
    await prepare_topology(service_settings, topology, [policy])
    event = VideoRequested.new(video_id=uuid.uuid4(), org="acme", correlation_id="c",
                               prompt="p", model="sora-2", seconds="4", size="720x1280")
    handled = asyncio.Event()

    async def handle(received: VideoRequested, delivery: Delivery) -> None:
        logging.getLogger("reelvault_test.handler").info("handling %s", received.type)
        handled.set()

    connection = await nats.connect(service_settings.nats_url)
    runner = ConsumerRunner(connection, topology, [Consumer(
        policy=policy, decode=VideoRequested.model_validate_json, handle=handle)])
    spans_kept = recorded_spans() if tracing else telemetry.tracing_with(None)
    try:
        with spans_kept as spans:
            await runner.start()
            await EventPublisher(connection, topology).publish(event)
            await asyncio.wait_for(handled.wait(), timeout=10)
            await runner.stop()
    finally:
        await runner.stop()
        await connection.close()

    lines = json_entries(capsys.readouterr().err, "stderr")
    [line] = [entry for entry in lines if entry["logger"] == "reelvault_test.handler"]
    assert (line["video_id"], line["org"]) == (str(event.video_id), "acme")
    if not tracing:
        assert "trace_id" not in line
        return
    assert spans is not None
    publish, process = spans.named("publish video.requested"), spans.named(
        "process video.requested")
    assert publish.context is not None and process.context is not None
    assert process.parent is not None and process.parent.span_id == publish.context.span_id
    assert line["trace_id"] == format(publish.context.trace_id, "032x")
    assert line["span_id"] == format(process.context.span_id, "016x")
    assert (process.attributes or {})["messaging.consumer.group.name"] == policy.durable
