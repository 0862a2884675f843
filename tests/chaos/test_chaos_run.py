"""The chaos run, CI-sized: every service twice as real processes, faults injected at every
level (provider faults, SIGKILLed services, a NATS restart, a PostgreSQL crash, a dead cluster
node), then nothing may be lost, duplicated or corrupted and every failure must be explained by
a fault injected into that video's own provider job. ``make chaos`` runs the full size."""

from __future__ import annotations

import pytest

from tests.support.chaos import ChaosConfig, run_chaos

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.timeout(600),
    # pgserver's platformdirs import, harmless (it falls back to /tmp/runtime-<uid>).
    pytest.mark.filterwarnings("ignore:.*XDG_RUNTIME_DIR"),
]


async def test_nothing_lost_duplicated_or_corrupted_under_chaos() -> None:
    lines: list[str] = []

    def out(line: str) -> None:
        lines.append(line)
        print(line)

    reports = await run_chaos(ChaosConfig.ci(), out)

    assert [r.phase for r in reports] == ["single", "cluster"]
    for report in reports:
        audit = report.audit
        # The run really was chaotic: processes died, faults were injected, work was done.
        assert sum(report.kills.values()) >= 3, report.kills
        assert report.infra_events, "the scheduled NATS/PostgreSQL outages did not happen"
        assert audit.submitted == ChaosConfig.ci().requests
        assert audit.completed > 0 and audit.objects_checked >= audit.completed
    failed = [r for r in reports if not r.passed]
    assert not failed, "\n".join(lines)
