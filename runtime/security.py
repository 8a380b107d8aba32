"""API keys (stored as sha256 hashes), per-key token-bucket rate limits, and the pure-ASGI middlewares.

Keys file: one key per line, ``<name> <role> sha256:<hex>``; ``#`` starts a comment. Roles: ``user`` (inference,
metadata) and ``admin`` (also the repository API). A key is 32 random bytes, so a plain sha256 resists guessing and
stays cheap to check on every request; the key itself is printed once by ``edgectl serve keys add`` and never stored.

Middlewares (each small, each an ASGI app wrapping the next; :func:`build_middleware_stack` assembles them):
``ErrorBoundary`` -> ``Authenticate`` -> ``RateLimit`` -> ``BodyLimit`` -> the application.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from edgectl.errors import ConfigError, InputFileError, RequestError
from edgectl.fsutil import atomic_write_text
from edgectl.log import get_logger

from .metrics import Counter

log = get_logger("edgectl.runtime.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

KEY_PREFIX = "edk_"
#: Paths anyone may call: liveness / readiness probes carry no secrets.
PUBLIC_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})
ADMIN_PREFIX = "/v2/repository"


class Role(StrEnum):
    USER = "user"
    ADMIN = "admin"


@dataclass(frozen=True)
class ApiKey:
    name: str
    role: Role
    digest: str


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyRing:
    """The keys of one keys file, looked up by hash."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self._by_digest = {k.digest: k for k in keys}
        self.keys = keys

    def __len__(self) -> int:
        return len(self.keys)

    def lookup(self, presented: str) -> ApiKey | None:
        return self._by_digest.get(hash_key(presented))

    @classmethod
    def load(cls, path: Path) -> KeyRing:
        """Parse a keys file. Raises :class:`InputFileError` if missing, :class:`ConfigError` if malformed."""
        path = Path(path)
        if not path.is_file():
            raise InputFileError(
                f"API keys file {path} does not exist.", hint="Create a key with: edgectl serve keys add " + str(path)
            )
        keys: list[ApiKey] = []
        for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 3 or not parts[2].startswith("sha256:") or len(parts[2]) != 71:
                raise ConfigError(f"{path}:{lineno}: expected '<name> <role> sha256:<64 hex digits>'.")
            try:
                role = Role(parts[1])
            except ValueError:
                raise ConfigError(f"{path}:{lineno}: role must be 'user' or 'admin', got {parts[1]!r}.") from None
            keys.append(ApiKey(parts[0], role, parts[2]))
        return cls(keys)


def add_key(path: Path, name: str, role: Role) -> str:
    """Create a key, append its hash to ``path`` (atomically, mode 0600) and return the key (shown once)."""
    path = Path(path)
    if not name or any(c.isspace() or c == "#" for c in name):
        raise ConfigError(f"Key name {name!r} must be non-empty, without spaces or '#'.")
    existing = path.read_text(encoding="utf-8") if path.is_file() else ""
    if path.is_file() and any(k.name == name for k in KeyRing.load(path).keys):
        raise ConfigError(f"{path} already has a key named {name!r}; pick another name.")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    if existing and not existing.endswith("\n"):
        existing += "\n"
    atomic_write_text(path, existing + f"{name} {role.value} {hash_key(key)}\n", mode=0o600)
    return key


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; :meth:`take` returns 0 or the seconds until a token is due."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, time.monotonic()

    def take(self, now: float) -> float:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


