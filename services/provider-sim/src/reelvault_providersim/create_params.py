"""Reading and validating create / remix bodies, as strictly as the real API.

Bodies arrive as JSON or as multipart/form-data (the official SDK always sends multipart and
flattens nested objects to bracket keys: ``input_reference[image_url]=...``). Both are turned
into one nested dict first, then validated field by field in a fixed order, so the first
problem reported is always the same one.

Reference images given as ``image_url``: base64 data URLs are decoded; http(s) URLs are
fetched only when they point at a loopback host (tests serve images locally), any other host
is refused with a 400 so the simulator never reaches out to the network. ``file_id`` always
fails: the simulator has no Files API, so no file id can exist.
"""

from __future__ import annotations

import base64
import binascii
import io
import ipaddress
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
from PIL import Image, UnidentifiedImageError
from starlette.datastructures import UploadFile
from starlette.requests import Request

from reelvault_providersim import spec
from reelvault_providersim.errors import (
    ApiError,
    bad_request,
    invalid_type,
    invalid_value,
    missing_parameter,
    unknown_parameter,
)

REFERENCE_MIME_TYPES: tuple[str, ...] = ("image/jpeg", "image/png", "image/webp")
_FORMAT_MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
_UNTYPED = {"", "application/octet-stream", "binary/octet-stream"}
MAX_REFERENCE_BYTES = 50 * 1024 * 1024
_CREATE_FIELDS = {"prompt", "model", "seconds", "size", "input_reference"}
_REFERENCE_FIELDS = {"image_url", "file_id"}
_BRACKET = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])+)$")
_DATA_URL = re.compile(
    r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[^,;]*)*),(?P<data>.*)$", re.S
)

ImageFetcher = Callable[[str], Awaitable[tuple[bytes, str | None]]]


@dataclass(frozen=True)
class Upload:
    """A multipart file part, read into memory (references are a few MB at most)."""

    data: bytes
    content_type: str | None
    filename: str | None


@dataclass(frozen=True)
class ReferenceImage:
    data: bytes
    mime: str


@dataclass(frozen=True)
class CreateParams:
    prompt: str
    model: str
    seconds: str
    size: str
    reference: ReferenceImage | None


async def read_body(request: Request) -> dict[str, Any]:
    """The request body as a nested dict (JSON object, or form fields with bracket keys)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            raise bad_request(
                "We could not parse the JSON body of your request. (HINT: This likely means you "
                "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
                "but what was sent was not valid JSON.)"
            ) from None
        if not isinstance(body, dict):
            raise invalid_type("body", "an object", body)
        return body
    if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        try:
            # Text parts may hold a whole image as a base64 data URL: allow that much.
            form = await request.form(
                max_files=4, max_fields=32, max_part_size=2 * MAX_REFERENCE_BYTES
            )
        except Exception as exc:  # malformed multipart: the parser's own exception types vary
            raise bad_request(f"Could not parse the multipart body: {exc}") from None
        flat: list[tuple[str, Any]] = []
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                data = await value.read(MAX_REFERENCE_BYTES + 1)
                if len(data) > MAX_REFERENCE_BYTES:
                    raise bad_request("The uploaded file is too large.", param=key)
                flat.append((key, Upload(data, value.content_type, value.filename)))
            else:
                flat.append((key, value))
        return nest_form_fields(flat)
    if not content_type and not await request.body():
        return {}
    raise bad_request(
        f"Unsupported content type: '{content_type}'. This endpoint accepts "
        "'application/json' and 'multipart/form-data'."
    )


def nest_form_fields(items: list[tuple[str, Any]]) -> dict[str, Any]:
    """``a[b][c]=v`` -> ``{"a": {"b": {"c": v}}}``; a repeated key is an error."""
    out: dict[str, Any] = {}
    for key, value in items:
        match = _BRACKET.match(key)
        path = (
            [key]
            if match is None
            else [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        )
        node = out
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise bad_request(f"Conflicting values for parameter '{key}'.", param=key)
            node = child
        if path[-1] in node:
            raise bad_request(f"Duplicate parameter: '{key}'.", param=key)
        node[path[-1]] = value
    return out


def _string_field(body: dict[str, Any], name: str, default: str | None) -> str:
    value = body.get(name)
    if value is None:
        if default is None:
            raise missing_parameter(name)
        return default
    if not isinstance(value, str):
        raise invalid_type(name, "a string", value)
    return value


def validate_prompt(body: dict[str, Any]) -> str:
    prompt = _string_field(body, "prompt", None)
    if not prompt:
        raise ApiError(
            400,
            "Invalid 'prompt': empty string. Expected a string with minimum length 1, "
            "but got an empty string instead.",
            param="prompt",
            code="empty_string",
        )
    if len(prompt) > spec.PROMPT_MAX_CHARS:
        raise ApiError(
            400,
            f"Invalid 'prompt': string too long. Expected a string with maximum length "
            f"{spec.PROMPT_MAX_CHARS}, but got a string with length {len(prompt)} instead.",
            param="prompt",
            code="string_above_max_length",
        )
    return prompt


def reject_unknown(body: dict[str, Any], allowed: set[str], prefix: str = "") -> None:
    for key in body:
        if key not in allowed:
            raise unknown_parameter(prefix + key)


async def validate_create(body: dict[str, Any], *, fetch_image: ImageFetcher) -> CreateParams:
    reject_unknown(body, _CREATE_FIELDS)
    prompt = validate_prompt(body)
    model = _string_field(body, "model", spec.DEFAULT_MODEL)
    seconds = _string_field(body, "seconds", spec.DEFAULT_SECONDS)
    size = _string_field(body, "size", spec.DEFAULT_SIZE)
    check_model_seconds_size(model, seconds, size)
    reference = await _reference(body.get("input_reference"), size, fetch_image)
    return CreateParams(prompt, model, seconds, size, reference)


def check_model_seconds_size(model: str, seconds: str, size: str) -> None:
    """Raise the API's 400 for the first of model, seconds, size it does not accept."""
    family = spec.model_family(model)
    if family is None:
        raise invalid_value("model", model, spec.MODELS)
    if seconds not in spec.SECONDS:
        raise invalid_value("seconds", seconds, spec.SECONDS)
    sizes = spec.SIZES_BY_MODEL[family]
    if size not in sizes:
        raise invalid_value("size", size, sizes)


