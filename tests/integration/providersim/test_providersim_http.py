"""The wire protocol in detail, with a plain HTTP client."""

from __future__ import annotations

import asyncio
import base64
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from conftest import RunningSim, SimFactory, serve_app
from PIL import Image
from providersim_helpers import API_KEY, AUTH, png, wait_terminal
from pydantic import SecretStr, ValidationError
from reelvault_providersim.render import RenderSpec, render_job
from reelvault_providersim.settings import SimSettings
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

VIDEO_FIELDS = {
    "id", "object", "model", "status", "progress", "created_at", "completed_at",
    "expires_at", "prompt", "size", "seconds", "remixed_from_video_id", "error",
}  # fmt: skip


@pytest.fixture
async def http(sim: RunningSim) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.base_url, timeout=10) as client:
        yield client


def assert_error(
    reply: httpx.Response, status: int, param: str | None, code: str | None
) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param
    assert error["code"] == code
    assert error["message"]
    return error


async def create(http: httpx.AsyncClient, **fields: str) -> dict[str, Any]:
    reply = await http.post(
        "/videos", headers=AUTH, files={k: (None, v) for k, v in fields.items()}
    )
    assert reply.status_code == 200, reply.text
    return reply.json()  # type: ignore[no-any-return]


async def test_json_create_and_every_field_present(http: httpx.AsyncClient) -> None:
    reply = await http.post(
        "/videos", headers=AUTH, json={"prompt": "json body", "size": "1280x720"}
    )
    assert reply.status_code == 200  # create is 200, not 201/202
    video = reply.json()
    assert set(video) == VIDEO_FIELDS
    assert video["status"] == "queued"
    assert (video["seconds"], video["size"], video["model"]) == ("4", "1280x720", "sora-2")
    assert reply.headers["x-request-id"].startswith("req_")

    done = await wait_terminal(http, video["id"])
    assert set(done) == VIDEO_FIELDS
    listed = (await http.get("/videos", headers=AUTH)).json()
    assert set(listed) == {"object", "data", "first_id", "last_id", "has_more"}
    assert set(listed["data"][0]) == VIDEO_FIELDS


async def test_json_rejects_numbers_and_unknown_fields(http: httpx.AsyncClient) -> None:
    reply = await http.post("/videos", headers=AUTH, json={"prompt": "p", "seconds": 4})
    assert_error(reply, 400, "seconds", "invalid_type")
    reply = await http.post("/videos", headers=AUTH, json={"prompt": "p", "duration": "4"})
    assert_error(reply, 400, "duration", "unknown_parameter")
    reply = await http.post(
        "/videos", headers={**AUTH, "content-type": "application/json"}, content=b"{nope"
    )
    assert_error(reply, 400, None, None)
    reply = await http.post("/videos", headers=AUTH, json={"prompt": "p", "size": "1024x1792"})
    error = assert_error(reply, 400, "size", "invalid_value")
    assert (
        error["message"]
        == "Invalid value: '1024x1792'. Supported values are: '1280x720' and '720x1280'."
    )


async def test_prompt_rules(http: httpx.AsyncClient) -> None:
    assert_error(
        await http.post("/videos", headers=AUTH, files={"model": (None, "sora-2")}),
        400,
        "prompt",
        "missing_required_parameter",
    )
    assert_error(
        await http.post("/videos", headers=AUTH, json={"prompt": ""}), 400, "prompt", "empty_string"
    )
    long = "x" * 32001
    assert_error(
        await http.post("/videos", headers=AUTH, json={"prompt": long}),
        400,
        "prompt",
        "string_above_max_length",
    )
    assert (
        await http.post("/videos", headers=AUTH, json={"prompt": "x" * 32000})
    ).status_code == 200


async def test_sora2_pro_sizes(http: httpx.AsyncClient) -> None:
    video = await create(http, prompt="pro", model="sora-2-pro", size="1792x1024", seconds="4")
    assert video["model"] == "sora-2-pro"
    reply = await http.post(
        "/videos", headers=AUTH, files={"prompt": (None, "p"), "model": (None, "sora-9")}
    )
    error = assert_error(reply, 400, "model", "invalid_value")
    assert error["message"].startswith("Invalid value: 'sora-9'. Supported values are:")


async def test_multipart_bracket_image_url(http: httpx.AsyncClient) -> None:
    url = "data:image/png;base64," + base64.b64encode(png((720, 1280))).decode()
    video = await create(http, **{"prompt": "nested", "input_reference[image_url]": url})
    assert (await wait_terminal(http, video["id"]))["status"] == "completed"

    both = await http.post(
        "/videos",
        headers=AUTH,
        files={
            "prompt": (None, "p"),
            "input_reference[image_url]": (None, url),
            "input_reference[file_id]": (None, "file-1"),
        },
    )
    assert_error(both, 400, "input_reference", "invalid_value")
    unknown = await http.post(
        "/videos", headers=AUTH, files={"prompt": (None, "p"), "input_reference[url]": (None, url)}
    )
    assert_error(unknown, 400, "input_reference.url", "unknown_parameter")


async def test_reference_file_types(http: httpx.AsyncClient) -> None:
    gif = io.BytesIO()
    Image.new("RGB", (720, 1280)).save(gif, format="GIF")
    reply = await http.post(
        "/videos",
        headers=AUTH,
        data={"prompt": "p"},
        files={"input_reference": ("ref.gif", gif.getvalue(), "image/gif")},
    )
    error = assert_error(reply, 400, "input_reference", "invalid_value")
    assert error["message"] == (
        "Invalid value: 'image/gif'. "
        "Supported values are: 'image/jpeg', 'image/png', and 'image/webp'."
    )
    reply = await http.post(
        "/videos",
        headers=AUTH,
        data={"prompt": "p"},
        files={"input_reference": ("ref.png", b"\x89PNG garbage", "image/png")},
    )
    assert_error(reply, 400, "input_reference", "invalid_image")

    jpeg = io.BytesIO()
    Image.new("RGB", (720, 1280), (250, 250, 0)).save(jpeg, format="JPEG")
    reply = await http.post(
        "/videos",
        headers=AUTH,
        data={"prompt": "p"},
        files={"input_reference": ("ref.jpg", jpeg.getvalue(), "image/jpeg")},
    )
    assert reply.status_code == 200


async def test_image_url_fetch_only_from_loopback(http: httpx.AsyncClient) -> None:
    image = png((720, 1280))

    async def serve_png(_: Any) -> Response:
        return Response(image, media_type="image/png")

    async with serve_app(Starlette(routes=[Route("/ref.png", serve_png)])) as images:
        reply = await http.post(
            "/videos",
            headers=AUTH,
            json={"prompt": "p", "input_reference": {"image_url": f"{images}/ref.png"}},
        )
        assert reply.status_code == 200, reply.text
        missing = await http.post(
            "/videos",
            headers=AUTH,
            json={"prompt": "p", "input_reference": {"image_url": f"{images}/none.png"}},
        )
        assert_error(missing, 400, "input_reference.image_url", None)
    remote = await http.post(
        "/videos",
        headers=AUTH,
        json={"prompt": "p", "input_reference": {"image_url": "https://example.com/ref.png"}},
    )
    error = assert_error(remote, 400, "input_reference.image_url", "invalid_value")
    assert "loopback" in error["message"]


ROUTES = [
    ("POST", "/videos"),
    ("GET", "/videos"),
    ("GET", "/videos/video_1"),
    ("DELETE", "/videos/video_1"),
    ("GET", "/videos/video_1/content"),
    ("POST", "/videos/video_1/remix"),
]
BAD_AUTH = [
    {},
    {"Authorization": "Bearer sk-wrong-000000000000"},
    {"Authorization": f"Basic {API_KEY}"},
    {"Authorization": "Bearer"},
]


async def test_auth_on_every_route(http: httpx.AsyncClient) -> None:
    for method, path in ROUTES:
        for headers in BAD_AUTH:
            reply = await http.request(method, path, headers=headers, json={"prompt": "p"})
            error = assert_error(reply, 401, None, "invalid_api_key")
            assert API_KEY not in error["message"]
            if "wrong" in headers.get("Authorization", ""):
                assert error["message"].startswith("Incorrect API key provided: sk-w")
            else:
                assert error["message"].startswith("You didn't provide an API key.")


async def test_list_validation_and_cursor(http: httpx.AsyncClient) -> None:
    ids = [(await create(http, prompt=f"v{i}"))["id"] for i in range(3)]
    page = (await http.get("/videos", headers=AUTH, params={"limit": 2, "order": "asc"})).json()
    assert [v["id"] for v in page["data"]] == ids[:2]
    assert (page["first_id"], page["last_id"], page["has_more"]) == (ids[0], ids[1], True)
    rest = (
        await http.get("/videos", headers=AUTH, params={"order": "asc", "after": ids[1]})
    ).json()
    assert [v["id"] for v in rest["data"]] == ids[2:]
    assert rest["has_more"] is False
    empty = (await http.get("/videos", headers=AUTH, params={"limit": 0})).json()
    assert (empty["data"], empty["first_id"], empty["last_id"]) == ([], None, None)

    assert_error(
        await http.get("/videos", headers=AUTH, params={"limit": 101}),
        400,
        "limit",
        "integer_above_max_value",
    )
    assert_error(
        await http.get("/videos", headers=AUTH, params={"limit": -1}),
        400,
        "limit",
        "integer_below_min_value",
    )
    assert_error(
        await http.get("/videos", headers=AUTH, params={"limit": "ten"}),
        400,
        "limit",
        "invalid_type",
    )
    assert_error(
        await http.get("/videos", headers=AUTH, params={"order": "up"}),
        400,
        "order",
        "invalid_value",
    )
    assert_error(
        await http.get("/videos", headers=AUTH, params={"after": "video_nope"}),
        400,
        "after",
        "invalid_value",
    )
    assert (await http.get("/videos", headers=AUTH, params={"limit": 100})).status_code == 200


async def test_content_states(http: httpx.AsyncClient) -> None:
    video = await create(http, prompt="states")
    early = await http.get(f"/videos/{video['id']}/content", headers=AUTH)
    error = assert_error(early, 404, None, "video_not_ready")
    assert "not ready" in error["message"]
    await wait_terminal(http, video["id"])
    bad_variant = await http.get(
        f"/videos/{video['id']}/content", headers=AUTH, params={"variant": "gif"}
    )
    assert_error(bad_variant, 400, "variant", "invalid_value")
    unknown = await http.get("/videos/video_unknown/content", headers=AUTH)
    assert_error(unknown, 404, None, "not_found")
    assert_error(await http.get("/videos/video_unknown", headers=AUTH), 404, None, "not_found")
    assert_error(await http.delete("/videos/video_unknown", headers=AUTH), 404, None, "not_found")

    deleted = await http.delete(f"/videos/{video['id']}", headers=AUTH)
    assert deleted.json() == {"id": video["id"], "object": "video.deleted", "deleted": True}
    assert_error(
        await http.get(f"/videos/{video['id']}/content", headers=AUTH), 404, None, "not_found"
    )
    assert_error(await http.delete(f"/videos/{video['id']}", headers=AUTH), 404, None, "not_found")
    listed = (await http.get("/videos", headers=AUTH)).json()
    assert video["id"] not in [v["id"] for v in listed["data"]]


async def test_content_expires(sim_factory: SimFactory) -> None:
    async with (
        sim_factory(content_ttl_s=0.4) as running,
        httpx.AsyncClient(base_url=running.base_url) as http,
    ):
        video = await create(http, prompt="short lived")
        done = await wait_terminal(http, video["id"])
        assert done["expires_at"] - done["completed_at"] in (0, 1)  # int seconds of a 0.4 s TTL
        assert (await http.get(f"/videos/{video['id']}/content", headers=AUTH)).status_code == 200
        await asyncio.sleep(0.5)
        error = assert_error(
            await http.get(f"/videos/{video['id']}/content", headers=AUTH),
            404,
            None,
            "video_expired",
        )
        assert "expired" in error["message"]
        # The Video itself is still there, completed, with its expiry in the past.
        assert (await http.get(f"/videos/{video['id']}", headers=AUTH)).json()[
            "status"
        ] == "completed"
        running.sim.sweep()
        assert not (running.sim.data_dir / video["id"]).exists()


async def test_range_requests(http: httpx.AsyncClient) -> None:
    video = await create(http, prompt="ranges")
    await wait_terminal(http, video["id"])
    full = await http.get(f"/videos/{video['id']}/content", headers=AUTH)
    assert full.headers["accept-ranges"] == "bytes"
    part = await http.get(
        f"/videos/{video['id']}/content", headers={**AUTH, "Range": "bytes=100-199"}
    )
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-199/{len(full.content)}"
    assert part.content == full.content[100:200]
    tail = await http.get(
        f"/videos/{video['id']}/content", headers={**AUTH, "Range": "bytes=1000-"}
    )
    assert tail.content == full.content[1000:]


async def test_redirect_target_is_tokenised(sim_factory: SimFactory) -> None:
    async with (
        sim_factory(content_redirect=True) as running,
        httpx.AsyncClient(base_url=running.base_url) as http,
    ):
        video = await create(http, prompt="cdn")
        await wait_terminal(http, video["id"])
        reply = await http.get(
            f"/videos/{video['id']}/content", headers=AUTH, params={"variant": "thumbnail"}
        )
        assert reply.status_code == 302
        location = reply.headers["location"]
        assert location.startswith(f"{running.root_url}/cdn/")
        target = await http.get(location)  # no auth needed: the token is the credential
        assert target.status_code == 200
        assert target.headers["content-type"] == "image/webp"
        tampered = location[:-3] + ("AAA" if not location.endswith("AAA") else "BBB")
        assert_error(await http.get(tampered), 404, None, "invalid_url")


async def test_remix_rules(http: httpx.AsyncClient) -> None:
    video = await create(http, prompt="base")
    early = await http.post(f"/videos/{video['id']}/remix", headers=AUTH, json={"prompt": "again"})
    assert_error(early, 400, "video_id", "invalid_value")
    await wait_terminal(http, video["id"])
    assert_error(
        await http.post(f"/videos/{video['id']}/remix", headers=AUTH, json={}),
        400,
        "prompt",
        "missing_required_parameter",
    )
    assert_error(
        await http.post(
            f"/videos/{video['id']}/remix", headers=AUTH, json={"prompt": "x", "size": "1280x720"}
        ),
        400,
        "size",
        "unknown_parameter",
    )
    assert_error(
        await http.post("/videos/video_nope/remix", headers=AUTH, json={"prompt": "x"}),
        404,
        None,
        "not_found",
    )
    remix = await http.post(f"/videos/{video['id']}/remix", headers=AUTH, json={"prompt": "again"})
    assert remix.json()["remixed_from_video_id"] == video["id"]


async def test_unknown_route_healthz_and_admin(sim: RunningSim, http: httpx.AsyncClient) -> None:
    assert_error(await http.get("/nothing", headers=AUTH), 404, None, None)
    async with sim.admin() as admin:
        assert (await admin.get("/healthz")).json() == {"status": "ok"}
        await create(http, prompt="counted")
        await http.post("/videos", headers=AUTH, json={"prompt": "p", "seconds": "3"})
        jobs = (await admin.get("/_sim/jobs")).json()
        assert jobs["create_calls"] == 2
        assert jobs["jobs_created"] == 1
        assert [(j["prompt"], j["model"], j["size"], j["seconds"]) for j in jobs["jobs"]] == [
            ("counted", "sora-2", "720x1280", "4")
        ]
        not_ready = await admin.get(f"/_sim/jobs/{jobs['jobs'][0]['id']}/sha256")
        assert not_ready.status_code == 404


async def test_admin_routes_can_be_disabled(sim_factory: SimFactory) -> None:
    async with sim_factory(admin_enabled=False) as running, running.admin() as admin:
        assert (await admin.get("/_sim/jobs")).status_code == 404


async def test_fast_mode_and_padding(sim_factory: SimFactory) -> None:
    target = 2 * 1024 * 1024
    async with (
        sim_factory(fast_mode=True, generation_s=5.0, pad_video_to_bytes=target) as running,
        httpx.AsyncClient(base_url=running.base_url) as http,
    ):
        video = await create(http, prompt="fast", size="1280x720", seconds="8")
        done = await wait_terminal(http, video["id"], timeout_s=3)  # generation_s ignored
        assert done["status"] == "completed"
        reply = await http.get(f"/videos/{video['id']}/content", headers=AUTH)
        assert len(reply.content) == target
        with av.open(io.BytesIO(reply.content), mode="r") as container:
            stream = container.streams.video[0]
            frames = len(list(container.decode(stream)))
            assert (stream.width, stream.height, frames) == (1280, 720, 8)  # 8 s at 1 fps