async def send_json(send: Send, status: int, doc: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    body = json.dumps(doc).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class ErrorBoundary:
    """Turns any exception that escapes the app into a logged 500, so no request can take the daemon down."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if started:  # the app answered (and logged) already; its error handler re-raises for servers to see
                return
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            await send_json(send, 500, {"error": "Internal error; the daemon log has the details."})


class Authenticate:
    """Requires a known key (``Authorization: Bearer <key>`` or ``X-API-Key``) when a key ring is configured;
    the repository API needs an admin key. Stores the key in ``scope["state"]["api_key"]``."""

    def __init__(self, app: ASGIApp, keys: KeyRing | None, refused: Counter) -> None:
        self.app, self.keys, self.refused = app, keys, refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.keys is None or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        presented = _header(scope, b"x-api-key")
        auth = _header(scope, b"authorization")
        if presented is None and auth is not None and auth.lower().startswith("bearer "):
            presented = auth[7:].strip()
        key = self.keys.lookup(presented) if presented else None
        if key is None:
            self.refused.inc("unauthorized")
            what = "is missing" if not presented else "is not valid"
            await send_json(
                send,
                401,
                {"error": f"The API key {what}; send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'."},
                {"www-authenticate": "Bearer"},
            )
            return
        if scope["path"].startswith(ADMIN_PREFIX) and key.role is not Role.ADMIN:
            self.refused.inc("forbidden")
            await send_json(
                send, 403, {"error": f"Key '{key.name}' is not an admin key; the repository API needs one."}
            )
            return
        scope.setdefault("state", {})["api_key"] = key
        await self.app(scope, receive, send)


class RateLimit:
    """A token bucket per API key (or per client address without keys); over the limit answers 429 at once."""

    def __init__(self, app: ASGIApp, *, rate: float, burst: float, refused: Counter, max_clients: int = 4096) -> None:
        self.app, self.rate, self.burst, self.refused = app, rate, burst, refused
        self.max_clients = max_clients
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.rate <= 0 or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        key = scope.get("state", {}).get("api_key")
        ident = f"key:{key.name}" if key is not None else f"ip:{(scope.get('client') or ('?', 0))[0]}"
        with self._lock:
            bucket = self._buckets.get(ident)
            if bucket is None:
                if len(self._buckets) >= self.max_clients:  # bounded memory: forget the oldest client
                    self._buckets.pop(next(iter(self._buckets)))
                bucket = self._buckets[ident] = TokenBucket(self.rate, self.burst)
            wait = bucket.take(time.monotonic())
        if wait > 0:
            self.refused.inc("rate_limited")
            await send_json(
                send,
                429,
                {"error": f"Rate limit of {self.rate:g} requests/s (burst {self.burst:g}) exceeded; slow down."},
                {"retry-after": str(max(1, math.ceil(wait)))},
            )
            return
        await self.app(scope, receive, send)


class BodyLimit:
    """Refuses bodies over ``max_bytes`` with 413: at once from ``Content-Length``, or while streaming."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, refused: Counter) -> None:
        self.app, self.max_bytes, self.refused = app, max_bytes, refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            self.refused.inc("too_large")
            await send_json(send, 413, {"error": self._message(declared)})
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # A RequestError, so the app's own error handler answers 413 from inside the route.
                    raise RequestError(self._message(f"more than {self.max_bytes}"), status=413)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except RequestError as exc:  # raised while streaming, outside the app's error handling
            self.refused.inc("too_large")
            if not started:
                await send_json(send, exc.status, {"error": str(exc)})

    def _message(self, declared: str) -> str:
        return f"The request body is {declared} bytes; this server accepts at most {self.max_bytes} bytes."


def build_middleware_stack(
    app: ASGIApp,
    *,
    keys: KeyRing | None,
    rate: float,
    burst: float,
    max_body_bytes: int,
    refused: Counter,
) -> ASGIApp:
    """The request pipeline, outermost first: errors -> authentication -> rate limit -> body limit -> app."""
    inner: ASGIApp = BodyLimit(app, max_bytes=max_body_bytes, refused=refused)
    inner = RateLimit(inner, rate=rate, burst=burst, refused=refused)
    inner = Authenticate(inner, keys, refused)
    return ErrorBoundary(inner)


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")


def key_file_mode_ok(path: Path) -> bool:
    """Whether the keys file is private to its owner (other users could copy the hashes otherwise)."""
    return (os.stat(path).st_mode & 0o077) == 0
