"""Reading and validating ``POST /api/v1/videos`` bodies against the model's capabilities.

The first problem found is reported, always in the same order, with the allowed values named.
Images (``frame_images``, ``input_references``) are base64 data URLs or http(s) URLs; the
latter are fetched only from loopback hosts (the engine's image fetch), so the simulator never
reaches out to the network.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio

from reelvault_providersim.callbacks import callback_problem
from reelvault_providersim.errors import ApiError
from reelvault_providersim.images import NotAnImageError, decode_data_url, image_mime
from reelvault_providersim.openrouter.catalog import BY_ID, RETIRED, ModelSpec
from reelvault_providersim.openrouter.errors import OpenRouterError, invalid_request, not_found
from reelvault_providersim.settings import SimSettings

# Every field of OpenRouter's VideoGenerationRequest (the SDK sends no others).
FIELDS = frozenset({
    "model", "prompt", "duration", "resolution", "aspect_ratio", "size", "seed",
    "generate_audio", "frame_images", "input_references", "provider", "callback_url",
    "upscale_factor", "creativity", "previous_job_id", "session_id", "trace", "user",
})
FRAME_TYPES = ("first_frame", "last_frame")
REFERENCE_TYPES = ("image_url", "audio_url", "video_url")
PROMPT_MAX_CHARS = 32000

ImageFetcher = Callable[[str, str], Awaitable[tuple[bytes, str | None]]]


@dataclass(frozen=True)
class VideoRequest:
    model: ModelSpec
    prompt: str
    duration: int
    resolution: str
    size: str
    callback_url: str | None
    first_frame: bytes | None = None
    last_frame: bytes | None = None
    references: list[bytes] = field(default_factory=list)


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        raise invalid_request("Invalid JSON in request body") from None
    if not isinstance(body, dict):
        raise invalid_request("Request body must be a JSON object")
    return body


def resolve_model(value: object, retired: set[str]) -> ModelSpec:
    if value is None:
        raise invalid_request("model: Required")
    if not isinstance(value, str) or not value:
        raise invalid_request("model: Expected a non-empty string")
    if value in RETIRED or value in retired:
        raise not_found(f"Model {value} is no longer available")
    model = BY_ID.get(value)
    if model is None:
        raise not_found(f"Model {value} not found or does not support video generation")
    return model


async def validate(
    body: dict[str, Any], settings: SimSettings, retired: set[str], fetch: ImageFetcher
) -> VideoRequest:
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise invalid_request(f"Unrecognized key(s) in object: {', '.join(map(repr, unknown))}")
    model = resolve_model(body.get("model"), retired)
    frames = body.get("frame_images")
    prompt = _prompt(body.get("prompt"), has_image=bool(frames))
    duration = _duration(body.get("duration"), model)
    resolution, size = _shape(body, model)
    _optional_type(body, "seed", int, "an integer")
    _optional_type(body, "generate_audio", bool, "a boolean")
    if body.get("generate_audio") and model.generate_audio is False:
        raise invalid_request(f"generate_audio: {model.id} does not generate audio")
    if body.get("seed") is not None and model.seed is False:
        raise invalid_request(f"seed: {model.id} does not support a seed")
    first, last = await _frames(frames, model, fetch)
    # Both given: frame_images win and the request is image-to-video (as documented).
    references = [] if frames else await _references(body.get("input_references"), model, fetch)
    _provider(body.get("provider"))
    callback_url = _callback(body.get("callback_url"), settings)
    for upscaling in ("upscale_factor", "creativity"):
        if body.get(upscaling) is not None:
            raise invalid_request(
                f"{upscaling}: only supported by video upscaling models, not by {model.id}"
            )
    if body.get("previous_job_id") is not None:
        raise invalid_request(f"previous_job_id: {model.id} does not support continuation")
    for text in ("session_id", "user"):
        _optional_type(body, text, str, "a string")
    return VideoRequest(model, prompt, duration, resolution, size, callback_url, first, last,
                        references)


def _prompt(value: object, *, has_image: bool) -> str:
    if value is None or value == "":
        if has_image:
            return ""
        raise invalid_request("prompt: Required (this model needs a prompt without images)")
    if not isinstance(value, str):
        raise invalid_request("prompt: Expected a string")
    if len(value) > PROMPT_MAX_CHARS:
        raise invalid_request(f"prompt: String must contain at most {PROMPT_MAX_CHARS} characters")
    return value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _duration(value: object, model: ModelSpec) -> int:
    if value is None:
        return model.default_duration
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid_request("duration: Expected an integer >= 1")
    duration = value
    if duration not in model.durations:
        allowed = ", ".join(map(str, model.durations))
        raise invalid_request(
            f"duration: {duration} is not supported by {model.id}. Supported durations: {allowed}"
        )
    return duration


def _shape(body: dict[str, Any], model: ModelSpec) -> tuple[str, str]:
    """(resolution, size) from ``size`` or ``resolution`` + ``aspect_ratio``."""
    size, resolution, ratio = body.get("size"), body.get("resolution"), body.get("aspect_ratio")
    for name, value in (("size", size), ("resolution", resolution), ("aspect_ratio", ratio)):
        if value is not None and not isinstance(value, str):
            raise invalid_request(f"{name}: Expected a string")
    if resolution is not None and resolution not in model.resolutions:
        raise invalid_request(
            f"resolution: {resolution} is not supported by {model.id}. "
            f"Supported resolutions: {', '.join(model.resolutions)}"
        )
    if ratio is not None and ratio not in model.aspect_ratios:
        raise invalid_request(
            f"aspect_ratio: {ratio} is not supported by {model.id}. "
            f"Supported aspect ratios: {', '.join(model.aspect_ratios)}"
        )
    if size is not None:
        if size not in model.size_list:
            raise invalid_request(
                f"size: {size} is not supported by {model.id}. "
                f"Supported sizes: {', '.join(model.size_list)}"
            )
        for (res, asp), value in model.sizes.items():
            if value == size and (resolution or res) == res and (ratio or asp) == asp:
                return res, size
        raise invalid_request(
            f"size: {size} does not match resolution {resolution} / aspect_ratio {ratio}"
        )
    key = (resolution or model.default_resolution, ratio or model.default_aspect_ratio)
    if key not in model.sizes:
        raise invalid_request(
            f"resolution {key[0]} with aspect_ratio {key[1]} is not supported by {model.id}. "
            f"Supported sizes: {', '.join(model.size_list)}"
        )
    return key[0], model.sizes[key]


def _optional_type(body: dict[str, Any], name: str, kind: type, label: str) -> None:
    value = body.get(name)
    if value is None:
        return
    ok = _is_int(value) if kind is int else isinstance(value, kind)
    if not ok:
        raise invalid_request(f"{name}: Expected {label}")


def _url_of(item: object, kind: str, param: str) -> str:
    if not isinstance(item, dict):
        raise invalid_request(f"{param}: Expected an object")
    holder = item.get(kind)
    if not isinstance(holder, dict) or not isinstance(holder.get("url"), str):
        raise invalid_request(f"{param}.{kind}.url: Required")
    url: str = holder["url"]
    return url


async def load_image(url: str, param: str, fetch: ImageFetcher) -> bytes:
    """The image behind a data URL or a (loopback) http(s) URL, checked to be an image."""
    if url.startswith("data:"):
        try:
            data, _ = decode_data_url(url)
        except ValueError as exc:
            raise invalid_request(f"{param}: {exc}") from None
    elif urlsplit(url).scheme.lower() in ("http", "https"):
        try:
            data, _ = await fetch(url, param)
        except OpenRouterError:
            raise
        except ApiError as exc:
            raise invalid_request(f"{param}: {exc.message}") from None
    else:
        raise invalid_request(f"{param}: Expected an https URL or a base64 data URL")
    try:
        await anyio.to_thread.run_sync(image_mime, data)
    except NotAnImageError as exc:
        raise invalid_request(
            f"{param}: not a supported image (JPEG, PNG or WebP): {exc}"
        ) from None
    return data


async def _frames(
    value: object, model: ModelSpec, fetch: ImageFetcher
) -> tuple[bytes | None, bytes | None]:
    if value is None:
        return None, None
    if not isinstance(value, list):
        raise invalid_request("frame_images: Expected an array")
    if len(value) > len(FRAME_TYPES):
        raise invalid_request(f"frame_images: at most {len(FRAME_TYPES)} images (first, last)")
    found: dict[str, bytes] = {}
    for index, item in enumerate(value):
        param = f"frame_images[{index}]"
        url = _url_of(item, "image_url", param)
        if item.get("type") != "image_url":
            raise invalid_request(f"{param}.type: Expected 'image_url'")
        frame_type = item.get("frame_type")
        if frame_type not in FRAME_TYPES:
            raise invalid_request(f"{param}.frame_type: Expected 'first_frame' or 'last_frame'")
        if frame_type not in model.frame_images:
            raise invalid_request(
                f"{param}.frame_type: {model.id} does not support {frame_type}. "
                f"Supported frame images: {', '.join(model.frame_images)}"
            )
        if frame_type in found:
            raise invalid_request(f"{param}.frame_type: more than one {frame_type}")
        found[frame_type] = await load_image(url, param, fetch)
    return found.get("first_frame"), found.get("last_frame")


async def _references(value: object, model: ModelSpec, fetch: ImageFetcher) -> list[bytes]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid_request("input_references: Expected an array")
    images: list[bytes] = []
    for index, item in enumerate(value):
        param = f"input_references[{index}]"
        kind = item.get("type") if isinstance(item, dict) else None
        if kind not in REFERENCE_TYPES:
            raise invalid_request(f"{param}.type: Expected one of {', '.join(REFERENCE_TYPES)}")
        url = _url_of(item, str(kind), param)
        if kind != "image_url":
            continue  # audio and video references: honoured by few models, ignored by others
        if len(images) >= model.max_input_references:
            raise invalid_request(
                f"input_references: {model.id} accepts at most {model.max_input_references} "
                "image references"
            )
        images.append(await load_image(url, param, fetch))
    return images


def _provider(value: object) -> None:
    if value is None:
        return
    options = value.get("options") if isinstance(value, dict) else None
    if not isinstance(value, dict) or set(value) - {"options"} or (
        options is not None and not isinstance(options, dict)
    ):
        raise invalid_request("provider: Expected {\"options\": {<provider slug>: {...}}}")


def _callback(value: object, settings: SimSettings) -> str | None:
    if value is None:
        return settings.openrouter_callback_url
    if not isinstance(value, str):
        raise invalid_request("callback_url: Expected a string")
    problem = callback_problem(value, settings)
    if problem is not None:
        raise invalid_request(f"callback_url: {problem}")
    return value
