"""Signing keys in files: Ed25519 by default, one PEM (PKCS#8) file per key, mode 0600, never logged.

A key file is named ``<keyid>.pem`` so the signer for any key listed in signed metadata can be found by its id.
A key file that its group or others can read is refused (:class:`InsecureKeyFile`): a private key that other
accounts could copy is a compromised key. When ``EDGECTL_KEY_PASSPHRASE`` is set, new key files are encrypted with
it and encrypted files are decrypted with it.

Public API: :class:`KeyPair`, :func:`generate_key`, :func:`save_key`, :func:`load_signer`, :func:`load_signers`,
:data:`PASSPHRASE_ENV`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from securesystemslib.signer import CryptoSigner, Key, SSlibKey

from edgectl.errors import ConfigError, InputFileError, InsecureKeyFile
from edgectl.fsutil import atomic_write_bytes

#: Environment variable holding the passphrase that encrypts key files (optional).
PASSPHRASE_ENV = "EDGECTL_KEY_PASSPHRASE"
KEY_SUFFIX = ".pem"


@dataclass(frozen=True)
class KeyPair:
    """A freshly generated key: the private half (to save) and its signer (to sign with now)."""

    private: Ed25519PrivateKey
    signer: CryptoSigner

    @property
    def public(self) -> SSlibKey:
        return self.signer.public_key

    @property
    def keyid(self) -> str:
        return str(self.signer.public_key.keyid)


def generate_key() -> KeyPair:
    """Return a fresh Ed25519 key; its keyid is the sha256 of the public key's canonical form."""
    private = Ed25519PrivateKey.generate()
    return KeyPair(private=private, signer=CryptoSigner(private))


def _passphrase() -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode("utf-8") if value else None


def ensure_key_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) if needed and return it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def save_key(pair: KeyPair, key_dir: Path) -> Path:
    """Write the private key of ``pair`` to ``key_dir/<keyid>.pem`` with mode 0600 (encrypted if a passphrase is set).

    Returns the file's path. The write is atomic: a crash leaves no partial key file.
    """
    key_dir = ensure_key_dir(key_dir)
    passphrase = _passphrase()
    encryption = BestAvailableEncryption(passphrase) if passphrase else NoEncryption()
    pem = pair.private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, encryption)
    path = key_dir / f"{pair.keyid}{KEY_SUFFIX}"
    atomic_write_bytes(path, pem, mode=0o600)
    return path


def check_key_file_mode(path: Path) -> None:
    """Raise :class:`InsecureKeyFile` when ``path`` is readable or writable by its group or others."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        raise InsecureKeyFile(
            f"Key file {path} has permissions {mode:04o}: other accounts on this machine can read it, so it must be "
            "treated as possibly copied.",
            hint=f"Run: chmod 600 {path} (and rotate the key if others may have read it).",
        )


def load_signer(path: Path, public_key: Key) -> CryptoSigner:
    """Load the private key in ``path`` as a signer for ``public_key`` (the key as listed in signed metadata).

    Raises:
        InputFileError: the file is missing or is not a matching private key.
        InsecureKeyFile: the file is group/world-accessible.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"Key file {path} does not exist.")
    check_key_file_mode(path)
    if not isinstance(public_key, SSlibKey):
        raise ConfigError(f"Key {public_key.keyid[:12]} is not a key type edgectl can sign with.")
    try:
        private = load_pem_private_key(path.read_bytes(), _passphrase())
    except TypeError as exc:
        # cryptography raises TypeError both for "encrypted, no passphrase given" and the reverse.
        raise InputFileError(
            f"Key file {path} is encrypted (or a passphrase was given for a plain one).",
            hint=f"Set {PASSPHRASE_ENV} to the passphrase the key was created with.",
        ) from exc
    except ValueError as exc:
        # The message of cryptography's error never contains key material, but keep ours generic anyway.
        raise InputFileError(
            f"Key file {path} is not a readable PEM private key (wrong passphrase or corrupt file)."
        ) from exc
    try:
        return CryptoSigner(private, public_key)
    except Exception as exc:  # KeyMismatchError / ValueError: the file holds some other key
        raise InputFileError(f"Key file {path} does not hold the private key of keyid {public_key.keyid}.") from exc


def load_signers(key_dir: Path, keys: Mapping[str, Key], keyids: Iterable[str]) -> list[CryptoSigner]:
    """Load every signer among ``keyids`` whose key file exists in ``key_dir`` (missing files are skipped).

    Callers decide whether the number found meets the role's threshold; this only refuses insecure or bad files.
    """
    signers = []
    for keyid in keyids:
        path = Path(key_dir) / f"{keyid}{KEY_SUFFIX}"
        if path.is_file():
            signers.append(load_signer(path, keys[keyid]))
    return signers
