"""The archiver's integration tests share a running provider simulator (a test module may override
``sim``, e.g. with padded videos)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.archiver_harness import RunningSim


@pytest.fixture
async def sim() -> AsyncIterator[RunningSim]:
    async with RunningSim() as running:
        yield running
