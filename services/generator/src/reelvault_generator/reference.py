"""The one reference frame Sora takes, built from the request's 0, 1 or 2 uploaded images.

Pure (bytes in, PNG bytes out). The provider requires the image to match the video size in
pixels exactly, so every path ends in exactly ``width x height``:
- one image: cover-fit (scale to cover, centre-crop);
- two images: one frame split in halves (side by side when landscape, stacked when portrait),
  each image cover-fit into its half.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence

from PIL import Image, ImageOps

# Refuse images that decode to more pixels than this (decompression bombs).
MAX_SOURCE_PIXELS = 64_000_000


class InvalidReferenceImage(ValueError):
    """An uploaded image that cannot be used: not decodable, empty or absurdly large."""


def decode_image(data: bytes, *, label: str = "image") -> Image.Image:
    """Decode, apply the EXIF orientation (phone photos) and flatten to RGB."""
    if not data:
        raise InvalidReferenceImage(f"{label} is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
            if opened.width * opened.height > MAX_SOURCE_PIXELS:
                raise InvalidReferenceImage(
                    f"{label} is {opened.width}x{opened.height}: "
                    f"more than {MAX_SOURCE_PIXELS} pixels"
                )
            opened.load()
    except InvalidReferenceImage:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise InvalidReferenceImage(f"{label} could not be decoded: {exc}") from exc
    if opened.width < 1 or opened.height < 1:
        raise InvalidReferenceImage(f"{label} has no pixels")
    image: Image.Image = ImageOps.exif_transpose(opened) or opened
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (0, 0, 0))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def cover_fit(image: Image.Image, width: int, height: int) -> Image.Image:
    """Scale to cover ``width x height`` keeping the aspect ratio, then crop the centre."""
    return ImageOps.fit(
        image, (width, height), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5)
    )


def compose_two(first: Image.Image, second: Image.Image, width: int, height: int) -> Image.Image:
    """Both images in one frame: side by side for landscape (and square), stacked for portrait."""
    frame = Image.new("RGB", (width, height))
    if width >= height:
        left = width // 2
        frame.paste(cover_fit(first, left, height), (0, 0))
        frame.paste(cover_fit(second, width - left, height), (left, 0))
    else:
        top = height // 2
        frame.paste(cover_fit(first, width, top), (0, 0))
        frame.paste(cover_fit(second, width, height - top), (0, top))
    return frame


def build_reference_frame(images: Sequence[bytes], width: int, height: int) -> bytes | None:
    """The PNG to send as ``input_reference``, or None when the request has no images."""
    if width < 2 or height < 2:
        raise ValueError(f"unusable video size {width}x{height}")
    if not images:
        return None
    if len(images) > 2:
        raise InvalidReferenceImage(f"at most 2 reference images are supported, got {len(images)}")
    decoded = [
        decode_image(data, label=f"reference image {i + 1}") for i, data in enumerate(images)
    ]
    if len(decoded) == 1:
        frame = cover_fit(decoded[0], width, height)
    else:
        frame = compose_two(decoded[0], decoded[1], width, height)
    out = io.BytesIO()
    frame.save(out, format="PNG", optimize=False)
    return out.getvalue()


def build_frames(images: Sequence[bytes], width: int, height: int) -> tuple[bytes, ...]:
    """Each image on its own as a PNG of exactly ``width`` x ``height`` (first and last frames,
    or references, for models that take them natively)."""
    if width < 2 or height < 2:
        raise ValueError(f"unusable video size {width}x{height}")
    frames = []
    for i, data in enumerate(images):
        out = io.BytesIO()
        cover_fit(decode_image(data, label=f"reference image {i + 1}"), width, height).save(
            out, format="PNG", optimize=False)
        frames.append(out.getvalue())
    return tuple(frames)
