"""The bulk-read tuning: raised once, never lowered, harmless when httpcore changes."""

from __future__ import annotations

import httpcore
import pytest
from reelvault_archiver.tuning import tune_http_reads


def test_socket_reads_are_raised_never_lowered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(httpcore.AsyncHTTP11Connection, "READ_NUM_BYTES", 64 * 1024)
    assert tune_http_reads(1024 * 1024) == 1024 * 1024
    assert httpcore.AsyncHTTP11Connection.READ_NUM_BYTES == 1024 * 1024
    assert tune_http_reads(128 * 1024) == 1024 * 1024  # a smaller chunk setting keeps 1 MiB


def test_an_httpcore_without_the_setting_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(httpcore.AsyncHTTP11Connection, "READ_NUM_BYTES")
    assert tune_http_reads(1024 * 1024) == 0
    assert not hasattr(httpcore.AsyncHTTP11Connection, "READ_NUM_BYTES")
