"""Sealing personal data on the way into the stream, opening it on the way out.

`Sealer.seal` runs inside `EventStore.append`, the one door into the stream: an event
that carries a customer in clear (``requested``, ``completed``) leaves it with the
customer sealed for its data subject (`events.privacy`) and the subject's id, or, when
the subject was forgotten, with `ErasedCustomer`. The subject is the session's when it
has one (its later events), else the one its reference or email names, else a new one.
If the key store does not answer, the append fails with `KeyStoreUnavailable` (the
command is retried): nothing personal is ever appended in clear.

`Opener.open` turns the sealed customers of recorded events back into `Customer` (with
the personal metadata put back), or `ErasedCustomer` where the key is gone. The
projector opens inside its batch transaction (keys share-locked, so a forget waits for
the batch and then blanks what it wrote); `CheckoutClient` opens with the pool.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping, Sequence

import asyncpg
import msgspec
from pydantic import ValidationError

from events.catalog import CheckoutCompleted, CheckoutEvent, CheckoutRequested
from events.envelope import RecordedEvent
from events.errors import DecodeError
from events.privacy import (
    ErasedCustomer,
    SealedCustomer,
    erase,
    open_sealed,
    personal_part,
    routing_country,
    seal,
)
from events.values import Customer
from orchestrator.privacy.keyring import Keyring, KeyStoreUnavailable, Lookup, SubjectKey
from projections import decoding as stored
from projections.decoding import StoredEvent

__all__ = ["Opener", "Sealer", "subject_of"]

_Personal = CheckoutRequested | CheckoutCompleted


def subject_of(events: Iterable[CheckoutEvent]) -> str | None:
    """The data subject of a session: the first one its events name."""
    for event in events:
        if isinstance(event, _Personal) and event.subject is not None:
            return event.subject
    return None


def _lookups(customer: Customer) -> list[Lookup]:
    found = []
    if customer.reference:
        found.append(Lookup.reference(customer.reference))
    if customer.email:
        found.append(Lookup.email(customer.email))
    return found


CACHE_SIZE = 10_000
"""Subjects whose keys a `Sealer` keeps in memory (per cache)."""


class Sealer:
    def __init__(self, keyring: Keyring, personal_metadata_keys: Collection[str] = ()) -> None:
        self._keyring = keyring
        self._personal_keys = frozenset(personal_metadata_keys)
        self._by_subject: dict[str, SubjectKey] = {}
        self._by_lookups: dict[tuple[bytes, ...], SubjectKey] = {}

    @property
    def personal_metadata_keys(self) -> frozenset[str]:
        return self._personal_keys

    def _needs_sealing(self, event: CheckoutEvent) -> bool:
        if isinstance(event, CheckoutRequested):
            customer = event.customer if isinstance(event.customer, Customer) else None
            return personal_part(customer, event.metadata, self._personal_keys)
        if isinstance(event, CheckoutCompleted) and isinstance(event.customer, Customer):
            return personal_part(event.customer, {}, ())
        return False

    async def seal(
        self, session_id: str, events: Sequence[CheckoutEvent], subject: str | None
    ) -> list[CheckoutEvent]:
        """``events`` with every clear customer sealed (see module doc)."""
        personal = [e for e in events if self._needs_sealing(e)]
        if not personal:
            return list(events)
        first = personal[0]
        assert isinstance(first, _Personal)  # noqa: S101 - _needs_sealing saw to it
        assert isinstance(first.customer, Customer)  # noqa: S101
        try:
            key = await self._key(session_id, first.customer, subject)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise KeyStoreUnavailable(
                f"the key store did not answer: {type(exc).__name__}"
            ) from exc
        return [
            self._sealed(e, key, session_id)
            if isinstance(e, _Personal) and self._needs_sealing(e)
            else e
            for e in events
        ]

    async def _key(self, session_id: str, customer: Customer, subject: str | None) -> SubjectKey:
        """The session's subject key: from the cache when this process has seen it (a
        known subject: no round trip; known lookups: one statement that links the session
        if the subject is still live), else from the key store in one transaction."""
        if subject is not None and (cached := self._by_subject.get(subject)) is not None:
            return cached  # the session was linked when its first sealed event was written
        lookups = _lookups(customer)
        hashes = tuple(self._keyring.lookup(item) for item in lookups)
        if hashes and (cached := self._by_lookups.get(hashes)) is not None:
            if await self._keyring.link_if_live(cached.subject, session_id):
                return cached
            self.forget_cached([cached.subject])
        async with self._keyring.pool.acquire() as conn, conn.transaction():
            if subject is not None:
                found = await self._keyring.key_of(conn, subject, session_id)
            else:
                found = await self._keyring.subject_for(conn, lookups, session_id)
        if found.key is not None:
            self._remember(found, hashes if subject is None else ())
        return found

    def _remember(self, found: SubjectKey, hashes: tuple[bytes, ...]) -> None:
        self._by_subject[found.subject] = found
        if hashes:
            self._by_lookups[hashes] = found
        while len(self._by_subject) > CACHE_SIZE:  # oldest first (dicts keep their order)
            del self._by_subject[next(iter(self._by_subject))]
        while len(self._by_lookups) > CACHE_SIZE:
            del self._by_lookups[next(iter(self._by_lookups))]

    def forget_cached(self, subjects: Iterable[str]) -> None:
        """Drop forgotten subjects from this process's cache (`Forgetter` calls it; another
        process may seal for a forgotten subject until its own check fails, under a key
        that no longer exists: readers get the erased marker all the same)."""
        gone = set(subjects)
        for subject in gone:
            self._by_subject.pop(subject, None)
        for hashes in [h for h, k in self._by_lookups.items() if k.subject in gone]:
            del self._by_lookups[hashes]

    def _sealed(self, event: _Personal, key: SubjectKey, session_id: str) -> CheckoutEvent:
        assert isinstance(event.customer, Customer)  # noqa: S101
        metadata = event.metadata if isinstance(event, CheckoutRequested) else {}
        keys = self._personal_keys if isinstance(event, CheckoutRequested) else frozenset()
        customer: SealedCustomer | ErasedCustomer
        if key.key is None:  # forgotten: what arrives for it now is not kept
            clear = {k: v for k, v in metadata.items() if k not in keys}
            customer = ErasedCustomer(
                country=routing_country(event.customer),
                metadata_keys=tuple(sorted(set(metadata) - set(clear))),
            )
        else:
            customer, clear = seal(
                key.key,
                subject=key.subject,
                session_id=session_id,
                customer=event.customer,
                metadata=metadata,
                personal_keys=keys,
            )
        if isinstance(event, CheckoutRequested):
            return event.model_copy(
                update={"subject": key.subject, "customer": customer, "metadata": clear}
            )
        return event.model_copy(update={"subject": key.subject, "customer": customer})


class Opener:
    """Opens the sealed customers of recorded events (see module doc)."""

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    async def open(
        self, events: Sequence[RecordedEvent], conn: asyncpg.Connection | None = None
    ) -> list[RecordedEvent]:
        subjects = {
            e.event.subject
            for e in events
            if isinstance(e.event, _Personal)
            and e.event.subject is not None
            and isinstance(e.event.customer, SealedCustomer)
        }
        if not subjects:
            return list(events)
        keys = await self._keyring.keys(subjects, conn)
        return [_opened(e, keys) for e in events]

    async def open_stored(
        self, events: Sequence[StoredEvent], conn: asyncpg.Connection
    ) -> list[StoredEvent]:
        """The same for events as the projector reads them (`projections.decoding`): the
        struct and the stored JSON get the opened (or erased) customer."""
        subjects = {subject for e in events if (subject := _sealed_subject(e.event))}
        if not subjects:
            return list(events)
        keys = await self._keyring.keys(subjects, conn)
        return [_opened_stored(e, keys) for e in events]


def _sealed_subject(event: object) -> str | None:
    if not isinstance(event, stored.CheckoutRequested | stored.CheckoutCompleted):
        return None
    customer = event.customer
    if event.subject and customer and customer.get("kind") == "sealed":
        return event.subject
    return None


def _opened_stored(recorded: StoredEvent, keys: Mapping[str, bytes | None]) -> StoredEvent:
    event = recorded.event
    subject = _sealed_subject(event)
    if subject is None:
        return recorded
    assert isinstance(event, stored.CheckoutRequested | stored.CheckoutCompleted)  # noqa: S101
    try:
        sealed = SealedCustomer.model_validate(event.customer)
    except ValidationError as exc:
        raise DecodeError(f"sealed customer of {event.session_id}: {exc}") from exc
    key = keys.get(subject)
    document = msgspec.json.decode(recorded.payload)
    if key is None:
        customer = erase(sealed).model_dump(mode="json")
        changes: dict[str, object] = {"customer": customer}
    else:
        fields = open_sealed(key, subject=subject, session_id=event.session_id, sealed=sealed)
        changes = {"customer": fields.customer.model_dump(mode="json")}
        if isinstance(event, stored.CheckoutRequested):
            changes["metadata"] = {**event.metadata, **fields.metadata}
    document.update(changes)
    return dataclasses.replace(
        recorded,
        event=msgspec.structs.replace(event, **changes),
        payload=msgspec.json.encode(document),
    )


def _opened(recorded: RecordedEvent, keys: Mapping[str, bytes | None]) -> RecordedEvent:
    event = recorded.event
    if not (
        isinstance(event, _Personal)
        and event.subject is not None
        and isinstance(event.customer, SealedCustomer)
    ):
        return recorded
    key = keys.get(event.subject)
    if key is None:
        return dataclasses.replace(
            recorded, event=event.model_copy(update={"customer": erase(event.customer)})
        )
    fields = open_sealed(
        key, subject=event.subject, session_id=event.session_id, sealed=event.customer
    )
    update: dict[str, object] = {"customer": fields.customer}
    if isinstance(event, CheckoutRequested):
        update["metadata"] = {**event.metadata, **fields.metadata}
    return dataclasses.replace(recorded, event=event.model_copy(update=update))
