"""Media helpers for tests: make images, inspect MP4s."""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
from PIL import Image


def png_bytes(width: int, height: int, color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class VideoFacts:
    width: int
    height: int
    duration_s: float
    frames: int
    codec: str


def probe_mp4(data: bytes) -> VideoFacts:
    """Decode every frame: a file that is not a playable MP4 raises."""
    with av.open(io.BytesIO(data), format="mp4") as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        duration = float(container.duration or 0) / av.time_base
        return VideoFacts(stream.width, stream.height, duration, frames, stream.codec_context.name)
