"""Where the archiver downloads each provider's video: the id the download names (Gemini: the
file of the completed job, read from its URI and validated), and one content source per
provider, every URL on the archiver's own configured base (an in-memory ``httpx2`` transport
answers as each API does)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

import httpx2
import pytest
from pydantic import SecretStr
from reelvault_archiver.copier import ContentSource
from reelvault_archiver.jobs import ArchiveJob
from reelvault_archiver.sources import (
    ContentSources,
    VideoOnlyContent,
    gemini_content,
    openrouter_content,
)
from reelvault_common.contracts.events import VideoCompleted
from reelvault_common.providers.errors import ProviderError
from reelvault_common.providers.gemini_veo import GeminiVeoClient
from reelvault_common.providers.openai_videos import ContentVariant, VideosClient
from reelvault_common.providers.openrouter_videos import OpenRouterVideosClient
from reelvault_common.runtime.settings import ProviderSettings

GEMINI = "https://generativelanguage.googleapis.com"
OPENROUTER = "https://openrouter.ai/api/v1"
OPERATION = "models/veo-3.1-generate-preview/operations/op9f2c"
FILE_URI = f"{GEMINI}/v1beta/files/abc123:download?alt=media"
MP4 = b"\x00\x00\x00\x18ftypmp42" + b"v" * 64


def archive_job(provider: str, job_id: str, source_url: str | None = None) -> ArchiveJob:
    event = VideoCompleted.new(
        video_id=uuid.uuid4(), org="acme", correlation_id="corr", provider=provider,
        provider_job_id=job_id, source_url=source_url or "https://elsewhere/video.mp4",
        expires_at=None, requested_at=datetime(2026, 5, 1, tzinfo=UTC))
    job = ArchiveJob.from_event(event)
    return job if source_url is not None else replace(job, source_url=None)


# --- the id a download names ----------------------------------------------------------------
def test_a_gemini_job_downloads_the_file_its_completed_job_named() -> None:
    job = archive_job("gemini", OPERATION, FILE_URI)
    assert job.source_url == FILE_URI  # carried over from the event
    assert job.content_id == "files/abc123"
    assert job.has_valid_job_id


@pytest.mark.parametrize("uri", [f"{GEMINI}/v1beta/files/abc-123", "/v1beta/files/abc123#x",
                                 "https://mirror.example/files/x9:download?alt=media"])
def test_the_file_id_is_read_from_each_uri_shape(uri: str) -> None:
    job = archive_job("gemini", OPERATION, uri)
    assert job.content_id == "files/" + uri.split("/files/")[1].split(":")[0].split("#")[0]
    assert job.has_valid_job_id


@pytest.mark.parametrize(
    "operation",
    [
        "operations/op9f2c",                                     # no model
        "models/veo-3.1/operations/op9f2c/../../files/x",        # steering the path
        "models/../operations/op9f2c",
        "models/veo-3.1/operations/op 9f2c",
        "models/veo-3.1/operations/op9f2c\n",
        "models/Veo-3.1/operations/op9f2c",                      # not a model id
        "video_68d7",                                            # another provider's id
        "",
    ],
)
def test_hostile_or_foreign_gemini_operations_are_invalid(operation: str) -> None:
    assert not archive_job("gemini", operation, FILE_URI).has_valid_job_id


@pytest.mark.parametrize(
    "uri",
    [
        None,
        OPERATION,                                               # the operation, not a file
        f"{GEMINI}/v1beta/files/../models/veo:download",
        f"{GEMINI}/v1beta/files/abc%2F..%2Fx:download",
        f"{GEMINI}/v1beta/files/abc/../../x",
        "files",
    ],
)
def test_a_gemini_job_without_a_usable_file_is_invalid(uri: str | None) -> None:
    job = archive_job("gemini", OPERATION, uri)
    assert job.content_id == ""
    assert not job.has_valid_job_id


def test_only_the_id_is_taken_from_a_uri_on_another_host() -> None:
    # Whatever host the URI names, only the id is used: the download goes to the configured
    # base with the key (see the Gemini source below).
    job = archive_job("gemini", OPERATION, "https://attacker.example/v1beta/files/abc123")
    assert job.content_id == "files/abc123"


@pytest.mark.parametrize("provider", ["openai", "openrouter"])
def test_other_providers_download_by_job_id(provider: str) -> None:
    job = archive_job(provider, "Nxff2D1Z6w4Zk9iNuZam", "https://x/files/abc123")
    assert job.content_id == "Nxff2D1Z6w4Zk9iNuZam"
    assert job.has_valid_job_id
    for hostile in ("../videos", "a/b", "id?x=1", "", "x" * 129, OPERATION):
        assert not archive_job(provider, hostile).has_valid_job_id


# --- content sources ------------------------------------------------------------------------
class Api:
    def __init__(self, response: httpx2.Response) -> None:
        self.response = response
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return self.response


def video() -> httpx2.Response:
    return httpx2.Response(200, headers={"content-type": "video/mp4"}, content=MP4)


async def read(source: ContentSource, content_id: str,
               variant: ContentVariant = "video") -> bytes:
    async with source.stream_content(content_id, variant, chunk_size=16) as (headers, chunks):
        assert headers["content-type"] == "video/mp4"
        return b"".join([chunk async for chunk in chunks])


def sources(openrouter_api: Api, gemini_api: Api) -> ContentSources:
    openrouter = OpenRouterVideosClient(OPENROUTER, api_key=SecretStr("sk-or"),
                                        transport=httpx2.MockTransport(openrouter_api))
    gemini = GeminiVeoClient(GEMINI, api_key=SecretStr("AIza"),
                             transport=httpx2.MockTransport(gemini_api))
    return ContentSources({"openrouter": openrouter_content(openrouter),
                           "gemini": gemini_content(gemini)}, [openrouter, gemini])


async def test_each_provider_is_downloaded_from_its_own_api() -> None:
    openrouter_api, gemini_api = Api(video()), Api(video())
    routed = sources(openrouter_api, gemini_api)

    assert await read(routed.of("openrouter"), "Nxff2D1Z6w4Zk9iNuZam") == MP4
    [sent] = openrouter_api.requests
    assert str(sent.url) == f"{OPENROUTER}/videos/Nxff2D1Z6w4Zk9iNuZam/content?index=0"
    assert sent.headers["authorization"] == "Bearer sk-or"

    job = archive_job("gemini", OPERATION, "https://attacker.example/v1beta/files/abc123")
    assert await read(routed.of("gemini"), job.content_id) == MP4
    [sent] = gemini_api.requests
    assert str(sent.url) == f"{GEMINI}/v1beta/files/abc123:download?alt=media"
    assert sent.headers["x-goog-api-key"] == "AIza"
    await routed.aclose()


@pytest.mark.parametrize("provider", ["openrouter", "gemini"])
async def test_providers_without_thumbnails_answer_404_without_a_request(provider: str) -> None:
    openrouter_api, gemini_api = Api(video()), Api(video())
    routed = sources(openrouter_api, gemini_api)
    with pytest.raises(ProviderError) as missing:
        await read(routed.of(provider), "abc123", "thumbnail")
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    assert openrouter_api.requests == gemini_api.requests == []


async def test_an_expired_file_is_the_providers_404() -> None:
    gone = Api(httpx2.Response(404, json={"error": {"code": 404, "status": "NOT_FOUND",
                                                    "message": "File not found"}}))
    routed = sources(Api(video()), gone)
    with pytest.raises(ProviderError) as missing:
        await read(routed.of("gemini"), "files/abc123")
    assert missing.value.status == 404


def test_an_unknown_provider_is_a_configuration_error() -> None:
    routed = sources(Api(video()), Api(video()))
    with pytest.raises(ProviderError, match="'elsewhere' is not configured") as unknown:
        routed.of("elsewhere")
    assert unknown.value.status is None  # retried until the deadline, not a 404 of the video


def test_wrapped_sources_keep_their_names() -> None:
    routed = sources(Api(video()), Api(video()))
    names: list[str] = []

    def wrap(source: ContentSource, name: str) -> ContentSource:
        names.append(name)
        return source

    wrapped = routed.wrapped(wrap)
    assert sorted(names) == ["gemini", "openrouter"]
    assert wrapped.of("gemini") is routed.of("gemini")


ENV = ("OPENAI_API_KEY", "OPENROUTER_API_KEY", "GEMINI_API_KEY", "REELVAULT_MODEL_ROUTES",
       "REELVAULT_DEFAULT_MODEL")


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


async def test_from_settings_configures_every_routed_provider_and_openai(
    environment: pytest.MonkeyPatch
) -> None:
    environment.setenv("GEMINI_API_KEY", "AIza")
    routed = ContentSources.from_settings(ProviderSettings())
    assert isinstance(routed.of("gemini"), VideoOnlyContent)
    assert isinstance(routed.of("openai"), VideosClient)  # always: videos made before
    with pytest.raises(ProviderError):
        routed.of("openrouter")
    await routed.aclose()


async def test_from_settings_follows_the_configured_routes(
    environment: pytest.MonkeyPatch
) -> None:
    environment.setenv("REELVAULT_MODEL_ROUTES", '{"google/veo-3.1": "openrouter"}')
    routed = ContentSources.from_settings(ProviderSettings())
    assert isinstance(routed.of("openrouter"), VideoOnlyContent)
    assert isinstance(routed.of("openai"), VideosClient)
    with pytest.raises(ProviderError):
        routed.of("gemini")
    await routed.aclose()
