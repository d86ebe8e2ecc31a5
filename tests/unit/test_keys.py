"""WireGuard keys: RFC 7748 vectors, agreement with `wg pubkey`, 0600 files, no hand-written X25519."""

from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess

import pytest

from tests.tiers import require_tier
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from vnstitch.drivers.linux import keys

# RFC 7748 section 6.1: Alice's and Bob's key pairs and their shared secret.
ALICE_PRIVATE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_PUBLIC = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
BOB_PRIVATE = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
BOB_PUBLIC = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
SHARED = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")


def wg_binary() -> str:
    path = shutil.which("wg")
    require_tier("wireguard-tools", None if path else
                 "wg is not installed: run scripts/system-deps.sh (Debian package wireguard-tools)")
    return path


@pytest.mark.parametrize("private, public", [(ALICE_PRIVATE, ALICE_PUBLIC), (BOB_PRIVATE, BOB_PUBLIC)],
                         ids=["alice", "bob"])
def test_rfc7748_public_keys(private, public):
    assert keys.public_key(private) == public


def test_rfc7748_keys_agree_on_the_shared_secret():
    alice, bob = keys.public_key(ALICE_PRIVATE), keys.public_key(BOB_PRIVATE)
    assert X25519PrivateKey.from_private_bytes(ALICE_PRIVATE).exchange(X25519PublicKey.from_public_bytes(bob)) == SHARED
    assert X25519PrivateKey.from_private_bytes(BOB_PRIVATE).exchange(X25519PublicKey.from_public_bytes(alice)) == SHARED


def test_generated_keys_are_clamped_and_distinct():
    made = {keys.generate_private_key() for _ in range(32)}
    assert len(made) == 32
    for key in made:
        assert len(key) == 32 and key[0] & 7 == 0 and key[31] & 0x80 == 0 and key[31] & 0x40


def test_wg_pubkey_gives_the_same_public_key_and_accepts_the_key_file(tmp_path):
    wg = wg_binary()
    for _ in range(3):
        private = keys.generate_private_key()
        path = str(tmp_path / "keys" / "wg0.key")
        keys.write_private_key(path, private)
        with open(path, "rb") as handle:
            printed = subprocess.run([wg, "pubkey"], stdin=handle, capture_output=True, check=True, timeout=10)
        assert printed.stdout.decode().strip() == keys.to_base64(keys.public_key(private))
    generated = subprocess.run([wg, "genkey"], capture_output=True, check=True, timeout=10).stdout
    expected = subprocess.run([wg, "pubkey"], input=generated, capture_output=True, check=True, timeout=10).stdout
    assert keys.to_base64(keys.public_key(base64.b64decode(generated.strip()))) == expected.decode().strip()


def test_key_files_are_0600_and_read_back(tmp_path):
    private = keys.generate_private_key()
    path = str(tmp_path / "state" / "keys" / "wg1.key")
    keys.write_private_key(path, private)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert keys.read_private_key(path) == private
    with open(path, "rb") as handle:
        assert base64.b64decode(handle.read().strip()) == private  # the base64 line `wg` reads


@pytest.mark.parametrize("content", [b"", b"not base64!\n", base64.b64encode(b"short") + b"\n"],
                         ids=["empty", "garbage", "short"])
def test_a_damaged_key_file_reads_as_missing(tmp_path, content):
    path = tmp_path / "wg2.key"
    path.write_bytes(content)
    assert keys.read_private_key(str(path)) is None
    assert keys.read_private_key(str(tmp_path / "absent.key")) is None


def test_no_hand_written_x25519_remains():
    source = open(keys.__file__).read()
    assert "ctypes" not in source and "_x25519" not in source and "2**255" not in source
