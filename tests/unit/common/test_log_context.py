"""Log lines name what they are about: the video and organization bound in this task, and the
active span's trace and span ids (JSON fields; a short suffix in the text format)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from reelvault_common.runtime import telemetry
from reelvault_common.runtime.logs import bind_log_context, configure_logging, log_scope

from tests.support.logging_state import json_lines, preserved_logging
from tests.support.tracing import recorded_spans

log = logging.getLogger("reelvault_test.context")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    with preserved_logging():
        yield



def test_json_lines_carry_video_org_and_the_active_span(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("svc", "INFO", "json")
    video_id = uuid.uuid4()
    with recorded_spans(), log_scope():
        log.info("before anything is known")
        bind_log_context(video_id=video_id, org="acme")
        log.info("about the video")
        with telemetry.span("apply video.requested"):
            ids = trace.get_current_span().get_span_context()
            log.info("inside a span")
    log.info("after the scope")

    before, about, inside, after = json_lines(capsys.readouterr().err)
    context_keys = {"video_id", "org", "trace_id", "span_id"}
    assert context_keys.isdisjoint(before) and context_keys.isdisjoint(after)
    assert about["video_id"] == str(video_id) and about["org"] == "acme"
    assert "trace_id" not in about  # no span was active
    assert inside["trace_id"] == format(ids.trace_id, "032x")
    assert inside["span_id"] == format(ids.span_id, "016x")
    assert inside["video_id"] == str(video_id) and inside["msg"] == "inside a span"


def test_a_consumed_event_names_its_video_and_org(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("svc", "INFO", "json")
    event_video = uuid.uuid4()

    class Event:
        type = "video.completed"
        video_id = event_video
        org = "globex"
        event_id = uuid.uuid4()

    with recorded_spans(), telemetry.consuming("archiver", "subject", None):
        telemetry.delivered(Event(), 1)
        log.info("copying")
    [line] = json_lines(capsys.readouterr().err)
    assert (line["video_id"], line["org"]) == (str(event_video), "globex")
    assert len(line["trace_id"]) == 32 and len(line["span_id"]) == 16


def test_without_tracing_lines_still_name_the_video(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("svc", "INFO", "json")
    with telemetry.tracing_with(None), telemetry.consuming("c", "s", None):
        telemetry.tag(video_id="v1", org="acme")
        log.info("handled")
    [line] = json_lines(capsys.readouterr().err)
    assert line["video_id"] == "v1" and line["org"] == "acme"
    assert "trace_id" not in line and "span_id" not in line


def test_text_lines_end_with_a_short_context(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("svc", "INFO", "text")
    with recorded_spans(), log_scope(), telemetry.span("work"):
        trace_id = format(trace.get_current_span().get_span_context().trace_id, "032x")
        bind_log_context(video_id="v1", org="acme")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    log.info("plain")
    err = capsys.readouterr().err
    first, *traceback_lines = err.splitlines()
    assert first.endswith(f"svc ERROR reelvault_test.context: failed "
                          f"[video=v1 org=acme trace={trace_id}]")
    assert traceback_lines[0].startswith("Traceback")  # the traceback after the context
    assert err.splitlines()[-1].endswith("svc INFO reelvault_test.context: plain")


def test_values_passed_with_extra_are_kept(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("svc", "INFO", "json")
    with log_scope():
        bind_log_context(video_id="bound", org="acme")
        log.info("explicit", extra={"video_id": "given"})
    [line] = json_lines(capsys.readouterr().err)
    assert line["video_id"] == "given" and line["org"] == "acme"


async def test_concurrent_tasks_keep_their_own_context(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("svc", "INFO", "json")

    async def work(video: str) -> None:
        with log_scope():
            bind_log_context(video_id=video, org=f"org-{video}")
            await asyncio.sleep(0)
            log.info("working on %s", video)

    await asyncio.gather(*(work(f"v{n}") for n in range(5)))
    lines = json_lines(capsys.readouterr().err)
    assert len(lines) == 5
    for line in lines:
        video = line["msg"].removeprefix("working on ")
        assert (line["video_id"], line["org"]) == (video, f"org-{video}")
