"""Reading and validating ``predictLongRunning`` bodies, with the Veo rules Google documents:
one instance; 1080p and 4k need 8 s (so do reference images and extension); 4k not on Lite;
reference images (up to 3, ``asset``) only on Veo 3.1 / 3.1 Fast and never with a first frame,
last frame or video; ``lastFrame`` only with ``image``; personGeneration per mode on Veo 3.x;
Vertex-only parameters refused. Errors are 400 INVALID_ARGUMENT naming the field.

Both spellings proto JSON accepts are read (``webhookConfig`` / ``webhook_config``,
``user_metadata`` / ``userMetadata``), and both image shapes: the REST docs'
``{"inlineData": {"mimeType", "data"}}`` and the SDK's ``{"bytesBase64Encoded", "mimeType"}``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from reelvault_providersim.callbacks import callback_problem
from reelvault_providersim.gemini.catalog import ASPECT_RATIOS, BY_ID, RETIRED, SIZES, VeoModel
from reelvault_providersim.gemini.errors import GoogleError, invalid_argument, not_found
from reelvault_providersim.images import decode_base64, image_mime
from reelvault_providersim.settings import SimSettings

INSTANCE_FIELDS = frozenset({"prompt", "image", "lastFrame", "referenceImages", "video"})
PARAMETER_FIELDS = frozenset({
    "aspectRatio", "resolution", "durationSeconds", "negativePrompt", "personGeneration",
    "sampleCount", "numberOfVideos", "seed", "enhancePrompt",
})
# Accepted by Vertex AI only; the Gemini API refuses them.
VERTEX_ONLY = frozenset({
    "generateAudio", "fps", "outputGcsUri", "storageUri", "pubsubTopic", "mask",
    "compressionQuality", "labels", "resizeMode",
})
PERSON_GENERATION = ("allow_all", "allow_adult", "dont_allow")
IMAGE_MIME_TYPES = ("image/png", "image/jpeg")
MAX_REFERENCE_IMAGES = 3
PROMPT_MAX_TOKENS = 1024
EXTENSION_SECONDS = 7
MAX_EXTENDABLE_S = 141
_FILE_IN_URI = re.compile(r"files/([a-z0-9]+)")


@dataclass(frozen=True)
class SourceVideo:
    """The video an extension continues: its frame size, length and first frame."""

    size: str
    seconds: int
    first_frame: bytes | None


@dataclass(frozen=True)
class VeoRequest:
    model: VeoModel
    prompt: str
    resolution: str
    size: str
    seconds: int
    image: bytes | None = None
    last_frame: bytes | None = None
    references: list[bytes] = field(default_factory=list)
    source: SourceVideo | None = None
    webhook_uris: list[str] | None = None
    user_metadata: dict[str, Any] | None = None


SourceResolver = Callable[[dict[str, Any]], Awaitable[SourceVideo]]


def resolve_model(model_id: str, retired: set[str], method: str) -> VeoModel:
    if model_id in RETIRED or model_id in retired:
        raise not_found(f"models/{model_id} is no longer available.")
    model = BY_ID.get(model_id)
    if model is None:
        raise not_found(
            f"models/{model_id} is not found for API version v1beta, or is not supported for "
            f"{method}. Call ListModels to see the list of available models and their "
            "supported methods."
        )
    return model


def _unknown(name: str, where: str) -> GoogleError:
    return invalid_argument(
        f'Invalid JSON payload received. Unknown name "{name}" at \'{where}\': '
        "Cannot find field.",
        where,
    )


def _first(obj: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in obj:
            return obj[name]
    return None


async def validate(
    body: dict[str, Any],
    model: VeoModel,
    settings: SimSettings,
    resolve_source: SourceResolver,
) -> VeoRequest:
    for key in body:
        if key not in ("instances", "parameters", "webhookConfig", "webhook_config"):
            raise _unknown(key, "")
    instance = _instance(body.get("instances"))
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise invalid_argument("parameters must be an object.", "parameters")
    for key in parameters:
        if key in VERTEX_ONLY:
            raise invalid_argument(
                f"{key} parameter is not supported in Gemini API.", f"parameters.{key}"
            )
        if key not in PARAMETER_FIELDS:
            raise _unknown(key, "parameters")

    prompt = _prompt(instance)
    image = await _image(instance.get("image"), "instances[0].image")
    last = instance.get("lastFrame")
    refs = instance.get("referenceImages")
    video = instance.get("video")
    if last is not None and image is None:
        raise invalid_argument("lastFrame is only supported together with image.",
                               "instances[0].lastFrame")
    if last is not None and not model.last_frame:
        raise invalid_argument(f"lastFrame isn't supported by {model.id}.",
                               "instances[0].lastFrame")
    last_frame = await _image(last, "instances[0].lastFrame")
    references = await _references(refs, model, image is not None or video is not None)
    if video is not None and not model.extension:
        raise invalid_argument(f"Video extension isn't supported by {model.id}.",
                               "instances[0].video")
    if video is not None and image is not None:
        raise invalid_argument("video and image cannot be used together.", "instances[0].video")
    if not prompt and image is None and video is None:
        raise invalid_argument("A prompt is required.", "instances[0].prompt")

    aspect = _choice(parameters, "aspectRatio", ASPECT_RATIOS, "16:9")
    resolution = _choice(parameters, "resolution", model.resolutions, "720p")
    seconds = _duration(parameters.get("durationSeconds"), model)
    if resolution in ("1080p", "4k") and seconds != 8:
        raise invalid_argument(
            f"{resolution} resolution requires durationSeconds 8 (got {seconds}).",
            "parameters.durationSeconds",
        )
    if references and seconds != 8:
        raise invalid_argument(
            f"Reference images require durationSeconds 8 (got {seconds}).",
            "parameters.durationSeconds",
        )
    mode = "text" if image is None and not references else "image"
    _person_generation(parameters.get("personGeneration"), model, mode)
    _samples(parameters, model)
    _typed(parameters, "seed", "an integer", lambda v: _is_int(v) and 0 <= v < 2**32)
    _typed(parameters, "negativePrompt", "a string", lambda v: isinstance(v, str))
    _typed(parameters, "enhancePrompt", "a boolean", lambda v: isinstance(v, bool))
    uris, metadata = _webhook_config(_first(body, "webhookConfig", "webhook_config"), settings)

    size = SIZES[(resolution, aspect)]
    source = None
    if video is not None:
        if resolution != "720p":
            raise invalid_argument("Video extension supports 720p only.", "parameters.resolution")
        if not isinstance(video, dict):
            raise invalid_argument("video must be an object.", "instances[0].video")
        source = await resolve_source(video)
        if source.seconds > MAX_EXTENDABLE_S:
            raise invalid_argument(
                f"The input video is too long to extend ({source.seconds} s > "
                f"{MAX_EXTENDABLE_S} s).", "instances[0].video")
        size, seconds = source.size, source.seconds + EXTENSION_SECONDS
    return VeoRequest(model, prompt, resolution, size, seconds, image, last_frame, references,
                      source, uris, metadata)


def _instance(instances: object) -> dict[str, Any]:
    if not isinstance(instances, list) or not instances:
        raise invalid_argument("instances must hold one instance.", "instances")
    if len(instances) != 1:
        raise invalid_argument("Only one instance per request is supported.", "instances")
    instance = instances[0]
    if not isinstance(instance, dict):
        raise invalid_argument("instances[0] must be an object.", "instances[0]")
    for key in instance:
        if key not in INSTANCE_FIELDS:
            raise _unknown(key, "instances[0]")
    return instance


def _prompt(instance: dict[str, Any]) -> str:
    prompt = instance.get("prompt")
    if prompt is None:
        return ""
    if not isinstance(prompt, str):
        raise invalid_argument("prompt must be a string.", "instances[0].prompt")
    # A rough token count: Veo takes prompts of up to 1,024 tokens.
    if len(prompt.split()) > PROMPT_MAX_TOKENS:
        raise invalid_argument(
            f"The prompt is too long: Veo accepts up to {PROMPT_MAX_TOKENS} tokens.",
            "instances[0].prompt",
        )
    return prompt


async def _image(value: object, field_name: str) -> bytes | None:
    """The image bytes of an Image (either JSON shape), checked to be a PNG or JPEG."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid_argument(f"{field_name} must be an object.", field_name)
    if "gcsUri" in value:
        raise invalid_argument("gcsUri is not supported in Gemini API.", f"{field_name}.gcsUri")
    inline = value.get("inlineData")
    if isinstance(inline, dict):
        data, mime = inline.get("data"), inline.get("mimeType")
    else:
        data, mime = value.get("bytesBase64Encoded"), value.get("mimeType")
    if not isinstance(data, str) or not data:
        raise invalid_argument(f"{field_name} has no image bytes.", field_name)
    if mime is not None and mime not in IMAGE_MIME_TYPES:
        raise invalid_argument(
            f"Unsupported MIME type for {field_name}: {mime}. Supported: "
            f"{', '.join(IMAGE_MIME_TYPES)}.", field_name)
    try:
        raw = decode_base64(data)
        actual = await anyio.to_thread.run_sync(image_mime, raw)
    except ValueError:  # NotAnImageError included
        raise invalid_argument(
            f"{field_name} is not a valid image (PNG or JPEG).", field_name
        ) from None
    if actual not in IMAGE_MIME_TYPES:
        raise invalid_argument(f"{field_name}: {actual} images are not supported.", field_name)
    return raw


