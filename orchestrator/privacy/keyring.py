"""The key store: one data key per data subject, in Postgres, wrapped by the KEK.

- The **key-encryption key** (KEK) comes from the settings (`CHECKOUT_PRIVACY_KEK_FILE`,
  or `CHECKOUT_PRIVACY_KEK`: 32 bytes, base64). The embedded Postgres of `up` gets one
  generated in the data directory when none is set; a configured database without one
  refuses to start (`KeyEncryptionKeyError`, naming the setting, never a value).
- A **data key** (AES-256) per subject, stored wrapped (AES-GCM under the KEK, the
  subject id as associated data) in ``data_subjects``; forgetting the subject sets it to
  NULL. The KEK's fingerprint is stored beside each wrapped key, so a rotation
  (`Keyring.rotate`) knows which rows it has re-wrapped.
- **Lookups**: HMAC-SHA256 of ``email:<normalised email>`` or ``reference:<merchant's
  customer reference>`` under a lookup key (random, wrapped by the KEK in
  ``privacy_keyring``), mapped to subjects in ``data_subject_lookups``: how a forget
  request finds its subjects without the store holding anyone's email.

Every Postgres failure surfaces as `KeyStoreUnavailable`: an infrastructure fault, so a
command that needs a key is retried, never appended in clear.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from ulid import ULID

from events.privacy import DATA_KEY_BYTES
from orchestrator.errors import InfrastructureError, SettingsError

__all__ = [
    "KEK_FILE_SETTING",
    "KEK_SETTING",
    "KeyEncryptionKey",
    "KeyEncryptionKeyError",
    "KeyStoreUnavailable",
    "Keyring",
    "Lookup",
    "SubjectKey",
    "generate_kek_file",
    "guarded",
]

KEK_SETTING = "CHECKOUT_PRIVACY_KEK"
KEK_FILE_SETTING = "CHECKOUT_PRIVACY_KEK_FILE"
_NONCE = 12
T = TypeVar("T")


class KeyEncryptionKeyError(SettingsError):
    """The key-encryption key is missing, malformed, or not the one the keys were
    wrapped with. Names the setting, never its value."""

    code = "invalid_key_encryption_key"


class KeyStoreUnavailable(InfrastructureError):
    """Postgres, where the data keys live, did not answer: nothing is appended in clear."""

    code = "key_store_unavailable"


@dataclass(frozen=True, slots=True)
class KeyEncryptionKey:
    secret: bytes = field(repr=False)
    setting: str
    """the setting it came from, for error messages"""

    @classmethod
    def parse(cls, text: str, setting: str) -> KeyEncryptionKey:
        try:
            secret = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise KeyEncryptionKeyError(f"{setting} is not base64") from None
        if len(secret) != DATA_KEY_BYTES:
            raise KeyEncryptionKeyError(
                f"{setting} must hold {DATA_KEY_BYTES} bytes (base64), got {len(secret)}"
            )
        return cls(secret, setting)

    @classmethod
    def from_file(cls, path: Path, setting: str = KEK_FILE_SETTING) -> KeyEncryptionKey:
        try:
            text = path.read_text()
        except OSError as exc:
            message = f"{setting}: cannot read the file ({exc.strerror})"
            raise KeyEncryptionKeyError(message) from None
        return cls.parse(text, setting)

    @property
    def fingerprint(self) -> str:
        """Names this KEK in the store (not secret: an HMAC of a constant)."""
        return hmac.new(self.secret, b"checkout-kek-id", hashlib.sha256).hexdigest()[:16]

    def wrap(self, key: bytes, label: str) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + AESGCM(self.secret).encrypt(nonce, key, label.encode())

    def unwrap(self, blob: bytes, label: str) -> bytes:
        """Raises `cryptography.exceptions.InvalidTag` under another KEK."""
        return AESGCM(self.secret).decrypt(blob[:_NONCE], blob[_NONCE:], label.encode())


def generate_kek_file(path: Path) -> KeyEncryptionKey:
    """A new random KEK written to ``path`` (0600), unless the file exists: then that one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return KeyEncryptionKey.from_file(path)
    with os.fdopen(fd, "w") as out:
        out.write(base64.b64encode(os.urandom(DATA_KEY_BYTES)).decode() + "\n")
    return KeyEncryptionKey.from_file(path)


