"""The model catalog: what a deployment offers, how each request is checked against it (422s
that name the allowed values), how a request's images reach each kind of model, and the
built-in capability tables."""

from __future__ import annotations

from decimal import Decimal

import pytest
from reelvault_common.providers.models import (
    BUILT_IN_MODELS,
    DEFAULT_CATALOG,
    GEMINI_MODELS,
    OPENAI_MODELS,
    OPENROUTER_MODELS,
    ImagePlan,
    ModelCatalog,
    ModelSpec,
    built_in,
    image_plan,
    resolution_of,
)
from reelvault_common.providers.video_spec import SIZES_BY_MODEL, SpecProblem, check_video_spec


def known(model_id: str) -> ModelSpec:
    found = built_in(model_id)
    assert found is not None
    return found


VEO = known("veo-3.1-generate-preview")


def spec(model_id: str = "m", **fields: object) -> ModelSpec:
    values: dict[str, object] = {"provider": "openrouter", "sizes": ("1280x720",),
                                 "seconds": ("4", "8")}
    values.update(fields)
    return ModelSpec(id=model_id, **values)


def problem(catalog: ModelCatalog, model: str, seconds: str, size: str,
            images: int = 0) -> SpecProblem:
    found = catalog.check(model, seconds, size, images)
    assert found is not None, "the request should have been refused"
    return found


# --- ModelSpec ------------------------------------------------------------------------------
def test_durations_and_prices_may_depend_on_the_size() -> None:
    assert VEO.allowed_seconds("1280x720") == ("4", "6", "8")
    assert VEO.allowed_seconds("1920x1080") == ("8",)
    assert VEO.price_per_second("1280x720") == Decimal("0.40")
    assert VEO.price_per_second("3840x2160") == Decimal("0.60")
    assert VEO.estimate_usd("3840x2160", "8") == Decimal("4.80")
    assert spec().estimate_usd("1280x720", "4") is None  # no price known


def test_a_spec_refuses_more_than_two_images_and_ignores_unknown_fields() -> None:
    with pytest.raises(ValueError, match="max_images"):
        spec(max_images=3)
    assert spec(future_field="x").id == "m"


# --- ModelCatalog.check ---------------------------------------------------------------------
def test_a_request_the_model_accepts_passes() -> None:
    catalog = ModelCatalog(GEMINI_MODELS)
    assert catalog.check("veo-3.1-generate-preview", "6", "720x1280") is None
    assert catalog.check("veo-3.1-generate-preview", "8", "3840x2160", images=2) is None


def test_an_unknown_model_names_every_model_offered() -> None:
    catalog = ModelCatalog(OPENROUTER_MODELS)
    found = problem(catalog, "google/veo-4", "8", "1280x720")
    assert found == SpecProblem(
        "model",
        "Invalid value: 'google/veo-4'. Supported values are: 'google/veo-3.1', "
        "'google/veo-3.1-fast', and 'google/veo-3.1-lite'.",
    )


def test_an_empty_catalog_says_no_provider_is_configured() -> None:
    found = problem(ModelCatalog(()), "sora-2", "4", "1280x720")
    assert found.param == "model"
    assert "none (no provider is configured)" in found.message


def test_an_unsupported_size_names_the_models_sizes() -> None:
    found = problem(DEFAULT_CATALOG, "sora-2", "4", "1920x1080")
    assert found == SpecProblem(
        "size", "Invalid value: '1920x1080'. Supported values are: '1280x720' and '720x1280' "
        "(model sora-2).")


def test_an_unsupported_duration_names_the_models_durations() -> None:
    found = problem(DEFAULT_CATALOG, "sora-2-pro", "6", "1280x720")
    assert found == SpecProblem(
        "seconds", "Invalid value: '6'. Supported values are: '4', '8', and '12' "
        "(model sora-2-pro).")


def test_a_duration_refused_at_one_size_names_that_sizes_durations() -> None:
    catalog = ModelCatalog(GEMINI_MODELS)
    found = problem(catalog, "veo-3.1-fast-generate-preview", "4", "1080x1920")
    assert found == SpecProblem(
        "seconds", "Invalid value: '4'. Supported values are: '8' "
        "(model veo-3.1-fast-generate-preview at 1080x1920).")
    # The same duration at a size without its own list is fine.
    assert catalog.check("veo-3.1-fast-generate-preview", "4", "720x1280") is None


def test_too_many_images_names_the_limit() -> None:
    catalog = ModelCatalog([spec("one", image_inputs=("first_frame",), max_images=1),
                            spec("two", image_inputs=("reference",))])
    assert problem(catalog, "one", "4", "1280x720", images=2) == SpecProblem(
        "reference_images", "one takes at most 1 reference image; got 2.")
    assert problem(catalog, "two", "4", "1280x720", images=3) == SpecProblem(
        "reference_images", "two takes at most 2 reference images; got 3.")
    assert catalog.check("two", "4", "1280x720", images=2) is None


