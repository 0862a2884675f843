"""Rendering: decode the results back and check what clients will rely on."""

from __future__ import annotations

import io
import struct
import time
from pathlib import Path

import av
import pytest
from PIL import Image
from reelvault_providersim.render import RenderSpec, pad_mp4, render_job


def probe(path: Path) -> tuple[str, int, int, str, int, float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        duration = container.duration / 1_000_000 if container.duration else 0.0
        return (
            stream.codec_context.name,
            stream.width,
            stream.height,
            stream.codec_context.pix_fmt or "",
            frames,
            duration,
        )


@pytest.mark.parametrize(
    ("width", "height", "seconds", "fps"),
    [(720, 1280, 4, 8), (1280, 720, 8, 2), (1792, 1024, 4, 1)],
)
def test_video_has_requested_size_and_duration(
    tmp_path: Path, width: int, height: int, seconds: int, fps: int
) -> None:
    result = render_job(RenderSpec(width, height, seconds, fps, palette_seed="p"), tmp_path)
    codec, w, h, pix_fmt, frames, duration = probe(result.video)
    assert codec == "h264"
    assert (w, h) == (width, height)
    assert pix_fmt == "yuv420p"
    assert frames == seconds * fps
    assert duration == pytest.approx(seconds, abs=0.01)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "spritesheet.jpg",
        "thumbnail.webp",
        "video.mp4",
    ]


def test_thumbnail_and_spritesheet(tmp_path: Path) -> None:
    result = render_job(RenderSpec(720, 1280, 4, 8), tmp_path)
    with Image.open(result.thumbnail) as thumb:
        assert thumb.format == "WEBP"
        assert max(thumb.size) == 640
        assert thumb.size[0] / thumb.size[1] == pytest.approx(720 / 1280, rel=0.01)
    with Image.open(result.spritesheet) as sheet:
        assert sheet.format == "JPEG"
        # 10 tiles of at most 160 px, 5 per row.
        assert sheet.size == (5 * 90, 2 * 160)


def _frames(path: Path) -> list[Image.Image]:
    with av.open(str(path)) as container:
        return [frame.to_image() for frame in container.decode(video=0)]  # type: ignore[no-untyped-call]


def _mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    small_a = a.convert("L").resize((64, 64))
    small_b = b.convert("L").resize((64, 64))
    pairs = zip(small_a.tobytes(), small_b.tobytes(), strict=True)
    return sum(abs(x - y) for x, y in pairs) / (64 * 64)


def test_first_frame_is_the_reference_and_later_frames_move(tmp_path: Path) -> None:
    reference = Image.new("RGB", (1280, 720), (200, 30, 30))
    reference.paste((30, 30, 200), (0, 0, 640, 720))  # left half blue
    buffer = io.BytesIO()
    reference.save(buffer, format="PNG")
    result = render_job(RenderSpec(1280, 720, 4, 2, reference=buffer.getvalue()), tmp_path)
    frames = _frames(result.video)
    assert _mean_abs_diff(frames[0], reference) < 4
    r, _g, b = frames[0].getpixel((100, 360))  # type: ignore[misc]
    assert b > 150
    assert r < 80
    # A visible change between frames (the bar moves).
    assert _mean_abs_diff(frames[1], frames[-1]) > 2
    assert _mean_abs_diff(frames[0], frames[1]) > 2


def test_different_prompts_give_different_gradients(tmp_path: Path) -> None:
    a = render_job(RenderSpec(720, 1280, 4, 1, palette_seed="one"), tmp_path / "a")
    b = render_job(RenderSpec(720, 1280, 4, 1, palette_seed="two"), tmp_path / "b")
    assert a.video.read_bytes() != b.video.read_bytes()


def test_padding_keeps_a_playable_mp4(tmp_path: Path) -> None:
    target = 3 * 1024 * 1024 + 5
    result = render_job(RenderSpec(720, 1280, 4, 8, pad_to_bytes=target), tmp_path)
    size = result.video.stat().st_size
    assert size == target
    _, w, h, _, frames, duration = probe(result.video)
    assert (w, h, frames) == (720, 1280, 32)
    assert duration == pytest.approx(4, abs=0.01)
    # Walk the top-level boxes: they tile the file exactly and the last is the free box.
    boxes = []
    with result.video.open("rb") as f:
        offset = 0
        while offset < size:
            f.seek(offset)
            box_size, kind = struct.unpack(">I4s", f.read(8))
            boxes.append(kind)
            offset += box_size
    assert offset == size
    assert boxes[-1] == b"free"
    assert b"moov" in boxes
    assert b"mdat" in boxes


def test_pad_uses_64_bit_box_when_needed(tmp_path: Path) -> None:
    # Exercise the header choice on a sparse stand-in rather than writing 4 GiB.
    path = tmp_path / "x.mp4"
    path.write_bytes(b"\0" * 16)
    pad_mp4(path, 16 + 100)
    data = path.read_bytes()
    assert len(data) == 116
    assert data[16:24] == struct.pack(">I4s", 100, b"free")
    pad_mp4(path, 50)  # already larger: untouched
    assert path.stat().st_size == 116
    pad_mp4(path, 119)  # 3 missing bytes: the smallest box (8 bytes) is added
    assert path.stat().st_size == 124


def test_render_is_fast(tmp_path: Path) -> None:
    render_job(RenderSpec(720, 1280, 4, 8), tmp_path / "warm")
    start = time.perf_counter()
    render_job(RenderSpec(720, 1280, 4, 8), tmp_path / "timed")
    assert time.perf_counter() - start < 2.0
