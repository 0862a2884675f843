"""Images the OpenRouter and Gemini protocols take (frames and references): decoded, checked
to be images, and fitted to the video's frame size for the render.

Unlike the OpenAI protocol (an ``input_reference`` must match ``size`` exactly), these APIs
take images of any size; the provider fits them, and so does the simulator (scaled to cover
the frame, centre-cropped).
"""

from __future__ import annotations

import base64
import binascii
import io
import re

from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_MIME_TYPES: tuple[str, ...] = ("image/jpeg", "image/png", "image/webp")
_FORMAT_MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
_DATA_URL = re.compile(
    r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[^,;]*)*),(?P<data>.*)$", re.S
)


class NotAnImageError(ValueError):
    """The bytes are not a JPEG, PNG or WebP image."""


def decode_data_url(url: str) -> tuple[bytes, str | None]:
    """``data:image/png;base64,...`` -> (bytes, declared mime); ValueError if malformed."""
    match = _DATA_URL.match(url)
    if match is None or ";base64" not in match.group("params"):
        raise ValueError("expected a base64 data URL (data:image/png;base64,...)")
    try:
        data = base64.b64decode(match.group("data"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the data URL is not valid base64") from None
    return data, match.group("mime")


def decode_base64(data: str) -> bytes:
    """Standard or URL-safe base64 (proto JSON accepts both); ValueError if neither."""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        try:
            return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        except (binascii.Error, ValueError):
            raise ValueError("not valid base64") from None


def image_mime(data: bytes) -> str:
    """The image's real type; NotAnImageError unless JPEG, PNG or WebP (blocking)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            mime = _FORMAT_MIME.get(image.format or "")
            if mime is None:
                raise NotAnImageError(f"unsupported image format {image.format}")
            image.load()
            return mime
    except NotAnImageError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise NotAnImageError("the data could not be decoded as an image") from None


def fit_to_frame(data: bytes, width: int, height: int) -> bytes:
    """The image scaled to cover ``width`` x ``height`` and centre-cropped, as PNG bytes
    (the render needs a first frame of exactly the video's size). Blocking."""
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
    fitted = ImageOps.fit(rgb, (width, height), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    fitted.save(buffer, format="PNG")
    return buffer.getvalue()