def test_a_model_that_takes_no_images_refuses_any() -> None:
    # Without image inputs there is no way to send an image (``image_plan`` refuses it), so
    # the gateway must say so rather than accept a request that can only fail later.
    catalog = ModelCatalog([spec("text-only")])
    found = problem(catalog, "text-only", "4", "1280x720", images=1)
    assert found.param == "reference_images"
    assert "at most 0 reference images" in found.message
    assert catalog.check("text-only", "4", "1280x720", images=0) is None


def test_the_first_problem_wins_model_then_size_then_seconds_then_images() -> None:
    catalog = ModelCatalog(OPENAI_MODELS)
    assert problem(catalog, "sora-9", "5", "1x1", images=9).param == "model"
    assert problem(catalog, "sora-2", "5", "1x1", images=9).param == "size"
    assert problem(catalog, "sora-2", "5", "1280x720", images=9).param == "seconds"
    assert problem(catalog, "sora-2", "4", "1280x720", images=9).param == "reference_images"


@pytest.mark.parametrize(("slug", "family"), [("sora-2-2025-10-06", "sora-2"),
                                              ("sora-2-pro-2025-10-06", "sora-2-pro")])
def test_dated_sora_slugs_are_their_familys(slug: str, family: str) -> None:
    found = DEFAULT_CATALOG.get(slug)
    assert found is not None and found.id == family
    assert DEFAULT_CATALOG.check(slug, "8", "1280x720") is None


def test_a_dated_slug_of_a_family_not_offered_is_unknown() -> None:
    catalog = ModelCatalog(GEMINI_MODELS)
    assert catalog.get("sora-2-2025-10-06") is None
    assert problem(catalog, "sora-2-2025-10-06", "8", "1280x720").param == "model"
    assert DEFAULT_CATALOG.get("sora-2-preview") is None


def test_the_same_checks_as_the_openai_table_for_sora() -> None:
    # The gateway's checks for the Sora protocol did not change with the catalog.
    for model, sizes in SIZES_BY_MODEL.items():
        for size in (*sizes, "640x480"):
            for seconds in ("4", "8", "12", "6"):
                old = check_video_spec(model, seconds, size)
                new = DEFAULT_CATALOG.check(model, seconds, size)
                # (The catalog checks the size first: durations may depend on it.)
                assert (old is None) == (new is None), (model, size, seconds)


# --- order, default, JSON -------------------------------------------------------------------
def test_the_default_model_comes_first_then_by_id() -> None:
    catalog = ModelCatalog([spec("b"), spec("c", default=True), spec("a")])
    assert [s.id for s in catalog.specs] == ["c", "a", "b"]
    assert catalog.default_model == "c"
    assert len(catalog) == 3


def test_without_a_default_the_first_model_is_used_and_empty_has_none() -> None:
    assert ModelCatalog([spec("b"), spec("a")]).default_model == "a"
    assert ModelCatalog(()).default_model is None


def test_the_catalog_round_trips_through_json() -> None:
    catalog = ModelCatalog([*GEMINI_MODELS[:1], spec("x", default=True,
                                                      usd_per_second=Decimal("0.05"))])
    again = ModelCatalog.from_json(catalog.to_json())
    assert again.specs == catalog.specs
    assert again.default_model == "x"
    assert ModelCatalog.from_json(catalog.to_json().decode()).specs == catalog.specs


def test_the_default_catalog_is_the_sora_protocol_with_sora_2_first() -> None:
    assert [s.id for s in DEFAULT_CATALOG.specs] == ["sora-2", "sora-2-pro"]
    assert DEFAULT_CATALOG.default_model == "sora-2"
    assert {s.provider for s in DEFAULT_CATALOG.specs} == {"openai"}


# --- images ---------------------------------------------------------------------------------
FIRST_LAST_REFS = spec(image_inputs=("first_frame", "last_frame", "reference"))
FIRST_LAST = spec(image_inputs=("first_frame", "last_frame"))
FIRST_ONLY = spec(image_inputs=("first_frame",))
REFS_ONLY = spec(image_inputs=("reference",))
FIRST_AND_REFS = spec(image_inputs=("first_frame", "reference"))
NO_INPUTS = spec()


