"""The dashboard's HTTP side (aiohttp, in the agent's own event loop) and its ``Service`` for the pipeline.

Routes: ``/`` the page, ``/static/...`` its assets (all in this package: no CDN), ``/api/stream`` the live
server-sent-event stream (``?cells=c01,c02``), ``/api/health`` one health snapshot as JSON.

Failure policy: a configuration that would expose the dashboard without a token, or beyond loopback over plain
HTTP without ``allow_plain_http``, is refused (config error and ``StartupError``: the agent does not start). An
environment problem of the dashboard itself (aiohttp missing, port taken, TLS files unusable) is logged and recorded
as an event, and the agent goes on collecting without the dashboard (never falling back to plain HTTP): the view
must never cost data.

Bounds: at most ``max_clients`` live streams (admission counted before the first await, so a burst cannot slip
past), backfills thinned inside SQLite (reader.py), ``/api/health`` computed at most once a second however often
it is asked, a malformed resume id is a 400.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agent.config import DashboardConfig, is_loopback_host
from drivers.base import Event

log = logging.getLogger("agent.dashboard")

STATIC = Path(__file__).resolve().parent / "static"
HEARTBEAT_S = 15.0
HEALTH_CACHE_S = 1.0
SEQ_TEXT = re.compile(r"[0-9]{1,19}")  # ASCII digits only: str.isdigit() also takes '²' and friends


class DashboardService:
    """``Service`` (agent.pipeline): serves the dashboard for the agent's lifetime."""

    def __init__(self, cfg: DashboardConfig):
        self.cfg = cfg
        self.url: str | None = None
        self.hub: Any = None
        self._runner: Any = None
        self._reader: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, agent: Any) -> None:
        from agent.pipeline import StartupError

        token = self.cfg.token.get_secret_value()
        if not token and not is_loopback_host(self.cfg.host):
            raise StartupError(
                f"dashboard.host = {self.cfg.host!r} is beyond loopback and dashboard.token is not "
                "set: refusing to start the dashboard"
            )
        if self.cfg.tls_cert is None and not self.cfg.allow_plain_http and not is_loopback_host(self.cfg.host):
            raise StartupError(
                f"dashboard.host = {self.cfg.host!r} is beyond loopback without dashboard.tls_cert / tls_key "
                "(and allow_plain_http is not set): refusing to serve the token in clear"
            )
        ssl_ctx = None
        if self.cfg.tls_cert is not None and self.cfg.tls_key is not None:
            from agent.dashboard.tls import TlsSetupError, server_context

            try:
                ssl_ctx = server_context(self.cfg.tls_cert, self.cfg.tls_key)
            except TlsSetupError as exc:
                self._unavailable(agent, str(exc))
                return
        try:
            from aiohttp import web

            from agent.dashboard.hub import Hub
            from agent.dashboard.reader import StoreReader
        except ImportError as exc:
            self._unavailable(
                agent, f"the dashboard needs aiohttp ({exc}); install the extra: pip install 'battery-twin[dashboard]'"
            )
            return
        self._reader = StoreReader(agent.cfg.store.path)
        self.hub = Hub(agent, self._reader, self.cfg)
        app = make_app(self.hub, self.cfg, token)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.cfg.host, self.cfg.port, ssl_context=ssl_ctx).start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            await asyncio.to_thread(self._reader.close)
            self._unavailable(agent, f"cannot listen on {self.cfg.host}:{self.cfg.port}: {exc.strerror or exc}")
            return
        host, port = self._runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"{'https' if ssl_ctx else 'http'}://{shown}:{port}/"
        self._task = asyncio.create_task(self._run_hub(agent), name="dashboard")
        log.info("dashboard listening on %s (token %s)", self.url, "required" if token else "off: loopback only")

    def _unavailable(self, agent: Any, why: str) -> None:
        log.error("dashboard not started: %s", why)
        agent.emit(
            Event("dashboard.unavailable", f"dashboard not started: {why}"[:2000], level="warning", source="dashboard")
        )

    async def _run_hub(self, agent: Any) -> None:
        delay = 1.0
        while True:
            try:
                await self.hub.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("dashboard hub failed; restarting in %.0f s", delay)
                agent.emit(
                    Event(
                        "agent.task_fault",
                        f"dashboard hub failed: {exc!r}"[:500],
                        level="warning",
                        source="dashboard",
                        data={"task": "dashboard"},
                    )
                )
                self.hub.close()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)

    async def stop(self) -> None:
        if self.hub is not None:
            self.hub.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._reader is not None:
            await asyncio.to_thread(self._reader.close)


