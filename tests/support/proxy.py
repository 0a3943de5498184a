"""A TCP proxy on loopback that can misbehave like a real network path.

``blackhole()``: stop forwarding in both directions but keep the sockets open (a dead NAT entry, a pulled cable
upstream): only keep-alive can notice. ``set_delay_s`` / ``set_rate_bps``: latency and a bandwidth cap. ``heal()``.
It runs its own asyncio loop in a thread so tests can drive it synchronously.
"""

from __future__ import annotations

import asyncio
import threading
import time

from tests.support.ports import bound_port


class Proxy:
    def __init__(self, target_port: int, listen_port: int | None = None):
        self.target_port = target_port
        self.port = listen_port or 0  # 0: bind any free port; start() reports the one it got
        self.blackholed = False
        self.delay_s = 0.0
        self.rate_bps = 0  # 0 = unlimited
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="proxy")

    def start(self) -> Proxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = bound_port(self._server)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_w))
        await asyncio.gather(self._pipe(reader, up_w), self._pipe(up_r, writer), return_exceptions=True)
        for w in (writer, up_w):
            self._writers.discard(w)
            w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await reader.read(16384)
            if not data:
                break
            while self.blackholed:  # hold the bytes: nothing moves, nothing closes
                await asyncio.sleep(0.05)
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if self.rate_bps:
                await asyncio.sleep(len(data) / self.rate_bps)
            writer.write(data)
            await writer.drain()
        writer.close()

    def blackhole(self) -> None:
        self.blackholed = True

    def heal(self) -> None:
        self.blackholed = False
        self.delay_s = 0.0
        self.rate_bps = 0

    def set_delay_s(self, s: float) -> None:
        self.delay_s = s

    def set_rate_bps(self, bps: int) -> None:
        self.rate_bps = bps

    def stop(self) -> None:
        async def _stop() -> None:
            if self._server:
                self._server.close()
            for w in list(self._writers):
                w.close()

        try:
            asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(5)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            time.sleep(0.05)
