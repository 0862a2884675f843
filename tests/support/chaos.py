"""The chaos run: the whole system as real processes, faults injected at every level, and an
audit of what came out. Bounded in time; stops by itself.

Per phase the harness starts its OWN infrastructure and processes (nothing shared with other
tests): NATS (one node, or a three-node cluster with stream replicas = 3), an embedded
PostgreSQL, the simulator with seeded fault rates (429s, 5xx, failed and expired jobs, slow jobs,
downloads cut mid-body or refused) and every service twice (``Supervisor``, so the harness holds
the PIDs). Then, at the same time:

- a client submits requests at a steady rate through both gateways, each with a unique prompt
  (to attribute rows and provider jobs to it) and an ``Idempotency-Key``; an answer that is a
  5xx, a 429, a timeout or a dropped connection is retried with the same key, on the other
  gateway (as a client behind a load balancer would);
- a random service process is SIGKILLed every few seconds (the supervisor restarts it);
- single node: NATS is SIGKILLed and started again on the same port and data dir, and
  PostgreSQL crashes (immediate stop) and restarts; cluster: one node is SIGKILLed and brought
  back later.

Before the load, one request is posted twice with one key through the two gateways: it must
give one video (a probe of ``Idempotency-Key``, outside the audited prompts).

Then it waits (bounded) until every accepted video is terminal and prints, one per line:
submitted, completed, failed by reason, lost, duplicate provider jobs, duplicate catalog rows,
stored objects whose sha256 differs from their source (the stored file re-hashed and compared
with what the simulator served for the row's own job; a thumbnail the archiver extracted from
the stored video instead is re-extracted and compared), and the run time. A phase passes only
with nothing lost, duplicated or mismatched, every failure explained by a fault injected into
that very video's provider job, every request accepted and the key probe honoured.

Not killed: the simulator (it plays the provider; its jobs live in memory). Service timings are
shortened (``FAST_RECOVERY_ENV``) so recovery paths run within a bounded run.

``python -m tests.support.chaos`` (``make chaos``) runs the full configuration, ``--ci`` the
one the test suite runs; ``--source DIR`` runs the services from another copy of the code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import logging
import os
import random
import secrets
import shutil
import signal
import sys
import tempfile
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from reelvault.embedded import free_port
from reelvault.supervisor import ManagedProcess, ProcessSpec, Supervisor
from tests.support.chaos_audit import (
    Audit,
    CatalogRow,
    SimJob,
    StoredObjectCheck,
    Submission,
    audit,
    format_counter,
    job_key,
)
from tests.support.chaos_infra import CrashablePostgres, NatsNodes, wait_for_jetstream
from tests.support.media import png_bytes
from tests.support.tenancy import create_key

log = logging.getLogger("chaos")

NAMESPACE = "chaos"
SERVICES = ("catalog", "generator", "archiver")
MODULES = {
    "catalog": "reelvault_catalog",
    "generator": "reelvault_generator",
    "archiver": "reelvault_archiver",
    "gateway": "reelvault_gateway",
}

# Standing fault rates of the simulator (env PROVIDER_SIM_FAULTS__*), drawn from seeded streams.
DEFAULT_FAULTS: dict[str, str] = {
    "RATE_LIMIT_RATE": "0.08",
    "RETRY_AFTER_S": "0.5",
    "SERVER_ERROR_RATE": "0.05",
    "JOB_FAILED_RATE": "0.05",
    "JOB_EXPIRED_RATE": "0.03",
    "SLOW_JOB_RATE": "0.05",
    "SLOW_JOB_FACTOR": "6",
    "GENERATION_DISTRIBUTION": "lognormal",
    "GENERATION_SPREAD": "0.4",
    "CONTENT_CUT_RATE": "0.10",
    "CONTENT_ERROR_RATE": "0.03",
}
# One-shot rules queued at start: gateway-style 502s on create, whose outcome the generator
# cannot know (it must keep its claim and recover instead of creating blindly again).
ONE_SHOT_RULES: list[dict[str, Any]] = [
    {"kind": "server_error", "route": "create", "status": 502, "times": 2, "protocol": "openai"},
    # At OpenRouter (no job list) such a create is never repeated: the video fails
    # ``create_outcome_unknown`` once no webhook adopted a job for it.
    {"kind": "server_error", "route": "create", "status": 502, "times": 1,
     "protocol": "openrouter"},
    {"kind": "content_cut", "route": "content", "cut_after_bytes": 0, "times": 1},
]

# Service timings shortened so a bounded run sees the recovery paths (the logic is the same,
# only the waits are shorter): redelivery of a killed worker's message, a claim left by a
# generator killed mid-create, poll and retry pacing.
FAST_RECOVERY_ENV: dict[str, str] = {
    "REELVAULT_CREATE_TIMEOUT_S": "10",
    "REELVAULT_CLAIM_MARGIN_S": "5",
    "REELVAULT_POLL_INTERVAL_S": "0.5",
    "REELVAULT_POLL_MAX_INTERVAL_S": "2",
    # The generator's consumers (video.requested, video.generation.started).
    "REELVAULT_REQUESTS__ACK_WAIT_S": "20",
    "REELVAULT_REQUESTS__RETRY_MAX_S": "5",
    "REELVAULT_POLL__ACK_WAIT_S": "20",
    # The archiver's consumers (video.completed, video.archive.requested).
    "REELVAULT_COMPLETED__ACK_WAIT_S": "20",
    "REELVAULT_COMPLETED__RETRY_MAX_S": "5",
    "REELVAULT_REARCHIVE__ACK_WAIT_S": "20",
    "REELVAULT_REARCHIVE__RETRY_MAX_S": "5",
    "REELVAULT_PROVIDER_TIMEOUT_S": "15",
    # A lost create at a provider without a job list waits this long for its webhook.
    "REELVAULT_ADOPTION_WINDOW_S": "20",
    "REELVAULT_OPENROUTER_POLL_INTERVAL_S": "0.5",
    "REELVAULT_GEMINI_POLL_INTERVAL_S": "0.5",
}

# Requests rotate over one model of each provider protocol the simulator speaks.
CHAOS_MODELS: tuple[tuple[str, str], ...] = (
    ("openai", "sora-2"),
    ("openrouter", "google/veo-3.1-fast"),
    ("gemini", "veo-3.1-fast-generate-preview"),
)

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class ChaosConfig:
    requests: int = 300
    rate_per_s: float = 4.0
    phases: tuple[str, ...] = ("single", "cluster")
    seed: int = 20251123
    replicas: int = 2
    kill_every_s: float = 4.0
    # A client gives a request up after this long (then the run fails: never accepted).
    give_up_s: float = 120.0
    client_timeout_s: float = 15.0
    # Every n-th request sends one uploaded reference image (0: none do).
    reference_every: int = 5
    nats_outage_s: float = 3.0
    postgres_outage_s: float = 3.0
    # Cluster phase: how long the killed node stays down (None: it is not brought back).
    node_outage_s: float | None = 20.0
    settle_timeout_s: float = 300.0
    ready_timeout_s: float = 120.0
    generation_s: float = 2.0
    fps: int = 2
    faults: tuple[tuple[str, str], ...] = tuple(DEFAULT_FAULTS.items())
    work_root: Path | None = None
    # Run the services from this copy of the repository (e.g. ``git archive HEAD``) instead of
    # the installed working tree: a fixed version while the working tree keeps changing.
    source: Path | None = None
    keep: bool = False
    verbose: bool = False

    @classmethod
    def ci(cls) -> ChaosConfig:
        """Small enough for every CI run (a few minutes on two cores), still every fault."""
        return cls(requests=40, rate_per_s=2.5, kill_every_s=3.0, node_outage_s=15.0,
                   settle_timeout_s=150.0, give_up_s=90.0)

    @property
    def submit_window_s(self) -> float:
        return self.requests / self.rate_per_s


@dataclass
class PhaseReport:
    phase: str
    description: str
    audit: Audit
    run_time_s: float
    kills: Counter[str]
    crashes: Counter[str]
    infra_events: list[str]
    injected: dict[str, int]
    client_retries: Counter[str]
    idempotency: str
    settle_s: float | None
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    work_dir: Path | None = None
    notes: list[str] = field(default_factory=list)
    crash_reasons: list[str] = field(default_factory=list)
    dead_letters: Counter[str] = field(default_factory=Counter)

    @property
    def idempotency_honoured(self) -> bool:
        return self.idempotency.startswith("honoured")

    @property
    def problems(self) -> list[str]:
        found = list(self.audit.problems)
        if not self.idempotency_honoured:
            # A client's retry after a lost answer would make a second video (and job).
            found.append("Idempotency-Key not honoured")
        return found

    @property
    def passed(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        a = self.audit
        failed = sum(a.failed.values())
        settled = f"{self.settle_s:.1f}s" if self.settle_s is not None else "NO"
        codes = {name: -1 if code is None else code for name, code in self.exit_codes.items()}
        lines = [
            f"== chaos phase {self.phase}: {self.description}",
            f"submitted: {a.submitted}",
            f"accepted: {a.accepted}",
            f"completed: {a.completed}",
            f"failed: {failed} ({format_counter(a.failed)})",
            f"failures explained by injected faults: {sum(a.explained.values())} "
            f"({format_counter(a.explained)})",
            f"unexplained failures: {len(a.unexplained)}",
            f"jobs made whose create answer was lost where no list can find them (charged, the "
            f"video failed create_outcome_unknown): {a.explained['paid_without_video']}",
            f"lost: {len(a.lost)}",
            f"duplicate provider jobs: {a.duplicate_job_count} (per protocol: "
            f"{format_counter(a.duplicates_by_protocol)}; jobs per protocol: "
            f"{format_counter(a.jobs_by_protocol)})",
            f"duplicate catalog rows: {a.duplicate_row_count}",
            f"sha256 mismatches: {len(a.mismatches)} (of {a.objects_checked} stored objects "
            "re-hashed)",
            f"thumbnails extracted from the stored video (provider's kept failing): "
            f"{a.derived_thumbnails} (verified by re-extraction)",
            f"never accepted: {len(a.unaccepted)}",
            f"client retries (same key): {sum(self.client_retries.values())} "
            f"({format_counter(self.client_retries)})",
            f"service kills: {sum(self.kills.values())} ({format_counter(self.kills)})",
            f"processes that died by themselves (restarted): {sum(self.crashes.values())} "
            f"({format_counter(self.crashes)})",
            f"infrastructure: {'; '.join(self.infra_events) or '-'}",
            f"dead letters: {sum(self.dead_letters.values())}",
            f"injected provider faults: {format_counter(self.injected)}",
            f"idempotency-key: {self.idempotency}",
            f"settled after load: {settled}",
            f"exit codes at stop: {format_counter(codes)}",
            f"run time: {self.run_time_s:.1f}s",
        ]
        detail = [
            ("lost", a.lost), ("unexplained", a.unexplained), ("mismatch", a.mismatches),
            ("never accepted", a.unaccepted), ("client error", a.client_errors),
            ("orphan row", a.orphan_rows),
            ("duplicate jobs", [f"{p!r} x{n}" for p, n in a.duplicate_jobs.items()]),
            ("duplicate rows", [f"{p!r} x{n}" for p, n in a.duplicate_rows.items()]),
        ]
        for label, items in detail:
            lines.extend(f"  {label}: {item}" for item in items[:20])
            if len(items) > 20:
                lines.append(f"  {label}: ... {len(items) - 20} more")
        lines.extend(f"  note: {note}" for note in self.notes)
        lines.extend(f"  crash: {reason}" for reason in self.crash_reasons[:10])
        lines.extend(f"  dead letter x{n}: {what}" for what, n in self.dead_letters.items())
        verdict = "PASS" if self.passed else "FAIL (" + "; ".join(self.problems) + ")"
        lines.append(f"result: {verdict}")
        if self.work_dir is not None:
            lines.append(f"logs: {self.work_dir / 'logs'}")
        return lines


class _Clock:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.t0


class ChaosPhase:
    def __init__(self, config: ChaosConfig, phase: str, root: Path,
                 out: Callable[[str], None]) -> None:
        if phase not in ("single", "cluster"):
            raise ValueError(f"unknown phase {phase!r}")
        self.config = config
        self.phase = phase
        self.cluster = phase == "cluster"
        self.root = root
        self.out = out
        # Separate streams: the kill sequence does not depend on how many retries the client made.
        self.rng = random.Random(f"{config.seed}:{phase}:client")
        self.kill_rng = random.Random(f"{config.seed}:{phase}:kills")
        self.run_tag = uuid.uuid4().hex[:8]
        self.prefix = f"chaos {self.run_tag} {phase} #"
        self.clock = _Clock()
        self.nats = NatsNodes(root / "nats", size=3 if self.cluster else 1)
        self.postgres = CrashablePostgres(root / "pg")
        self.supervisor = Supervisor(root / "logs", grace_s=15.0)
        self.sim_url = ""
        self.gateways: list[str] = []
        self.storage_dir = root / "storage"
        self.kills: Counter[str] = Counter()
        self.killed_pids: set[int | None] = set()
        self.crashes: Counter[str] = Counter()
        self.crash_reasons: list[str] = []
        self.infra_events: list[str] = []
        self.notes: list[str] = []
        self.timeline: list[str] = []
        self.submissions: dict[int, Submission] = {}
        # Why requests were sent again: "gateway-N <status or exception>" -> count.
        self.client_retries: Counter[str] = Counter()
        self.reference_key: str | None = None
        self.background: list[asyncio.Task[None]] = []

    # --- events ---------------------------------------------------------------------------
    def event(self, text: str) -> None:
        line = f"[{self.phase} {self.clock():7.1f}s] {text}"
        self.timeline.append(line)
        if self.config.verbose:
            self.out(line)

    # --- start-up -------------------------------------------------------------------------
    def _specs(self) -> list[ProcessSpec]:
        config = self.config
        sim_port = free_port()
        sim_key = secrets.token_urlsafe(24)
        # OpenRouter jobs name their generator's webhook endpoint (a lost create is adopted).
        webhook_secret = secrets.token_urlsafe(24)
        self.sim_url = f"http://127.0.0.1:{sim_port}"
        gateway_ports = [free_port() for _ in range(config.replicas)]
        self.gateways = [f"http://127.0.0.1:{port}" for port in gateway_ports]
        urls = self.nats.urls
        shared = {
            "DATABASE_URL": self.postgres.url,
            "REELVAULT_NAMESPACE": NAMESPACE,
            "REELVAULT_STREAM_REPLICAS": "3" if self.cluster else "1",
            "REELVAULT_STORAGE_DIR": str(self.storage_dir),
            "REELVAULT_PUBLIC_BASE_URL": self.gateways[0],
            "REELVAULT_STORAGE_SIGNING_KEY": secrets.token_urlsafe(32),
            "OPENAI_BASE_URL": f"{self.sim_url}/v1",
            "OPENAI_API_KEY": sim_key,
            "OPENROUTER_BASE_URL": f"{self.sim_url}/api/v1",
            "OPENROUTER_API_KEY": sim_key,
            "GEMINI_BASE_URL": self.sim_url,
            "GEMINI_API_KEY": sim_key,
            **FAST_RECOVERY_ENV,
            **source_env(config.source),
        }
        sim_env = {
            "PROVIDER_SIM_PORT": str(sim_port),
            "PROVIDER_SIM_API_KEY": sim_key,
            "PROVIDER_SIM_DATA_DIR": str(self.root / "provider-sim"),
            "PROVIDER_SIM_SEED": str(config.seed),
            "PROVIDER_SIM_GENERATION_S": str(config.generation_s),
            "PROVIDER_SIM_FPS": str(config.fps),
            "PROVIDER_SIM_OPENROUTER_WEBHOOK_SECRET": webhook_secret,
            **source_env(config.source),
            **{f"PROVIDER_SIM_FAULTS__{name}": value for name, value in config.faults},
        }
        specs = [ProcessSpec("provider-sim", "reelvault_providersim", sim_env,
                             ready_url=f"{self.sim_url}/healthz")]
        node = 0
        for service in (*SERVICES, "gateway"):
            for index in range(config.replicas):
                # Every process gets every node, each starting from another one (spread), so a
                # process restarted while its first node is down connects to the next.
                first = node % len(urls)
                env = {**shared, "NATS_URL": ",".join(urls[first:] + urls[:first])}
                node += 1
                ready = None
                if service == "generator":
                    port = free_port()
                    env["REELVAULT_WEBHOOK_PORT"] = str(port)
                    env["REELVAULT_WEBHOOK_SECRET"] = webhook_secret
                    env["REELVAULT_WEBHOOK_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
                if service == "gateway":
                    env["REELVAULT_GATEWAY_HOST"] = "127.0.0.1"
                    env["REELVAULT_GATEWAY_PORT"] = str(gateway_ports[index])
                    ready = f"{self.gateways[index]}/readyz"
                specs.append(ProcessSpec(f"{service}-{index + 1}", MODULES[service], env,
                                         ready_url=ready))
        return specs

    async def _start(self) -> None:
        config = self.config
        self.root.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self.nats.start)
        await wait_for_jetstream(self.nats.urls, timeout_s=60)
        await asyncio.to_thread(self.postgres.start)
        for spec in self._specs():
            self.supervisor.add(spec)
        self.supervisor.start_all()
        # Restarts from the start on: a service that fails its own start-up (e.g. the broker
        # not answering yet) is restarted by the supervisor, as in production, and counted.
        self.background.append(asyncio.create_task(self._watchdog()))
        await asyncio.to_thread(self.supervisor.wait_ready, config.ready_timeout_s)
        await self._wait_for_log_lines(config.ready_timeout_s)
        self.event("system ready: " + ", ".join(p.spec.name for p in self.supervisor.processes))

    async def _wait_for_log_lines(self, timeout_s: float) -> None:
        """Services without an HTTP port say "<service> ready" in their log (appended to
        across restarts)."""
        deadline = time.monotonic() + timeout_s
        for managed in self.supervisor.processes:
            service = managed.spec.name.rsplit("-", 1)[0]
            if service not in SERVICES:
                continue
            while True:
                path = managed.log_path
                text = path.read_text(errors="replace") if path.exists() else ""
                if f"{service} ready" in text:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{managed.spec.name} not ready after {timeout_s}s:\n"
                                       f"{text[-3000:]}")
                await asyncio.sleep(0.2)

    # --- background activities --------------------------------------------------------------
    async def _watchdog(self) -> None:
        """The supervisor's job: restart what died (killed by us or crashed by itself)."""
        while True:
            dead = {p.spec.name: (p.pid, p.process.returncode) for p in self.supervisor.processes
                    if p.process is not None and not p.alive()}
            for managed in self.supervisor.restart_dead():
                name = managed.spec.name
                # (Not in the snapshot: it died in the instant between the two lines above.)
                old_pid, code = dead.get(name, (None, None))
                if name in dead and old_pid not in self.killed_pids:
                    self.crashes[name] += 1
                    why = _last_error_line(managed.log_path)
                    self.crash_reasons.append(f"{name} exited with {code} by itself: {why}")
                    self.event(f"{name} (pid {old_pid}) exited with {code} by itself: {why}")
                self.event(f"restarted {name} (pid {managed.pid})")
            await asyncio.sleep(0.3)

    def killable(self) -> list[ManagedProcess]:
        # The simulator plays the provider: it is not ours to kill (its jobs live in memory).
        return [p for p in self.supervisor.processes
                if p.spec.name != "provider-sim" and p.alive()]

    async def _monkey(self) -> None:
        """A random process every few seconds; the services take turns (in a shuffled order
        each round), so even a short run kills every kind of process at least once."""
        turns: list[str] = []
        while True:
            await asyncio.sleep(self.config.kill_every_s * self.kill_rng.uniform(0.5, 1.5))
            if not turns:
                turns = [*SERVICES, "gateway"]
                self.kill_rng.shuffle(turns)
            service = turns.pop()
            victims = [p for p in self.killable() if p.spec.name.rsplit("-", 1)[0] == service]
            if not victims:
                continue
            victim = self.kill_rng.choice(victims)
            pid = victim.pid
            self.killed_pids.add(pid)
            victim.signal(signal.SIGKILL)
            self.kills[service] += 1
            self.event(f"SIGKILL {victim.spec.name} (pid {pid})")

    async def _infrastructure(self) -> None:
        window = self.config.submit_window_s
        begin = self.clock()

        async def until(fraction: float) -> None:
            await asyncio.sleep(max(0.0, begin + window * fraction - self.clock()))

        if not self.cluster:
            await until(0.35)
            started = self.clock()
            self.event("SIGKILL nats")
            self.nats.kill(0)
            await asyncio.sleep(self.config.nats_outage_s)
            await asyncio.to_thread(self.nats.revive, 0)
            self.event("nats started again (same port, same data dir)")
            self.infra_events.append(
                f"NATS SIGKILLed at {started:.1f}s, back after {self.clock() - started:.1f}s")
            await until(0.65)
            started = self.clock()
            self.event("postgres crash (immediate stop)")
            await asyncio.to_thread(self.postgres.crash)
            await asyncio.sleep(self.config.postgres_outage_s)
            await asyncio.to_thread(self.postgres.restart)
            self.event("postgres started again (crash recovery, same data dir)")
            self.infra_events.append(
                f"PostgreSQL crashed at {started:.1f}s, back after {self.clock() - started:.1f}s")
            return
        await until(0.4)
        started = self.clock()
        victim = 1  # node 2: the first node of a third of the processes
        self.event(f"SIGKILL nats node {victim + 1}")
        self.nats.kill(victim)
        if self.config.node_outage_s is None:
            self.infra_events.append(
                f"NATS node {victim + 1} of 3 SIGKILLed at {started:.1f}s, not brought back")
            return
        await asyncio.sleep(self.config.node_outage_s)
        await asyncio.to_thread(self.nats.revive, victim)
        self.event(f"nats node {victim + 1} started again")
        self.infra_events.append(
            f"NATS node {victim + 1} of 3 SIGKILLed at {started:.1f}s, brought back after "
            f"{self.clock() - started:.1f}s")

    # --- the client -------------------------------------------------------------------------
    def _body(self, index: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "prompt": f"{self.prefix}{index:04d} a lighthouse keeper waves at a passing ship",
            "model": CHAOS_MODELS[index % len(CHAOS_MODELS)][1],
            "seconds": "4",
            "size": "1280x720" if index % 2 else "720x1280",
        }
        every = self.config.reference_every
        if every and self.reference_key and index % every == every - 1:
            body["reference_images"] = [self.reference_key]
        return body

    async def _post(self, client: httpx.AsyncClient, gateway: str, body: dict[str, Any],
                    key: str) -> httpx.Response:
        return await client.post(f"{gateway}/v1/videos", json=body,
                                 headers={"Idempotency-Key": key})

    async def _submit(self, client: httpx.AsyncClient, index: int) -> None:
        body = self._body(index)
        key = f"{self.run_tag}-{self.phase}-{index}"
        started = time.monotonic()
        attempts = 0
        ids: list[str] = []
        error: str | None = None
        while True:
            which = (index + attempts) % len(self.gateways)
            attempts += 1
            try:
                response = await self._post(client, self.gateways[which], body, key)
            except httpx.TransportError as exc:
                error = f"{type(exc).__name__}: {exc}"
                reason = type(exc).__name__
            else:
                if response.status_code == 202:
                    ids.append(str(response.json()["id"]))
                    error = None
                    break
                error = f"HTTP {response.status_code}: {response.text[:200]}"
                reason = f"HTTP {response.status_code}"
                if response.status_code not in RETRYABLE_STATUS:
                    break
            if time.monotonic() - started > self.config.give_up_s:
                break
            self.client_retries[f"gateway-{which + 1} {reason}"] += 1
            await asyncio.sleep(min(0.25 * 2 ** min(attempts, 5), 4.0) * self.rng.uniform(0.5, 1.0))
        self.submissions[index] = Submission(body["prompt"], key, attempts, tuple(ids), error)

    async def _load(self, client: httpx.AsyncClient) -> None:
        interval = 1.0 / self.config.rate_per_s
        start = time.monotonic()
        tasks = []
        for index in range(self.config.requests):
            await asyncio.sleep(max(0.0, start + index * interval - time.monotonic()))
            tasks.append(asyncio.create_task(self._submit(client, index)))
        await asyncio.gather(*tasks)
        self.event(f"all {self.config.requests} requests answered")

    async def _probe_idempotency(self, client: httpx.AsyncClient) -> str:
        """Two posts of one body with one key, through different gateways (before the chaos).
        Its prompt is outside the audited prefix: a deliberate duplicate is not a finding."""
        body = {"prompt": f"chaos {self.run_tag} probe", "model": "sora-2", "seconds": "4",
                "size": "1280x720"}
        key = f"{self.run_tag}-{self.phase}-probe"
        ids = []
        for gateway in (self.gateways[0], self.gateways[-1]):
            response = await self._post(client, gateway, body, key)
            if response.status_code != 202:
                return f"probe answered HTTP {response.status_code}: {response.text[:200]}"
            ids.append(response.json()["id"])
        if ids[0] == ids[1]:
            return "honoured (same key + same body -> same video, across gateways)"
        return "NOT honoured (same key + same body -> two videos)"

    async def _upload_reference(self, client: httpx.AsyncClient) -> None:
        if not self.config.reference_every:
            return
        image = png_bytes(320, 240, (40, 90, 160))
        response = await client.post(f"{self.gateways[0]}/v1/uploads",
                                     files={"file": ("ref.png", image, "image/png")})
        response.raise_for_status()
        self.reference_key = response.json()["key"]

    # --- settling and collecting ----------------------------------------------------------------
    async def _list_statuses(self, client: httpx.AsyncClient) -> dict[str, str] | None:
        """Every video's status through the public API (None: no gateway answered fully)."""
        for gateway in self.gateways:
            statuses: dict[str, str] = {}
            cursor = None
            try:
                for _ in range(100):
                    params: dict[str, Any] = {"limit": 100}
                    if cursor:
                        params["cursor"] = cursor
                    response = await client.get(f"{gateway}/v1/videos", params=params)
                    if response.status_code != 200:
                        raise httpx.HTTPError(f"HTTP {response.status_code}")
                    page = response.json()
                    statuses.update({item["id"]: item["status"] for item in page["data"]})
                    cursor = page["next_cursor"]
                    if not cursor:
                        return statuses
            except httpx.HTTPError:
                continue
        return None

    async def _settle(self, client: httpx.AsyncClient) -> float | None:
        wanted = {vid for sub in self.submissions.values() for vid in sub.video_ids}
        start = time.monotonic()
        last_open = None
        while time.monotonic() - start < self.config.settle_timeout_s:
            statuses = await self._list_statuses(client)
            if statuses is not None:
                still_open = [vid for vid in wanted
                              if statuses.get(vid) not in ("completed", "failed")]
                if not still_open:
                    return time.monotonic() - start
                if last_open != len(still_open):
                    self.event(f"{len(still_open)} accepted videos not terminal yet")
                    last_open = len(still_open)
            await asyncio.sleep(1.0)
        return None

    async def _catalog_rows(self) -> list[dict[str, Any]]:
        for attempt in range(20):
            try:
                conn = await asyncpg.connect(self.postgres.dsn, timeout=10)
                try:
                    records = await conn.fetch(
                        "SELECT id, prompt, status, video_id, error_stage, error_code, "
                        "error_message, sha256, video_bucket, video_key, thumbnail_bucket, "
                        "thumbnail_key FROM videos"
                    )
                finally:
                    await conn.close()
                return [dict(record) for record in records]
            except (OSError, asyncpg.PostgresError):
                if attempt == 19:
                    raise
                await asyncio.sleep(1.0)
        return []

    async def _dead_letters(self) -> Counter[str]:
        """Messages the services gave up on (the dead-letter stream), by consumer and error."""
        from reelvault_common.messaging.deadletter import list_dead_letters
        from reelvault_common.messaging.topology import Topology

        alive = [url for i, url in enumerate(self.nats.urls) if self.nats.alive(i)]
        letters = await list_dead_letters(alive[0], Topology(namespace=NAMESPACE))
        return Counter(f"{stored.letter.consumer.removeprefix(NAMESPACE + '-')}: "
                       f"{stored.letter.error[:120]}" for stored in letters)

    async def _sim_jobs(self, client: httpx.AsyncClient) -> list[SimJob]:
        response = await client.get(f"{self.sim_url}/_sim/jobs", timeout=60)
        response.raise_for_status()
        return [SimJob(job["id"], job["prompt"], job["status"], job["planned_outcome"],
                       job["protocol"])
                for job in response.json()["jobs"]]

    async def _check_stored(self, client: httpx.AsyncClient,
                            rows: list[dict[str, Any]]) -> list[StoredObjectCheck]:
        """Re-hash every stored object of a completed video and compare with the bytes the
        provider serves for the row's job (and with the sha256 the catalog recorded)."""
        checks = []
        for row in rows:
            if row["status"] != "completed" or not row["prompt"].startswith(self.prefix):
                continue
            video_id = str(row["id"])
            job_id = job_key(row["video_id"])
            variants = [("video", row["video_bucket"], row["video_key"], row["sha256"])]
            if row["thumbnail_key"]:
                variants.append(("thumbnail", row["thumbnail_bucket"], row["thumbnail_key"], None))
            for variant, bucket, key, recorded in variants:
                problem = await self._object_problem(client, job_id, variant, bucket, key,
                                                     recorded)
                derived = False
                if problem is not None and variant == "thumbnail" and row["video_key"]:
                    video = self.storage_dir / row["video_bucket"] / row["video_key"]
                    thumbnail = self.storage_dir / bucket / key
                    derived = await asyncio.to_thread(_extracted_from, video, thumbnail)
                    problem = None if derived else problem
                checks.append(StoredObjectCheck(video_id, variant, problem, derived))
        return checks

    async def _object_problem(self, client: httpx.AsyncClient, job_id: str | None,
                              variant: str, bucket: str | None, key: str | None,
                              recorded: str | None) -> str | None:
        if not (job_id and bucket and key):
            return f"completed row without job/bucket/key ({job_id}, {bucket}, {key})"
        path = self.storage_dir / bucket / key
        if not path.is_file():
            return f"{bucket}/{key} is not in storage"
        stored = await asyncio.to_thread(_sha256_of, path)
        response = await client.get(f"{self.sim_url}/_sim/jobs/{job_id}/sha256",
                                    params={"variant": variant}, timeout=30)
        if response.status_code != 200:
            return f"the provider cannot say what job {job_id} served: HTTP {response.status_code}"
        served = response.json()["sha256"]
        if stored != served:
            return f"stored sha256 {stored} != served {served} (job {job_id})"
        if recorded is not None and recorded != stored:
            return f"catalog records sha256 {recorded}, storage holds {stored}"
        return None

    # --- the whole phase --------------------------------------------------------------------------
    async def run(self) -> PhaseReport:
        config = self.config
        description = (
            "1 NATS node; NATS SIGKILLed + restarted once, PostgreSQL crashed + restarted once"
            if not self.cluster else
            "3-node NATS cluster, stream replicas 3; one node SIGKILLed mid-run"
            + (f" and brought back after {config.node_outage_s:.0f}s"
               if config.node_outage_s is not None else " (not brought back)")
        )
        description += (f"; {config.replicas} replicas of every service, one SIGKILLed every "
                        f"~{config.kill_every_s:.0f}s; {config.requests} requests at "
                        f"{config.rate_per_s:g}/s")
        if config.source is not None:
            description += f"; services from {config.source}"
        settle_s: float | None = None
        idempotency = "not probed"
        exit_codes: dict[str, int | None] = {}
        dead_letters: Counter[str] = Counter()
        audit_result = Audit()
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=20)
        try:
            await self._start()
            # The load authenticates like any client: a key of the default organization.
            api_key = await create_key(self.nats.urls, NAMESPACE)
            auth = {"Authorization": f"Bearer {api_key}"}
            async with httpx.AsyncClient(timeout=config.client_timeout_s, limits=limits,
                                         headers=auth) as client:
                await client.post(f"{self.sim_url}/_sim/faults", json={"rules": ONE_SHOT_RULES})
                await self._upload_reference(client)
                idempotency = await self._probe_idempotency(client)
                chaos = [asyncio.create_task(self._monkey()),
                         asyncio.create_task(self._infrastructure())]
                self.event("load and chaos start")
                await self._load(client)
                # The scheduled outages always happen, however fast the load went.
                await chaos[1]
                chaos[0].cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await chaos[0]
                self.event("chaos stops; waiting for every accepted video to end")
                settle_s = await self._settle(client)
                rows = await self._catalog_rows()
                jobs = await self._sim_jobs(client)
                faults = (await client.get(f"{self.sim_url}/_sim/faults")).json()
                injected = dict(faults.get("injected", {}))
                checks = await self._check_stored(client, rows)
                dead_letters = await self._dead_letters()
            audit_result = audit(
                self.submissions.values(),
                [_row(r) for r in rows],
                jobs,
                checks,
                prompt_prefix=self.prefix,
            )
        except BaseException:
            self.out("\n".join(self.timeline[-60:]))
            raise
        finally:
            for task in self.background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            exit_codes = await asyncio.to_thread(self.supervisor.stop_all)
            await asyncio.to_thread(self.nats.stop)
            await asyncio.to_thread(self.postgres.stop)
        (self.root / "timeline.log").write_text("\n".join(self.timeline) + "\n")
        if settle_s is None:
            self.notes.append(
                f"not every accepted video ended within {config.settle_timeout_s:.0f}s")
        report = PhaseReport(
            phase=self.phase,
            description=description,
            audit=audit_result,
            run_time_s=self.clock(),
            kills=self.kills,
            crashes=self.crashes,
            infra_events=self.infra_events,
            injected=injected,
            client_retries=self.client_retries,
            idempotency=idempotency,
            settle_s=settle_s,
            exit_codes=exit_codes,
            work_dir=self.root,
            notes=self.notes,
            crash_reasons=self.crash_reasons,
            dead_letters=dead_letters,
        )
        return report


