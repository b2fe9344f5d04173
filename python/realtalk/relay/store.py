"""Where the relay keeps what must hold across a fleet of relays: concurrent sessions (in all,
and per subject) and the nonces of single-use tokens.

:class:`MemoryStore` (the default) holds them in the process: right for one relay.
:class:`RedisStore` holds them in Redis, shared by every relay process behind a load balancer.

Sessions are leases: a relay renews its sessions' leases while they run, so a relay that dies
without releasing them stops counting against the limits within ``lease_s``. When the store
cannot answer, admission fails closed (:class:`StoreUnavailable`: the relay refuses the new
session with 1013) and running sessions go on.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, Literal, Protocol, TypeVar

import anyio

from realtalk.errors import RealtalkError

__all__ = ["Admission", "MemoryStore", "RedisStore", "SessionStore", "StoreUnavailable"]

logger = logging.getLogger("realtalk.relay")

Admission = Literal["admitted", "relay_full", "subject_full"]
_T = TypeVar("_T")
_ADMISSIONS: tuple[Admission, ...] = ("admitted", "relay_full", "subject_full")


class StoreUnavailable(RealtalkError):
    """The session store did not answer: the relay admits nobody until it does."""


class SessionStore(Protocol):
    """What a relay asks of its store. ``subject`` is an opaque key (the relay hashes it)."""

    async def admit(self, session: str, subject: str, max_sessions: int | None,
                    max_per_subject: int | None) -> Admission:
        """Count ``session`` in, unless ``max_sessions`` (in all) or ``max_per_subject``
        are reached; atomically."""

    async def release(self, session: str, subject: str) -> None:
        """Count ``session`` out (the relay calls it once per admitted session)."""

    async def renew(self, sessions: Iterable[tuple[str, str]]) -> None:
        """Extend the leases of running (session, subject) pairs."""

    async def claim_nonce(self, nonce: str, expires_at: float) -> bool:
        """True the first time ``nonce`` is claimed before ``expires_at`` (epoch seconds)."""

    async def aclose(self) -> None:
        """Release the store's connections."""


class MemoryStore(SessionStore):
    """The in-process store: one relay's sessions and nonces."""

    lease_s: float | None = None  # sessions end with the process: no lease to renew

    def __init__(self) -> None:
        self._sessions: dict[str, str] = {}
        self._per_subject: dict[str, int] = {}
        self._nonces: dict[str, float] = {}
        self._expiries: list[tuple[float, str]] = []  # a heap: forgetting costs O(log n)

    async def admit(self, session: str, subject: str, max_sessions: int | None,
                    max_per_subject: int | None) -> Admission:
        if max_sessions is not None and len(self._sessions) >= max_sessions:
            return "relay_full"
        if max_per_subject is not None and self._per_subject.get(subject, 0) >= max_per_subject:
            return "subject_full"
        self._sessions[session] = subject
        self._per_subject[subject] = self._per_subject.get(subject, 0) + 1
        return "admitted"

    async def release(self, session: str, subject: str) -> None:
        if self._sessions.pop(session, None) is None:
            return
        left = self._per_subject[subject] - 1
        if left:
            self._per_subject[subject] = left
        else:
            del self._per_subject[subject]

    async def renew(self, sessions: Iterable[tuple[str, str]]) -> None:
        pass

    async def claim_nonce(self, nonce: str, expires_at: float) -> bool:
        now = time.time()
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            _, expired = heapq.heappop(expiries)
            if self._nonces.get(expired, now + 1) <= now:
                del self._nonces[expired]
        if nonce in self._nonces:
            return False
        self._nonces[nonce] = expires_at
        heapq.heappush(expiries, (expires_at, nonce))
        return True

    async def aclose(self) -> None:
        pass


# Keys share one hash tag, so the scripts also run on a Redis Cluster (one slot).
_PREFIX = "{realtalk-relay}:"

