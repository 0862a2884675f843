"""What a video request must look like, and how the seed app's shape maps onto it. Pure."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)
from reelvault_common.providers.models import ModelCatalog
from reelvault_common.providers.video_spec import (
    DEFAULT_SECONDS,
    DEFAULT_SIZE,
    MAX_REFERENCE_IMAGES,
    PROMPT_MAX_CHARS,
)

from reelvault_gateway.errors import ApiError, field_error


def normalize_seconds(value: Any) -> Any:
    """``8`` and ``"8"`` mean the same; the API's canonical form is the string. Booleans and
    fractions are not durations (left alone, so the string check rejects them)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        return value.strip()
    return value


def no_nul(value: str) -> str:
    """PostgreSQL text cannot hold U+0000: such a prompt could never be catalogued (the event
    would end in the dead-letter stream), so it is refused at the door."""
    if "\x00" in value:
        raise ValueError("must not contain NUL (U+0000) characters")
    return value


def not_blank(value: str) -> str:
    """A prompt of whitespace alone describes nothing: refused before a quota or a provider
    is spent on it (the text itself is kept as given)."""
    if not value.strip():
        raise ValueError("must not be empty or only whitespace")
    return value


Prompt = Annotated[
    str,
    StringConstraints(min_length=1, max_length=PROMPT_MAX_CHARS),
    AfterValidator(no_nul),
    AfterValidator(not_blank),
]
Seconds = Annotated[
    str,
    BeforeValidator(normalize_seconds),
    # Documented as accepted (string or integer); the canonical form is the string.
    WithJsonSchema(
        {
            "anyOf": [{"type": "string"}, {"type": "integer"}],
            "description": 'Duration in seconds, as a string or an integer ("8" or 8): one of '
            "the model's `seconds` in `GET /v1/models`.",
        }
    ),
]
UploadKey = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class CreateVideoBody(BaseModel):
    """``POST /v1/videos``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "prompt": "Two friends hug on a beach at sunset",
                    "model": "sora-2",
                    "seconds": "4",
                    "size": "720x1280",
                    "reference_images": ["default/uploads/ab/ab12....png"],
                }
            ]
        },
    )

    prompt: Prompt = Field(description="What the video shows (1..32000 characters).")
    model: str | None = Field(
        default=None, max_length=100,
        description="One of `GET /v1/models`; the deployment's default model when omitted.",
    )
    seconds: Seconds = DEFAULT_SECONDS
    size: str = Field(
        default=DEFAULT_SIZE, max_length=20,
        description="`WxH`, e.g. `720x1280` or `1280x720`: one of the model's `sizes`.",
    )
    reference_images: list[UploadKey] = Field(
        default_factory=list,
        max_length=MAX_REFERENCE_IMAGES,
        description="Up to two keys returned by `POST /v1/uploads`.",
    )


class SeedCreateVideoBody(BaseModel):
    """``POST /api/create-video`` (the seed app's shape)."""

    model_config = ConfigDict(extra="ignore")

    prompt: Prompt
    image1_url: str | None = Field(
        default=None,
        max_length=2048,
        description="A URL returned by /api/upload, or an upload key.",
    )
    image2_url: str | None = Field(default=None, max_length=2048)
    model: str | None = Field(default=None, max_length=100)
    seconds: Seconds = DEFAULT_SECONDS
    size: str = Field(default=DEFAULT_SIZE, max_length=20)


class VideoIdBody(BaseModel):
    """``{id}`` of the seed's check/download routes."""

    model_config = ConfigDict(extra="ignore")

    id: uuid.UUID


@dataclass(frozen=True)
class VideoSpec:
    """A request that passed every check that needs no I/O."""

    prompt: str
    model: str
    seconds: str
    size: str
    reference_keys: tuple[str, ...]
    # Where each reference came from in the request body, to name it in errors.
    reference_locs: tuple[tuple[str | int, ...], ...]


def check_spec(
    models: ModelCatalog, model: str | None, seconds: str, size: str, images: int,
    images_field: str = "reference_images", *, published: bool = True,
) -> str:
    """The model to use (the default when none is named); a 422 naming the field and the
    allowed values when the model would reject the request. Until the generator has published
    the deployment's models (``published``), a model the stand-in catalog does not know is
    not refused but answered 503: it may well be offered."""
    if not published and model is not None and models.get(model) is None:
        raise ApiError(503, "models_not_known_yet",
                       "this gateway does not know the deployment's models yet; retry shortly",
                       headers={"Retry-After": "2"})
    chosen = model if model is not None else models.default_model
    if chosen is None:
        raise ApiError(503, "no_models", "no video model is configured in this deployment",
                       headers={"Retry-After": "30"})
    problem = models.check(chosen, seconds, size, images)
    if problem is not None:
        param = images_field if problem.param == "reference_images" else problem.param
        raise field_error(("body", param), problem.message, "invalid_value")
    return chosen


def spec_from_body(
    body: CreateVideoBody, models: ModelCatalog, *, published: bool = True
) -> VideoSpec:
    model = check_spec(models, body.model, body.seconds, body.size, len(body.reference_images),
                       published=published)
    return VideoSpec(
        prompt=body.prompt,
        model=model,
        seconds=body.seconds,
        size=body.size,
        reference_keys=tuple(body.reference_images),
        reference_locs=tuple(
            ("body", "reference_images", i) for i in range(len(body.reference_images))
        ),
    )


def upload_key_from_ref(ref: str, public_prefix: str) -> str | None:
    """The upload key an image reference names, or None if it cannot name one.

    ``ref`` is either an upload key (``default/uploads/ab/ab...png``) or a URL /api/upload
    returned (``<public_prefix><quoted key>``). Only the path is compared: the host may be
    spelled differently behind a proxy, and the key is checked against storage anyway (the
    gateway never fetches the URL).
    """
    ref = ref.strip()
    if not ref:
        return None
    parts = urlsplit(ref)
    if not parts.scheme and not parts.netloc and not ref.startswith("/"):
        return ref  # a bare key
    prefix_path = urlsplit(public_prefix).path
    if not prefix_path.endswith("/"):
        prefix_path += "/"
    if parts.scheme and parts.scheme not in ("http", "https"):
        return None
    if not parts.path.startswith(prefix_path):
        return None
    key = unquote(parts.path[len(prefix_path) :])
    return key or None


def spec_from_seed(
    body: SeedCreateVideoBody, public_prefix: str, models: ModelCatalog, *,
    published: bool = True,
) -> VideoSpec:
    images = sum(1 for ref in (body.image1_url, body.image2_url) if ref and ref.strip())
    model = check_spec(models, body.model, body.seconds, body.size, images, "image2_url",
                       published=published)
    keys: list[str] = []
    locs: list[tuple[str | int, ...]] = []
    for name in ("image1_url", "image2_url"):
        ref = getattr(body, name)
        if ref is None or not ref.strip():
            continue
        key = upload_key_from_ref(ref, public_prefix)
        if key is None:
            raise unknown_upload(("body", name), "is not an image uploaded through /api/upload")
        keys.append(key)
        locs.append(("body", name))
    return VideoSpec(body.prompt, model, body.seconds, body.size, tuple(keys), tuple(locs))


def unknown_upload(loc: tuple[str | int, ...], why: str = "no such upload") -> ApiError:
    where = ".".join(str(part) for part in loc)
    return ApiError(
        422,
        "unknown_upload",
        f"{where}: {why}; upload the image first.",
        details=[{"loc": list(loc), "msg": why, "type": "unknown_upload"}],
    )
