"""Whole-pipeline throughput and latency, against raw JetStream publish+consume on the same NATS.

    .venv/bin/python bench/pipeline.py [--videos 1000] [--replicas 1]   # or: make bench-pipeline

The whole system runs as real processes through the launcher (``reelvault up``: embedded NATS
and PostgreSQL, the provider simulator, gateway, catalog, generator, archiver), the simulator
in fast mode (no generation delay, 1 fps clips) rendering one clip per shape and handing every job a
copy (``PROVIDER_SIM_REUSE_RENDERS``: the provider's encode is a real provider's GPU time, not this
pipeline's; what a render costs here is measured and printed separately).

After a warm-up, ``--videos`` requests go in through ``POST /v1/videos`` (``--concurrency``
at a time) and the run waits until each has its ``video.stored`` (or ``video.failed``) in the
stream. Printed:

- sustained throughput, videos/s end to end (first request sent -> last video stored), and the
  steady rate between the 10th and 90th percentile of completions;
- p50/p99 latency from provider completion (``video.completed``) to ``video.stored``, and from
  request to stored, from the events' own timestamps on the stream;
- in the same run, on the same NATS: raw JetStream publish+consume (a stream, a durable pull
  consumer, every message acked) of as many messages of the pipeline's mean event size, and the
  ratio of the pipeline's event rate to it;
- CPU used per component during the measured window (this is a 2-core machine) and, when the
  target (>= 100 videos/s) is missed, what limits it: the CPU each component needs per video
  against the budget (100 videos/s on 2 cores leaves 20 ms per video for all processes).

The launcher wires the simulator's webhooks to the generator, so a job's safety-net poll waits
``REELVAULT_WEBHOOK_FIRST_POLL_DELAY_S`` (30 s) after its creation: a run shorter than that
leaves some of those looks outside the measured window. Use the default 1000 videos for figures.

Bounded: every wait has a deadline (``--max-seconds``), the system is stopped at the end, and
the temporary directory is removed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import nats
import psutil
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

ROOT = Path(__file__).resolve().parents[1]
TARGET_VIDEOS_PER_S = 100.0
NAMESPACE = "bench"
SIZES = ("720x1280", "1280x720")


# --- the system ---------------------------------------------------------------------------------
# The launcher as the end-to-end tests run it (tests/support/system.py): ports, readiness, the
# URLs it prints, a clean stop.
sys.path.insert(0, str(ROOT))
from tests.support.system import RunningSystem as System  # noqa: E402
from tests.support.system import reelvault_up  # noqa: E402

# Set in a developer's shell they would point the run at other servers: the bench measures
# its own embedded NATS and PostgreSQL and the local simulator.
EXTERNAL = ("NATS_URL", "DATABASE_URL", "OPENAI_BASE_URL", "OPENAI_API_KEY")


@contextlib.contextmanager
def running_system(data_dir: Path, replicas: int, env: dict[str, str], timeout_s: float
                   ) -> Iterator[System]:
    with reelvault_up(data_dir, env, "--replicas", str(replicas), ready_timeout_s=timeout_s,
                      unset=EXTERNAL) as system:
        yield system


# --- CPU accounting -----------------------------------------------------------------------------
def component_of(proc: psutil.Process) -> str | None:
    try:
        cmd = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    text = " ".join(cmd)
    for module, name in (("reelvault_gateway", "gateway"), ("reelvault_catalog", "catalog"),
                         ("reelvault_generator", "generator"), ("reelvault_archiver", "archiver"),
                         ("reelvault_providersim", "provider-sim")):
        if f"-m {module}" in text:
            return name
    if "nats-server" in text:
        return "nats"
    if "postgres" in text or "postmaster" in text:
        return "postgres"
    if "reelvault up" in text or text.endswith(" up") or " up --data-dir" in text:
        return "launcher"
    return None


def cpu_seconds(root_pid: int, data_dir: Path) -> dict[int, tuple[str, float]]:
    """CPU time (user+system) of every process of the system, by pid."""
    found: dict[int, tuple[str, float]] = {}
    candidates: list[psutil.Process] = []
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(root_pid)
        candidates = [root, *root.children(recursive=True)]
    # PostgreSQL is started by pg_ctl and does not stay a child: find the postmaster by its
    # data dir; its backends (renamed "postgres: ...") are its children.
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, TypeError):
            if str(data_dir) in " ".join(proc.info["cmdline"] or ()) and proc.pid != root_pid:
                candidates.append(proc)
                candidates.extend(proc.children(recursive=True))
    for proc in candidates:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            name = component_of(proc)
            if name is None and proc.name().startswith("postgres"):
                name = "postgres"
            if name is None:
                continue
            times = proc.cpu_times()
            found[proc.pid] = (name, times.user + times.system)
    return found


def machine_busy(before: Any, after: Any) -> float:
    """Share of the whole machine's CPU time that was busy (every process, not only ours)."""
    idle = (after.idle + getattr(after, "iowait", 0)) - (before.idle + getattr(before, "iowait", 0))
    total = sum(after) - sum(before)
    return max(0.0, 1.0 - idle / total) * 100 if total > 0 else 0.0


