# SPDX-License-Identifier: AGPL-3.0-only
"""A data owner's SuperNode key, and the hash `join` binds on-chain.

Flower authenticates SuperNodes with NIST-curve EC keys: the SuperNode signs with an
OpenSSH-format private key and the SuperLink admits the public key in PEM
(SubjectPublicKeyInfo). The on-chain `node_key_hash` is the sha256 of those PEM bytes,
which is also the digest inside their raw-codec CIDv1: the coordinator can fetch the
key by that CID and the content address proves it is the key the participant bound.

```
<data dir>/federation/node-key          # OpenSSH private key, mode 0600
<data dir>/federation/node-key.pub.pem  # the public key as the SuperLink stores it
```
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mercato.errors import InvalidKeyMaterialError

PRIVATE_NAME = "node-key"
PUBLIC_NAME = "node-key.pub.pem"


def node_key_hash(public_key_bytes: bytes) -> bytes:
    """The 32 bytes `join` binds: sha256 of the public key's PEM.

    Args:
        public_key_bytes: The PEM SubjectPublicKeyInfo bytes (`public_key_pem`).

    Returns:
        The digest.
    """
    return hashlib.sha256(public_key_bytes).digest()


def public_key_pem(key: ec.EllipticCurvePublicKey) -> bytes:
    """A public key as the SuperLink stores it (PEM SubjectPublicKeyInfo)."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def check_public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    """Parse a participant's public key, accepting only what Flower accepts.

    Raises:
        InvalidKeyMaterialError: not a PEM EC public key on a NIST P-curve.
    """
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise InvalidKeyMaterialError("SuperNode public key", 0, len(pem), str(exc)) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in (
        "secp256r1",
        "secp384r1",
        "secp521r1",
    ):
        raise InvalidKeyMaterialError(
            "SuperNode public key", 0, len(pem), "it is not an EC key on a NIST P-curve"
        )
    if public_key_pem(key) != pem:
        # One key, one byte string: otherwise two hashes could name the same key.
        raise InvalidKeyMaterialError(
            "SuperNode public key", 0, len(pem), "it is not in canonical PEM form"
        )
    return key


def load_or_create_node_key(directory: str | Path) -> tuple[Path, bytes]:
    """The SuperNode key in `directory`, created on first use.

    Args:
        directory: `<data dir>/federation`.

    Returns:
        The private key file's path (for `flower-supernode`) and the public key PEM.

    Raises:
        InvalidKeyMaterialError: the stored private key is not a usable EC key.
        OSError: the directory cannot be written.
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    private_path = root / PRIVATE_NAME
    if private_path.exists():
        try:
            key = serialization.load_ssh_private_key(private_path.read_bytes(), None)
        except ValueError as exc:
            raise InvalidKeyMaterialError("SuperNode private key", 0, 0, str(exc)) from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise InvalidKeyMaterialError("SuperNode private key", 0, 0, "it is not an EC key")
    else:
        key = ec.generate_private_key(ec.SECP384R1())
        data = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        # Created private (0600) from the start: never readable by others, even briefly.
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    pem = public_key_pem(key.public_key())
    (root / PUBLIC_NAME).write_bytes(pem)
    return private_path, pem
