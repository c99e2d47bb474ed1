"""Secrets at rest: an AES-256-GCM key ring with bound ciphertexts, and SSH keys.

A ciphertext is the text `v1:<key id>:<base64url(nonce || sealed)>`. The key
id says which key of the ring opens it, so keys can rotate without a flag day.
The associated data binds it to its table, row and field: a ciphertext copied
to another row or another column fails to decrypt instead of silently handing
customer A's bot token to customer B's server.

The ring comes from `RACHEL_MASTER_KEYS` (`ID:BASE64KEY,...`, the last one
encrypts). Without it, a development ring is kept in the data directory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.errors import CryptoError, SettingsError
from core.security.redaction import register_secret

FORMAT_VERSION = "v1"
NONCE_BYTES = 12
KEY_BYTES = 32
_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    # validate=True: a stray character is an error, not silently skipped.
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


@dataclass(frozen=True)
class Binding:
    """Where a ciphertext belongs: the associated data of AES-GCM."""

    table: str
    row_id: int | str
    field: str

    def associated_data(self) -> bytes:
        return f"rachel-cloud/{self.table}/{self.row_id}/{self.field}".encode()


@dataclass(frozen=True)
class Ciphertext:
    """A sealed secret as stored in the database. Its repr shows only the key id."""

    token: str

    @property
    def key_id(self) -> str:
        return self.token.split(":", 2)[1]

    def __repr__(self) -> str:
        return f"Ciphertext(key_id={self.key_id!r})"

    @classmethod
    def parse(cls, token: str) -> Ciphertext:
        """Check the outer format of a stored ciphertext.

        Raises:
            CryptoError: the text is not a ciphertext of a known format.
        """
        parts = token.split(":", 2)
        if len(parts) != 3 or parts[0] != FORMAT_VERSION or not _KEY_ID.match(parts[1]):
            raise CryptoError("not a rachel-cloud ciphertext (unknown format)")
        return cls(token)


def generate_key_entry(now: datetime | None = None) -> str:
    """A new key ring entry, `ID:BASE64KEY`, to append to `RACHEL_MASTER_KEYS`."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d")
    return f"k{stamp}-{secrets.token_hex(3)}:{_b64encode(secrets.token_bytes(KEY_BYTES))}"


class KeyRing:
    """Encrypts with the newest key, decrypts with any key it holds."""

    def __init__(self, entries: Iterable[str]) -> None:
        """Build a ring from `ID:BASE64KEY` entries, oldest first.

        Raises:
            SettingsError: an entry is malformed, a key is not 32 bytes, or an id repeats.
        """
        self._keys: dict[str, AESGCM] = {}
        self._raw: dict[str, bytes] = {}
        self._order: list[str] = []
        for position, entry in enumerate(entries, start=1):
            key_id, sep, encoded = entry.strip().partition(":")
            where = f"entry {position}"
            if not sep or not _KEY_ID.match(key_id):
                raise SettingsError("RACHEL_MASTER_KEYS", f"{where} is not KEY_ID:BASE64KEY")
            try:
                raw = _b64decode(encoded.strip())
            except (binascii.Error, ValueError):
                raise SettingsError(
                    "RACHEL_MASTER_KEYS", f"{where} ({key_id}): key is not base64"
                ) from None
            if len(raw) != KEY_BYTES:
                raise SettingsError(
                    "RACHEL_MASTER_KEYS",
                    f"{where} ({key_id}): key must be {KEY_BYTES} bytes, got {len(raw)}",
                )
            if key_id in self._keys:
                raise SettingsError("RACHEL_MASTER_KEYS", f"key id {key_id} appears twice")
            register_secret(encoded.strip())
            self._keys[key_id] = AESGCM(raw)
            self._raw[key_id] = raw
            self._order.append(key_id)
        if not self._order:
            raise SettingsError("RACHEL_MASTER_KEYS", "the key ring is empty")

    @property
    def primary_key_id(self) -> str:
        """The id of the key new ciphertexts are sealed with (the newest)."""
        return self._order[-1]

    @property
    def key_ids(self) -> list[str]:
        return list(self._order)

    def seal(self, plaintext: str, binding: Binding) -> Ciphertext:
        """Encrypt `plaintext` under the primary key, bound to `binding`."""
        register_secret(plaintext)
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[self.primary_key_id].encrypt(
            nonce, plaintext.encode("utf-8"), binding.associated_data()
        )
        return Ciphertext(f"{FORMAT_VERSION}:{self.primary_key_id}:{_b64encode(nonce + sealed)}")

    def open(self, ciphertext: Ciphertext, binding: Binding) -> str:
        """Decrypt, checking the key id, the binding and integrity.

        Raises:
            CryptoError: unknown key id, another row's or field's ciphertext, or tampering.
        """
        key_id = ciphertext.key_id
        aead = self._keys.get(key_id)
        if aead is None:
            raise CryptoError(
                f"ciphertext of {binding.table}.{binding.field} (row {binding.row_id}) was "
                f"sealed with key {key_id!r}, which is not in RACHEL_MASTER_KEYS"
            )
        try:
            blob = _b64decode(ciphertext.token.split(":", 2)[2])
            plaintext = aead.decrypt(
                blob[:NONCE_BYTES], blob[NONCE_BYTES:], binding.associated_data()
            )
        except (InvalidTag, ValueError, binascii.Error):
            raise CryptoError(
                f"ciphertext of {binding.table}.{binding.field} (row {binding.row_id}) does not "
                "open: tampered, corrupted, or copied from another row or field"
            ) from None
        text = plaintext.decode("utf-8")
        register_secret(text)
        return text

    def derive_token(self, purpose: str, key_id: str | None = None) -> str:
        """A URL-safe secret derived from the primary key (or `key_id`) for `purpose`.

        The same purpose gives the same token (until the primary key changes),
        so a retried job can re-render what an earlier run sent without the
        token ever being stored.

        Raises:
            KeyError: `key_id` is not in the ring.
        """
        mac = hmac.new(
            self._raw[key_id or self.primary_key_id],
            b"rachel-cloud/derive/" + purpose.encode(),
            hashlib.sha256,
        )
        token = _b64encode(mac.digest())
        register_secret(token)
        return token

    def needs_rotation(self, ciphertext: Ciphertext) -> bool:
        return ciphertext.key_id != self.primary_key_id

    def rotate(self, ciphertext: Ciphertext, binding: Binding) -> Ciphertext:
        """Re-seal under the primary key; an already current ciphertext is returned as is."""
        if not self.needs_rotation(ciphertext):
            return ciphertext
        return self.seal(self.open(ciphertext, binding), binding)


@dataclass(frozen=True)
class SSHKeyPair:
    """An ed25519 key pair in OpenSSH formats. The private half is a secret."""

    private_openssh: str
    public_openssh: str

    def __repr__(self) -> str:
        return f"SSHKeyPair(public={self.public_openssh!r})"


def generate_ssh_keypair(comment: str = "rachel-cloud") -> SSHKeyPair:
    """A fresh ed25519 key pair: private key in OpenSSH PEM, public key one line."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode("ascii")
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode("ascii")
    )
    register_secret(private)
    return SSHKeyPair(private_openssh=private, public_openssh=f"{public} {comment}")
