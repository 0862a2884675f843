"""Uploads are judged by their bytes: JPEG, PNG and WebP pass; everything else is refused with
the right kind."""

from __future__ import annotations

import pytest
from reelvault_gateway.images import ImageRejected, inspect_image, sniff

from tests.support.gateway_fakes import image_bytes


@pytest.mark.parametrize(
    ("fmt", "content_type", "extension"),
    [("PNG", "image/png", "png"), ("JPEG", "image/jpeg", "jpg"), ("WEBP", "image/webp", "webp")],
)
def test_accepted_formats(fmt: str, content_type: str, extension: str) -> None:
    info = inspect_image(image_bytes(fmt, 40, 30))
    assert (info.content_type, info.extension, info.width, info.height) == (
        content_type,
        extension,
        40,
        30,
    )


@pytest.mark.parametrize(
    "data",
    [
        b"hello, not an image",
        b"%PDF-1.4 ...",
        b"\x00" * 100,
        image_bytes("GIF"),
        image_bytes("BMP"),
    ],
)
def test_non_images_and_other_formats_are_unsupported(data: bytes) -> None:
    with pytest.raises(ImageRejected) as info:
        inspect_image(data)
    assert info.value.kind == "unsupported"


def test_empty_file() -> None:
    with pytest.raises(ImageRejected) as info:
        inspect_image(b"")
    assert info.value.kind == "empty"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_truncated_images_are_corrupt(fmt: str) -> None:
    whole = image_bytes(fmt, 64, 64)
    with pytest.raises(ImageRejected) as info:
        inspect_image(whole[: len(whole) // 2])
    assert info.value.kind == "corrupt"


def test_magic_bytes_with_garbage_are_corrupt() -> None:
    with pytest.raises(ImageRejected) as info:
        inspect_image(b"\x89PNG\r\n\x1a\n broken")
    assert info.value.kind == "corrupt"


def test_sniff() -> None:
    assert sniff(image_bytes("PNG")) == "PNG"
    assert sniff(image_bytes("JPEG")) == "JPEG"
    assert sniff(image_bytes("WEBP")) == "WEBP"
    assert sniff(b"GIF89a") is None
