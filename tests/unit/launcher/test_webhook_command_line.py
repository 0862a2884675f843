"""``reelvault webhooks ...`` refuses a bad command line with exit 2 and one line, before it
looks for a system (the data folder here has none, and no NATS is asked)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.command_line import refusal

ENDPOINT = "0b6f8a1e-3c1d-4e0a-9f59-2f1c7a5d9e10"
URL = "https://hooks.example.com/in"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["webhooks", "add", "--org", "Bad Slug", "--url", URL], "invalid slug"),
        (["webhooks", "add", "--org", "acme"], "--url"),
        (["webhooks", "add", "--org", "acme", "--url", ""], "invalid url"),
        (["webhooks", "add", "--org", "acme", "--url", URL + "/" + "x" * 2000], "invalid url"),
        (["webhooks", "add", "--org", "acme", "--url", URL, "--event", "video.started"],
         "invalid choice"),
        (["webhooks", "add", "--org", "acme", "--url", URL, "--description", "d" * 501],
         "invalid description"),
        (["webhooks", "list"], "--org"),
        (["webhooks", "list", "--org", "acme-"], "invalid slug"),
        (["webhooks", "remove", "--org", "acme", "not-an-id"], "not a webhook endpoint id"),
        (["webhooks", "deliveries", "--org", "acme", ENDPOINT, "--limit", "0"],
         "between 1 and 200"),
        (["webhooks", "deliveries", "--org", "acme", ENDPOINT, "--limit", "many"],
         "invalid int value"),
        (["webhooks", "replay", "--org", "acme", ENDPOINT, "42"], "not a webhook delivery id"),
        (["webhooks", "replay", "--org", "acme", "42", ENDPOINT], "not a webhook endpoint id"),
        (["webhooks", "replay", "--org", "acme", ENDPOINT], "delivery_id"),
        (["webhooks", "rotate", "--org", "acme"], "invalid choice"),
        (["webhooks"], "required"),
    ],
)
def test_bad_webhook_command_lines_exit_2_with_one_line(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert says in refusal(argv, capsys, tmp_path)
