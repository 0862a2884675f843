"""Create-body parsing and validation, without HTTP."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from PIL import Image
from reelvault_providersim.create_params import (
    Upload,
    check_reference_image,
    is_loopback_url,
    nest_form_fields,
    validate_create,
)
from reelvault_providersim.errors import ApiError


def image_bytes(size: tuple[int, int], fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 10)).save(buffer, format=fmt)
    return buffer.getvalue()


async def no_fetch(url: str) -> tuple[bytes, str | None]:
    raise AssertionError(f"unexpected fetch of {url}")


async def rejected(body: dict[str, Any]) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await validate_create(body, fetch_image=no_fetch)
    return caught.value


def test_bracket_keys_nest() -> None:
    nested = nest_form_fields(
        [("prompt", "p"), ("input_reference[image_url]", "data:x"), ("a[b][c]", "v")]
    )
    assert nested == {
        "prompt": "p",
        "input_reference": {"image_url": "data:x"},
        "a": {"b": {"c": "v"}},
    }
    with pytest.raises(ApiError):
        nest_form_fields([("prompt", "a"), ("prompt", "b")])


async def test_defaults() -> None:
    params = await validate_create({"prompt": "hello"}, fetch_image=no_fetch)
    assert (params.model, params.seconds, params.size, params.reference) == (
        "sora-2",
        "4",
        "720x1280",
        None,
    )


@pytest.mark.parametrize(
    ("body", "param", "code", "message"),
    [
        ({}, "prompt", "missing_required_parameter", "Missing required parameter: 'prompt'."),
        ({"prompt": ""}, "prompt", "empty_string", None),
        ({"prompt": "x" * 32001}, "prompt", "string_above_max_length", None),
        ({"prompt": 5}, "prompt", "invalid_type", None),
        (
            {"prompt": "p", "seconds": "10"},
            "seconds",
            "invalid_value",
            "Invalid value: '10'. Supported values are: '4', '8', and '12'.",
        ),
        ({"prompt": "p", "seconds": 4}, "seconds", "invalid_type", None),
        ({"prompt": "p", "model": "sora-3"}, "model", "invalid_value", None),
        ({"prompt": "p", "size": "1920x1080"}, "size", "invalid_value", None),
        ({"prompt": "p", "colour": "red"}, "colour", "unknown_parameter", None),
        ({"prompt": "p", "input_reference": {}}, "input_reference", "invalid_value", None),
        (
            {"prompt": "p", "input_reference": {"file_id": "file-1"}},
            "input_reference.file_id",
            "invalid_value",
            None,
        ),
        (
            {"prompt": "p", "input_reference": {"image_url": "ftp://x/y.png"}},
            "input_reference.image_url",
            "invalid_value",
            None,
        ),
        (
            {"prompt": "p", "input_reference": {"image_url": "data:image/png;base64,@@"}},
            "input_reference.image_url",
            "invalid_value",
            None,
        ),
    ],
)
async def test_rejections(body: dict[str, Any], param: str, code: str, message: str | None) -> None:
    error = await rejected(body)
    assert error.status == 400
    assert error.type == "invalid_request_error"
    assert error.param == param
    assert error.code == code
    if message is not None:
        assert error.message == message


async def test_pro_sizes_and_dated_models() -> None:
    params = await validate_create(
        {"prompt": "p", "model": "sora-2-pro-2025-10-06", "size": "1920x1080", "seconds": "12"},
        fetch_image=no_fetch,
    )
    assert params.model == "sora-2-pro-2025-10-06"
    params = await validate_create(
        {"prompt": "p", "model": "sora-2-2025-12-08", "size": "1280x720"}, fetch_image=no_fetch
    )
    assert (params.model, params.seconds) == ("sora-2-2025-12-08", "4")


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        (
            {"model": "sora-2-pro", "size": "1080x1080"},
            "size",
            "Invalid value: '1080x1080'. Supported values are: '1280x720', '720x1280', "
            "'1024x1792', '1792x1024', '1920x1080', and '1080x1920'.",
        ),
        # A dated slug the spec does not list is not a model.
        (
            {"model": "sora-2-2031-01-01"},
            "model",
            "Invalid value: 'sora-2-2031-01-01'. Supported values are: 'sora-2' and "
            "'sora-2-pro'.",
        ),
        # A sora-2-pro snapshot gets sora-2-pro's sizes, a sora-2 snapshot sora-2's.
        (
            {"model": "sora-2-2025-10-06", "size": "1024x1792"},
            "size",
            "Invalid value: '1024x1792'. Supported values are: '1280x720' and '720x1280'.",
        ),
    ],
)
async def test_sizes_and_snapshots_outside_the_documented_ones_are_refused(
    body: dict[str, Any], param: str, message: str
) -> None:
    with pytest.raises(ApiError) as raised:
        await validate_create({"prompt": "p", **body}, fetch_image=no_fetch)
    assert (raised.value.status, raised.value.param, raised.value.code) == (
        400,
        param,
        "invalid_value",
    )
    assert raised.value.message == message


async def test_data_url_reference() -> None:
    data = image_bytes((720, 1280), "WEBP")
    url = "data:image/webp;base64," + base64.b64encode(data).decode()
    params = await validate_create(
        {"prompt": "p", "input_reference": {"image_url": url}}, fetch_image=no_fetch
    )
    assert params.reference is not None
    assert params.reference.mime == "image/webp"


async def test_http_reference_goes_through_the_fetcher() -> None:
    data = image_bytes((720, 1280), "JPEG")
    fetched: list[str] = []

    async def fetch(url: str) -> tuple[bytes, str | None]:
        fetched.append(url)
        return data, "image/jpeg"

    params = await validate_create(
        {"prompt": "p", "input_reference": {"image_url": "http://127.0.0.1:9/x.jpg"}},
        fetch_image=fetch,
    )
    assert fetched == ["http://127.0.0.1:9/x.jpg"]
    assert params.reference is not None
    assert params.reference.mime == "image/jpeg"


def test_reference_image_checks() -> None:
    ok = check_reference_image(image_bytes((1280, 720)), "image/png", "1280x720")
    assert ok.mime == "image/png"
    # Untyped uploads are sniffed.
    assert check_reference_image(image_bytes((1280, 720), "JPEG"), None, "1280x720").mime == (
        "image/jpeg"
    )
    with pytest.raises(ApiError, match="Inpaint image must match the requested width and height"):
        check_reference_image(image_bytes((720, 1280)), "image/png", "1280x720")
    with pytest.raises(ApiError, match="Supported values are: 'image/jpeg', 'image/png', and"):
        check_reference_image(image_bytes((1280, 720), "GIF"), "image/gif", "1280x720")
    with pytest.raises(ApiError, match="Invalid value: 'image/gif'"):
        check_reference_image(image_bytes((1280, 720), "GIF"), None, "1280x720")
    with pytest.raises(ApiError, match="could not be decoded") as caught:
        check_reference_image(b"not an image", "image/png", "1280x720")
    assert caught.value.param == "input_reference"


async def test_upload_reference_checked_against_size() -> None:
    upload = Upload(image_bytes((1280, 720)), "image/png", "ref.png")
    error = await rejected({"prompt": "p", "size": "720x1280", "input_reference": upload})
    assert error.param == "input_reference"
    params = await validate_create(
        {"prompt": "p", "size": "1280x720", "input_reference": upload}, fetch_image=no_fetch
    )
    assert params.reference is not None
    assert params.reference.data == upload.data


def test_loopback_detection() -> None:
    assert is_loopback_url("http://127.0.0.1:8000/a.png")
    assert is_loopback_url("http://localhost/a.png")
    assert is_loopback_url("https://[::1]/a.png")
    assert not is_loopback_url("http://example.com/a.png")
    assert not is_loopback_url("http://10.0.0.1/a.png")
