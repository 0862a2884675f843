"""The webhook endpoint's HTTP surface: the raw body and headers reach the receiver, its answer
goes back as JSON; anything else is a 404/405/413 that never reaches the receiver."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from reelvault_generator.webhook_app import MAX_BODY_BYTES, create_webhook_app


class Receiver:
    def __init__(self, answer: tuple[int, dict[str, Any]] = (200, {"status": "processed"})
                 ) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.queries: list[dict[str, str]] = []
        self.answer = answer

    async def handle(self, headers: Mapping[str, str], body: bytes,
                     query: Mapping[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        self.calls.append((dict(headers), body))
        self.queries.append(dict(query or {}))
        return self.answer


def client(receiver: Receiver) -> httpx.AsyncClient:
    app = create_webhook_app(receiver, provider="openai")  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gen")


async def test_a_delivery_reaches_the_receiver_as_sent() -> None:
    receiver = Receiver((503, {"error": "temporarily unable to process"}))
    body = b'{"id": "evt_1",  "type": "video.completed"}'  # spacing kept: it is signed
    async with client(receiver) as http:
        reply = await http.post("/webhooks/openai?video=v1&token=t", content=body,
                                headers={"Webhook-Id": "wh_1", "webhook-signature": "v1,x"})
    assert (reply.status_code, reply.json()) == (503, {"error": "temporarily unable to process"})
    assert reply.headers["content-type"] == "application/json"
    [(headers, received)] = receiver.calls
    assert received == body
    assert (headers["webhook-id"], headers["webhook-signature"]) == ("wh_1", "v1,x")
    assert receiver.queries == [{"video": "v1", "token": "t"}]  # a callback names its video


async def test_other_routes_and_methods_never_reach_the_receiver() -> None:
    receiver = Receiver()
    async with client(receiver) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert (await http.post("/webhooks/other", content=b"{}")).status_code == 404
        wrong = await http.get("/webhooks/openai")
        too_big = await http.post("/webhooks/openai", content=b"x" * (MAX_BODY_BYTES + 1))
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert too_big.status_code == 413
    assert receiver.calls == []


async def test_a_receiver_crash_is_a_500_not_a_dropped_connection() -> None:
    class Broken(Receiver):
        async def handle(self, headers: Mapping[str, str], body: bytes,
                         query: Mapping[str, str] | None = None) -> tuple[int, dict[str, Any]]:
            raise RuntimeError("bug")

    async with client(Broken()) as http:
        reply = await http.post("/webhooks/openai", content=b"{}")
    assert reply.status_code == 500