# KEYS: all sessions, the subject's sessions. ARGV: lease ms, session, max in all, max per
# subject (0: none). Leases are scored by the server's clock, so relays' clocks never matter.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ms = now + tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local max_all, max_subject = tonumber(ARGV[3]), tonumber(ARGV[4])
if max_all > 0 and redis.call('ZCARD', KEYS[1]) >= max_all then return 1 end
if max_subject > 0 and redis.call('ZCARD', KEYS[2]) >= max_subject then return 2 end
redis.call('ZADD', KEYS[1], until_ms, ARGV[2])
redis.call('ZADD', KEYS[2], until_ms, ARGV[2])
redis.call('PEXPIREAT', KEYS[1], until_ms)
redis.call('PEXPIREAT', KEYS[2], until_ms)
return 0
"""

# KEYS: all sessions, then each session's subject set. ARGV: lease ms, then the sessions.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ms = now + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', until_ms, ARGV[i])
  redis.call('ZADD', KEYS[i], 'XX', until_ms, ARGV[i])
  redis.call('PEXPIREAT', KEYS[i], until_ms)
end
redis.call('PEXPIREAT', KEYS[1], until_ms)
return 0
"""


def _subject_key(subject: str) -> str:
    # Hashed: subjects may be e-mail addresses; keys stay short and say nothing.
    return f"{_PREFIX}subject:{hashlib.sha256(subject.encode()).hexdigest()[:32]}"


class RedisStore(SessionStore):
    """Sessions and nonces in Redis (``redis://host:port/db``, ``rediss://`` for TLS), shared by
    every relay process that uses the same URL.

    It uses the ``redis`` package's synchronous client, each call run in a worker thread
    (``anyio.to_thread``), so one implementation serves asyncio and trio alike; calls happen at
    admission and once per ``lease_s / 3`` per relay, never per event. Every call is bounded by
    ``timeout_s``: when Redis does not answer, admission fails closed
    (:class:`StoreUnavailable`)."""

    def __init__(self, url: str, *, lease_s: float = 30.0, timeout_s: float = 1.0,
                 client: Any = None) -> None:
        if not lease_s > 0 or not timeout_s > 0:
            raise ValueError("lease_s and timeout_s must be positive")
        if client is None:
            try:
                import redis  # type: ignore[import-not-found, unused-ignore]
            except ImportError:
                raise RealtalkError("RedisStore needs the redis package: pip install "
                                    "'realtalk[relay]'") from None
            try:
                client = redis.Redis.from_url(url, socket_timeout=timeout_s,
                                              socket_connect_timeout=timeout_s,
                                              max_connections=32)
            except ValueError:
                raise ValueError("a Redis URL is redis://host:port/db, rediss://... (TLS) or "
                                 "unix:///path") from None
        self.url = url
        self.lease_s = lease_s
        self._client = client
        self._limiter = anyio.CapacityLimiter(32)  # = the pool's connections
        self._admit = client.register_script(_ADMIT)
        self._renew = client.register_script(_RENEW)

    def __repr__(self) -> str:  # the URL may hold a password
        return "RedisStore()"

    async def _call(self, function: Callable[[], _T]) -> _T:
        try:
            return await anyio.to_thread.run_sync(function, limiter=self._limiter)
        except Exception as exc:  # noqa: BLE001 (redis.RedisError, OSError ...: fail closed)
            raise StoreUnavailable(f"the session store did not answer ({type(exc).__name__})") \
                from None

    async def admit(self, session: str, subject: str, max_sessions: int | None,
                    max_per_subject: int | None) -> Admission:
        keys = [f"{_PREFIX}sessions", _subject_key(subject)]
        args = [round(self.lease_s * 1000), session, max_sessions or 0, max_per_subject or 0]
        result = await self._call(partial(self._admit, keys=keys, args=args))
        return _ADMISSIONS[int(result)]

    async def release(self, session: str, subject: str) -> None:
        def remove() -> None:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.zrem(f"{_PREFIX}sessions", session)
                pipe.zrem(_subject_key(subject), session)
                pipe.execute()

        await self._call(remove)

    async def renew(self, sessions: Iterable[tuple[str, str]]) -> None:
        pairs = list(sessions)
        if not pairs:
            return
        keys = [f"{_PREFIX}sessions", *(_subject_key(subject) for _, subject in pairs)]
        args = [round(self.lease_s * 1000), *(session for session, _ in pairs)]
        await self._call(partial(self._renew, keys=keys, args=args))

    async def claim_nonce(self, nonce: str, expires_at: float) -> bool:
        key = f"{_PREFIX}nonce:{nonce}"
        at = max(int(expires_at) + 1, int(time.time()) + 1)
        return bool(await self._call(partial(self._client.set, key, b"1", nx=True, exat=at)))

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self._client.close)
