"""API keys of the HTTP API: created (the plaintext shown once), verified, revoked, listed.

A key reads ``ck_<id>_<secret>``: ``id`` finds the row, ``secret`` (32 random bytes,
url-safe base64) is checked against the stored HMAC-SHA256 keyed by a per-key random salt,
in constant time. The database never holds a key or a secret.

A ``read`` key may query (GET/HEAD); a ``write`` key may also send commands (POST).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import asyncpg

__all__ = ["ApiKey", "ApiKeyInfo", "ApiKeys", "Scope", "parse_key"]

PREFIX = "ck"


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A new key; ``plaintext`` exists only in this value, shown to its creator once."""

    id: str
    scope: Scope
    label: str
    plaintext: str


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    id: str
    scope: Scope
    label: str
    created_at: datetime
    revoked_at: datetime | None


def _hash(salt: bytes, secret: str) -> bytes:
    return hmac.new(salt, secret.encode(), hashlib.sha256).digest()


def parse_key(presented: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a well-formed key, else None."""
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        return None
    if len(presented) > 200 or not parts[1].isalnum():
        return None
    return parts[1], parts[2]


class ApiKeys:
    """Keys in the ``api_keys`` table; ``verify`` caches answers for ``cache_seconds``,
    so a revoked key stops working within that bound."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        cache_seconds: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
        max_cached: int = 10_000,
    ) -> None:
        self._pool = pool
        self._ttl = cache_seconds
        self._now = monotonic
        self._max = max_cached
        # keyed by a digest of the presented key, never the key itself
        self._cache: dict[bytes, tuple[float, Scope | None]] = {}

    async def create(self, scope: Scope | str, label: str = "") -> ApiKey:
        scope = Scope(scope)
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        await self._pool.execute(
            "INSERT INTO api_keys (id, salt, secret_hash, scope, label)"
            " VALUES ($1, $2, $3, $4, $5)",
            key_id,
            salt,
            _hash(salt, secret),
            scope.value,
            label,
        )
        return ApiKey(key_id, scope, label, f"{PREFIX}_{key_id}_{secret}")

    async def revoke(self, key_id: str) -> bool:
        """True when a live key was revoked now."""
        done: str = await self._pool.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", key_id
        )
        return done.endswith(" 1")

    async def list(self) -> list[ApiKeyInfo]:
        rows = await self._pool.fetch(
            "SELECT id, scope, label, created_at, revoked_at FROM api_keys ORDER BY created_at, id"
        )
        return [
            ApiKeyInfo(r["id"], Scope(r["scope"]), r["label"], r["created_at"], r["revoked_at"])
            for r in rows
        ]

    async def verify(self, presented: str) -> Scope | None:
        """The scope of a live key, None for anything else (unknown, wrong, revoked)."""
        digest = hashlib.sha256(presented.encode()).digest()
        now = self._now()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        scope = await self._lookup(presented)
        if len(self._cache) >= self._max:
            self._cache.clear()
        self._cache[digest] = (now + self._ttl, scope)
        return scope

    async def _lookup(self, presented: str) -> Scope | None:
        parsed = parse_key(presented)
        if parsed is None:
            return None
        key_id, secret = parsed
        row = await self._pool.fetchrow(
            "SELECT salt, secret_hash, scope FROM api_keys WHERE id = $1 AND revoked_at IS NULL",
            key_id,
        )
        if row is None:
            # spend the same work as a found key, so timing does not tell ids apart
            hmac.compare_digest(_hash(b"\0" * 16, secret), b"\0" * 32)
            return None
        if not hmac.compare_digest(_hash(bytes(row["salt"]), secret), bytes(row["secret_hash"])):
            return None
        return Scope(row["scope"])