def cpu_used(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
             ) -> dict[str, float]:
    used: dict[str, float] = {}
    for pid, (name, seconds) in after.items():
        used[name] = used.get(name, 0.0) + seconds - before.get(pid, (name, 0.0))[1]
    return used


# --- the measured run ---------------------------------------------------------------------------
@dataclass
class Tracker:
    """What the stream says about each video (event timestamps, in seconds since the epoch)."""

    requested: dict[str, float] = field(default_factory=dict)
    completed: dict[str, float] = field(default_factory=dict)
    stored: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    finished_at: dict[str, float] = field(default_factory=dict)  # local monotonic clock
    events: int = 0
    event_bytes: int = 0
    wanted: set[str] = field(default_factory=set)
    all_done: asyncio.Event = field(default_factory=asyncio.Event)

    def on_event(self, data: bytes) -> None:
        self.events += 1
        self.event_bytes += len(data)
        body = json.loads(data)
        video, kind = body["video_id"], body["type"]
        at = datetime.fromisoformat(body["occurred_at"]).timestamp()
        if kind == "video.requested":
            self.requested[video] = at
        elif kind == "video.completed":
            self.completed.setdefault(video, at)
        elif kind == "video.stored":
            self.stored.setdefault(video, at)
            self.finished_at.setdefault(video, time.monotonic())
        elif kind == "video.failed":
            self.failed.setdefault(video, f"{body['stage']}/{body['code']}")
            self.finished_at.setdefault(video, time.monotonic())
        self.check()

    def expect(self, ids: list[str]) -> None:
        self.wanted = set(ids)
        self.all_done.clear()
        self.check()

    def check(self) -> None:
        if self.wanted and self.wanted <= self.finished_at.keys():
            self.all_done.set()


async def submit_all(gateway: str, api_key: str, count: int, concurrency: int, label: str
                     ) -> tuple[list[str], list[float], float]:
    """POST ``count`` requests, ``concurrency`` at a time; ids, latencies and start time."""
    ids: list[str] = []
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(count):
        queue.put_nowait(index)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=gateway, timeout=60, limits=limits,
                                 headers={"Authorization": f"Bearer {api_key}"}) as client:

        async def worker() -> None:
            while not queue.empty():
                index = queue.get_nowait()
                body = {"prompt": f"{label} video {index}: a lighthouse at dusk",
                        "seconds": "4", "size": SIZES[index % len(SIZES)]}
                sent = time.monotonic()
                answer: httpx.Response | None = None
                for _attempt in range(5):
                    # A 503 or a dropped connection under load: retried with the same key, so a
                    # request that did get through is not requested twice.
                    try:
                        answer = await client.post(
                            "/v1/videos", json=body,
                            headers={"Idempotency-Key": f"{label}-{index}"})
                    except httpx.TransportError:
                        answer = None
                    if answer is not None and answer.status_code == 202:
                        break
                    await asyncio.sleep(0.5)
                if answer is None:
                    raise RuntimeError(f"request {index} failed 5 times")
                answer.raise_for_status()
                latencies.append(time.monotonic() - sent)
                ids.append(answer.json()["id"])

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ids, latencies, started


