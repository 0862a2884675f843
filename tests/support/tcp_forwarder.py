"""A loopback TCP port that is closed until ``open()``, then forwards every connection to a
target (a loopback TCP address or a unix socket): a server that "comes up later" -- e.g. a
PostgreSQL a service was started before -- without starting another server."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from reelvault.embedded import free_port


@dataclass
class TcpForwarder:
    target_host: str | None = None
    target_port: int | None = None
    target_unix: Path | None = None
    port: int = field(default_factory=free_port)
    _server: asyncio.Server | None = None
    _pipes: set[asyncio.Task[None]] = field(default_factory=set)

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._pipes):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.target_unix is not None:
                up_reader, up_writer = await asyncio.open_unix_connection(str(self.target_unix))
            else:
                assert self.target_host is not None and self.target_port is not None
                up_reader, up_writer = await asyncio.open_connection(
                    self.target_host, self.target_port)
        except OSError:
            writer.close()
            return
        pipes = {asyncio.create_task(self._pipe(reader, up_writer)),
                 asyncio.create_task(self._pipe(up_reader, writer))}
        self._pipes |= pipes
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pipes:
                task.cancel()
            self._pipes -= pipes
            for side in (writer, up_writer):
                side.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
