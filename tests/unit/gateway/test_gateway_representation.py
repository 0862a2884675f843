"""The public ``Video``: the catalog record's fields plus ``object``, without where the files are
kept, in the JSON clients get and in the OpenAPI document."""

from __future__ import annotations

import json
from pathlib import Path

from reelvault_gateway.app import create_app
from reelvault_gateway.representation import video_from_record

from tests.support.gateway_fakes import fake_settings, make_record

PUBLIC_FIELDS = {
    "object", "id", "status", "progress", "prompt", "model", "seconds", "size", "org",
    "image1_url", "image2_url", "reference_image_keys", "provider", "provider_job_id",
    "video_url", "openai_url", "thumbnail_url", "bytes", "sha256", "error_code",
    "error_message", "error_stage", "expires_at", "stored_at", "created_at", "updated_at",
    "cost_usd", "estimated_cost_usd", "estimated_start_at", "queue_position",
}
INTERNAL_FIELDS = {"video_bucket", "video_key", "thumbnail_bucket", "thumbnail_key"}


def test_a_stored_video_shows_links_and_never_where_its_files_are_kept() -> None:
    record = make_record(
        status="completed", progress=100, provider_job_id="video_1", sha256="ab", bytes=3,
        video_url="http://elsewhere/raw", video_bucket="videos", video_key="o/v.mp4",
        thumbnail_bucket="thumbnails", thumbnail_key="o/t.webp",
    )
    body = json.loads(video_from_record(record, "http://gw/").model_dump_json())
    assert set(body) == PUBLIC_FIELDS
    content = f"http://gw/v1/videos/{record.id}/content"
    assert (body["object"], body["video_url"]) == ("video", content)
    assert body["thumbnail_url"] == content + "?variant=thumbnail"
    assert (body["provider_job_id"], body["sha256"], body["bytes"]) == ("video_1", "ab", 3)
    assert not any("o/v.mp4" in str(value) or "o/t.webp" in str(value) for value in body.values())


def test_a_video_not_yet_stored_has_no_content_link() -> None:
    record = make_record(status="processing", video_bucket="videos", video_key="o/v.mp4")
    body = json.loads(video_from_record(record, "http://gw").model_dump_json())
    assert set(body) == PUBLIC_FIELDS
    assert (body["video_url"], body["thumbnail_url"]) == (None, None)


def test_the_openapi_schema_lists_the_public_fields_with_their_descriptions(
    tmp_path: Path,
) -> None:
    schema = create_app(fake_settings(tmp_path)).openapi()["components"]["schemas"]["Video"]
    assert set(schema["properties"]) == PUBLIC_FIELDS
    assert not INTERNAL_FIELDS & set(schema["required"])
    described = {
        name for name, prop in schema["properties"].items() if prop.get("description")
    }
    assert described >= {"provider_job_id", "video_url", "openai_url", "expires_at"}
