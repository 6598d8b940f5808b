"""Crypto-shredding: personal fields sealed with a data key per session, data keys wrapped
by a key-encryption key (KEK).

A sealed field holds `tlsealed1:` + base64url(AES-256-SIV(text, associated data = key id)).
SIV is deterministic: the same text under the same key gives the same token, so equality
inside a session survives sealing (a participant's join and leave still match) while
nothing is readable without the key. Data keys never leave the producer in clear: the
gateway wraps each with the KEK's public key (RSA-OAEP-SHA256), and only the key store's
owner holds the private key. Forgetting a data key forgets every copy of what it sealed.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from turnlog.schemas.base import EventPayload
from turnlog.schemas.codec import with_sealing
from turnlog.schemas.envelope import CloudEvent
from turnlog.schemas.errors import SchemaError
from turnlog.schemas.personal import has_personal_fields, rewrite_personal

SEALED_PREFIX: Final = "tlsealed1:"
"""How every sealed string starts."""
ERASED: Final = "[erased]"
"""What a sealed string reads as once its key is erased."""
UNOPENED: Final = "[sealed]"
"""What a sealed string reads as where no key-encryption key is configured."""
ALGORITHM: Final = "AES-256-SIV"
WRAPPING: Final = "RSA-OAEP-SHA256"
DATA_KEY_BYTES: Final = 64
"""AES-256-SIV takes two 256-bit keys."""
KEK_BITS: Final = 3072

P = TypeVar("P", bound=EventPayload)
_OAEP: Final = padding.OAEP(
    mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)


class SealingError(SchemaError):
    """A token that is not ours, a key that does not open it, or a KEK that cannot be read."""


def subject_digest(identity: str) -> str:
    """SHA-256 (hex) of a participant identity: how the key store indexes data keys by
    participant, and how an erasure's record names the participant, without the identity."""
    return hashlib.sha256(identity.encode()).hexdigest()


def is_sealed(value: object) -> bool:
    """Whether `value` is a sealed string."""
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


@dataclass(frozen=True)
class DataKey:
    """One session's data key, in clear: only in the memory of the producer that made it
    and of a reader that unwrapped it."""

    key_id: str
    secret: bytes = field(repr=False)
    _aead: AESSIV = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.secret) != DATA_KEY_BYTES:
            raise SealingError(f"a data key has {DATA_KEY_BYTES} bytes, got {len(self.secret)}")
        object.__setattr__(self, "_aead", AESSIV(self.secret))

    @classmethod
    def generate(cls, key_id: str) -> DataKey:
        return cls(key_id, os.urandom(DATA_KEY_BYTES))

    def seal(self, text: str) -> str:
        sealed = self._aead.encrypt(text.encode(), [self.key_id.encode()])
        return SEALED_PREFIX + base64.urlsafe_b64encode(sealed).decode().rstrip("=")

    def open(self, token: str) -> str:
        """The text of `token`; a string that is not sealed is returned as it is.
        `SealingError` when the token was sealed with another key or altered."""
        if not token.startswith(SEALED_PREFIX):
            return token
        body = token[len(SEALED_PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return self._aead.decrypt(raw, [self.key_id.encode()]).decode()
        except (InvalidTag, ValueError) as error:
            raise SealingError(f"a token does not open with key {self.key_id}") from error


def seal_event(
    event: CloudEvent[P], key: DataKey, *, redactions: int | None = None
) -> CloudEvent[P]:
    """`event` with its personal fields sealed by `key`, and `keyid`/`sealed` set; events
    without personal text come back unchanged (but for `redactions`)."""
    data = event.data
    paths: list[str] = []
    if has_personal_fields(type(data)):
        data, paths = rewrite_personal(data, key.seal)
    if not paths:
        if redactions is None:
            return event
        return with_sealing(event, data=data, keyid=None, sealed=None, redactions=redactions)
    return with_sealing(event, data=data, keyid=key.key_id, sealed=" ".join(paths),
                        redactions=redactions)  # fmt: skip


def open_value(value: Any, key: DataKey | None, *, missing: str = ERASED) -> Any:
    """`value` (a JSON-like tree: dicts, lists, strings) with every sealed string opened by
    `key`, or replaced by `missing` when there is no key (None: erased, by default)."""
    if isinstance(value, str):
        if not value.startswith(SEALED_PREFIX):
            return value
        return key.open(value) if key is not None else missing
    if isinstance(value, dict):
        return {name: open_value(item, key, missing=missing) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [open_value(item, key, missing=missing) for item in value]
    return value


# -- the key-encryption key -----------------------------------------------------------


@dataclass(frozen=True)
class WrappingKey:
    """The KEK's public half: all a producer needs to hand its data keys to the key store."""

    public: rsa.RSAPublicKey = field(repr=False)

    @classmethod
    def from_pem(cls, pem: bytes) -> WrappingKey:
        try:
            key = serialization.load_pem_public_key(pem)
        except ValueError as error:
            raise SealingError("the KEK public key is not a PEM public key") from error
        if not isinstance(key, rsa.RSAPublicKey) or key.key_size < 2048:
            raise SealingError("the KEK public key must be RSA, 2048 bits or more")
        return cls(key)

    @property
    def kek_id(self) -> str:
        """The KEK's fingerprint: the first 16 hex digits of SHA-256 of its DER form."""
        der = self.public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return hashlib.sha256(der).hexdigest()[:16]

    def wrap(self, key: DataKey) -> bytes:
        return self.public.encrypt(key.secret, _OAEP)


@dataclass(frozen=True)
class UnwrappingKey:
    """The KEK's private half, held by the key store's owner (the API) only."""

    private: rsa.RSAPrivateKey = field(repr=False)

    @classmethod
    def from_pem(cls, pem: bytes) -> UnwrappingKey:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as error:
            raise SealingError(
                "the KEK private key is not an unencrypted PEM private key"
            ) from error
        if not isinstance(key, rsa.RSAPrivateKey):
            raise SealingError("the KEK private key must be RSA")
        return cls(key)

    @property
    def wrapping(self) -> WrappingKey:
        return WrappingKey(self.private.public_key())

    def unwrap(self, key_id: str, wrapped: bytes) -> DataKey:
        try:
            secret = self.private.decrypt(wrapped, _OAEP)
        except ValueError as error:
            raise SealingError(f"data key {key_id} was not wrapped by this KEK") from error
        return DataKey(key_id, secret)


def generate_kek() -> tuple[bytes, bytes]:
    """A new KEK: (private PEM, public PEM)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=KEK_BITS)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem
