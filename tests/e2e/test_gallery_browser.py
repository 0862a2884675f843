"""The gallery in a real browser (headless Chromium from Debian's ``chromium`` package, driven by
Playwright) against the whole system started by ``reelvault up``: sign in with a key, refuse a
blank prompt, upload two images, create a video, watch its card reach ``completed`` without a
reload (live events), play it, filter, delete it, and save screenshots at 1280 and 390 pixels
wide (their folder is printed). ``make tools`` installs Chromium; without it the test skips."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.media import png_bytes
from tests.support.system import RunningSystem, reelvault_up, stop_cleanly, system_env

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LONG_PROMPT = ("Two old friends meet again on a windswept beach at sunset and hug; the camera "
               "circles them slowly while gulls cross the golden sky, waves roll in, their "
               "shadows stretch over the wet sand and the last light catches their faces. ") * 3


def wait_until(page: Any, script: str, timeout_s: float = 30.0) -> Any:
    """Poll ``script`` in the page until it is truthy; its value. (Playwright's
    ``wait_for_function`` evaluates strings inside the page, which the gallery's Content
    Security Policy rightly forbids; ``evaluate`` goes through the debugger protocol.)"""
    deadline = time.monotonic() + timeout_s
    while True:
        value = page.evaluate(script)
        if value:
            return value
        assert time.monotonic() < deadline, f"not true after {timeout_s}s: {script}"
        time.sleep(0.1)


@pytest.fixture
def system(
    tmp_path: Path, nats_url: str, database_url: str, namespace: str
) -> Iterator[RunningSystem]:
    # Slow enough that the card is seen queued/processing before it completes.
    env = system_env(nats_url, database_url, namespace, PROVIDER_SIM_GENERATION_S="3")
    with reelvault_up(tmp_path / "data", env) as running:
        yield running
        stop_cleanly(running)


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    folder = tmp_path / "gallery-screenshots"
    folder.mkdir()
    print(f"gallery screenshots in {folder}")
    return folder


def test_gallery_signs_in_creates_watches_live_plays_and_deletes(
    system: RunningSystem, artifacts: Path, tmp_path: Path
) -> None:
    if CHROMIUM is None:
        pytest.skip("no chromium: `make tools` installs Debian's chromium package (as root)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    images = []
    for name, color, size in (("first.png", (220, 60, 60), (640, 480)),
                              ("second.png", (40, 80, 220), (480, 640))):
        path = tmp_path / name
        path.write_bytes(png_bytes(*size, color))
        images.append(str(path))

    with system.client() as api:
        # The API refuses a whitespace-only prompt as the form does.
        assert api.post("/v1/videos", json={"prompt": " \n\t "}).status_code == 422

    with playwright_api.sync_playwright() as playwright:
        # --no-sandbox: the tests may run as root, where Chromium's sandbox cannot start.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--autoplay-policy="
                                                   "no-user-gesture-required"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(30_000)
            failed_requests: list[str] = []
            page.on("response", lambda r: failed_requests.append(f"{r.status} {r.url}")
                    if r.status >= 500 else None)
            page.goto(system.gateway)

            # Sign in: the key is typed once and never kept by the page.
            page.fill("#signin-key", system.api_key)
            page.press("#signin-key", "Enter")
            page.wait_for_selector("#app:not([hidden])")
            wait_until(page, "document.getElementById('live').dataset.state === 'on'")
            kept = page.evaluate("JSON.stringify(localStorage) + JSON.stringify(sessionStorage)"
                                 " + document.cookie + location.href")
            assert system.api_key not in kept and system.api_key.split("_")[-1] not in kept
            page.wait_for_selector("#gallery-state.empty")  # a fresh system: the empty state

            # The form offers only what the chosen model takes.
            sizes = page.eval_on_selector_all("#size option", "os => os.map(o => o.value)")
            assert page.input_value("#model") == "sora-2"
            assert set(sizes) == {"1280x720", "720x1280"}, sizes

            # A blank prompt is refused by the form: nothing is sent.
            page.fill("#prompt", "   ")
            page.click("#create-button")
            assert page.text_content("#prompt-error")
            assert page.get_attribute("#prompt", "aria-invalid") == "true"
            assert page.locator("article.card").count() == 0

            page.evaluate("window.__sameDocument = true")  # gone if the page reloads
            page.fill("#prompt", LONG_PROMPT)
            page.select_option("#size", "1280x720")
            page.select_option("#seconds", "4")
            page.set_input_files("#image1", images[0])
            page.set_input_files("#image2", images[1])
            page.click("#create-button")
            card = page.locator("article.card").first
            card.wait_for()
            assert card.get_attribute("data-status") in ("queued", "processing")
            page.wait_for_selector("article.card[data-status='completed']", timeout=90_000)
            assert page.evaluate("window.__sameDocument") is True
            video_id = card.get_attribute("data-id")
            assert video_id

            # It plays: the <video> loads its metadata, reports its duration and advances.
            duration = wait_until(page, """() => { const v = document.querySelector(
                     "article.card[data-status='completed'] video");
                   return v && v.readyState >= 1 && v.duration > 0 && v.duration; }""")
            assert 3.5 <= duration <= 4.5, duration
            page.evaluate("""() => { const v = document.querySelector('article.card video');
                             v.muted = true; return v.play(); }""")
            wait_until(page, "document.querySelector('article.card video').currentTime > 0.2")

            # The long prompt is clamped, with a keyboard-usable toggle.
            prompt = card.locator(".prompt")
            assert prompt.evaluate("p => p.scrollHeight > p.clientHeight + 4")
            toggle = card.locator(".more-toggle")
            toggle.focus()
            page.keyboard.press("Enter")
            assert toggle.get_attribute("aria-expanded") == "true"
            page.keyboard.press("Enter")
            assert card.locator("a.download").get_attribute("href") == \
                f"/v1/videos/{video_id}/content"

            page.screenshot(path=str(artifacts / "gallery-1280.png"), full_page=True)
            page.set_viewport_size({"width": 390, "height": 844})
            overflow = page.evaluate("document.documentElement.scrollWidth")
            assert overflow <= 390, f"the page is {overflow}px wide at 390px"
            page.screenshot(path=str(artifacts / "gallery-390.png"), full_page=True)
            page.set_viewport_size({"width": 1280, "height": 900})

            # The status filter.
            page.select_option("#status-filter", "failed")
            page.wait_for_selector("#gallery-state.empty")
            assert page.locator("article.card").count() == 0
            page.select_option("#status-filter", "completed")
            page.wait_for_selector(f"article.card[data-id='{video_id}']")

            # Delete: confirmed in a dialog, the card goes, the API forgets the video.
            card = page.locator(f"article.card[data-id='{video_id}']")
            card.locator("button.delete").click()
            page.click("#confirm-delete button[value='delete']")
            card.wait_for(state="detached")
            assert failed_requests == []
        finally:
            browser.close()

    with system.client() as api:
        assert api.get(f"/v1/videos/{video_id}").status_code == 404
    assert (artifacts / "gallery-1280.png").stat().st_size > 10_000
    assert (artifacts / "gallery-390.png").stat().st_size > 5_000
