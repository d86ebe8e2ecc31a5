"""WireGuard key pairs (Curve25519, RFC 7748) in memory, stored only as 0600 files.

Public keys come from OpenSSL's X25519 (libcrypto, which Python's ssl module already loads:
~0.05 ms) and fall back to the pure-Python ladder below (~2-4 ms) where it cannot be loaded.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import os
import secrets
import threading

_P = 2**255 - 19
_A24 = 121665


def _x25519(scalar_bytes: bytes, u_bytes: bytes) -> bytes:
    """Montgomery-ladder scalar multiplication from RFC 7748 section 5."""
    k = bytearray(scalar_bytes)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    scalar = int.from_bytes(k, "little")
    x1 = int.from_bytes(u_bytes, "little") & ((1 << 255) - 1)
    x2, z2, x3, z3, swap = 1, 0, x1, 1, 0
    for bit in range(254, -1, -1):
        k_bit = (scalar >> bit) & 1
        swap ^= k_bit
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = k_bit
        a = (x2 + z2) % _P
        aa = a * a % _P
        b = (x2 - z2) % _P
        bb = b * b % _P
        e = (aa - bb) % _P
        c = (x3 + z3) % _P
        d = (x3 - z3) % _P
        da = d * a % _P
        cb = c * b % _P
        x3 = (da + cb) ** 2 % _P
        z3 = x1 * ((da - cb) ** 2) % _P
        x2 = aa * bb % _P
        z2 = e * (aa + _A24 * e) % _P
    if swap:
        x2, x3, z2, z3 = x3, x2, z3, z2
    return (x2 * pow(z2, _P - 2, _P) % _P).to_bytes(32, "little")


def generate_private_key() -> bytes:
    """32 random bytes, clamped as `wg genkey` does (wireguard-go reports keys clamped)."""
    key = bytearray(secrets.token_bytes(32))
    key[0] &= 248
    key[31] &= 127
    key[31] |= 64
    return bytes(key)


class _OpenSSL:
    """EVP_PKEY_new_raw_private_key(X25519) + EVP_PKEY_get_raw_public_key (OpenSSL >= 1.1.1)."""

    EVP_PKEY_X25519 = 1034
    _instance: "_OpenSSL | None | bool" = False
    _lock = threading.Lock()

    def __init__(self, lib: ctypes.CDLL):
        lib.EVP_PKEY_new_raw_private_key.restype = ctypes.c_void_p
        lib.EVP_PKEY_new_raw_private_key.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.EVP_PKEY_get_raw_public_key.restype = ctypes.c_int
        lib.EVP_PKEY_get_raw_public_key.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                                    ctypes.POINTER(ctypes.c_size_t)]
        lib.EVP_PKEY_free.argtypes = [ctypes.c_void_p]
        self.lib = lib

    @classmethod
    def get(cls) -> "_OpenSSL | None":
        with cls._lock:
            if cls._instance is False:
                cls._instance = None
                for name in ("libcrypto.so.3", "libcrypto.so.1.1", ctypes.util.find_library("crypto")):
                    try:
                        lib = ctypes.CDLL(name) if name else None
                        if lib is not None and hasattr(lib, "EVP_PKEY_new_raw_private_key"):
                            cls._instance = cls(lib)
                            break
                    except OSError:
                        continue
            return cls._instance  # type: ignore[return-value]

    def public_key(self, private: bytes) -> bytes | None:
        pkey = self.lib.EVP_PKEY_new_raw_private_key(self.EVP_PKEY_X25519, None, private, 32)
        if not pkey:
            return None
        try:
            out, size = ctypes.create_string_buffer(32), ctypes.c_size_t(32)
            if self.lib.EVP_PKEY_get_raw_public_key(pkey, out, ctypes.byref(size)) != 1 or size.value != 32:
                return None
            return out.raw
        finally:
            self.lib.EVP_PKEY_free(pkey)


def public_key(private: bytes) -> bytes:
    """X25519(private, 9): the public half, as `wg pubkey` prints it (before base64)."""
    openssl = _OpenSSL.get()
    if openssl is not None:
        public = openssl.public_key(private)
        if public is not None:
            return public
    return _x25519(private, (9).to_bytes(32, "little"))


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
    try:
        with open(path, "rb") as handle:
            return base64.b64decode(handle.read().strip())
    except (OSError, ValueError):
        return None
