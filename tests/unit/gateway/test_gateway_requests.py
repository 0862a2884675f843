"""Validation of video requests without any I/O: defaults, the seconds normalisation, the
model/size/seconds table, prompt and reference-image limits."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from reelvault_common.providers.models import DEFAULT_CATALOG as MODELS
from reelvault_gateway.errors import ApiError
from reelvault_gateway.video_requests import CreateVideoBody, spec_from_body


def body(**fields: Any) -> CreateVideoBody:
    return CreateVideoBody.model_validate({"prompt": "a cat on a skateboard", **fields})


def error_locs(exc: ValidationError) -> list[tuple[Any, ...]]:
    return [tuple(error["loc"]) for error in exc.errors()]


def test_defaults_follow_the_videos_api() -> None:
    spec = spec_from_body(body(), MODELS)
    assert (spec.model, spec.seconds, spec.size) == ("sora-2", "4", "720x1280")
    assert spec.reference_keys == ()


@pytest.mark.parametrize(("given", "expected"), [(8, "8"), ("8", "8"), (" 12 ", "12"), (4, "4")])
def test_seconds_accepts_integer_or_string_and_normalises_to_string(
    given: Any, expected: str
) -> None:
    assert body(seconds=given).seconds == expected
    assert spec_from_body(body(seconds=given), MODELS).seconds == expected


@pytest.mark.parametrize("given", [4.0, True, None, [4]])
def test_seconds_of_other_types_are_rejected(given: Any) -> None:
    with pytest.raises(ValidationError) as info:
        body(seconds=given)
    assert ("seconds",) in error_locs(info.value)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"seconds": "7"}, "seconds"),
        ({"seconds": 10}, "seconds"),
        ({"size": "999x999"}, "size"),
        ({"size": "1920x1080"}, "size"),  # a sora-2-pro size
        ({"model": "sora-3"}, "model"),
        ({"model": ""}, "model"),
    ],
)
def test_spec_problems_are_422_naming_the_field(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(ApiError) as info:
        spec_from_body(body(**fields), MODELS)
    error = info.value
    assert error.status_code == 422
    assert error.code == "validation_error"
    assert error.details[0]["loc"] == ["body", param]
    assert param in error.message
    assert "Supported values are" in error.message


@pytest.mark.parametrize(
    "fields",
    [
        {"model": "sora-2-pro", "size": "1920x1080", "seconds": "12"},
        {"model": "sora-2-2025-10-06", "size": "1280x720"},
        {"model": "sora-2", "size": "1280x720", "seconds": 8},
    ],
)
def test_valid_combinations_pass(fields: dict[str, Any]) -> None:
    spec = spec_from_body(body(**fields), MODELS)
    assert spec.model == fields["model"]


def test_missing_prompt_is_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        CreateVideoBody.model_validate({"model": "sora-2"})
    assert ("prompt",) in error_locs(info.value)


@pytest.mark.parametrize("prompt", ["", "x" * 32001])
def test_prompt_length_is_1_to_32000(prompt: str) -> None:
    with pytest.raises(ValidationError) as info:
        CreateVideoBody.model_validate({"prompt": prompt})
    assert ("prompt",) in error_locs(info.value)
    assert CreateVideoBody.model_validate({"prompt": "x" * 32000}).prompt == "x" * 32000


def test_at_most_two_reference_images() -> None:
    assert spec_from_body(body(reference_images=["a.png", "b.png"]), MODELS).reference_keys == (
        "a.png",
        "b.png",
    )
    with pytest.raises(ValidationError) as info:
        body(reference_images=["a.png", "b.png", "c.png"])
    assert ("reference_images",) in error_locs(info.value)


def test_reference_locations_name_each_image() -> None:
    spec = spec_from_body(body(reference_images=["a.png", "b.png"]), MODELS)
    assert spec.reference_locs == (("body", "reference_images", 0), ("body", "reference_images", 1))


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        body(duration=4)
    assert ("duration",) in error_locs(info.value)


def test_a_prompt_with_a_nul_character_is_refused() -> None:
    # PostgreSQL text cannot hold U+0000: the catalog could never record such a request.
    with pytest.raises(ValidationError) as refused:
        body(prompt="a cat\x00 on a skateboard")
    assert error_locs(refused.value) == [("prompt",)]
    assert "NUL" in str(refused.value)


def test_a_model_unknown_before_the_catalog_is_published_is_a_503_not_a_422() -> None:
    # A gateway (re)started before it has read the generator's catalog knows only the
    # stand-in: a model outside it may well be offered, so the client is told to retry.
    with pytest.raises(ApiError) as info:
        spec_from_body(body(model="google/veo-3.1"), MODELS, published=False)
    assert (info.value.status_code, info.value.code) == (503, "models_not_known_yet")
    assert spec_from_body(body(), MODELS, published=False).model == "sora-2"
    with pytest.raises(ApiError) as refused:
        spec_from_body(body(model="google/veo-3.1"), MODELS, published=True)
    assert refused.value.status_code == 422
