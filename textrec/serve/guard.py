"""What every request passes before the application sees it: one plain ASGI middleware.

In order: the ``Host`` header against the allowed hosts (400), the client's rate (429 with
``Retry-After``), the body size (413: a declared ``Content-Length`` over the limit is refused
before one byte of the body is read, and the connection is closed; a body without a length is
counted while it streams and refused at the limit). ``HEAD`` is answered as the ``GET`` it
mirrors, without the body. Every response carries the security headers (CSP, ``nosniff``, frame
and referrer policy). It is written against raw ASGI rather than as a Starlette
``BaseHTTPMiddleware``, which costs a task and a stream per request.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.exceptions import HTTPException

#: default body limit (bytes)
MAX_BODY_BYTES = 1_000_000

SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; object-src 'none'; "
                                 b"base-uri 'none'; frame-ancestors 'none'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


@dataclass
class GuardSettings:
    """Limits of the guard; ``allowed_hosts=None`` accepts any ``Host``, ``rate=None`` no rate limit."""

    max_body_bytes: int = MAX_BODY_BYTES
    allowed_hosts: Sequence[str] | None = None
    rate: float | None = None  # requests per second per client address
    burst: int = 20

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be >= 1, got {self.max_body_bytes}")
        if self.rate is not None and self.rate <= 0:
            raise ValueError(f"rate must be > 0 requests per second, got {self.rate}")
        if self.burst < 1:
            raise ValueError(f"burst must be >= 1, got {self.burst}")


class RateLimiter:
    """A token bucket per client address: ``burst`` requests at once, ``rate`` per second after."""

    MAX_CLIENTS = 10_000

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = float(rate), float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, client: str, now: float | None = None) -> float:
        """0 when the request may pass, else the seconds until it would."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate
        if len(self._buckets) >= self.MAX_CLIENTS and client not in self._buckets:
            # forget clients whose buckets have refilled: they are indistinguishable from new ones
            self._buckets = {c: (t, s) for c, (t, s) in self._buckets.items()
                             if t + (now - s) * self.rate < self.burst}
        self._buckets[client] = (tokens - 1.0, now)
        return 0.0


def _host_allowed(host: str, allowed: Sequence[str]) -> bool:
    for pattern in allowed:
        if pattern == "*" or host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:])):
            return True
    return False


def _strip_port(host: str) -> str:
    if host.startswith("["):  # [::1]:8000
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:  # name:port (a bare IPv6 address has several colons)
        return host.split(":", 1)[0]
    return host


class Guard:
    """ASGI middleware: allowed hosts, rate limit, body limit, HEAD, security headers."""

    def __init__(self, app, settings: GuardSettings | None = None) -> None:
        self.app = app
        self.settings = settings or GuardSettings()
        s = self.settings
        self.allowed = [h.lower() for h in s.allowed_hosts] if s.allowed_hosts else None
        self.limiter = RateLimiter(s.rate, s.burst) if s.rate else None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        s = self.settings
        host = b""
        length = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"content-length":
                length = value
        if self.allowed is not None:
            h = _strip_port(host.decode("latin-1").strip().lower())
            if not _host_allowed(h, self.allowed):
                await _reply(send, 400, f"host '{h[:100]}' is not served here (allowed: {self.allowed})")
                return
        if self.limiter is not None:
            client = (scope.get("client") or ("unknown", 0))[0]
            wait = self.limiter.allow(client)
            if wait:
                await _reply(send, 429, f"too many requests from {client}: at most {s.rate:g} per second "
                                        f"(bursts of {s.burst}); retry after {wait:.1f} s",
                             [(b"retry-after", str(max(1, round(wait + 0.5))).encode())])
                return
        if length is not None:
            if not length.isdigit():
                await _reply(send, 400, "Content-Length must be a number of bytes", close=True)
                return
            if int(length) > s.max_body_bytes:
                await _reply(send, 413, f"request body of {int(length)} bytes is over the limit of "
                                        f"{s.max_body_bytes} bytes", close=True)
                return
        elif scope["method"] in ("POST", "PUT", "PATCH"):
            receive = _counting(receive, s.max_body_bytes)
        head = scope["method"] == "HEAD"
        if head:
            scope = dict(scope, method="GET")

        async def send_guarded(message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message, headers=[*message.get("headers", ()), *SECURITY_HEADERS])
            elif head and message["type"] == "http.response.body":
                message = dict(message, body=b"")
            await send(message)

        await self.app(scope, receive, send_guarded)


def _counting(receive, limit: int):
    seen = 0

    async def counted():
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, f"request body is over the limit of {limit} bytes")
        return message

    return counted


async def _reply(send, status: int, detail: str, extra: list | None = None, close: bool = False) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               *SECURITY_HEADERS, *(extra or [])]
    if close:  # the unread body must not be taken for the next request on this connection
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
