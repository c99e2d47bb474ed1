import base64

import pytest
from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key

from core.errors import CryptoError, SettingsError
from core.security.crypto import (
    Binding,
    Ciphertext,
    KeyRing,
    generate_key_entry,
    generate_ssh_keypair,
)

ROW = Binding("customer", 7, "telegram_bot_token")


def ring(*entries: str) -> KeyRing:
    return KeyRing(entries)


def test_round_trip_and_key_id_in_ciphertext() -> None:
    entry = generate_key_entry()
    r = ring(entry)
    sealed = r.seal("123456:secret-bot-token", ROW)
    assert sealed.token.startswith(f"v1:{entry.split(':')[0]}:")
    assert "secret-bot-token" not in sealed.token
    assert "secret" not in repr(sealed)
    assert r.open(sealed, ROW) == "123456:secret-bot-token"


def test_same_plaintext_seals_differently() -> None:
    r = ring(generate_key_entry())
    assert r.seal("x" * 20, ROW).token != r.seal("x" * 20, ROW).token


@pytest.mark.parametrize(
    "other",
    [
        Binding("customer", 8, "telegram_bot_token"),  # another row
        Binding("customer", 7, "claude_credentials"),  # another field
        Binding("server", 7, "telegram_bot_token"),  # another table
    ],
)
def test_ciphertext_moved_elsewhere_does_not_open(other: Binding) -> None:
    r = ring(generate_key_entry())
    sealed = r.seal("the secret", ROW)
    with pytest.raises(CryptoError, match="copied from another row or field"):
        r.open(sealed, other)


def test_tampering_fails() -> None:
    r = ring(generate_key_entry())
    sealed = r.seal("the secret", ROW)
    prefix, blob = sealed.token.rsplit(":", 1)
    raw = bytearray(base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4)))
    raw[-1] ^= 0x01
    tampered = Ciphertext(prefix + ":" + base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("="))
    with pytest.raises(CryptoError):
        r.open(tampered, ROW)
    with pytest.raises(CryptoError):
        r.open(Ciphertext(prefix + ":!!notbase64"), ROW)


def test_rotation_across_two_keys() -> None:
    old, new = generate_key_entry(), generate_key_entry()
    sealed_old = ring(old).seal("rotate me", ROW)
    both = ring(old, new)
    assert both.primary_key_id == new.split(":")[0]
    assert both.open(sealed_old, ROW) == "rotate me"  # old ciphertexts still open
    assert both.needs_rotation(sealed_old)
    rotated = both.rotate(sealed_old, ROW)
    assert rotated.key_id == both.primary_key_id
    assert both.rotate(rotated, ROW) is rotated  # idempotent
    assert ring(new).open(rotated, ROW) == "rotate me"
    with pytest.raises(CryptoError, match="not in RACHEL_MASTER_KEYS"):
        ring(new).open(sealed_old, ROW)


@pytest.mark.parametrize(
    ("entries", "fragment"),
    [
        ([], "empty"),
        (["nocolon"], "KEY_ID:BASE64KEY"),
        (["k1:" + base64.urlsafe_b64encode(b"short").decode()], "32 bytes"),
        (["k1:@@@@"], "not base64"),
        (
            [generate_key_entry().replace(generate_key_entry().split(":")[0], "dup", 1)] * 2,
            "appears twice",
        ),
    ],
)
def test_bad_key_rings_name_the_setting(entries: list[str], fragment: str) -> None:
    with pytest.raises(SettingsError) as info:
        KeyRing(entries)
    assert info.value.name == "RACHEL_MASTER_KEYS"
    assert fragment in str(info.value)


def test_unknown_ciphertext_format() -> None:
    with pytest.raises(CryptoError):
        Ciphertext.parse("plaintext!")
    assert Ciphertext.parse("v1:k1:abc").key_id == "k1"


def test_ssh_keypair_is_ed25519_openssh() -> None:
    pair = generate_ssh_keypair("server-42")
    assert pair.private_openssh.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert pair.public_openssh.startswith("ssh-ed25519 ") and pair.public_openssh.endswith(
        " server-42"
    )
    private = load_ssh_private_key(pair.private_openssh.encode(), password=None)
    public = load_ssh_public_key(pair.public_openssh.encode())
    assert private.public_key().public_bytes_raw() == public.public_bytes_raw()  # type: ignore[union-attr]
    assert "PRIVATE" not in repr(pair)
