"""The seed app's image URLs map back to upload keys; anything else is refused."""

from __future__ import annotations

import pytest
from reelvault_common.providers.models import DEFAULT_CATALOG as MODELS
from reelvault_gateway.errors import ApiError
from reelvault_gateway.video_requests import (
    SeedCreateVideoBody,
    spec_from_seed,
    upload_key_from_ref,
)

PREFIX = "http://127.0.0.1:8000/files/hug-images/"
KEY = "default/uploads/ab/ab" + "0" * 62 + ".png"


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        (PREFIX + KEY, KEY),  # what /api/upload returned
        (KEY, KEY),  # a bare upload key
        ("http://gateway.example:9000/files/hug-images/" + KEY, KEY),  # another host spelling
        ("/files/hug-images/" + KEY, KEY),  # a relative URL
        (PREFIX + "default/uploads/x%20y.png", "default/uploads/x y.png"),  # quoted
        (PREFIX + KEY + "?download=1", KEY),  # query strings are not part of the key
        ("  " + PREFIX + KEY + " ", KEY),
    ],
)
def test_urls_and_keys_map_to_the_upload_key(ref: str, expected: str) -> None:
    assert upload_key_from_ref(ref, PREFIX) == expected


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "   ",
        "http://127.0.0.1:8000/files/videos/" + KEY,  # another bucket
        "https://example.com/cat.png",
        "ftp://127.0.0.1:8000/files/hug-images/" + KEY,
        "data:image/png;base64,AAAA",
        PREFIX,  # the bucket itself, no key
    ],
)
def test_other_references_do_not_name_an_upload(ref: str) -> None:
    assert upload_key_from_ref(ref, PREFIX) is None


def test_supabase_style_public_prefix() -> None:
    prefix = "https://proj.supabase.co/storage/v1/object/public/hug-images/"
    assert upload_key_from_ref(prefix + KEY, prefix) == KEY


def test_seed_body_maps_both_images_in_order() -> None:
    body = SeedCreateVideoBody(prompt="a hug", image1_url=PREFIX + KEY, image2_url="k2.webp")
    spec = spec_from_seed(body, PREFIX, MODELS)
    assert spec.reference_keys == (KEY, "k2.webp")
    assert spec.reference_locs == (("body", "image1_url"), ("body", "image2_url"))
    assert (spec.model, spec.seconds, spec.size) == ("sora-2", "4", "720x1280")


def test_seed_body_without_images_and_with_only_the_second() -> None:
    assert spec_from_seed(SeedCreateVideoBody(prompt="p"), PREFIX, MODELS).reference_keys == ()
    only_second = SeedCreateVideoBody(prompt="p", image1_url="", image2_url=KEY)
    spec = spec_from_seed(only_second, PREFIX, MODELS)
    assert spec.reference_keys == (KEY,)
    assert spec.reference_locs == (("body", "image2_url"),)


def test_seed_foreign_url_is_unknown_upload_naming_the_field() -> None:
    body = SeedCreateVideoBody(prompt="p", image1_url=PREFIX + KEY, image2_url="https://x.io/a.png")
    with pytest.raises(ApiError) as info:
        spec_from_seed(body, PREFIX, MODELS)
    assert info.value.status_code == 422
    assert info.value.code == "unknown_upload"
    assert info.value.details[0]["loc"] == ["body", "image2_url"]


def test_seed_seconds_normalised_and_checked() -> None:
    assert spec_from_seed(SeedCreateVideoBody(prompt="p", seconds=8), PREFIX, MODELS).seconds == "8"
    with pytest.raises(ApiError) as info:
        spec_from_seed(SeedCreateVideoBody(prompt="p", size="1x1"), PREFIX, MODELS)
    assert info.value.details[0]["loc"] == ["body", "size"]