async def _reference(value: object, size: str, fetch_image: ImageFetcher) -> ReferenceImage | None:
    if value is None:
        return None
    if isinstance(value, Upload):
        data, declared = value.data, value.content_type
    elif isinstance(value, dict):
        data, declared = await _reference_object(value, fetch_image)
    else:
        raise invalid_type("input_reference", "a file or an object", value)
    return await anyio.to_thread.run_sync(check_reference_image, data, declared, size)


async def _reference_object(
    value: dict[str, Any], fetch_image: ImageFetcher
) -> tuple[bytes, str | None]:
    reject_unknown(value, _REFERENCE_FIELDS, "input_reference.")
    given = [key for key in ("image_url", "file_id") if value.get(key) is not None]
    if len(given) != 1:
        raise bad_request(
            "Invalid 'input_reference': expected exactly one of 'image_url' or 'file_id'.",
            param="input_reference",
            code="invalid_value",
        )
    key = given[0]
    param = f"input_reference.{key}"
    ref = value[key]
    if not isinstance(ref, str):
        raise invalid_type(param, "a string", ref)
    if key == "file_id":
        raise bad_request(f"No such File object: {ref}", param=param, code="invalid_value")
    if ref.startswith("data:"):
        return _decode_data_url(ref, param)
    scheme = urlsplit(ref).scheme.lower()
    if scheme not in ("http", "https"):
        raise bad_request(
            "Invalid 'input_reference.image_url': expected an http(s) URL or a base64 data URL.",
            param=param,
            code="invalid_value",
        )
    return await fetch_image(ref)


def _decode_data_url(url: str, param: str) -> tuple[bytes, str | None]:
    match = _DATA_URL.match(url)
    if match is None or ";base64" not in match.group("params"):
        raise bad_request(
            "Invalid 'input_reference.image_url': expected a base64 data URL "
            "(data:image/png;base64,...).",
            param=param,
            code="invalid_value",
        )
    try:
        data = base64.b64decode(match.group("data"), validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(
            "Invalid 'input_reference.image_url': the data URL is not valid base64.",
            param=param,
            code="invalid_value",
        ) from None
    return data, match.group("mime")


@dataclass(frozen=True)
class VideoSource:
    """The ``video`` of an edit or extension: an earlier job's id, or an uploaded file."""

    video_id: str | None
    upload: Upload | None


def parse_video_source(value: object) -> VideoSource:
    if value is None:
        raise missing_parameter("video")
    if isinstance(value, Upload):
        return VideoSource(None, value)
    if isinstance(value, dict):
        reject_unknown(value, {"id"}, "video.")
        video_id = value.get("id")
        if video_id is None:
            raise missing_parameter("video.id")
        if not isinstance(video_id, str):
            raise invalid_type("video.id", "a string", video_id)
        return VideoSource(video_id, None)
    raise invalid_type("video", "a file or an object", value)


def validate_extension_seconds(body: dict[str, Any]) -> str:
    """Length of the added segment: required, one of the documented values."""
    seconds = _string_field(body, "seconds", None)
    if seconds not in spec.EXTENSION_SECONDS:
        raise invalid_value("seconds", seconds, spec.EXTENSION_SECONDS)
    return seconds


def is_loopback_url(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_reference_image(data: bytes, declared: str | None, size: str) -> ReferenceImage:
    """Decode the image and check its type and its exact size (blocking: run in a thread)."""
    declared_mime = (declared or "").split(";")[0].strip().lower()
    if declared_mime not in _UNTYPED and declared_mime not in REFERENCE_MIME_TYPES:
        raise invalid_value("input_reference", declared_mime, REFERENCE_MIME_TYPES)
    try:
        with Image.open(io.BytesIO(data)) as image:
            mime = _FORMAT_MIME.get(image.format or "")
            if mime is None:
                actual = Image.MIME.get(image.format or "", image.format or "unknown")
                raise invalid_value("input_reference", actual, REFERENCE_MIME_TYPES)
            # Size first: no point decoding a huge image of the wrong size.
            if image.size != spec.frame_size(size):
                raise bad_request(
                    "Inpaint image must match the requested width and height",
                    param="input_reference",
                    code="invalid_value",
                )
            image.load()
    except ApiError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise bad_request(
            "Invalid 'input_reference': the file could not be decoded as an image.",
            param="input_reference",
            code="invalid_image",
        ) from None
    return ReferenceImage(data, mime)
