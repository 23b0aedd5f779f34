"""Forgetting a customer: destroy the subject's key, purge raw payloads, say so in the log.

`Forgetter.forget` (the ``forget_customer`` command, over NATS and HTTP):

1. finds the subjects the email or customer reference names (by HMAC lookup);
2. in one transaction: destroys their keys (``data_subjects.wrapped_key = NULL``; this
   waits for any projector batch that holds them share-locked) and purges the raw
   webhook payloads of their sessions (and, asked by email, any payload holding it);
3. appends one `CustomerForgotten` per subject (its own stream subject, message id
   ``forget:<subject>``), which the projector turns into blanked rows;
4. deletes the lookups and records the request (no email, no reference) in
   ``forget_requests``.

A retry after a failure between 2 and 4 finds the subject again by its lookups and
finishes; a request for an unknown (or already forgotten) customer is accepted, records
that it was asked, and appends nothing. The reply lists the provider sessions concerned:
the orchestrator cannot erase at the providers (docs/privacy.md says what to do there).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Self

from pydantic import model_validator

from events.catalog import CustomerForgotten, ProviderSessionOpened
from events.envelope import EventMetadata
from events.values import EmailAddress, Identifier, Value
from orchestrator.jetstream.event_store import DuplicateCommand, EventStore
from orchestrator.privacy.keyring import Keyring, Lookup, guarded
from orchestrator.privacy.sealing import Sealer

__all__ = ["ForgetCustomer", "ForgetResult", "Forgetter", "ProviderSessionRef"]


class ForgetCustomer(Value):
    """Forget one customer: by ``email`` or by ``customer_reference`` (exactly one)."""

    email: EmailAddress | None = None
    customer_reference: Identifier | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.email is None) == (self.customer_reference is None):
            raise ValueError("give exactly one of email and customer_reference")
        return self

    @property
    def lookup(self) -> Lookup:
        if self.email is not None:
            return Lookup.email(self.email)
        assert self.customer_reference is not None  # noqa: S101 - the validator saw to it
        return Lookup.reference(self.customer_reference)


class ProviderSessionRef(Value):
    session_id: str
    provider: str
    provider_session_id: str


class ForgetResult(Value):
    request_id: str
    status: str  # "forgotten" | "not_found"
    subjects: tuple[str, ...] = ()
    sessions: tuple[str, ...] = ()
    provider_sessions: tuple[ProviderSessionRef, ...] = ()
    """Sessions the providers still hold personal data of: erase them there (docs/privacy.md)."""


@dataclass(frozen=True, slots=True)
class _Found:
    subjects: list[str]
    sessions: list[str]


class Forgetter:
    def __init__(
        self,
        keyring: Keyring,
        store: EventStore,
        *,
        clock: Callable[[], datetime],
        new_id: Callable[[], str],
        personal_metadata_keys: Collection[str] = (),
        sealer: Sealer | None = None,
    ) -> None:
        """``sealer``: this process's, whose cache of keys the forgotten subjects leave."""
        self._sealer = sealer
        self._keyring = keyring
        self._store = store
        self._clock = clock
        self._new_id = new_id
        self._metadata_keys = tuple(sorted(personal_metadata_keys))

    async def forget(self, request: ForgetCustomer, request_id: str) -> ForgetResult:
        found = await guarded(lambda: self._destroy(request))
        if self._sealer is not None:
            self._sealer.forget_cached(found.subjects)
        if not found.subjects:
            await self._record(request, request_id, found)
            return ForgetResult(request_id=request_id, status="not_found")
        providers = [ref for s in found.sessions for ref in await self._provider_sessions(s)]
        for subject in found.subjects:
            await self._announce(subject, found, request_id)
        await self._record(request, request_id, found)
        return ForgetResult(
            request_id=request_id,
            status="forgotten",
            subjects=tuple(found.subjects),
            sessions=tuple(found.sessions),
            provider_sessions=tuple(providers),
        )

    async def _destroy(self, request: ForgetCustomer) -> _Found:
        async with self._keyring.pool.acquire() as conn, conn.transaction():
            subjects = sorted(await self._keyring.subjects_of(conn, request.lookup))
            if not subjects:
                return _Found([], [])
            await conn.execute(_DESTROY_KEYS, subjects, self._clock())
            rows = await conn.fetch(_SESSIONS_OF, subjects)
            sessions = sorted({r["session_id"] for r in rows})
            email = request.email.lower() if request.email else None
            await conn.execute(_PURGE_INBOX, sessions, email)
            return _Found(subjects, sessions)

    async def _provider_sessions(self, session_id: str) -> list[ProviderSessionRef]:
        history = await self._store.load(session_id)
        return [
            ProviderSessionRef(
                session_id=session_id,
                provider=e.event.provider.value,
                provider_session_id=e.event.provider_session_id,
            )
            for e in history.events
            if isinstance(e.event, ProviderSessionOpened)
        ]

    async def _announce(self, subject: str, found: _Found, request_id: str) -> None:
        """Append the subject's `CustomerForgotten`, once (its own subject in the stream)."""
        history = await self._store.load(subject)
        if any(isinstance(e.event, CustomerForgotten) for e in history.events):
            return
        at = self._clock()
        event = CustomerForgotten(
            session_id=subject,
            occurred_at=at,
            subject=subject,
            sessions=tuple(found.sessions),
            metadata_keys=self._metadata_keys,
        )
        command_id = f"forget:{subject}"
        metadata = EventMetadata(
            event_id=self._new_id(),
            command_id=command_id,
            correlation_id=request_id,
            causation_id=command_id,
            occurred_at=at,
        )
        try:
            await self._store.append(subject, [event], [metadata], expected_version=history.version)
        except DuplicateCommand:
            return  # a concurrent request for the same subject appended it

    async def _record(self, request: ForgetCustomer, request_id: str, found: _Found) -> None:
        async def record() -> None:
            async with self._keyring.pool.acquire() as conn, conn.transaction():
                if found.subjects:
                    await conn.execute(_DROP_LOOKUPS, found.subjects)
                await conn.execute(
                    _RECORD,
                    request_id,
                    "email" if request.email is not None else "customer_reference",
                    found.subjects,
                    found.sessions,
                )

        await guarded(record)


_DESTROY_KEYS = (
    "UPDATE data_subjects SET wrapped_key = NULL, kek_id = NULL, "
    "forgotten_at = coalesce(forgotten_at, $2) WHERE subject_id = ANY($1::text[])"
)
_SESSIONS_OF = "SELECT session_id FROM data_subject_sessions WHERE subject_id = ANY($1::text[])"
# raw provider payloads: those of the subject's sessions, and (asked by email) any holding it
_PURGE_INBOX = (
    "UPDATE webhook_inbox SET body = '\\x'::bytea, headers = '{}'::jsonb, "
    "status = CASE WHEN status = 'pending' THEN 'ignored' ELSE status END, "
    "outcome = 'personal data erased' "
    "WHERE session_id = ANY($1::text[]) OR ($2::text IS NOT NULL "
    "AND strpos(lower(encode(body, 'escape')), $2::text) > 0)"
)
_DROP_LOOKUPS = "DELETE FROM data_subject_lookups WHERE subject_id = ANY($1::text[])"
_RECORD = (
    "INSERT INTO forget_requests (request_id, asked_by, subjects, sessions) "
    "VALUES ($1, $2, $3::text[], $4::text[]) ON CONFLICT (request_id) DO NOTHING"
)