def make_app(hub: Any, cfg: DashboardConfig, token: str) -> Any:
    from aiohttp import web

    from agent.dashboard.auth import make_guard

    index = (STATIC / "index.html").read_bytes()

    async def page(request: web.Request) -> web.Response:
        return web.Response(
            body=index, content_type="text/html", charset="utf-8", headers={"Cache-Control": "no-store"}
        )

    async def health_body() -> bytes:
        import orjson

        store_part = await hub.reader.call(hub.reader.store_health)
        return orjson.dumps(hub.health(store_part))

    health_cache = Cached(health_body, HEALTH_CACHE_S)

    async def health(request: web.Request) -> web.Response:
        return web.Response(
            body=await health_cache.get(), content_type="application/json", headers={"Cache-Control": "no-store"}
        )

    async def stream(request: web.Request) -> web.StreamResponse:
        last_id = resume_id(request.headers.get("Last-Event-ID") or request.query.get("after"))
        if not hub.admit():
            raise web.HTTPServiceUnavailable(
                text=f"at most {cfg.max_clients} live views at once\n", headers={"Retry-After": "10"}
            )
        try:
            wanted = [c for c in request.query.get("cells", "").split(",") if c][:64]
            sub, init = await hub.subscribe(wanted, last_id)
            resp = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
            )
            try:
                await resp.prepare(request)
                await resp.write(b"retry: 2000\n\n" + init)
                while True:
                    try:  # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                        async with asyncio.timeout(HEARTBEAT_S):
                            msg = await sub.queue.get()
                    except TimeoutError:
                        msg = b": keep-alive\n\n"
                    if msg is None:
                        break
                    await resp.write(msg)
            except ConnectionError:
                pass  # the browser went away
            finally:
                hub.unsubscribe(sub)
            return resp
        finally:
            hub.release()

    app = web.Application(middlewares=[make_guard(token)], client_max_size=4096)
    app.router.add_get("/", page)
    app.router.add_get("/api/stream", stream)
    app.router.add_get("/api/health", health)
    app.router.add_static("/static/", STATIC, follow_symlinks=False, append_version=False)
    return app


def resume_id(text: str | None) -> int | None:
    """The seq a reconnecting browser resumes from (``Last-Event-ID`` or ``?after=``): ASCII digits below 2**63,
    else 400. A browser only ever echoes the ids this server sent; anything else is a broken or hostile client."""
    from aiohttp import web

    if not text:
        return None
    if not SEQ_TEXT.fullmatch(text) or int(text) >= 2**63:
        raise web.HTTPBadRequest(text="Last-Event-ID / after: expected a reading seq (0 to 2^63-1)\n")
    return int(text)


class Cached:
    """The value of an async function, recomputed at most once per ``ttl_s``; concurrent callers share one
    computation (so a burst of /api/health requests costs one store query)."""

    def __init__(self, fn: Callable[[], Awaitable[bytes]], ttl_s: float):
        self._fn = fn
        self._ttl_s = ttl_s
        self._at = float("-inf")
        self._value = b""
        self._lock = asyncio.Lock()
        self.computed = 0

    async def get(self) -> bytes:
        async with self._lock:
            if time.monotonic() - self._at >= self._ttl_s:
                self._value = await self._fn()
                self._at = time.monotonic()
                self.computed += 1
            return self._value