def test_settings_require_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROVIDER_SIM_API_KEY", raising=False)
    with pytest.raises(ValidationError):
        SimSettings()
    with pytest.raises(ValidationError):
        SimSettings(api_key=SecretStr("  "))
    monkeypatch.setenv("PROVIDER_SIM_API_KEY", "k")
    monkeypatch.setenv("PROVIDER_SIM_FAULTS__RATE_LIMIT_RATE", "0.25")
    settings = SimSettings()
    assert settings.faults.rate_limit_rate == 0.25
    assert settings.port == 8100
    assert settings.host == "127.0.0.1"


async def test_large_data_url_in_a_form_field(http: httpx.AsyncClient) -> None:
    # A noisy 1080p PNG is several MB: more than Starlette's default 1 MB per text part.
    noise = Image.frombytes("RGB", (1080, 1920), os.urandom(1080 * 1920 * 3))
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    assert len(url) > 4 * 1024 * 1024
    video = await create(
        http,
        **{
            "prompt": "big",
            "model": "sora-2-pro",
            "size": "1080x1920",
            "input_reference[image_url]": url,
        },
    )
    assert video["size"] == "1080x1920"


async def test_edits_and_extensions_of_a_job(http: httpx.AsyncClient) -> None:
    source = await create(http, prompt="source", size="1280x720", seconds="4")
    early = await http.post(
        "/videos/edits", headers=AUTH, json={"prompt": "e", "video": {"id": source["id"]}}
    )
    assert_error(early, 400, "video.id", "invalid_value")
    await wait_terminal(http, source["id"])

    edit = await http.post(
        "/videos/edits", headers=AUTH, json={"prompt": "edit it", "video": {"id": source["id"]}}
    )
    assert edit.status_code == 200, edit.text
    assert (edit.json()["size"], edit.json()["seconds"]) == ("1280x720", "4")
    # The bracketed multipart form of the same reference.
    extension = await http.post(
        "/videos/extensions",
        headers=AUTH,
        files={
            "prompt": (None, "longer"),
            "seconds": (None, "8"),
            "video[id]": (None, source["id"]),
        },
    )
    assert extension.status_code == 200, extension.text
    assert extension.json()["seconds"] == "12"  # the stitched total
    done = await wait_terminal(http, extension.json()["id"])
    assert done["status"] == "completed"
    content = await http.get(f"/videos/{done['id']}/content", headers=AUTH)
    with av.open(io.BytesIO(content.content), mode="r") as container:
        assert container.duration is not None
        assert container.duration / 1_000_000 == pytest.approx(12, abs=0.01)

    missing = await http.post(
        "/videos/extensions", headers=AUTH, json={"prompt": "p", "video": {"id": source["id"]}}
    )
    assert_error(missing, 400, "seconds", "missing_required_parameter")
    unknown = await http.post(
        "/videos/edits", headers=AUTH, json={"prompt": "p", "video": {"id": "video_nope"}}
    )
    assert_error(unknown, 404, None, "not_found")
    no_video = await http.post("/videos/edits", headers=AUTH, json={"prompt": "p"})
    assert_error(no_video, 400, "video", "missing_required_parameter")


async def test_edit_of_an_uploaded_video(http: httpx.AsyncClient, tmp_path: Path) -> None:
    rendered = render_job(RenderSpec(720, 1280, 4, 2), tmp_path)
    reply = await http.post(
        "/videos/edits",
        headers=AUTH,
        data={"prompt": "edit upload"},
        files={"video": ("clip.mp4", rendered.video.read_bytes(), "video/mp4")},
    )
    assert reply.status_code == 200, reply.text
    assert (reply.json()["size"], reply.json()["seconds"], reply.json()["model"]) == (
        "720x1280",
        "4",
        "sora-2",
    )
    bad = await http.post(
        "/videos/edits",
        headers=AUTH,
        data={"prompt": "p"},
        files={"video": ("clip.mp4", b"not a video", "video/mp4")},
    )
    assert_error(bad, 400, "video", "invalid_value")