@pytest.mark.parametrize(
    ("model", "images", "mode"),
    [
        (FIRST_LAST_REFS, 0, "none"),
        (FIRST_LAST_REFS, 1, "first_frame"),
        (FIRST_LAST_REFS, 2, "frames"),  # first and last frame beat references
        (FIRST_LAST, 1, "first_frame"),
        (FIRST_LAST, 2, "frames"),
        (FIRST_ONLY, 1, "first_frame"),
        (FIRST_ONLY, 2, "composed"),  # one frame only: both images composed into it
        (REFS_ONLY, 1, "references"),
        (REFS_ONLY, 2, "references"),
        (FIRST_AND_REFS, 1, "first_frame"),
        (FIRST_AND_REFS, 2, "references"),
        (NO_INPUTS, 0, "none"),
    ],
)
def test_each_kind_of_model_gets_the_images_natively_where_it_can(
    model: ModelSpec, images: int, mode: str
) -> None:
    assert image_plan(model, images) == ImagePlan(mode)  # type: ignore[arg-type]


@pytest.mark.parametrize("images", [1, 2])
def test_a_model_without_image_inputs_refuses_images(images: int) -> None:
    with pytest.raises(ValueError, match="takes no images"):
        image_plan(NO_INPUTS, images)


@pytest.mark.parametrize(("mode", "frames"), [("none", 0), ("first_frame", 1), ("composed", 1),
                                              ("frames", 2), ("references", 2)])
def test_frames_needed(mode: str, frames: int) -> None:
    assert ImagePlan(mode).frames_needed == frames  # type: ignore[arg-type]


def test_the_built_in_models_plans() -> None:
    sora = built_in("sora-2")
    lite = built_in("veo-3.1-lite-generate-preview")
    openrouter_veo = built_in("google/veo-3.1")
    assert sora is not None and lite is not None and openrouter_veo is not None
    assert image_plan(sora, 2).mode == "composed"
    assert image_plan(VEO, 2).mode == "frames"
    assert image_plan(lite, 2).mode == "frames"
    assert image_plan(openrouter_veo, 1).mode == "first_frame"


# --- resolution and aspect ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ("1280x720", ("720p", "16:9")),
        ("720x1280", ("720p", "9:16")),
        ("1920x1080", ("1080p", "16:9")),
        ("1080x1920", ("1080p", "9:16")),
        ("3840x2160", ("4k", "16:9")),
        ("2160x3840", ("4k", "9:16")),
        ("854x480", ("480p", "427:240")),
        ("1024x768", ("768p", "4:3")),
        ("1024x1792", ("1024p", "4:7")),
        ("1024x1024", ("1024p", "1:1")),
    ],
)
def test_a_size_as_resolution_and_aspect_ratio(size: str, expected: tuple[str, str]) -> None:
    assert resolution_of(size) == expected


@pytest.mark.parametrize("size", ["big", "1280x", "x720", ""])
def test_a_size_that_is_not_wxh_is_refused(size: str) -> None:
    with pytest.raises(ValueError, match="invalid literal"):
        resolution_of(size)


# --- built-in tables ------------------------------------------------------------------------
def test_every_built_in_model_is_consistent() -> None:
    seen: set[str] = set()
    for provider, specs in BUILT_IN_MODELS.items():
        for model in specs:
            assert model.provider == provider
            assert model.id not in seen
            seen.add(model.id)
            assert model.sizes and model.seconds and model.image_inputs
            assert not model.default
            assert model.usd_per_second is not None and model.usd_per_second > 0
            for size, seconds in model.seconds_by_size.items():
                assert size in model.sizes
                assert set(seconds) <= set(model.seconds)
            assert set(model.usd_per_second_by_size) <= set(model.sizes)
            for size in model.sizes:
                resolution_of(size)  # every size maps onto resolution and aspect
            assert built_in(model.id) == model
    assert built_in("google/veo-4") is None


def test_veo_tables_follow_the_documented_limits() -> None:
    for model in (*GEMINI_MODELS, *OPENROUTER_MODELS):
        assert model.seconds == ("4", "6", "8")
        for size in model.sizes:
            # 1080p and 4k only at 8 seconds; 720p at any.
            expected = ("4", "6", "8") if "720" in size else ("8",)
            assert model.allowed_seconds(size) == expected, (model.id, size)
    lite = built_in("veo-3.1-lite-generate-preview")
    assert lite is not None
    assert "3840x2160" not in lite.sizes  # no 4k on Lite
    assert "reference" not in lite.image_inputs
    assert "reference" in VEO.image_inputs
    for model in OPENROUTER_MODELS:
        assert "3840x2160" not in model.sizes
        assert model.image_inputs == ("first_frame", "last_frame")


def test_sora_tables_match_the_openai_protocols() -> None:
    for model in OPENAI_MODELS:
        assert model.sizes == SIZES_BY_MODEL[model.id]
        assert model.seconds == ("4", "8", "12")
        assert model.image_inputs == ("first_frame",)
