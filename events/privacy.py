"""Personal data in events: sealed under a key per data subject, erased by destroying it.

A customer's personal fields (email, name, phone, address, tax id, the provider's and the
merchant's customer ids) and the metadata values the merchant declares personal never
reach the stream in clear. An event stores them as one `SealedCustomer`: AES-256-GCM
(``cryptography``) under the data key of the event's ``subject``, an opaque id
(``sub_<ULID>``) that says nothing about the person. Only the customer's country stays in
clear: routing and the daily totals need it, and on its own it identifies nobody.

Reading back, a sealed customer is opened with its subject's key into the clear
`Customer` (and its metadata), or, once the key is destroyed (the customer was
forgotten), into `ErasedCustomer`: the typed marker every reader sees instead.

The ciphertext is bound to its subject and session (associated data), so it cannot be
moved to another event and still open. Keys are never here: `events` holds the format,
the key store lives with the services (``orchestrator.privacy``).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Collection, Mapping
from typing import Annotated, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import Field, ValidationError

from events.errors import DecodeError
from events.values import CountryCode, Customer, Value

__all__ = [
    "DATA_KEY_BYTES",
    "ErasedCustomer",
    "PersonalFields",
    "SealedCustomer",
    "SubjectId",
    "erase",
    "open_sealed",
    "personal_part",
    "routing_country",
    "seal",
]

DATA_KEY_BYTES = 32
"""AES-256."""
_NONCE_BYTES = 12

SubjectId = Annotated[str, Field(pattern=r"^sub_[0-9A-Za-z]{26}$")]
"""An opaque data-subject id: ``sub_`` and a ULID, unrelated to the person's data."""


class SealedCustomer(Value):
    """A customer's personal fields (and personal metadata) as ciphertext."""

    kind: Literal["sealed"] = "sealed"
    ciphertext: str = Field(min_length=1)
    """base64url of nonce (12 bytes) + AES-GCM ciphertext and tag."""
    country: CountryCode | None = None
    metadata_keys: tuple[str, ...] = ()
    """Names (not values) of the personal metadata sealed with the customer."""


class ErasedCustomer(Value):
    """What a reader gets for a customer whose data subject was forgotten."""

    kind: Literal["erased"] = "erased"
    country: CountryCode | None = None
    metadata_keys: tuple[str, ...] = ()


class PersonalFields(Value):
    """The plaintext of a `SealedCustomer`."""

    customer: Customer
    metadata: dict[str, str] = Field(default_factory=dict)


def personal_part(
    customer: Customer | None, metadata: Mapping[str, str], keys: Collection[str]
) -> bool:
    """Whether there is anything personal to seal: a customer field besides the country,
    or a metadata value under a key declared personal."""
    if customer is not None and customer.model_dump(exclude_none=True).keys() - {"country"}:
        return True
    return any(key in metadata for key in keys)


def routing_country(customer: Customer) -> str | None:
    """The country kept in clear: the customer's, else its address's (what routes)."""
    return customer.country or (customer.address.country if customer.address else None)


def _associated(subject: str, session_id: str) -> bytes:
    return f"checkout-personal-data:v1:{subject}:{session_id}".encode()


def seal(
    key: bytes,
    *,
    subject: str,
    session_id: str,
    customer: Customer,
    metadata: Mapping[str, str],
    personal_keys: Collection[str],
) -> tuple[SealedCustomer, dict[str, str]]:
    """Seal ``customer`` and the personal metadata; returns the sealed customer and the
    metadata that stays in clear."""
    personal = {k: v for k, v in metadata.items() if k in personal_keys}
    clear = {k: v for k, v in metadata.items() if k not in personal_keys}
    plaintext = PersonalFields(customer=customer, metadata=personal).model_dump_json(
        exclude_none=True
    )
    nonce = os.urandom(_NONCE_BYTES)
    ciphertext = AESGCM(key).encrypt(nonce, plaintext.encode(), _associated(subject, session_id))
    sealed = SealedCustomer(
        ciphertext=base64.urlsafe_b64encode(nonce + ciphertext).decode().rstrip("="),
        country=routing_country(customer),
        metadata_keys=tuple(sorted(personal)),
    )
    return sealed, clear


def open_sealed(
    key: bytes, *, subject: str, session_id: str, sealed: SealedCustomer
) -> PersonalFields:
    """The plaintext of ``sealed``; `DecodeError` if it was altered or the key is wrong."""
    try:
        raw = base64.urlsafe_b64decode(sealed.ciphertext + "=" * (-len(sealed.ciphertext) % 4))
        nonce, body = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
        plaintext = AESGCM(key).decrypt(nonce, body, _associated(subject, session_id))
        return PersonalFields.model_validate_json(plaintext)
    except (InvalidTag, binascii.Error, ValueError, ValidationError) as exc:
        # never echo the ciphertext or a plaintext fragment
        raise DecodeError(
            f"sealed personal data of session {session_id} does not open ({type(exc).__name__})"
        ) from None


def erase(sealed: SealedCustomer | ErasedCustomer) -> ErasedCustomer:
    return ErasedCustomer(country=sealed.country, metadata_keys=sealed.metadata_keys)
