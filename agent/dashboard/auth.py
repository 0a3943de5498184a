"""Who may see the dashboard: loopback callers, or anyone presenting the configured token.

- With a token (required when bound beyond loopback): every request must carry it, as ``Authorization: Bearer``
  or as the ``bt_token`` cookie. ``?token=`` is taken only on a GET of the page ``/``, which answers with the
  cookie (``HttpOnly; SameSite=Strict``, ``Secure`` over HTTPS and on loopback) and a redirect to a URL without
  it; on any other path a query token is refused, so it cannot linger in logs, history or Referer of API calls.
  Comparison is constant-time (``hmac.compare_digest``) on the UTF-8 bytes.
- Without a token (loopback only): the ``Host`` header must name a loopback host, so a web page elsewhere cannot
  reach the dashboard through DNS rebinding.
Every answer carries headers that keep the page self-contained (CSP: nothing from other origins).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web
from aiohttp.typedefs import Middleware

from agent.config import is_loopback_host

COOKIE = "bt_token"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
R = TypeVar("R", bound=web.StreamResponse)


def token_matches(given: str | None, token: str) -> bool:
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode("utf-8"))


def _host_name(request: web.Request) -> str:
    host = request.headers.get("Host", "")
    if host.startswith("["):  # [::1]:8080
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def make_guard(token: str) -> Middleware:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token:
            auth = request.headers.get("Authorization", "")
            bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
            query = request.query.get("token")
            if token_matches(query, token) and request.method == "GET" and request.path == "/":
                redirect = web.HTTPSeeOther("/")  # drop the token from the address bar and history
                # Secure over HTTPS; on plain HTTP only for loopback names (browsers keep Secure cookies there).
                # Plain HTTP beyond loopback exists only with allow_plain_http, where a Secure cookie would be lost.
                secure = request.secure or is_loopback_host(_host_name(request))
                redirect.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/", secure=secure)
                _secure(redirect)
                raise redirect
            if not (token_matches(bearer, token) or token_matches(request.cookies.get(COOKIE), token)):
                raise _secure(
                    web.HTTPUnauthorized(
                        text="battery-twin dashboard: a valid token is required (open /?token=... once, or send "
                        "'Authorization: Bearer <token>')\n",
                        headers={"WWW-Authenticate": 'Bearer realm="dashboard"'},
                    )
                )
        elif not is_loopback_host(_host_name(request)):
            raise _secure(
                web.HTTPForbidden(text="battery-twin dashboard: only loopback host names are served without a token\n")
            )
        resp = await handler(request)
        return _secure(resp)

    return guard


def _secure(resp: R) -> R:
    if not resp.prepared:
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        resp.headers.setdefault("X-Frame-Options", "DENY")
    return resp