async def sample_backlogs(js: Any, stop: asyncio.Event, backlog: dict[str, int],
                         unacked: dict[str, int], every_s: float = 0.5) -> None:
    """The largest backlog seen per durable consumer: messages not delivered yet (the stage
    that cannot keep up is the one whose backlog grows), and separately those delivered and
    not acked yet (in work, or handed back to be looked at later: the generator's polls of
    jobs a webhook is expected to end wait there by design)."""
    stream = NAMESPACE.upper() + "_VIDEOS"
    while not stop.is_set():
        with contextlib.suppress(Exception):
            async for info in _consumers(js, stream):
                if not info.name.startswith(f"{NAMESPACE}-"):
                    continue  # this script's own (ephemeral) watcher
                name = info.name.removeprefix(f"{NAMESPACE}-")
                backlog[name] = max(backlog.get(name, 0), int(info.num_pending))
                unacked[name] = max(unacked.get(name, 0), int(info.num_ack_pending))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


async def _consumers(js: Any, stream: str) -> Any:
    for info in await js.consumers_info(stream):
        yield info


def start_profilers(out_dir: Path, processes: dict[int, tuple[str, float]]
                    ) -> list[subprocess.Popen[bytes]]:
    """``py-spy record`` (collapsed stacks) on every Python process of the system."""
    spy = shutil.which("py-spy") or str(ROOT / ".tools" / "bin" / "py-spy")
    out_dir.mkdir(parents=True, exist_ok=True)
    started = []
    for pid, (name, _) in processes.items():
        if name in ("nats", "postgres", "launcher"):
            continue
        started.append(subprocess.Popen(
            [spy, "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "--gil",
             "--nonblocking", "-o", str(out_dir / f"{name}-{pid}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return started


def stop_profilers(profilers: list[subprocess.Popen[bytes]]) -> None:
    for profiler in profilers:
        profiler.send_signal(signal.SIGINT)
    for profiler in profilers:
        try:
            profiler.wait(timeout=30)
        except subprocess.TimeoutExpired:
            profiler.kill()


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))]


async def raw_jetstream(nats_url: str, messages: int, size: int, window: int
                        ) -> tuple[float, float]:
    """Publish ``messages`` of ``size`` bytes to a fresh stream (acks awaited, ``window`` in
    flight) while a durable pull consumer fetches and acks them; returns (msgs/s, seconds)."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    stream = f"BENCH_RAW_{uuid.uuid4().hex[:8].upper()}"
    subject = f"benchraw.{stream.lower()}"
    await js.add_stream(StreamConfig(name=stream, subjects=[subject], storage=StorageType.FILE,
                                     duplicate_window=120))
    await js.add_consumer(stream, ConsumerConfig(durable_name="raw", ack_policy=AckPolicy.EXPLICIT,
                                                 deliver_policy=DeliverPolicy.ALL,
                                                 max_ack_pending=10000))
    payload = b"x" * size
    consumed = 0
    try:
        sub = await js.pull_subscribe_bind("raw", stream)
        started = time.monotonic()

        async def publish() -> None:
            for first in range(0, messages, window):
                batch = range(first, min(first + window, messages))
                await asyncio.gather(*(js.publish(subject, payload, headers={
                    "Nats-Msg-Id": f"{stream}-{i}"}) for i in batch))

        async def consume() -> None:
            nonlocal consumed
            while consumed < messages:
                with contextlib.suppress(nats.errors.TimeoutError):
                    for msg in await sub.fetch(batch=min(window, 256), timeout=1):
                        await msg.ack()
                        consumed += 1

        await asyncio.wait_for(asyncio.gather(publish(), consume()), timeout=300)
        elapsed = time.monotonic() - started
        return messages / elapsed, elapsed
    finally:
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)
        await nc.close()


def render_cost_ms() -> float:
    """CPU time of one fast-mode render by the simulator (what reuse_renders saves per job)."""
    from reelvault_providersim import render

    with tempfile.TemporaryDirectory() as tmp:
        spec = render.RenderSpec(720, 1280, 4, 1, palette_seed="bench", thumbnail_max_px=160)
        render.render_job(spec, Path(tmp) / "warm")
        began = time.process_time()
        for i in range(5):
            render.render_job(spec, Path(tmp) / str(i))
        return (time.process_time() - began) / 5 * 1000


async def measure(args: argparse.Namespace, system: System) -> dict[str, Any]:
    nats_url, gateway = system.urls["nats"], system.urls["gateway"]
    tracker = Tracker()
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        async def track(msg: Any) -> None:
            tracker.on_event(msg.data)

        await js.subscribe(f"{NAMESPACE}.events.*.video.>", ordered_consumer=True,
                           deliver_policy=DeliverPolicy.NEW, cb=track)

        warm = max(10, min(100, args.videos // 10))
        warm_ids, _, _ = await submit_all(gateway, system.api_key, warm, args.concurrency, "warmup")
        tracker.expect(warm_ids)
        await asyncio.wait_for(tracker.all_done.wait(), timeout=args.max_seconds)
        tracker.expect([])

        events_before, bytes_before = tracker.events, tracker.event_bytes
        cpu_before = cpu_seconds(system.process.pid, system.data_dir)
        machine_before = psutil.cpu_times()
        profilers = start_profilers(args.profile, cpu_before) if args.profile else []
        backlog: dict[str, int] = {}
        unacked: dict[str, int] = {}
        sampling = asyncio.Event()
        sampler = asyncio.create_task(sample_backlogs(js, sampling, backlog, unacked))
        ids, post_latencies, started = await submit_all(
            gateway, system.api_key, args.videos, args.concurrency, f"run-{uuid.uuid4().hex[:6]}")
        submitted = time.monotonic()
        tracker.expect(ids)
        timed_out = False
        remaining = args.max_seconds - (submitted - started)
        try:
            await asyncio.wait_for(tracker.all_done.wait(), timeout=max(remaining, 1.0))
        except TimeoutError:
            timed_out = True
        finished = max((tracker.finished_at.get(v, 0.0) for v in ids), default=time.monotonic())
        cpu_after = cpu_seconds(system.process.pid, system.data_dir)
        machine_after = psutil.cpu_times()
        sampling.set()
        await sampler
        stop_profilers(profilers)
        events = tracker.events - events_before
        mean_size = (tracker.event_bytes - bytes_before) / max(events, 1)
    finally:
        await nc.close()

    done = [v for v in ids if v in tracker.finished_at]
    stored = [v for v in ids if v in tracker.stored]
    window = (finished if not timed_out else time.monotonic()) - started
    marks = sorted(tracker.finished_at[v] for v in done)
    steady = float("nan")
    if len(marks) >= 20:
        lo, hi = marks[len(marks) // 10], marks[(len(marks) * 9) // 10]
        steady = ((len(marks) * 9) // 10 - len(marks) // 10) / max(hi - lo, 1e-9)
    to_stored = [tracker.stored[v] - tracker.completed[v] for v in stored if v in tracker.completed]
    end_to_end = [tracker.stored[v] - tracker.requested[v] for v in stored
                  if v in tracker.requested]

    # At least a few seconds' worth; the better of two runs (the machine may be shared).
    baseline_messages = max(events, 10_000)
    runs = [await raw_jetstream(nats_url, baseline_messages, round(mean_size), window=256)
            for _ in range(2)]
    raw_rate, raw_s = max(runs)
    return {
        "submitted": len(ids), "stored": len(stored), "failed": len(done) - len(stored),
        "failures": sorted({tracker.failed[v] for v in done if v in tracker.failed}),
        "timed_out": timed_out, "window_s": window, "submit_s": submitted - started,
        "throughput": len(stored) / window, "steady": steady,
        "post_p50": percentile(post_latencies, 0.5), "post_p99": percentile(post_latencies, 0.99),
        "completed_to_stored": to_stored, "end_to_end": end_to_end,
        "events": events, "mean_size": mean_size, "event_rate": events / window,
        "raw_rate": raw_rate, "raw_s": raw_s, "raw_messages": baseline_messages,
        "cpu": cpu_used(cpu_before, cpu_after),
        "machine_busy": machine_busy(machine_before, machine_after),
        "load": os.getloadavg()[0],
        "backlog": backlog,
        "unacked": unacked,
    }


# --- report -------------------------------------------------------------------------------------
def report(args: argparse.Namespace, r: dict[str, Any], render_ms: float) -> None:
    cores = psutil.cpu_count() or 1
    window = r["window_s"]
    cpu = r["cpu"]
    busy = sum(cpu.values()) / window / cores * 100
    c2s, e2e = r["completed_to_stored"], r["end_to_end"]
    events_per_video = r["events"] / max(r["stored"], 1)
    ours = sum(seconds for name, seconds in cpu.items() if name != "provider-sim")
    lines = [
        f"pipeline: {args.videos} videos, {args.replicas} replica(s) per broker-driven service, "
        f"{args.concurrency} requests in flight, provider-sim fast mode (renders reused)",
        f"submitted                     {r['submitted']}",
        f"stored                        {r['stored']}",
        f"failed                        {r['failed']}"
        + (f" ({', '.join(r['failures'])})" if r["failures"] else ""),
        f"run time                      {window:.2f} s (requests sent in {r['submit_s']:.2f} s)",
        f"throughput end to end         {r['throughput']:.1f} videos/s",
        f"throughput steady (p10-p90)   {r['steady']:.1f} videos/s",
        f"POST /v1/videos latency       p50 {r['post_p50'] * 1000:.0f} ms, "
        f"p99 {r['post_p99'] * 1000:.0f} ms",
        f"completed -> stored latency   p50 {percentile(c2s, 0.5) * 1000:.0f} ms, "
        f"p99 {percentile(c2s, 0.99) * 1000:.0f} ms",
        f"requested -> stored latency   p50 {percentile(e2e, 0.5) * 1000:.0f} ms, "
        f"p99 {percentile(e2e, 0.99) * 1000:.0f} ms",
        f"pipeline events               {r['events']} ({events_per_video:.1f} per video, mean "
        f"{r['mean_size']:.0f} B), {r['event_rate']:.0f} events/s",
        f"raw JetStream publish+consume {r['raw_rate']:.0f} msgs/s ({r['raw_messages']} msgs of "
        f"{r['mean_size']:.0f} B, {r['raw_s']:.2f} s, same NATS)",
        f"pipeline / raw JetStream      {r['event_rate'] / r['raw_rate']:.3f} "
        f"(raw JetStream alone would carry {r['raw_rate'] / events_per_video:.0f} videos/s)",
        f"CPU busy                      {busy:.0f}% of {cores} cores used by the pipeline; the "
        f"machine {r['machine_busy']:.0f}% busy (load average {r['load']:.1f})",
        f"CPU per video                 {sum(cpu.values()) / max(r['stored'], 1) * 1000:.1f} ms "
        f"over all processes: at most {cores * r['stored'] / max(sum(cpu.values()), 1e-9):.0f}"
        f" videos/s on {cores} cores with nothing else running",
        f"  without the simulator       {ours / max(r['stored'], 1) * 1000:.1f} ms (the provider's "
        f"side is not this machine's in production): at most "
        f"{cores * r['stored'] / max(ours, 1e-9):.0f} videos/s",
        "largest backlog per consumer  " + ", ".join(
            f"{name} {waiting}" for name, waiting in sorted(r["backlog"].items()))
        + " (not delivered yet)",
        "  and unacked                 " + ", ".join(
            f"{name} {waiting}" for name, waiting in sorted(r["unacked"].items())),
    ]
    for name, seconds in sorted(cpu.items(), key=lambda item: -item[1]):
        lines.append(f"  cpu {name:<22} {seconds / window * 100:5.0f}% of one core, "
                     f"{seconds / max(r['stored'], 1) * 1000:.1f} ms per video")
    lines.append(f"sim render (not in the run)   {render_ms:.0f} ms CPU per fast-mode clip "
                 f"(rendering every job would cap this machine at "
                 f"{cores * 1000 / render_ms:.0f} videos/s)")
    target_met = r["throughput"] >= TARGET_VIDEOS_PER_S and not r["failed"]
    lines.append(f"target >= {TARGET_VIDEOS_PER_S:.0f} videos/s    "
                 f"{'met' if target_met else 'NOT met'}")
    if not target_met:
        lines.append("limited by                    " + limit_statement(r, busy, cores))
    print("\n".join(lines), flush=True)


def limit_statement(r: dict[str, Any], busy: float, cores: int) -> str:
    cpu = r["cpu"]
    total = sum(cpu.values()) or 1.0
    top = sorted(cpu.items(), key=lambda item: -item[1])[:4]
    stored = max(r["stored"], 1)
    # Each component's ms per video against the budget: what it would take to get there.
    shares = ", ".join(f"{name} {seconds / total * 100:.0f}% ({seconds / stored * 1000:.1f} ms)"
                       for name, seconds in top)
    per_video = total / stored * 1000
    if r["backlog"] and max(r["backlog"].values()) > 0:
        stage, waiting = max(r["backlog"].items(), key=lambda item: item[1])
        shares += f"; the queue builds up in front of {stage} (up to {waiting} messages)"
    if busy >= 85 or r["machine_busy"] >= 85:
        others = " (other processes on the machine took the rest)" if busy < 85 else ""
        return (f"CPU: the machine was {r['machine_busy']:.0f}% busy{others}; the pipeline needs "
                f"{per_video:.1f} ms of CPU per video over all its processes, and 100 videos/s "
                f"on {cores} cores allows {cores * 10:.0f} ms. Shares: {shares}")
    single = max(cpu.items(), key=lambda item: item[1])
    if single[1] / r["window_s"] >= 0.85:
        return (f"one process: {single[0]} uses {single[1] / r['window_s'] * 100:.0f}% of a core "
                f"(the GIL): add replicas of it. Shares: {shares}")
    return (f"latency, not CPU ({busy:.0f}% busy): the pipeline's per-video waits (consumer "
            f"fetch, polls, naks) with this concurrency. Shares: {shares}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=1000)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-seconds", type=float, default=600.0,
                        help="deadline for each phase (warm-up, run)")
    parser.add_argument("--keep", action="store_true", help="keep the data dir (logs)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="write py-spy collapsed stacks of every service here")
    parser.add_argument("--env", action="append", default=[],
                        help="extra KEY=VALUE for every process (tuning experiments)")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="rv-bench-"))
    env = {
        "REELVAULT_NAMESPACE": NAMESPACE,
        "PROVIDER_SIM_FAST_MODE": "true",
        "PROVIDER_SIM_REUSE_RENDERS": "true",
        "PROVIDER_SIM_LOG_LEVEL": "WARNING",
        "REELVAULT_LOG_LEVEL": "WARNING",
    }
    env.update(dict(item.split("=", 1) for item in args.env))
    try:
        with running_system(data_dir, args.replicas, env, timeout_s=180) as system:
            result = asyncio.run(measure(args, system))
        report(args, result, render_cost_ms())
    finally:
        if args.keep:
            print(f"data and logs kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
