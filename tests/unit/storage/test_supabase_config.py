"""Configuration of the Supabase backend and its pure helpers."""

from __future__ import annotations

import pytest
from reelvault_common.runtime.settings import StorageSettings
from reelvault_common.storage import BucketSpec
from reelvault_common.storage.factory import open_storage
from reelvault_common.storage.supabase import SupabaseStorage
from reelvault_common.storage.supabase_buckets import normalized_rules, rules_from_bucket_json
from reelvault_common.storage.supabase_connection import storage_url_for_project
from reelvault_common.storage.supabase_reads import object_info_from_json

KEY = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2lnbmF0dXJl"


async def test_a_storage_url_is_used_as_is_and_a_project_url_gets_storage_v1() -> None:
    bare = open_storage(
        StorageSettings(
            storage_backend="supabase",
            SUPABASE_STORAGE_URL="http://127.0.0.1:5000",
            SUPABASE_SERVICE_ROLE_KEY=KEY,
        )
    )
    project = open_storage(
        StorageSettings(
            storage_backend="supabase",
            SUPABASE_URL="https://ref.supabase.co",
            SUPABASE_SERVICE_ROLE_KEY=KEY,
        )
    )
    try:
        assert repr(bare) == "SupabaseStorage('http://127.0.0.1:5000/')"
        assert repr(project) == "SupabaseStorage('https://ref.supabase.co/storage/v1/')"
        assert KEY not in repr(bare) + repr(project)
    finally:
        assert isinstance(bare, SupabaseStorage)
        assert isinstance(project, SupabaseStorage)
        await bare.aclose()
        await project.aclose()


def test_an_explicit_storage_url_wins_over_the_project_url() -> None:
    store = SupabaseStorage.from_settings(
        StorageSettings(
            storage_backend="supabase",
            SUPABASE_URL="https://ref.supabase.co",
            SUPABASE_STORAGE_URL="http://127.0.0.1:5000/",
            SUPABASE_SERVICE_ROLE_KEY=KEY,
        )
    )
    assert repr(store) == "SupabaseStorage('http://127.0.0.1:5000/')"


@pytest.mark.parametrize(
    ("kwargs", "needs"),
    [
        ({"SUPABASE_URL": "https://ref.supabase.co"}, "SUPABASE_SERVICE_ROLE_KEY"),
        (
            {"SUPABASE_URL": "https://ref.supabase.co", "SUPABASE_SERVICE_ROLE_KEY": ""},
            "SUPABASE_SERVICE_ROLE_KEY",
        ),
        ({"SUPABASE_SERVICE_ROLE_KEY": KEY}, "SUPABASE_URL"),
    ],
)
def test_missing_configuration_is_explained(kwargs: dict[str, str], needs: str) -> None:
    with pytest.raises(ValueError, match=needs) as caught:
        open_storage(StorageSettings(storage_backend="supabase", **kwargs))  # type: ignore[arg-type]
    assert KEY not in str(caught.value)


def test_thresholds_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REELVAULT_SUPABASE_STANDARD_UPLOAD_MAX_BYTES", "50000000")
    settings = StorageSettings(
        storage_backend="supabase",
        SUPABASE_STORAGE_URL="http://x/",
        SUPABASE_SERVICE_ROLE_KEY=KEY,
        supabase_tus_threshold_bytes=1234,
    )
    store = SupabaseStorage.from_settings(settings)
    assert store._options.tus_threshold_bytes == 1234
    assert store._options.standard_upload_max_bytes == 50_000_000


def test_streamed_puts_go_as_one_standard_upload_up_to_five_gib_by_default() -> None:
    assert StorageSettings().supabase_standard_upload_max_bytes == 5 * 1024**3


def test_project_storage_url() -> None:
    assert (
        storage_url_for_project("https://ref.supabase.co/") == "https://ref.supabase.co/storage/v1/"
    )


def test_rules_compare_without_order_case_or_empty_vs_none() -> None:
    a = BucketSpec("b", False, 10, ("image/png", "Image/JPEG"))
    b = BucketSpec("b", False, 10, ("image/jpeg", "image/png"))
    assert normalized_rules(a) == normalized_rules(b)
    assert normalized_rules(BucketSpec("b", True, None, None)) == normalized_rules(
        BucketSpec("b", True, 0, ())
    )
    assert normalized_rules(a) != normalized_rules(BucketSpec("b", True, 10, a.allowed_mime_types))
    assert normalized_rules(a) != normalized_rules(BucketSpec("b", False, 11, a.allowed_mime_types))


def test_bucket_json_tolerates_a_null_owner_and_missing_rules() -> None:
    spec = rules_from_bucket_json(
        "b",
        {
            "id": "b",
            "owner": None,
            "public": True,
            "file_size_limit": None,
            "allowed_mime_types": None,
        },
    )
    assert spec == BucketSpec("b", True, None, None)


def test_object_info_reads_current_and_older_answers() -> None:
    current = {"size": 5, "content_type": "video/mp4", "metadata": {"sha256": "ab"}}
    older = {"metadata": {"size": 5, "mimetype": "video/mp4"}, "user_metadata": {"sha256": "ab"}}
    without = {"size": 5, "content_type": "video/mp4", "metadata": None}
    for body in (current, older):
        info = object_info_from_json("v", "k", body)
        assert (info.size, info.content_type, info.sha256) == (5, "video/mp4", "ab")
    assert object_info_from_json("v", "k", without).sha256 is None
