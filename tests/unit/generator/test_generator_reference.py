"""The reference frame: exactly the video size, cover-fitted, two images split by orientation."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from reelvault_generator.reference import (
    InvalidReferenceImage,
    build_reference_frame,
    cover_fit,
    decode_image,
)

RED = (220, 20, 20)
BLUE = (20, 20, 220)


def encoded(size: tuple[int, int], colour: tuple[int, ...], fmt: str = "PNG",
            mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, colour).save(out, format=fmt)
    return out.getvalue()


def frame(data: bytes | None) -> Image.Image:
    assert data is not None
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image.convert("RGB")


def close(pixel: tuple[int, ...], colour: tuple[int, int, int], tol: int = 8) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(pixel, colour, strict=False))


def test_no_images_no_reference() -> None:
    assert build_reference_frame([], 1280, 720) is None


@pytest.mark.parametrize(("width", "height"), [(1280, 720), (720, 1280), (1792, 1024)])
@pytest.mark.parametrize("source", [(300, 300), (4000, 100), (90, 2000), (1280, 720)])
def test_one_image_is_cover_fitted_to_the_exact_size(
    width: int, height: int, source: tuple[int, int]
) -> None:
    image = frame(build_reference_frame([encoded(source, RED, "JPEG")], width, height))
    assert image.size == (width, height)
    # Cover, not contain: no letterbox bars anywhere, corners included.
    for xy in [(0, 0), (width - 1, 0), (0, height - 1), (width - 1, height - 1),
               (width // 2, height // 2)]:
        assert close(image.getpixel(xy), RED), xy


def test_cover_fit_crops_the_centre() -> None:
    # A wide image: left third red, middle white, right third blue. Fitting it into a square
    # keeps the middle (white) and crops both coloured sides away.
    wide = Image.new("RGB", (300, 100), (255, 255, 255))
    wide.paste(Image.new("RGB", (100, 100), RED), (0, 0))
    wide.paste(Image.new("RGB", (100, 100), BLUE), (200, 0))
    fitted = cover_fit(wide, 100, 100)
    assert fitted.size == (100, 100)
    assert close(fitted.getpixel((0, 50)), (255, 255, 255))
    assert close(fitted.getpixel((99, 50)), (255, 255, 255))


def test_two_images_side_by_side_when_landscape() -> None:
    width, height = 1280, 720
    image = frame(build_reference_frame(
        [encoded((500, 700), RED), encoded((800, 300), BLUE, "WEBP")], width, height))
    assert image.size == (width, height)
    for y in (0, height // 2, height - 1):
        assert close(image.getpixel((0, y)), RED)
        assert close(image.getpixel((width // 2 - 2, y)), RED)
        assert close(image.getpixel((width // 2 + 2, y)), BLUE)
        assert close(image.getpixel((width - 1, y)), BLUE)


def test_two_images_stacked_when_portrait() -> None:
    width, height = 720, 1280
    image = frame(build_reference_frame(
        [encoded((640, 480), RED, "JPEG"), encoded((100, 900), BLUE)], width, height))
    assert image.size == (width, height)
    for x in (0, width // 2, width - 1):
        assert close(image.getpixel((x, 0)), RED)
        assert close(image.getpixel((x, height // 2 - 2)), RED)
        assert close(image.getpixel((x, height // 2 + 2)), BLUE)
        assert close(image.getpixel((x, height - 1)), BLUE)


@pytest.mark.parametrize(("width", "height"), [(1281, 721), (721, 1281)])
def test_odd_sizes_stay_exact_with_two_images(width: int, height: int) -> None:
    image = frame(build_reference_frame([encoded((10, 10), RED), encoded((10, 10), BLUE)],
                                        width, height))
    assert image.size == (width, height)


def test_transparent_png_is_flattened_to_rgb() -> None:
    data = encoded((64, 64), (0, 255, 0, 0), mode="RGBA")
    image = Image.open(io.BytesIO(build_reference_frame([data], 128, 72) or b""))
    assert image.mode == "RGB"


def test_exif_orientation_is_applied() -> None:
    # Stored landscape 200x100 with "rotate 90" in EXIF: it is really a portrait photo.
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (200, 100), RED).save(out, format="JPEG", exif=exif)
    assert decode_image(out.getvalue()).size == (100, 200)


@pytest.mark.parametrize(
    "data",
    [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n truncated", encoded((50, 50), RED)[:60]],
)
def test_undecodable_images_are_rejected(data: bytes) -> None:
    with pytest.raises(InvalidReferenceImage):
        build_reference_frame([data], 1280, 720)


def test_a_bad_second_image_is_rejected_too() -> None:
    with pytest.raises(InvalidReferenceImage, match="reference image 2"):
        build_reference_frame([encoded((10, 10), RED), b"garbage"], 1280, 720)


def test_more_than_two_images_are_rejected() -> None:
    image = encoded((10, 10), RED)
    with pytest.raises(InvalidReferenceImage):
        build_reference_frame([image, image, image], 1280, 720)