async def _references(value: object, model: VeoModel, with_frame: bool) -> list[bytes]:
    if value is None:
        return []
    where = "instances[0].referenceImages"
    if not isinstance(value, list):
        raise invalid_argument("referenceImages must be a list.", where)
    if not model.reference_images:
        raise invalid_argument(f"Reference images aren't supported by {model.id}.", where)
    if with_frame:
        raise invalid_argument(
            "referenceImages cannot be used together with image, lastFrame or video.", where
        )
    if len(value) > MAX_REFERENCE_IMAGES:
        raise invalid_argument(
            f"At most {MAX_REFERENCE_IMAGES} reference images are supported (got {len(value)}).",
            where,
        )
    images: list[bytes] = []
    for index, item in enumerate(value):
        item_where = f"{where}[{index}]"
        if not isinstance(item, dict):
            raise invalid_argument(f"{item_where} must be an object.", item_where)
        kind = item.get("referenceType", "asset")
        if not isinstance(kind, str) or kind.lower() != "asset":
            raise invalid_argument(
                f"referenceType {kind} is not supported in Gemini API; use asset.",
                f"{item_where}.referenceType",
            )
        image = await _image(item.get("image"), f"{item_where}.image")
        if image is None:
            raise invalid_argument(f"{item_where}.image is required.", f"{item_where}.image")
        images.append(image)
    return images


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _choice(parameters: dict[str, Any], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = parameters.get(name, default)
    if value not in allowed:
        raise invalid_argument(
            f"Unsupported {name} value: {value}. Supported values: {', '.join(allowed)}.",
            f"parameters.{name}",
        )
    return str(value)


def _duration(value: object, model: VeoModel) -> int:
    """A JSON integer (the SDK) or a numeric string (the docs' table); the longest if unset."""
    if value is None:
        return max(model.durations)
    seconds: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and value.isdigit():
        seconds = int(value)
    if seconds is None or seconds not in model.durations:
        raise invalid_argument(
            f"Unsupported durationSeconds value: {value}. {model.id} supports "
            f"{', '.join(map(str, model.durations))}.",
            "parameters.durationSeconds",
        )
    return seconds


def _person_generation(value: object, model: VeoModel, mode: str) -> None:
    if value is None:
        return
    where = "parameters.personGeneration"
    if value not in PERSON_GENERATION:
        raise invalid_argument(
            f"Unsupported personGeneration value: {value}. Supported values: "
            f"{', '.join(PERSON_GENERATION)}.", where)
    if not model.veo3:
        return
    allowed = "allow_all" if mode == "text" else "allow_adult"
    if value != allowed:
        raise invalid_argument(f"{value} for personGeneration is currently not supported.", where)


def _samples(parameters: dict[str, Any], model: VeoModel) -> None:
    for name in ("sampleCount", "numberOfVideos"):
        value = parameters.get(name)
        if value is None:
            continue
        if not _is_int(value) or not 1 <= value <= model.max_samples:
            raise invalid_argument(
                f"{name} must be between 1 and {model.max_samples} for {model.id}.",
                f"parameters.{name}",
            )


def _typed(parameters: dict[str, Any], name: str, label: str, check: Callable[[Any], bool]
           ) -> None:
    value = parameters.get(name)
    if value is not None and not check(value):
        raise invalid_argument(f"{name} must be {label}.", f"parameters.{name}")


def _webhook_config(
    value: object, settings: SimSettings
) -> tuple[list[str] | None, dict[str, Any] | None]:
    if value is None:
        return None, None
    where = "webhookConfig"
    if not isinstance(value, dict):
        raise invalid_argument("webhookConfig must be an object.", where)
    for key in value:
        if key not in ("uris", "user_metadata", "userMetadata"):
            raise _unknown(key, where)
    uris = value.get("uris")
    if uris is not None and (
        not isinstance(uris, list) or not all(isinstance(u, str) for u in uris)
    ):
        raise invalid_argument("webhookConfig.uris must be a list of URLs.", f"{where}.uris")
    for uri in uris or []:
        problem = callback_problem(uri, settings)
        if problem is not None:
            raise invalid_argument(f"webhookConfig.uris: {uri} {problem}.", f"{where}.uris")
    metadata = _first(value, "user_metadata", "userMetadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise invalid_argument("user_metadata must be an object.", f"{where}.user_metadata")
    return (list(uris) if uris else None), metadata


def file_id_in(uri: str) -> str | None:
    """The file id in a ``.../files/<id>:download?alt=media`` URI (or ``files/<id>``)."""
    match = _FILE_IN_URI.search(uri)
    return match.group(1) if match else None
