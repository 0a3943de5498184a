"""The dashboard's HTTP side (aiohttp, in the agent's own event loop) and its ``Service`` for the pipeline.

Routes: ``/`` the page, ``/static/...`` its assets (all in this package: no CDN), ``/api/stream`` the live
server-sent-event stream (``?cells=c01,c02``), ``/api/health`` one health snapshot as JSON.

Failure policy: a configuration that would expose the dashboard without a token is refused (config error and
``StartupError``: the agent does not start). An environment problem of the dashboard itself (aiohttp missing,
port taken) is logged and recorded as an event, and the agent goes on collecting: the view must never cost data.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from agent.config import DashboardConfig, is_loopback_host
from drivers.base import Event

log = logging.getLogger("agent.dashboard")

STATIC = Path(__file__).resolve().parent / "static"
HEARTBEAT_S = 15.0


class DashboardService:
    """``Service`` (agent.pipeline): serves the dashboard for the agent's lifetime."""

    def __init__(self, cfg: DashboardConfig):
        self.cfg = cfg
        self.url: str | None = None
        self.hub: Any = None
        self._runner: Any = None
        self._reader: Any = None
        self._task: asyncio.Task | None = None

    async def start(self, agent: Any) -> None:
        from agent.pipeline import StartupError

        token = self.cfg.token.get_secret_value()
        if not token and not is_loopback_host(self.cfg.host):
            raise StartupError(
                f"dashboard.host = {self.cfg.host!r} is beyond loopback and dashboard.token is not "
                "set: refusing to start the dashboard"
            )
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
            await web.TCPSite(self._runner, self.cfg.host, self.cfg.port).start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            await asyncio.to_thread(self._reader.close)
            self._unavailable(agent, f"cannot listen on {self.cfg.host}:{self.cfg.port}: {exc.strerror or exc}")
            return
        host, port = self._runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}/"
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

    async def health(request: web.Request) -> web.Response:
        store_part = await hub.reader.call(hub.reader.store_health)
        import orjson

        return web.Response(
            body=orjson.dumps(hub.health(store_part)),
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    async def stream(request: web.Request) -> web.StreamResponse:
        if len(hub.subs) >= cfg.max_clients:
            raise web.HTTPServiceUnavailable(
                text=f"at most {cfg.max_clients} live views at once\n", headers={"Retry-After": "10"}
            )
        wanted = [c for c in request.query.get("cells", "").split(",") if c][:64]
        last = request.headers.get("Last-Event-ID") or request.query.get("after")
        last_id = int(last) if last and last.isdigit() else None
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

    app = web.Application(middlewares=[make_guard(token)], client_max_size=4096)
    app.router.add_get("/", page)
    app.router.add_get("/api/stream", stream)
    app.router.add_get("/api/health", health)
    app.router.add_static("/static/", STATIC, follow_symlinks=False, append_version=False)
    return app
