from __future__ import annotations

from pathlib import Path

from reelvault.cli import plan_system


def test_nothing_configured_means_embedded_everything_and_the_simulator(tmp_path: Path) -> None:
    plan = plan_system({}, tmp_path, 8000, 8100, replicas=1)
    assert plan.embedded_nats and plan.embedded_postgres and plan.simulator
    names = [spec.name for spec in plan.specs]
    assert names == ["provider-sim", "catalog", "generator", "archiver", "gateway"]
    sim = plan.specs[0]
    # The generated simulator key reaches the simulator and the provider clients, nothing else.
    assert sim.env["PROVIDER_SIM_API_KEY"] == plan.shared_env["OPENAI_API_KEY"]
    assert plan.shared_env["OPENAI_BASE_URL"] == "http://127.0.0.1:8100/v1"
    assert plan.shared_env["REELVAULT_PUBLIC_BASE_URL"] == "http://127.0.0.1:8000"


def test_configured_services_are_used_instead(tmp_path: Path) -> None:
    env = {
        "NATS_URL": "nats://127.0.0.1:4222",
        "DATABASE_URL": "postgresql://x@127.0.0.1/db",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
    }
    plan = plan_system(env, tmp_path, 8000, 8100, replicas=2)
    assert not (plan.embedded_nats or plan.embedded_postgres or plan.simulator)
    assert "OPENAI_API_KEY" not in plan.shared_env
    names = [spec.name for spec in plan.specs]
    assert names.count("gateway") == 1
    assert {
        "catalog-1",
        "catalog-2",
        "generator-1",
        "generator-2",
        "archiver-1",
        "archiver-2",
    } <= set(names)


def test_each_run_gets_its_own_secrets(tmp_path: Path) -> None:
    one, two = plan_system({}, tmp_path, 1, 2, 1), plan_system({}, tmp_path, 1, 2, 1)
    assert one.shared_env["OPENAI_API_KEY"] != two.shared_env["OPENAI_API_KEY"]
    assert (
        one.shared_env["REELVAULT_STORAGE_SIGNING_KEY"]
        != two.shared_env["REELVAULT_STORAGE_SIGNING_KEY"]
    )


def test_simulator_webhooks_reach_every_generator_with_a_shared_secret(tmp_path: Path) -> None:
    import json

    plan = plan_system({}, tmp_path, 8000, 8100, replicas=2)
    sim = plan.specs[0]
    generators = [spec for spec in plan.specs if spec.name.startswith("generator")]
    urls = json.loads(sim.env["PROVIDER_SIM_WEBHOOK_URLS"])
    assert urls == [
        f"http://127.0.0.1:{g.env['REELVAULT_WEBHOOK_PORT']}/webhooks/openai" for g in generators
    ]
    secret = sim.env["PROVIDER_SIM_WEBHOOK_SECRET"]
    assert secret.startswith("whsec_")
    assert all(g.env["REELVAULT_WEBHOOK_SECRET"] == secret for g in generators)
    # Nobody else is handed the secret.
    assert "REELVAULT_WEBHOOK_SECRET" not in plan.shared_env
    others = [s for s in plan.specs if not s.name.startswith(("generator", "provider-sim"))]
    assert all("REELVAULT_WEBHOOK_SECRET" not in s.env for s in others)


def test_no_webhooks_for_an_external_provider(tmp_path: Path) -> None:
    plan = plan_system({"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}, tmp_path, 8000, 8100, 1)
    assert all(
        "REELVAULT_WEBHOOK_PORT" not in spec.env and "REELVAULT_WEBHOOK_SECRET" not in spec.env
        for spec in plan.specs
    )


def test_every_process_gets_its_own_metrics_port(tmp_path: Path) -> None:
    from reelvault.cli import METRICS_PORT_ENV, metrics_url

    plan = plan_system({}, tmp_path, 8000, 8100, replicas=2)
    scraped = {spec.name: metrics_url(spec) for spec in plan.specs}
    # The gateway serves /metrics on its own HTTP port; every other process on its own port.
    assert scraped["gateway"] == "http://127.0.0.1:8000/metrics"
    assert "REELVAULT_METRICS_PORT" not in plan.shared_env
    others = [spec for spec in plan.specs if spec.name != "gateway"]
    assert {spec.name for spec in others} == {
        "provider-sim", "catalog-1", "catalog-2", "generator-1", "generator-2", "archiver-1",
        "archiver-2",
    }
    ports = [int(spec.env[METRICS_PORT_ENV]) for spec in others]
    webhooks = [int(spec.env["REELVAULT_WEBHOOK_PORT"]) for spec in others
                if "REELVAULT_WEBHOOK_PORT" in spec.env]
    assert all(port > 0 for port in ports)
    assert len(set(ports)) == len(ports)
    assert not set(ports) & {8000, 8100, *webhooks}
    for spec in others:
        assert scraped[spec.name] == f"http://127.0.0.1:{spec.env[METRICS_PORT_ENV]}/metrics"


def test_metrics_port_zero_in_the_environment_means_no_metrics_servers(tmp_path: Path) -> None:
    from reelvault.cli import METRICS_PORT_ENV, metrics_url

    plan = plan_system({METRICS_PORT_ENV: "0"}, tmp_path, 8000, 8100, replicas=1)
    assert all(METRICS_PORT_ENV not in spec.env for spec in plan.specs)
    assert [metrics_url(spec) for spec in plan.specs] == [
        None, None, None, None, "http://127.0.0.1:8000/metrics"
    ]
