"""Fault decisions: rules, rates, RPM windows, and determinism under the seed."""

from __future__ import annotations

import pytest
from reelvault_providersim.faults import ContentCut, FaultPolicy, FaultRule, FaultSettings


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def policy(seed: int = 1, **settings: object) -> tuple[FaultPolicy, FakeClock]:
    clock = FakeClock()
    return FaultPolicy(FaultSettings(**settings), seed=seed, clock=clock), clock


def test_no_faults_by_default() -> None:
    p, _ = policy()
    assert all(p.on_request("create") is None for _ in range(200))
    assert all(p.on_content() is None for _ in range(200))
    plan = p.plan_job(3.0)
    assert (plan.generation_s, plan.outcome, plan.error) == (3.0, "completed", None)


def test_rates_are_deterministic_under_seed() -> None:
    def run(seed: int) -> list[bool]:
        p, _ = policy(seed, rate_limit_rate=0.3, server_error_rate=0.2)
        return [p.on_request("retrieve") is not None for _ in range(200)]

    assert run(5) == run(5)
    assert run(5) != run(6)
    hits = sum(run(5))
    assert 60 < hits < 140  # about 1 - 0.7 * 0.8 = 44 %


def test_rate_limit_reply_shape() -> None:
    p, _ = policy(rate_limit_rate=1.0, retry_after_s=2.5)
    error = p.on_request("create", model="sora-2-pro")
    assert error is not None
    assert error.status == 429
    assert error.code == "rate_limit_exceeded"
    assert "Rate limit reached for sora-2-pro" in error.message
    assert error.headers["retry-after"] == "3"
    assert error.headers["retry-after-ms"] == "2500"
    assert error.headers["x-ratelimit-limit-requests"] == "25"
    assert error.headers["x-ratelimit-remaining-requests"] == "0"


def test_routes_restrict_rates() -> None:
    p, _ = policy(server_error_rate=1.0, routes=("create",))
    assert p.on_request("retrieve") is None
    error = p.on_request("create")
    assert error is not None
    assert error.status == 500
    assert error.type == "server_error"


def test_rpm_limit_uses_a_rolling_minute() -> None:
    p, clock = policy(rate_limit_rpm=3)
    assert [p.on_request("retrieve") is None for _ in range(3)] == [True, True, True]
    error = p.on_request("retrieve")
    assert error is not None
    assert error.status == 429
    assert float(error.headers["retry-after-ms"]) / 1000 == pytest.approx(60, abs=0.01)
    clock.now += 61
    assert p.on_request("retrieve") is None


def test_one_shot_rules_are_consumed_in_order() -> None:
    p, _ = policy()
    p.push(
        [
            FaultRule(kind="rate_limit", route="create", times=2, retry_after_s=0.2),
            FaultRule(kind="server_error", status=503),
        ]
    )
    assert p.on_request("list") is not None  # the 503 has no route: it matches list
    first = p.on_request("create")
    second = p.on_request("create")
    assert first is not None
    assert first.status == 429
    assert second is not None
    assert second.headers["retry-after-ms"] == "200"
    assert p.on_request("create") is None
    assert p.pending() == []
    assert p.injected == {"rate_limit": 2, "server_error": 1}


def test_job_rules_and_rates() -> None:
    p, _ = policy()
    p.push(
        [
            FaultRule(kind="job_failed", code="moderation_blocked", message="blocked"),
            FaultRule(kind="job_expired"),
            FaultRule(kind="slow_job", generation_s=9.0),
        ]
    )
    failed = p.plan_job(1.0)
    assert failed.outcome == "failed"
    assert failed.error is not None
    assert failed.error.code == "moderation_blocked"
    assert p.plan_job(1.0).outcome == "expired"
    assert p.plan_job(1.0).generation_s == 9.0
    assert p.plan_job(1.0).outcome == "completed"

    always, _ = policy(job_failed_rate=1.0, job_failed_code="content_policy")
    plan = always.plan_job(1.0)
    assert plan.outcome == "failed"
    assert plan.error is not None
    assert plan.error.code == "content_policy"


def test_generation_distribution() -> None:
    p, _ = policy(generation_distribution="uniform", generation_spread=0.5)
    times = [p.plan_job(10.0).generation_s for _ in range(200)]
    assert min(times) >= 5.0
    assert max(times) <= 15.0
    assert max(times) - min(times) > 5
    q, _ = policy(generation_distribution="lognormal", generation_spread=0.5)
    assert len({round(q.plan_job(10.0).generation_s, 6) for _ in range(20)}) == 20


def test_content_faults() -> None:
    p, _ = policy()
    p.push(
        [
            FaultRule(kind="content_error", status=502),
            FaultRule(kind="content_cut", cut_after_bytes=10),
        ]
    )
    error = p.on_content()
    assert not isinstance(error, ContentCut)
    assert error is not None
    assert error.status == 502
    cut = p.on_content()
    assert isinstance(cut, ContentCut)
    assert cut.after_bytes == 10
    assert p.on_content() is None


def test_reset_clears_rules_and_restarts_streams() -> None:
    p, _ = policy(rate_limit_rate=0.5)
    first = [p.on_request("list") is None for _ in range(40)]
    assert True in first
    assert False in first
    p.push([FaultRule(kind="quota")])
    p.reset()
    assert p.pending() == []
    assert p.settings == FaultSettings()
    p.configure(FaultSettings(rate_limit_rate=0.5))
    assert [p.on_request("list") is None for _ in range(40)] == first
