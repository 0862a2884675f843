"""Client CPU per request of HTTP connection pools, as ratios to httpx's stock pool.

    .venv/bin/python bench/http_pool.py [--rounds 5] [--concurrency 8 32 64] [--waves 10]
                                        [--loop uvloop|asyncio] [--lean-rev REV]

A plain asyncio HTTP/1.1 keep-alive server runs in a child process on 127.0.0.1 (its CPU is not
counted). It answers requests in waves: once c of them are waiting, so c requests are in flight
at once, each on its own keep-alive connection, however fast or slow the client is (a
provider's latency, without sleeping through it). For each c, every variant opens its c
connections with one wave, then sends ``--waves`` more; the client's process CPU time per
request is measured. Variants run interleaved, in a shuffled order each round, so the machine's
load hits them alike; the median over rounds of each variant's ratio to ``stock`` of the same
round is printed (lower is cheaper), with the connections opened while measuring (anything
above 0 is churn) and replies sent late (a wave that did not fill within WAVE_WAIT_S: the
client could not keep c requests in flight).

- ``stock``: ``httpx.AsyncHTTPTransport`` with ``max_connections = max_keepalive_connections =
  c`` (the baseline);
- ``stock-default``: httpx's default limits (100 connections, 20 kept alive);
- ``httpx2``: the ``httpx2`` fork (same API, its pool rewritten), sized like ``stock``;
- ``lean`` (with ``--lean-rev``): ``lean_transport()`` from the project's ``http.py`` at that git
  revision (the pool we had before httpx2, e.g. ``--lean-rev 840ebf9``), sized like ``stock``.

Bounded: a wave waits at most WAVE_WAIT_S; the defaults take 1-2 minutes on 2 busy cores. The
server is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import random
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCIES = (8, 32, 64)
# A wave that has not filled by then is answered anyway (a client that cannot get n requests
# in flight, e.g. a pool limit below n): those replies are counted as late.
WAVE_WAIT_S = 1.0
BODY = b'{"id": "video_123", "object": "video", "status": "in_progress", "progress": 42}'


# --- server (child process) ------------------------------------------------------------------
async def _serve() -> None:
    """``GET /wave/<n>/...`` is answered once n of them are waiting (or after WAVE_WAIT_S): the
    client's n requests are all in flight at once, each on its own connection, however fast or
    slow the client is. ``GET /stats``: connections accepted so far."""
    accepted = 0
    waves: dict[int, list[asyncio.Future[None]]] = {}

    async def wave(size: int) -> None:
        waiting = waves.setdefault(size, [])
        arrived = asyncio.get_running_loop().create_future()
        waiting.append(arrived)
        if len(waiting) >= size:
            del waves[size]
            for future in waiting:
                if not future.done():
                    future.set_result(None)
        try:
            await asyncio.wait_for(asyncio.shield(arrived), WAVE_WAIT_S)
        except TimeoutError:
            if arrived in waves.get(size, []):
                waves[size].remove(arrived)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1]
                if path == b"/stats":
                    body = str(accepted).encode()
                else:
                    await wave(int(path.split(b"/")[2]))
                    body = BODY
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)  # the port, for the parent
    async with server:
        await server.serve_forever()


# --- client variants -------------------------------------------------------------------------
Client = Any  # an httpx.AsyncClient or an httpx2.AsyncClient
Factory = Callable[[int], Client]


def _stock(concurrency: int) -> Client:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(limits=limits))


def _stock_default(concurrency: int) -> Client:
    import httpx

    return httpx.AsyncClient()


def _httpx2(concurrency: int) -> Client:
    import httpx2

    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx2.AsyncClient(transport=httpx2.AsyncHTTPTransport(limits=limits))


def _lean_factory(rev: str) -> Factory:
    """``lean_transport`` from ``http.py`` as it was at ``rev`` (it is no longer in the tree)."""
    import httpx

    source = subprocess.run(
        ["git", "show", f"{rev}:libs/common/src/reelvault_common/http.py"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    module = types.ModuleType("lean_http")
    exec(compile(source, f"http.py@{rev}", "exec"), module.__dict__)

    def make(concurrency: int) -> Client:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        return httpx.AsyncClient(transport=module.lean_transport(limits=limits))

    return make


# --- measurement -----------------------------------------------------------------------------
async def _opened(client: Client, url: str) -> int:
    return int((await client.get(f"{url}/stats")).text)


async def _measure(
    factory: Factory, url: str, concurrency: int, waves: int
) -> tuple[float, int, int]:
    """(client CPU seconds per request, requests answered late, connections opened while
    measuring). Late answers (a wave that did not fill) mean fewer requests were in flight."""
    async with factory(concurrency) as client:
        path = f"{url}/wave/{concurrency}/v1/videos/video_123"
        late = 0

        async def worker(requests: int) -> None:
            nonlocal late
            for _ in range(requests):
                started = time.monotonic()
                reply = await client.get(path)
                assert reply.status_code == 200
                late += time.monotonic() - started >= WAVE_WAIT_S

        # Warm-up: one wave opens the connections.
        await asyncio.gather(*(worker(1) for _ in range(concurrency)))
        before = await _opened(client, url)
        late = 0
        cpu = time.process_time()
        await asyncio.gather(*(worker(waves) for _ in range(concurrency)))
        cpu = time.process_time() - cpu
        opened = await _opened(client, url) - before
    return cpu / (waves * concurrency), late, opened


async def _run(args: argparse.Namespace, url: str) -> None:
    variants: dict[str, Factory] = {"stock": _stock, "stock-default": _stock_default}
    if importlib.util.find_spec("httpx2") is not None:
        variants["httpx2"] = _httpx2
    if args.lean_rev:
        variants["lean"] = _lean_factory(args.lean_rev)
    cpu: dict[tuple[str, int], list[float]] = {}
    late: dict[tuple[str, int], int] = {}
    opened: dict[tuple[str, int], int] = {}
    for _ in range(args.rounds):
        for concurrency in args.concurrency:
            order = list(variants)
            random.shuffle(order)
            for name in order:
                key = (name, concurrency)
                per_request, slow, new = await _measure(
                    variants[name], url, concurrency, args.waves
                )
                cpu.setdefault(key, []).append(per_request)
                late[key] = late.get(key, 0) + slow
                opened[key] = opened.get(key, 0) + new

    print(f"loop {args.loop}, {args.rounds} rounds x {args.waves} waves of c requests. Client CPU "
          "per request: median ratio to 'stock' [connections opened while measuring, all "
          "rounds; late replies if any]")
    absolute = [f"c={c}: {statistics.median(cpu[('stock', c)]) * 1e6:.0f} us"
                for c in args.concurrency]
    print(f"{'(stock, abs.)':<14}" + "".join(f"{cell:>22}" for cell in absolute))
    for name in variants:
        cells = []
        for c in args.concurrency:
            key = (name, c)
            ratios = [v / b for v, b in zip(cpu[key], cpu[("stock", c)], strict=True)]
            extra = f"; {late[key]} late" if late[key] else ""
            cells.append(f"{statistics.median(ratios):.2f} [{opened[key]}{extra}]")
        print(f"{name:<14}" + "".join(f"{cell:>22}" for cell in cells))


def _start_server(args: argparse.Namespace) -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen([sys.executable, __file__, "--serve", "--loop", args.loop],
                              stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    port = server.stdout.readline().strip()  # "" if it died
    if not port.isdigit():
        server.kill()
        raise SystemExit("the bench server did not start")
    return server, f"http://127.0.0.1:{port}"


def _loop_runner(loop: str) -> Callable[[Callable[[], Coroutine[Any, Any, None]]], None]:
    if loop == "uvloop":
        from reelvault_common.runtime.eventloop import run  # the services' loop

        return run
    return lambda main: asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCIES))
    parser.add_argument("--waves", type=int, default=10, help="requests per connection")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--lean-rev", help="git revision whose http.py has lean_transport")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    run = _loop_runner(args.loop)
    if args.serve:
        run(_serve)  # until SIGTERM's default action
        return
    server, url = _start_server(args)
    try:
        run(lambda: _run(args, url))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
