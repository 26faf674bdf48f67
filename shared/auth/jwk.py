"""JWK helpers shared by the dev issuer and the client side: public JWKs and thumbprints."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _b64(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode("ascii")


def _int(value: int, size: int | None = None) -> str:
    length = size if size is not None else max(1, (value.bit_length() + 7) // 8)
    return _b64(value.to_bytes(length, "big"))


def public_jwk(key: PrivateKey) -> dict[str, Any]:
    """The public half of an RSA or P-384 key as a JWK, its `kid` the RFC 7638 thumbprint."""
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        numbers = public.public_numbers()
        jwk: dict[str, Any] = {"kty": "RSA", "n": _int(numbers.n), "e": _int(numbers.e)}
    elif isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP384R1):
        point = public.public_numbers()
        jwk = {"kty": "EC", "crv": "P-384", "x": _int(point.x, 48), "y": _int(point.y, 48)}
    else:
        raise ValueError("only RSA and EC P-384 keys are supported")
    return {**jwk, "kid": thumbprint(jwk)}


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of a public JWK (its required members only)."""
    members = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("e", "kty", "n")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return _b64(hashlib.sha256(canonical.encode("ascii")).digest())


def signing_alg(key: PrivateKey, rsa_alg: str = "RS384") -> str:
    """The JWS algorithm a key signs with: `rsa_alg` for RSA, ES384 for P-384."""
    return rsa_alg if isinstance(key, rsa.RSAPrivateKey) else "ES384"


def private_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted (the file's mode protects it)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(path: str | Path) -> PrivateKey:
    """Read an unencrypted PEM private key (RSA or EC P-384)."""
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path}: not an RSA or EC private key")
    return key
