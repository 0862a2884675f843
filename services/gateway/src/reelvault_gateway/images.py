"""Is an upload a real JPEG, PNG or WebP image? Decided from the bytes, never from the name or
the client's content type. Pure: no I/O beyond the bytes given."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

# Pillow's format name -> (content type, file extension). MPO is a multi-picture JPEG (cameras).
ALLOWED_FORMATS: dict[str, tuple[str, str]] = {
    "JPEG": ("image/jpeg", "jpg"),
    "MPO": ("image/jpeg", "jpg"),
    "PNG": ("image/png", "png"),
    "WEBP": ("image/webp", "webp"),
}
# Far beyond any video frame, far below a decompression bomb.
MAX_PIXELS = 50_000_000


@dataclass(frozen=True)
class ImageInfo:
    content_type: str
    extension: str
    width: int
    height: int


class ImageRejected(Exception):
    """Why the bytes are not an acceptable image: ``kind`` is ``unsupported`` (not an image, or
    another format), ``empty``, ``corrupt`` or ``too_large`` (pixel dimensions)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def sniff(data: bytes) -> str | None:
    """The format the magic bytes claim, for the three formats we accept."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def inspect_image(data: bytes) -> ImageInfo:
    """Decode ``data`` fully; raise ``ImageRejected`` unless it is a sound JPEG/PNG/WebP."""
    if not data:
        raise ImageRejected("empty", "The file is empty.")
    claimed = sniff(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (
        UnidentifiedImageError,
        Image.DecompressionBombWarning,
        Image.DecompressionBombError,
        OSError,
        SyntaxError,
        ValueError,
    ) as exc:
        if claimed is not None:
            raise ImageRejected(
                "corrupt", f"The file looks like {claimed} but cannot be decoded."
            ) from exc
        raise ImageRejected(
            "unsupported", "The file is not an image; upload a JPEG, PNG or WebP image."
        ) from exc
    with image:
        fmt = image.format or ""
        if fmt not in ALLOWED_FORMATS:
            raise ImageRejected(
                "unsupported",
                f"{fmt or 'This'} images are not supported; upload JPEG, PNG or WebP.",
            )
        width, height = image.size
        if width <= 0 or height <= 0:
            raise ImageRejected("corrupt", "The image has no pixels.")
        if width * height > MAX_PIXELS:
            raise ImageRejected(
                "too_large",
                f"The image is {width}x{height}; at most {MAX_PIXELS} pixels are allowed.",
            )
        try:
            # Decoding every pixel is what finds truncated or damaged files.
            image.load()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise ImageRejected("corrupt", f"The {fmt} image is damaged or truncated.") from exc
    content_type, extension = ALLOWED_FORMATS[fmt]
    return ImageInfo(content_type, extension, width, height)
