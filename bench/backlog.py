"""A large backlog behind a provider's rate limit: no overspend, no hot loop, no starvation.

    .venv/bin/python bench/backlog.py [--requests 10000] [--rpm 600] [--observe-s 300]
    # or: make bench-backlog

The whole system runs as real processes through the launcher (``reelvault up``: embedded NATS
and PostgreSQL, the provider simulator, gateway, catalog, generator, archiver; the simulator's
webhooks wired to the generator). The simulator answers 429 beyond ``--rpm`` calls in any 60 s
(and, with ``--random-429``, that share of calls at random), its jobs take
``--generation-s`` (900 s: none ends during the run, every created job stays followed), and
the generator's budget is ``REELVAULT_PROVIDER_RPM=--rpm``.

``--requests`` go in through ``POST /v1/videos`` from the default organization; half-way
through, and then every ``--single-every-s`` while observing, a second organization (made with
``reelvault orgs create`` and ``keys create``) asks for one video. After the last request is
admitted the run observes for ``--observe-s`` and prints:

- the most calls the simulator saw in any 60 s window (sliding) against the limit, and 429s;
- creates and retrieves per minute at the simulator;
- deliveries (and redeliveries) per minute of the generator's durable consumers, against the
  provider calls per minute;
- CPU per process (share of one core) over the observation and its second half (steady
  state), RSS per process, and RSS growth per 1,000 pending jobs (from just before the batch
  to the end);
- the second organization's waits from ``video.requested`` to ``video.generation.started``.

Targets: calls in any 60 s <= the limit; generator CPU < 15 % of a core in steady state;
deliveries per minute <= 3x provider calls per minute; RSS growth < 1 MB per 1,000 pending
jobs per process. Bounded: every phase has a deadline, the system is stopped at the end and
the temporary directory removed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import nats
import psutil
from nats.js.api import DeliverPolicy

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "bench"
SECOND_ORG = "bench-second"
WINDOW_S = 60.0
TARGET_CPU_SHARE = 15.0
TARGET_DELIVERY_RATIO = 3.0
TARGET_MB_PER_1000 = 1.0

sys.path.insert(0, str(ROOT))
from bench.pipeline import EXTERNAL, component_of  # noqa: E402
from tests.support.system import RunningSystem as System  # noqa: E402
from tests.support.system import reelvault_up  # noqa: E402


# --- the second organization ----------------------------------------------------------------------
def cli(data_dir: Path, *argv: str) -> str:
    """A ``reelvault`` operator command against the running system; its output."""
    env = {k: v for k, v in os.environ.items() if k not in EXTERNAL}
    env["REELVAULT_NAMESPACE"] = NAMESPACE
    done = subprocess.run([str(Path(sys.executable).parent / "reelvault"), *argv,
                           "--data-dir", str(data_dir)],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"reelvault {' '.join(argv)} failed: {done.stdout}{done.stderr}")
    return done.stdout


def second_org_key(data_dir: Path) -> str:
    cli(data_dir, "orgs", "create", SECOND_ORG, "--name", "Second organization")
    out = cli(data_dir, "keys", "create", "--org", SECOND_ORG, "--name", "bench")
    return out.strip().splitlines()[-1].strip()  # the secret, printed last


# --- samplers -------------------------------------------------------------------------------------
@dataclass
class Samples:
    calls: list[tuple[float, str, int]] = field(default_factory=list)  # simulator call log
    consumers: list[tuple[float, dict[str, tuple[int, int]]]] = field(default_factory=list)
    processes: list[tuple[float, dict[int, tuple[str, float, int]]]] = field(default_factory=list)
    requested: dict[str, float] = field(default_factory=dict)  # second organization's videos
    started: dict[str, float] = field(default_factory=dict)


def processes(root_pid: int) -> dict[int, tuple[str, float, int]]:
    """(component, CPU seconds, RSS bytes) of every process of the system, by pid."""
    found: dict[int, tuple[str, float, int]] = {}
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(root_pid)
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                name = component_of(proc)
                if name is None or name == "postgres":
                    continue
                times = proc.cpu_times()
                found[proc.pid] = (f"{name}[{proc.pid}]", times.user + times.system,
                                   proc.memory_info().rss)
    return found


async def sample_calls(sim: str, samples: Samples, stop: asyncio.Event) -> None:
    since = 0.0
    async with httpx.AsyncClient(base_url=sim, timeout=30) as client:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                got = (await client.get("/_sim/calls", params={"since": since})).json()["calls"]
                samples.calls.extend((float(t), str(r), int(s)) for t, r, s in got)
                if got:
                    since = float(got[-1][0])
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 5.0)


async def sample_system(js: Any, root_pid: int, samples: Samples, stop: asyncio.Event,
                        every_s: float = 10.0) -> None:
    stream = NAMESPACE.upper() + "_VIDEOS"
    while True:
        seen: dict[str, tuple[int, int]] = {}
        with contextlib.suppress(Exception):
            for info in await js.consumers_info(stream):
                if info.name.startswith(f"{NAMESPACE}-generator-"):
                    seen[info.name.removeprefix(f"{NAMESPACE}-")] = (
                        int(info.delivered.consumer_seq), int(info.num_redelivered))
        samples.consumers.append((time.time(), seen))
        samples.processes.append((time.time(), await asyncio.to_thread(processes, root_pid)))
        if stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


async def follow_second_org(nc: Any, samples: Samples) -> Any:
    """``video.requested`` and ``video.generation.started`` of the second organization."""
    js = nc.jetstream()

    async def seen(msg: Any) -> None:
        body = json.loads(msg.data)
        at = datetime.fromisoformat(body["occurred_at"]).timestamp()
        if body["type"] == "video.requested":
            samples.requested.setdefault(body["video_id"], at)
        elif body["type"] == "video.generation.started":
            samples.started.setdefault(body["video_id"], at)

    return await js.subscribe(f"{NAMESPACE}.events.{SECOND_ORG}.video.>", ordered_consumer=True,
                              deliver_policy=DeliverPolicy.NEW, cb=seen)


# --- requests -------------------------------------------------------------------------------------
async def submit(client: httpx.AsyncClient, label: str, index: int) -> bool:
    body = {"prompt": f"{label} video {index}: a lighthouse at dusk", "seconds": "4",
            "size": "720x1280"}
    for _attempt in range(5):
        # A 503 or a dropped connection under load: retried with the same key.
        with contextlib.suppress(httpx.TransportError):
            answer = await client.post("/v1/videos", json=body,
                                       headers={"Idempotency-Key": f"{label}-{index}"})
            if answer.status_code == 202:
                return True
            if answer.status_code < 500 and answer.status_code != 429:
                print(f"request {label}-{index} refused: {answer.status_code} {answer.text}",
                      flush=True)
                return False
        await asyncio.sleep(0.5)
    return False


async def submit_batch(gateway: str, key: str, count: int, concurrency: int, halfway: Any
                       ) -> int:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(count):
        queue.put_nowait(index)
    admitted = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=gateway, timeout=60, limits=limits,
                                 headers={"Authorization": f"Bearer {key}"}) as client:

        async def worker() -> None:
            nonlocal admitted
            while not queue.empty():
                index = queue.get_nowait()
                if index == count // 2:
                    halfway()
                ok = await submit(client, "batch", index)
                admitted += ok

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return admitted


# --- figures --------------------------------------------------------------------------------------
def most_in_window(times: list[float], window_s: float = WINDOW_S) -> int:
    """The most of ``times`` (sorted) within any ``window_s`` (sliding)."""
    best, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= window_s:
            first += 1
        best = max(best, last - first + 1)
    return best


def per_minute(count: float, seconds: float) -> float:
    return count * 60.0 / seconds if seconds > 0 else float("nan")


def nearest(series: list[tuple[float, Any]], at: float) -> Any:
    return min(series, key=lambda item: abs(item[0] - at))[1]


def report(args: argparse.Namespace, samples: Samples, marks: dict[str, float],
           admitted: int, singles: int) -> bool:
    start, end = marks["observe"], marks["end"]
    span = end - start
    lines = [f"backlog: {args.requests} requests ({admitted} admitted in "
             f"{marks['submitted'] - marks['batch']:.0f} s), limit {args.rpm}/min, generations "
             f"{args.generation_s:.0f} s, random 429s {args.random_429:.0%}, observed "
             f"{span:.0f} s after the batch"]
    times = sorted(t for t, _, _ in samples.calls)
    worst = most_in_window(times)
    in_run = [c for c in samples.calls if c[0] >= marks["batch"]]
    observed = [c for c in samples.calls if start <= c[0] <= end]
    limited = sum(1 for _, _, status in samples.calls if status == 429)
    lines += [
        f"calls in any 60 s window      {worst} (limit {args.rpm}): "
        + ("met" if worst <= args.rpm else "NOT met"),
        f"provider calls                {len(samples.calls)} ({len(in_run)} since the batch), "
        f"429s {limited}",
    ]
    by_route: dict[str, int] = {}
    for _, route, _ in observed:
        by_route[route] = by_route.get(route, 0) + 1
    calls_per_min = per_minute(len(observed), span)
    lines.append("per minute while observing    " + ", ".join(
        f"{route} {per_minute(n, span):.0f}" for route, n in sorted(by_route.items()))
        + f" (all {calls_per_min:.0f})")
    minutes = [int((t - start) // 60) for t, _, _ in observed]
    buckets = {m: [0, 0] for m in range(int(span // 60) + 1)}
    for minute, (_, route, _) in zip(minutes, observed, strict=True):
        buckets[minute][0 if route == "create" else 1] += 1
    lines.append("  minute by minute (c/r)      " + " ".join(
        f"{c}/{r}" for _, (c, r) in sorted(buckets.items())))

    before = nearest(samples.consumers, start)
    after = nearest(samples.consumers, end)
    deliveries = 0.0
    for name, (delivered, redelivered) in sorted(after.items()):
        d0, _ = before.get(name, (0, 0))
        deliveries += delivered - d0
        # num_redelivered is a gauge: messages pending now that were delivered more than once.
        lines.append(f"deliveries {name:<18} {per_minute(delivered - d0, span):.0f}/min "
                     f"({redelivered} redelivered messages pending at the end)")
    ratio = per_minute(deliveries, span) / max(calls_per_min, 1e-9)
    delivery_ok = ratio <= TARGET_DELIVERY_RATIO
    lines.append(f"deliveries / provider calls   {ratio:.2f} "
                 f"(target <= {TARGET_DELIVERY_RATIO:g}): " + ("met" if delivery_ok else "NOT met"))

    # CPU over the observation and its second half; RSS from before the batch to the end.
    mid = start + span / 2
    p_start, p_mid = nearest(samples.processes, start), nearest(samples.processes, mid)
    p_end, p_base = nearest(samples.processes, end), nearest(samples.processes, marks["batch"])
    t_start = min(samples.processes, key=lambda item: abs(item[0] - start))[0]
    t_mid = min(samples.processes, key=lambda item: abs(item[0] - mid))[0]
    t_end = min(samples.processes, key=lambda item: abs(item[0] - end))[0]
    cpu_ok = memory_ok = True
    for pid, (name, cpu, rss) in sorted(p_end.items(), key=lambda item: item[1][0]):
        whole = (cpu - p_start.get(pid, (name, cpu, rss))[1]) / max(t_end - t_start, 1e-9) * 100
        steady = (cpu - p_mid.get(pid, (name, cpu, rss))[1]) / max(t_end - t_mid, 1e-9) * 100
        base_rss = p_base.get(pid, (name, cpu, rss))[2]
        growth = (rss - base_rss) / 2**20 / max(args.requests / 1000, 1e-9)
        if name.startswith("generator"):
            cpu_ok = cpu_ok and steady < TARGET_CPU_SHARE
        if not name.startswith(("nats", "launcher", "provider-sim")):
            memory_ok = memory_ok and growth < TARGET_MB_PER_1000
        lines.append(f"  {name:<26} cpu {whole:5.1f}% of a core (steady {steady:5.1f}%), "
                     f"rss {rss / 2**20:6.1f} MB, {growth:+.2f} MB per 1,000 pending jobs")
    lines.append(f"generator CPU steady          target < {TARGET_CPU_SHARE:g}% of a core: "
                 + ("met" if cpu_ok else "NOT met"))
    lines.append(f"memory per 1,000 pending      target < {TARGET_MB_PER_1000:g} MB per process "
                 "of ours (NATS and the simulator keep the jobs: not counted): "
                 + ("met" if memory_ok else "NOT met"))

    waits = [samples.started[v] - at for v, at in samples.requested.items()
             if v in samples.started]
    waiting = [end - at for v, at in samples.requested.items() if v not in samples.started]
    lines.append(f"second organization           {singles} single requests, {len(waits)} started"
                 + (f", waits {', '.join(f'{w:.1f}' for w in sorted(waits))} s, largest "
                    f"{max(waits):.1f} s" if waits else "")
                 + (f"; {len(waiting)} not started after up to {max(waiting):.0f} s"
                    if waiting else ""))
    print("\n".join(lines), flush=True)
    return worst <= args.rpm and delivery_ok and cpu_ok and memory_ok and not waiting


async def measure(args: argparse.Namespace, system: System) -> bool:
    samples = Samples()
    marks: dict[str, float] = {}
    second = await asyncio.to_thread(second_org_key, system.data_dir)
    nc = await nats.connect(system.urls["nats"])
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    singles = 0
    try:
        follow = await follow_second_org(nc, samples)
        sim = system.simulator.removesuffix("/v1")
        tasks = [asyncio.create_task(sample_calls(sim, samples, stop)),
                 asyncio.create_task(sample_system(nc.jetstream(), system.process.pid, samples,
                                                   stop))]
        single_client = httpx.AsyncClient(base_url=system.gateway, timeout=60,
                                          headers={"Authorization": f"Bearer {second}"})
        pending: set[asyncio.Task[bool]] = set()

        def one_single() -> None:
            nonlocal singles
            singles += 1
            task = asyncio.create_task(submit(single_client, "single", singles))
            pending.add(task)

        await asyncio.sleep(12)  # a baseline sample of every process before the batch
        marks["batch"] = time.time()
        admitted = await asyncio.wait_for(
            submit_batch(system.gateway, system.api_key, args.requests, args.concurrency,
                         one_single), timeout=args.max_submit_s)
        marks["submitted"] = marks["observe"] = time.time()
        deadline = marks["observe"] + args.observe_s
        while time.time() < deadline:
            one_single()
            await asyncio.sleep(min(args.single_every_s, max(0.0, deadline - time.time())))
        marks["end"] = time.time()
        await asyncio.gather(*pending)
        await single_client.aclose()
        await asyncio.sleep(6)  # the last call log page and started events
        await follow.unsubscribe()
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await nc.close()
    return report(args, samples, marks, admitted, singles)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rpm", type=int, default=600, help="the provider's limit and budget")
    parser.add_argument("--random-429", type=float, default=0.0,
                        help="share of calls the simulator refuses at random")
    parser.add_argument("--generation-s", type=float, default=900.0)
    parser.add_argument("--observe-s", type=float, default=300.0)
    parser.add_argument("--single-every-s", type=float, default=30.0,
                        help="the second organization's single requests while observing")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-submit-s", type=float, default=900.0)
    parser.add_argument("--keep", action="store_true", help="keep the data dir (logs)")
    parser.add_argument("--env", action="append", default=[],
                        help="extra KEY=VALUE for every process (tuning experiments)")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="rv-backlog-"))
    env = {
        "REELVAULT_NAMESPACE": NAMESPACE,
        "PROVIDER_SIM_GENERATION_S": str(args.generation_s),
        "PROVIDER_SIM_REUSE_RENDERS": "true",
        "PROVIDER_SIM_FAULTS__RATE_LIMIT_RPM": str(args.rpm),
        "PROVIDER_SIM_FAULTS__RATE_LIMIT_RATE": str(args.random_429),
        "REELVAULT_PROVIDER_RPM": str(args.rpm),
        "PROVIDER_SIM_LOG_LEVEL": "WARNING",
        "REELVAULT_LOG_LEVEL": "WARNING",
    }
    env.update(dict(item.split("=", 1) for item in args.env))
    met = False
    try:
        with reelvault_up(data_dir, env, ready_timeout_s=180, unset=EXTERNAL) as system:
            met = asyncio.run(measure(args, system))
        print("targets                       " + ("all met" if met else "NOT all met"))
    finally:
        if args.keep:
            print(f"data and logs kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
