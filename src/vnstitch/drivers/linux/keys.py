"""WireGuard key pairs (Curve25519, RFC 7748) in memory, stored only as 0600 files.

X25519 comes from `cryptography` (OpenSSL's constant-time implementation); there is no fallback.
"""

from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey


def _clamp(key: bytes) -> bytes:
    """RFC 7748 section 5 clamping, as `wg genkey` applies it."""
    clamped = bytearray(key)
    clamped[0] &= 248
    clamped[31] &= 127
    clamped[31] |= 64
    return bytes(clamped)


def generate_private_key() -> bytes:
    """32 random bytes, clamped as `wg genkey` does (wireguard-go reports keys clamped)."""
    return _clamp(X25519PrivateKey.generate().private_bytes_raw())


def public_key(private: bytes) -> bytes:
    """X25519(private, 9): the public half, as `wg pubkey` prints it (before base64)."""
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def to_base64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def write_private_key(path: str, private: bytes) -> None:
    """Write a private key readable by root only (0600), atomically."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (to_base64(private) + "\n").encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_private_key(path: str) -> bytes | None:
    """The key in `path`; None where it is missing or not a base64 32-byte key (then a new one is made)."""
    try:
        with open(path, "rb") as handle:
            key = base64.b64decode(handle.read().strip(), validate=True)
    except (OSError, ValueError):
        return None
    return key if len(key) == 32 else None
