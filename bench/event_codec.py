"""Encode + decode CPU per lifecycle event: pydantic's own JSON vs orjson / msgspec around it.

    .tools/bin/uv run --frozen --no-sync --with orjson --with msgspec \\
        python bench/event_codec.py [--rounds 7] [--events 5000]

(orjson and msgspec are not project dependencies: ``--with`` adds them for this run only.)

The hot path today: the publisher sends ``event.model_dump_json().encode()``; consumers decode
with ``Model.model_validate_json(body)`` (generator) or ``parse_event(body)`` (the
discriminated union, archiver and catalog). Every alternative keeps pydantic's validation (the
events are pydantic models, and a consumer must reject a bad payload) and only swaps the JSON
text layer; one row without validation shows what JSON alone costs (a floor, not an option).

For a typical VideoRequested (one reference image) and VideoCompleted, each variant encodes
then decodes ``--events`` events; the process CPU time per event is measured. Variants run
interleaved in a shuffled order each round; printed: the median over rounds of each variant's
ratio to ``pydantic`` in the same round (lower is cheaper), and pydantic's own time per event.
Every variant's round trip is checked to give back an equal event first. Bounded: about
rounds x variants x events round trips (~10 s with the defaults).
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, TypeAdapter
from reelvault_common.contracts.events import (
    ReferenceImage,
    VideoCompleted,
    VideoEvent,
    VideoRequested,
    parse_event,
)

Encode = Callable[[BaseModel], bytes]
Decode = Callable[[bytes], BaseModel]


def sample_events() -> list[BaseModel]:
    video_id = uuid.uuid4()
    now = datetime.now(UTC)
    requested = VideoRequested.new(
        video_id=video_id,
        correlation_id=f"req-{uuid.uuid4().hex}",
        prompt="A slow aerial shot over a foggy pine forest at sunrise, golden light, 35mm film",
        model="sora-2",
        seconds="8",
        size="1280x720",
        reference_images=(
            ReferenceImage(bucket="reference-images", key=f"default/{video_id}/first.png",
                           content_type="image/png"),
        ),
        org="acme",
    )
    completed = VideoCompleted.new(
        video_id=video_id,
        correlation_id=requested.correlation_id,
        provider="openai",
        provider_job_id=f"video_{uuid.uuid4().hex}",
        expires_at=now + timedelta(hours=1),
        org="acme",
        requested_at=now - timedelta(minutes=3),
        source_url=f"https://api.openai.com/v1/videos/video_{uuid.uuid4().hex}/content",
    )
    return [requested, completed]


def variants(model: type[BaseModel], union: bool) -> dict[str, tuple[Encode, Decode]]:
    """name -> (encode, decode) for events of ``model``; ``union``: decode as any event."""
    union_adapter: TypeAdapter[Any] = TypeAdapter(VideoEvent)

    def validate_json(body: bytes) -> BaseModel:
        return parse_event(body) if union else model.model_validate_json(body)

    def validate_python(data: Any) -> BaseModel:
        if union:
            return union_adapter.validate_python(data)  # type: ignore[no-any-return]
        return model.model_validate(data)

    model_adapter: TypeAdapter[Any] = TypeAdapter(model)
    found: dict[str, tuple[Encode, Decode]] = {
        "pydantic": (lambda e: e.model_dump_json().encode(), validate_json),
        # The same serializer, writing bytes directly (no str, no .encode()).
        "pydantic dump_json bytes": (model_adapter.dump_json, validate_json),
    }
    if importlib.util.find_spec("orjson"):
        import orjson

        found["orjson + pydantic"] = (
            lambda e: orjson.dumps(e.model_dump()),
            lambda b: validate_python(orjson.loads(b)),
        )
        found["orjson, no validation"] = (
            lambda e: orjson.dumps(e.model_dump()),
            orjson.loads,
        )
    if importlib.util.find_spec("msgspec"):
        import msgspec

        encoder, decoder = msgspec.json.Encoder(), msgspec.json.Decoder()
        found["msgspec + pydantic"] = (
            lambda e: encoder.encode(e.model_dump()),
            lambda b: validate_python(decoder.decode(b)),
        )
    return found


def check(event: BaseModel, encode: Encode, decode: Decode, validating: bool) -> None:
    back = decode(encode(event))
    if validating:
        assert back == event, (back, event)


def measure(event: BaseModel, encode: Encode, decode: Decode, count: int) -> float:
    cpu = time.process_time()
    for _ in range(count):
        decode(encode(event))
    return (time.process_time() - cpu) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--events", type=int, default=5000, help="per variant and round")
    args = parser.parse_args()

    setups = [(event, union, variants(type(event), union))
              for event in sample_events() for union in (False, True)]
    for event, _, found in setups:
        for name, (encode, decode) in found.items():
            check(event, encode, decode, validating="no validation" not in name)

    cpu: dict[tuple[int, str], list[float]] = {}
    for _ in range(args.rounds):
        for index, (event, _, found) in enumerate(setups):
            names = list(found)
            random.shuffle(names)
            for name in names:
                encode, decode = found[name]
                cpu.setdefault((index, name), []).append(
                    measure(event, encode, decode, args.events)
                )

    print(f"{args.rounds} rounds x {args.events} events; encode + decode CPU per event, median "
          "ratio to 'pydantic' (model_dump_json().encode() + model_validate_json / parse_event)")
    for index, (event, union, found) in enumerate(setups):
        base = cpu[(index, "pydantic")]
        size = len(event.model_dump_json())
        decoder = "parse_event (union)" if union else f"{type(event).__name__}.model_validate_json"
        print(f"\n{type(event).__name__} ({size} bytes), decoded as {decoder}: pydantic "
              f"{statistics.median(base) * 1e6:.1f} us per event")
        for name in found:
            ratios = [v / b for v, b in zip(cpu[(index, name)], base, strict=True)]
            print(f"  {name:<24}{statistics.median(ratios):>6.2f}")


if __name__ == "__main__":
    main()
