"""The pure rules of ``Idempotency-Key``: who a key belongs to, what counts as the same
request, the deterministic video id, and what a repeat gets."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from reelvault_common.contracts.events import VideoRequested
from reelvault_gateway.errors import ApiError
from reelvault_gateway.idempotency import (
    checked_key,
    client_identity,
    fingerprint,
    new_record,
    on_repeat,
    scope_of,
    video_id_for,
)
from reelvault_gateway.video_requests import VideoSpec

NOW = datetime(2026, 5, 1, tzinfo=UTC)


def spec(prompt: str = "p", refs: tuple[str, ...] = ()) -> VideoSpec:
    return VideoSpec(prompt, "sora-2", "4", "720x1280", refs, tuple(("body", i) for i in refs))


def test_the_client_is_the_organization_and_the_api_key() -> None:
    mine = client_identity("acme", "0123456789abcdef")
    assert mine == client_identity("acme", "0123456789abcdef")
    assert mine != client_identity("acme", "fedcba9876543210")  # another key of the org
    assert mine != client_identity("globex", "0123456789abcdef")  # another organization
    # So the same Idempotency-Key names different records (and videos) per org and key.
    assert scope_of(mine, "k") != scope_of(client_identity("globex", "0123456789abcdef"), "k")


def test_scopes_and_video_ids_are_deterministic_per_client_and_key() -> None:
    a = scope_of("addr:1", "key")
    assert a == scope_of("addr:1", "key")
    assert a != scope_of("addr:2", "key") and a != scope_of("addr:1", "key2")
    assert a.startswith("k.") and len(a) == 66  # a valid KV key, whatever the client sent
    assert video_id_for(a) == video_id_for(a) != video_id_for(scope_of("addr:2", "key"))


def test_the_fingerprint_is_of_the_canonical_request() -> None:
    assert fingerprint(spec(), "default") == fingerprint(spec(), "default")
    assert fingerprint(spec(), "default") != fingerprint(spec("q"), "default")
    assert fingerprint(spec(refs=("a", "b")), "o") != fingerprint(spec(refs=("b", "a")), "o")
    assert fingerprint(spec(), "default") != fingerprint(spec(), "acme")


@pytest.mark.parametrize("bad", ["", " ", "a b", "é", "x" * 256, "tab\there"])
def test_malformed_keys_are_refused(bad: str) -> None:
    with pytest.raises(ApiError) as refused:
        checked_key(bad)
    assert refused.value.status_code == 400
    assert checked_key(None) is None
    assert checked_key("order-17:v2") == "order-17:v2"


def test_a_repeat_replays_the_stored_request_or_conflicts() -> None:
    event = VideoRequested.new(video_id=video_id_for("k.x"), org="acme", correlation_id="c",
                               prompt="p", model="sora-2", seconds="4", size="720x1280")
    pending = new_record(event, "fp-1", NOW)
    replay = on_repeat(pending, "fp-1")
    assert replay.event == event and replay.republish  # the first publish may have failed
    assert not on_repeat(pending.done(), "fp-1").republish
    with pytest.raises(ApiError) as conflict:
        on_repeat(pending, "fp-2")
    assert conflict.value.status_code == 409
    assert conflict.value.code == "idempotency_key_reused"
