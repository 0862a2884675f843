from __future__ import annotations

import pytest
from reelvault_common.providers.video_spec import (
    base_model,
    check_video_spec,
    parse_size,
    quote_choices,
)


def test_valid_triples_pass() -> None:
    assert check_video_spec("sora-2", "4", "720x1280") is None
    assert check_video_spec("sora-2-pro", "12", "1920x1080") is None
    assert check_video_spec("sora-2-2025-10-06", "8", "1280x720") is None


@pytest.mark.parametrize(
    ("model", "seconds", "size", "param", "message"),
    [
        (
            "sora-3",
            "4",
            "720x1280",
            "model",
            "Invalid value: 'sora-3'. Supported values are: 'sora-2' and 'sora-2-pro'.",
        ),
        (
            "sora-2",
            "10",
            "720x1280",
            "seconds",
            "Invalid value: '10'. Supported values are: '4', '8', and '12'.",
        ),
        (
            "sora-2",
            "4",
            "1920x1080",
            "size",
            "Invalid value: '1920x1080'. Supported values are: '1280x720' and '720x1280'.",
        ),
    ],
)
def test_problems_name_the_param_like_the_api(
    model: str, seconds: str, size: str, param: str, message: str
) -> None:
    problem = check_video_spec(model, seconds, size)
    assert problem is not None
    assert (problem.param, problem.message) == (param, message)


def test_helpers() -> None:
    assert base_model("sora-2-pro-2025-10-06") == "sora-2-pro"
    assert base_model("sora-2-preview") is None
    assert quote_choices(("a", "b", "c")) == "'a', 'b', and 'c'"
    assert parse_size("1280x720") == (1280, 720)
