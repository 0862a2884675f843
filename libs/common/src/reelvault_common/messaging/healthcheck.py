"""Container health checks: ``python -m reelvault_common.messaging.healthcheck nats|catalog``.

``nats``: the broker answers and the lifecycle stream exists. ``catalog``: a catalog replica
answers ping (which checks its database). Exit 0 when healthy, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import sys

from reelvault_common.contracts.catalog import RpcReply
from reelvault_common.messaging.nats_client import connect_nats
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime.nats_servers import redact_url
from reelvault_common.runtime.settings import ServiceSettings


async def check(target: str, settings: ServiceSettings) -> str | None:
    """None when healthy, else the reason."""
    topology = Topology.from_settings(settings)
    try:
        # One pass over NATS_URL's servers (nats-py alone would retry forever when none is up).
        nc = await connect_nats(settings.nats_servers, name="reelvault-healthcheck",
                                connect_timeout=2, max_reconnect_attempts=1)
    except Exception as exc:
        return f"nats unreachable at {settings.nats_url_for_logs}: {redact_url(str(exc))}"
    try:
        if target == "nats":
            await nc.jetstream().stream_info(topology.stream)
            return None
        if target == "catalog":
            reply = RpcReply.model_validate_json(
                (await nc.request(topology.rpc_ping, b"{}", timeout=3)).data
            )
            return None if reply.ok else f"catalog unhealthy: {reply.error}"
        return f"unknown check {target!r} (use nats or catalog)"
    except Exception as exc:
        return f"{target} check failed: {exc!r}"
    finally:
        await nc.close()


def main() -> None:
    target = sys.argv[1] if len(sys.argv) > 1 else "nats"
    problem = asyncio.run(check(target, ServiceSettings()))
    if problem:
        print(problem, file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
