"""Real media for every job: an H.264 MP4, a webp thumbnail and a jpeg spritesheet.

Blocking and CPU-bound: call it from a worker thread. Clients (and the archiver) see real
files they can probe and play, of exactly the requested size and duration, yet a 720x1280
4 s clip renders in a fraction of a second: x264 ``ultrafast`` on simple synthetic frames.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image, ImageDraw

VIDEO_FILE = "video.mp4"
THUMBNAIL_FILE = "thumbnail.webp"
SPRITESHEET_FILE = "spritesheet.jpg"

THUMBNAIL_MAX_PX = 640
SPRITE_TILE_MAX_PX = 160
SPRITE_COLUMNS = 5
SPRITE_FRAMES = 10
_PAD_CHUNK = 1024 * 1024
_MAX_32BIT_BOX = 0xFFFFFFFF


@dataclass(frozen=True)
class RenderSpec:
    width: int
    height: int
    seconds: int
    fps: int
    # Already-validated image bytes of exactly width x height; None -> a generated gradient.
    reference: bytes | None = None
    # Varies the gradient colours so different prompts give visibly different videos.
    palette_seed: str = ""
    pad_to_bytes: int | None = None
    thumbnail_max_px: int = THUMBNAIL_MAX_PX

    @property
    def frame_count(self) -> int:
        return self.seconds * self.fps


@dataclass(frozen=True)
class RenderResult:
    video: Path
    thumbnail: Path
    spritesheet: Path


def render_job(spec: RenderSpec, out_dir: Path) -> RenderResult:
    """Write the three variants into ``out_dir``; each appears under its final name only once
    complete, so a file that exists is always whole."""
    out_dir.mkdir(parents=True, exist_ok=True)
    first = first_frame(spec)
    video = out_dir / VIDEO_FILE
    sprites = _encode_video(spec, first, _partial(video))
    if spec.pad_to_bytes is not None:
        pad_mp4(_partial(video), spec.pad_to_bytes)
    os.replace(_partial(video), video)

    thumbnail = out_dir / THUMBNAIL_FILE
    thumb = first.copy()
    thumb.thumbnail((spec.thumbnail_max_px, spec.thumbnail_max_px))
    thumb.save(_partial(thumbnail), format="WEBP", quality=80)
    os.replace(_partial(thumbnail), thumbnail)

    spritesheet = out_dir / SPRITESHEET_FILE
    _spritesheet(sprites).save(_partial(spritesheet), format="JPEG", quality=80)
    os.replace(_partial(spritesheet), spritesheet)
    return RenderResult(video, thumbnail, spritesheet)


def _partial(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def first_frame(spec: RenderSpec) -> Image.Image:
    if spec.reference is not None:
        with Image.open(io.BytesIO(spec.reference)) as image:
            if image.mode in ("RGBA", "LA", "P"):
                # Flatten transparency onto black rather than letting it turn into noise.
                rgba = image.convert("RGBA")
                flat = Image.new("RGB", rgba.size)
                flat.paste(rgba, mask=rgba.getchannel("A"))
                return flat
            return image.convert("RGB")
    return gradient(spec.width, spec.height, spec.palette_seed)


def gradient(width: int, height: int, seed: str) -> Image.Image:
    digest = hashlib.sha256(seed.encode()).digest()
    # Built at 256x256 and scaled: far cheaper than drawing per pixel at full size.
    horizontal = Image.linear_gradient("L").rotate(90)
    vertical = Image.linear_gradient("L")
    radial = Image.radial_gradient("L")
    channels = [horizontal, vertical, radial]
    rotated = [channels[(digest[0] + i) % 3] for i in range(3)]
    tinted = [
        channel.point(lambda v, lo=digest[1 + i] // 2: lo + v * (255 - lo) // 255)
        for i, channel in enumerate(rotated)
    ]
    return Image.merge("RGB", tinted).resize((width, height), Image.Resampling.BILINEAR)


def _encode_video(spec: RenderSpec, first: Image.Image, path: Path) -> list[Image.Image]:
    """Encode the clip; returns the frames sampled for the spritesheet (already tile-sized)."""
    frames = spec.frame_count
    sample_at = _sample_indexes(frames, SPRITE_FRAMES)
    sprites: list[Image.Image] = []
    bar = _Bar(spec.width, frames)
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=spec.fps)
        stream.width = spec.width
        stream.height = spec.height
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency", "crf": "30"}
        time_base = Fraction(1, spec.fps)
        # RGB -> yuv420p conversion is the costly step: do it once, then edit the planes.
        base = _to_yuv(first)
        planes = [bytes(plane) for plane in base.planes]
        for index in range(frames):
            if index in sample_at:
                tile = bar.draw_rgb(first, index)
                tile.thumbnail((SPRITE_TILE_MAX_PX, SPRITE_TILE_MAX_PX))
                sprites.append(tile)
            frame = base if index == 0 else bar.draw_yuv(first, base, planes, index)
            frame.pts = index
            frame.time_base = time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return sprites


class _Bar:
    """A light vertical bar sweeping left to right from the second frame on: cheap to draw,
    and plainly visible motion. The first frame is left untouched (it is the reference)."""

    # Y, U, V of a light neutral grey.
    _YUV = (235, 128, 128)

    def __init__(self, width: int, frames: int) -> None:
        self.width = max(2, (width // 24) & ~1)
        self.travel = width - self.width
        self.frames = frames

    def x(self, index: int) -> int:
        if index == 0:
            return -1
        return (self.travel * index // max(1, self.frames - 1)) & ~1

    def draw_rgb(self, first: Image.Image, index: int) -> Image.Image:
        image = first.copy()
        if index > 0:
            x = self.x(index)
            box = (x, 0, x + self.width - 1, first.height - 1)
            ImageDraw.Draw(image).rectangle(box, fill=(235,) * 3)
        return image

    def draw_yuv(
        self, first: Image.Image, base: av.VideoFrame, planes: list[bytes], index: int
    ) -> av.VideoFrame:
        frame = av.VideoFrame(base.width, base.height, "yuv420p")
        x = self.x(index)
        for k, (plane, source) in enumerate(zip(frame.planes, base.planes, strict=True)):
            if plane.line_size != source.line_size:  # never seen; stay correct if it happens
                return _to_yuv(self.draw_rgb(first, index))
            shift = 0 if k == 0 else 1  # chroma planes are half width and half height
            data = bytearray(planes[k])
            start, width = x >> shift, self.width >> shift
            fill = bytes([self._YUV[k]]) * width
            stride = source.line_size
            for row in range(source.height):
                offset = row * stride + start
                data[offset : offset + width] = fill
            plane.update(bytes(data))
        return frame


def _to_yuv(image: Image.Image) -> av.VideoFrame:
    frame: av.VideoFrame = av.VideoFrame.from_image(image)  # type: ignore[no-untyped-call]
    return frame.reformat(format="yuv420p")


def _sample_indexes(frames: int, wanted: int) -> set[int]:
    if frames <= wanted:
        return set(range(frames))
    return {i * (frames - 1) // (wanted - 1) for i in range(wanted)}


def _spritesheet(tiles: list[Image.Image]) -> Image.Image:
    columns = min(SPRITE_COLUMNS, len(tiles))
    rows = -(-len(tiles) // columns)
    tile_w, tile_h = tiles[0].size
    sheet = Image.new("RGB", (columns * tile_w, rows * tile_h))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * tile_w, (i // columns) * tile_h))
    return sheet


@dataclass(frozen=True)
class VideoProbe:
    width: int
    height: int
    seconds: float
    first_frame_png: bytes


def probe_video(data: bytes) -> VideoProbe:
    """Size, duration and first frame of an uploaded video; ValueError if it is not one."""
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise ValueError("no video stream")
            stream = container.streams.video[0]
            first = next(container.decode(stream), None)
            if first is None:
                raise ValueError("no frames")
            if container.duration:
                seconds = container.duration / av.time_base
            elif stream.duration and stream.time_base:
                seconds = float(stream.duration * stream.time_base)
            else:
                seconds = 0.0
            image: Image.Image = first.to_image()  # type: ignore[no-untyped-call]
    except av.FFmpegError as exc:
        raise ValueError(str(exc)) from None
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return VideoProbe(image.width, image.height, seconds, buffer.getvalue())


def pad_mp4(path: Path, target_bytes: int) -> None:
    """Append one top-level ``free`` box so the file is at least ``target_bytes`` long.

    Players skip ``free`` boxes, so the MP4 stays valid. The zeros are streamed to disk in
    1 MiB chunks: benchmarks ask for hundreds of megabytes.
    """
    size = path.stat().st_size
    if size >= target_bytes:
        return
    box = max(8, target_bytes - size)
    if box <= _MAX_32BIT_BOX:
        header = struct.pack(">I4s", box, b"free")
    else:
        box = max(box, 16)
        header = struct.pack(">I4sQ", 1, b"free", box)  # 64-bit "largesize" form
    zeros = bytes(_PAD_CHUNK)
    with path.open("ab") as f:
        f.write(header)
        remaining = box - len(header)
        while remaining > 0:
            step = min(remaining, _PAD_CHUNK)
            f.write(zeros if step == _PAD_CHUNK else zeros[:step])
            remaining -= step