@dataclass(frozen=True, slots=True)
class Lookup:
    """How a caller names a data subject: an email or the merchant's customer reference."""

    kind: str  # "email" | "reference"
    value: str = field(repr=False)

    @classmethod
    def email(cls, value: str) -> Lookup:
        return cls("email", value.strip().lower())

    @classmethod
    def reference(cls, value: str) -> Lookup:
        return cls("reference", value.strip())


@dataclass(frozen=True, slots=True)
class SubjectKey:
    subject: str
    key: bytes | None = field(repr=False)
    """None once the subject is forgotten"""


async def guarded(call: Callable[[], Awaitable[T]]) -> T:
    try:
        return await call()
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        raise KeyStoreUnavailable(f"the key store did not answer: {type(exc).__name__}") from exc


class Keyring:
    """Data keys of data subjects; see the module doc."""

    def __init__(self, pool: asyncpg.Pool, kek: KeyEncryptionKey) -> None:
        self._pool = pool
        self._kek = kek
        self._lookup_key: bytes | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    async def start(self) -> None:
        """Load the lookup key (creating it on first use); a KEK that does not open it
        is refused with `KeyEncryptionKeyError`."""
        kek = self._kek
        row = await guarded(lambda: self._pool.fetchrow(_READ_KEYRING))
        if row is None:
            wrapped = kek.wrap(os.urandom(DATA_KEY_BYTES), "lookup")
            await guarded(lambda: self._pool.execute(_CREATE_KEYRING, wrapped, kek.fingerprint))
            row = await guarded(lambda: self._pool.fetchrow(_READ_KEYRING))
        try:
            self._lookup_key = kek.unwrap(bytes(row["wrapped_key"]), "lookup")
        except InvalidTag:
            raise KeyEncryptionKeyError(
                f"{kek.setting} does not open this database's keys: it is not the "
                "key-encryption key they were wrapped with (see docs/privacy.md, rotation)"
            ) from None

    def lookup(self, lookup: Lookup) -> bytes:
        if self._lookup_key is None:
            raise RuntimeError("Keyring.start() was not awaited")
        message = f"{lookup.kind}:{lookup.value}".encode()
        return hmac.new(self._lookup_key, message, hashlib.sha256).digest()

    def _open(self, subject: str, wrapped: bytes | None) -> SubjectKey:
        if wrapped is None:
            return SubjectKey(subject, None)
        try:
            return SubjectKey(subject, self._kek.unwrap(bytes(wrapped), subject))
        except InvalidTag:
            raise KeyEncryptionKeyError(
                f"{self._kek.setting} does not open the key of a data subject"
            ) from None

    async def subject_for(
        self, conn: asyncpg.Connection, lookups: Iterable[Lookup], session_id: str
    ) -> SubjectKey:
        """The subject ``lookups`` name (the first one known wins), created with a new key
        when none is; every lookup and the session are linked to it. Call in a transaction."""
        hashes = [self.lookup(item) for item in lookups]
        row = None
        for digest in hashes:
            row = await conn.fetchrow(_FIND_BY_LOOKUP, digest)
            if row is not None:
                break
        if row is None:
            subject = f"sub_{ULID()}"
            wrapped = self._kek.wrap(os.urandom(DATA_KEY_BYTES), subject)
            await conn.execute(_CREATE_SUBJECT, subject, wrapped, self._kek.fingerprint)
            found = SubjectKey(subject, self._kek.unwrap(wrapped, subject))
        else:
            found = self._open(row["subject_id"], row["wrapped_key"])
        if found.key is not None:  # a forgotten subject gets no new lookups
            await conn.executemany(_LINK_LOOKUP, [(d, found.subject) for d in hashes])
        await conn.execute(_LINK_SESSION, found.subject, session_id)
        return found

    async def link_if_live(self, subject: str, session_id: str) -> bool:
        """Link a session to a subject that is not forgotten; False when it is (or the
        link existed already: the caller then takes the slow path)."""
        return bool(await self._pool.fetchval(_LINK_IF_LIVE, subject, session_id))

    async def key_of(self, conn: asyncpg.Connection, subject: str, session_id: str) -> SubjectKey:
        """The key of a known subject (a session's later events), linking the session."""
        row = await conn.fetchrow(_READ_SUBJECT, subject)
        if row is None:
            return SubjectKey(subject, None)  # never stored: nothing can open it
        await conn.execute(_LINK_SESSION, subject, session_id)
        return self._open(subject, row["wrapped_key"])

    async def keys(
        self, subjects: Iterable[str], conn: asyncpg.Connection | None = None
    ) -> Mapping[str, bytes | None]:
        """Keys of ``subjects`` (None: forgotten or unknown). Given a connection in a
        transaction, the rows are share-locked until it ends: a forget waits for it."""
        wanted = sorted(set(subjects))
        if not wanted:
            return {}
        if conn is not None:
            rows = await guarded(lambda: conn.fetch(_READ_KEYS + " FOR SHARE", wanted))
        else:
            rows = await guarded(lambda: self._pool.fetch(_READ_KEYS, wanted))
        found = {r["subject_id"]: self._open(r["subject_id"], r["wrapped_key"]).key for r in rows}
        return {subject: found.get(subject) for subject in wanted}

    async def subjects_of(self, conn: asyncpg.Connection, lookup: Lookup) -> list[str]:
        rows = await conn.fetch(_SUBJECTS_OF_LOOKUP, self.lookup(lookup))
        return [r["subject_id"] for r in rows]

    async def rotate(self, new: KeyEncryptionKey) -> int:
        """Re-wrap every live data key and the lookup key under ``new``, in one
        transaction; returns the number of keys re-wrapped. Run it, then switch the
        setting to the new KEK (docs/privacy.md)."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(_READ_KEYRING + " FOR UPDATE")
            if row is None:
                return 0
            lookup_key = self._kek.unwrap(bytes(row["wrapped_key"]), "lookup")
            await conn.execute(
                "UPDATE privacy_keyring SET wrapped_key = $1, kek_id = $2 WHERE id = 1",
                new.wrap(lookup_key, "lookup"),
                new.fingerprint,
            )
            rows = await conn.fetch(
                "SELECT subject_id, wrapped_key FROM data_subjects "
                "WHERE wrapped_key IS NOT NULL FOR UPDATE"
            )
            rewrapped = []
            for r in rows:
                subject = r["subject_id"]
                key = self._kek.unwrap(bytes(r["wrapped_key"]), subject)
                rewrapped.append((subject, new.wrap(key, subject)))
            await conn.executemany(
                "UPDATE data_subjects SET wrapped_key = $2, kek_id = $3 WHERE subject_id = $1",
                [(subject, wrapped, new.fingerprint) for subject, wrapped in rewrapped],
            )
            return len(rewrapped)


_READ_KEYRING = "SELECT wrapped_key, kek_id FROM privacy_keyring WHERE id = 1"
_CREATE_KEYRING = (
    "INSERT INTO privacy_keyring (id, wrapped_key, kek_id) VALUES (1, $1, $2) "
    "ON CONFLICT (id) DO NOTHING"
)
_FIND_BY_LOOKUP = (
    "SELECT s.subject_id, s.wrapped_key FROM data_subject_lookups l "
    "JOIN data_subjects s USING (subject_id) WHERE l.lookup = $1 "
    "ORDER BY s.forgotten_at IS NOT NULL, s.created_at LIMIT 1"
)
_CREATE_SUBJECT = "INSERT INTO data_subjects (subject_id, wrapped_key, kek_id) VALUES ($1, $2, $3)"
_READ_SUBJECT = "SELECT wrapped_key FROM data_subjects WHERE subject_id = $1"
_READ_KEYS = "SELECT subject_id, wrapped_key FROM data_subjects WHERE subject_id = ANY($1::text[])"
_LINK_LOOKUP = (
    "INSERT INTO data_subject_lookups (lookup, subject_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
)
_LINK_SESSION = (
    "INSERT INTO data_subject_sessions (subject_id, session_id) VALUES ($1, $2) "
    "ON CONFLICT DO NOTHING"
)
_LINK_IF_LIVE = (
    "INSERT INTO data_subject_sessions (subject_id, session_id) SELECT $1, $2 "
    "WHERE EXISTS (SELECT 1 FROM data_subjects WHERE subject_id = $1 AND forgotten_at IS NULL) "
    "ON CONFLICT DO NOTHING RETURNING 1"
)
_SUBJECTS_OF_LOOKUP = "SELECT subject_id FROM data_subject_lookups WHERE lookup = $1"
