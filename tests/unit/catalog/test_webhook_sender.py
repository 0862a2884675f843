"""One webhook attempt: checked again before it connects, sent to the address just checked
(the host named in ``Host`` and TLS), signed, no redirects followed, bounded in time."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx
from reelvault_catalog.webhooks.addresses import AddressPolicy
from reelvault_catalog.webhooks.sender import WebhookSender, webhook_client
from reelvault_catalog.webhooks.signing import new_secret
from standardwebhooks import Webhook

BODY = '{"type":"video.failed","timestamp":"2027-01-01T00:00:00Z","data":{}}'


def dns(*answers: str):  # type: ignore[no-untyped-def]
    """Each lookup answers the next entry (the last one repeats)."""
    said = list(answers)

    async def resolve(host: str, port: int) -> Sequence[str]:
        return [said.pop(0) if len(said) > 1 else said[0]]
    return resolve


async def test_the_request_goes_to_the_checked_address_and_is_signed() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    secret = new_secret()
    async with webhook_client(5, 5, httpx.MockTransport(answer)) as client:
        sender = WebhookSender(client, AddressPolicy(), 5, dns("93.184.216.34"))
        attempt = await sender.send("https://hooks.example.com:8443/in?a=1", secret, "wh-1",
                                    BODY)
    assert attempt.succeeded and attempt.response_code == 204
    [request] = seen
    assert request.url.host == "93.184.216.34" and request.url.port == 8443
    assert request.url.raw_path == b"/in?a=1"
    assert request.headers["host"] == "hooks.example.com:8443"
    assert request.extensions["sni_hostname"] == "hooks.example.com"
    assert Webhook(secret).verify(request.content.decode(), dict(request.headers))


async def test_a_name_that_now_resolves_to_a_private_address_is_not_called() -> None:
    calls = 0

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(200)

    async with webhook_client(5, 5, httpx.MockTransport(answer)) as client:
        sender = WebhookSender(client, AddressPolicy(), 5, dns("10.0.0.9"))
        attempt = await sender.send("https://hooks.example.com/in", new_secret(), "w", BODY)
    assert not attempt.succeeded and calls == 0
    assert attempt.error is not None and "refused" in attempt.error and "private" in attempt.error


async def test_non_2xx_redirects_and_errors_are_failures() -> None:
    answers = iter([httpx.Response(500), httpx.Response(302, headers={"location": "http://x"})])

    def answer(request: httpx.Request) -> httpx.Response:
        try:
            return next(answers)
        except StopIteration:
            raise httpx.ConnectError("refused") from None

    async with webhook_client(5, 5, httpx.MockTransport(answer)) as client:
        sender = WebhookSender(client, AddressPolicy(), 5, dns("93.184.216.34"))
        results = [await sender.send("https://h.example.com/", new_secret(), "w", BODY)
                   for _ in range(3)]
    assert [(r.succeeded, r.response_code) for r in results] == [
        (False, 500), (False, 302), (False, None)]
    assert results[2].error is not None and "ConnectError" in results[2].error


async def test_a_slow_endpoint_times_out() -> None:
    async def answer(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200)

    async with webhook_client(0.2, 0.2, httpx.MockTransport(answer)) as client:
        sender = WebhookSender(client, AddressPolicy(), 0.2, dns("93.184.216.34"))
        started = asyncio.get_running_loop().time()
        attempt = await sender.send("https://h.example.com/", new_secret(), "w", BODY)
    assert not attempt.succeeded and "timed out" in (attempt.error or "")
    assert asyncio.get_running_loop().time() - started < 2