def source_env(source: Path | None) -> dict[str, str]:
    """``PYTHONPATH`` that makes child processes import every package from ``source`` (ahead
    of the editable installs, which point at the working tree)."""
    if source is None:
        return {}
    source = source.resolve()
    paths = [source / "src", source / "libs" / "common" / "src",
             *sorted(source.glob("services/*/src"))]
    missing = [str(path) for path in paths[:2] if not path.is_dir()]
    if missing:
        raise FileNotFoundError(f"not a reelvault source tree: {', '.join(missing)} missing")
    inherited = [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
    return {"PYTHONPATH": os.pathsep.join([*map(str, paths), *inherited])}


def _row(record: dict[str, Any]) -> CatalogRow:
    return CatalogRow(
        id=str(record["id"]),
        prompt=record["prompt"],
        status=record["status"],
        provider_job_id=record["video_id"],
        error_stage=record["error_stage"],
        error_code=record["error_code"],
        error_message=record["error_message"],
    )


def _last_error_line(log_path: Path) -> str:
    """The last line of a process log that names an error (why it died), for the report."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()[-200:]
    except OSError:
        return "no log"
    for line in reversed(lines):
        if "Error" in line or "Exception" in line:
            return line.strip()[:300]
    return lines[-1].strip()[:300] if lines else "empty log"


def _extracted_from(video: Path, thumbnail: Path) -> bool:
    """Is ``thumbnail`` exactly the frame the archiver extracts from ``video`` (its fallback
    when the provider's thumbnail cannot be had)? Re-derived with the archiver's own code."""
    try:
        from reelvault_archiver.thumbnails import ThumbnailSpec, first_keyframe_webp
    except ImportError:  # an archiver without the fallback: a different thumbnail is wrong
        return False
    if not (video.is_file() and thumbnail.is_file()):
        return False
    with video.open("rb") as f:
        webp = first_keyframe_webp(f, ThumbnailSpec())  # type: ignore[arg-type]
    return hashlib.sha256(webp).hexdigest() == _sha256_of(thumbnail)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _work_root(config: ChaosConfig) -> Path:
    # PostgreSQL runs as its own system user when we are root: it must be able to enter every
    # parent of its data dir (pytest's temp folders are 0700), and the socket path stays short.
    base = config.work_root or Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="rv-chaos-", dir=base))
    root.chmod(0o755)
    return root


async def run_chaos(config: ChaosConfig, out: Callable[[str], None] = print) -> list[PhaseReport]:
    """Every configured phase, one after the other; prints each phase's figures."""
    reports = []
    for phase in config.phases:
        root = _work_root(config)
        out(f"chaos phase {phase}: work dir {root}")
        report = await ChaosPhase(config, phase, root, out).run()
        if report.passed and not config.keep:
            shutil.rmtree(root, ignore_errors=True)
            report.work_dir = None
        for line in report.lines():
            out(line)
        reports.append(report)
    return reports


def parse_args(argv: list[str] | None = None) -> ChaosConfig:
    parser = argparse.ArgumentParser(prog="chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ci", action="store_true",
                        help="start from the small CI configuration (options below override it)")
    parser.add_argument("--requests", type=int)
    parser.add_argument("--rate", type=float, dest="rate_per_s", help="requests per second")
    parser.add_argument("--phases", help="comma-separated: single,cluster")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--kill-every", type=float, dest="kill_every_s",
                        help="mean seconds between two SIGKILLs")
    parser.add_argument("--settle-timeout", type=float, dest="settle_timeout_s")
    parser.add_argument("--node-outage", type=float, dest="node_outage_s",
                        help="seconds the killed cluster node stays down (<0: not brought back)")
    parser.add_argument("--keep", action="store_true", help="keep work dirs of passing phases")
    parser.add_argument("--verbose", action="store_true", help="print the timeline as it happens")
    parser.add_argument("--source", type=Path,
                        help="run the services from this copy of the repository "
                        "(e.g. `git archive HEAD | tar -x -C DIR`) instead of the working tree")
    args = vars(parser.parse_args(argv))
    config = ChaosConfig.ci() if args.pop("ci") else ChaosConfig()
    phases = args.pop("phases")
    if phases is not None:
        args["phases"] = tuple(p for p in phases.split(",") if p)
    given = {k: v for k, v in args.items() if v is not None}
    if given.get("node_outage_s", 0) < 0:
        given["node_outage_s"] = None
    return replace(config, **given)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    config = parse_args(argv)
    if not config.verbose:
        # Restarts are in the report (and the timeline); one warning per kill is noise here.
        logging.getLogger("reelvault.supervisor").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    started = time.monotonic()
    reports = asyncio.run(run_chaos(config))
    verdict = "PASS" if all(r.passed for r in reports) else "FAIL"
    print(f"chaos total run time: {time.monotonic() - started:.1f}s")
    print(f"chaos: {verdict}")
    sys.exit(0 if verdict == "PASS" else 1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
