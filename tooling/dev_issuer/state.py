"""The issuer's state in one directory: its signing keys and the clients it registered."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.auth.jwk import PrivateKey, load_private_key, private_pem, public_jwk
from tooling.dev_issuer import DEV_CLIENT, SERVICE_CLIENTS, client_key_file

KEYS_FILE = "keys.json"
CLIENTS_FILE = "clients.json"


def _write_private(path: Path, key: PrivateKey) -> None:
    # Created 0600 from the start: no moment where another user could read it.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private_pem(key))
    os.chmod(path, 0o600)


def _write_json(path: Path, data: Any) -> None:
    # Replaced atomically, so a running issuer reloading it never reads half a file.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def rotate(directory: Path, *, retire: bool = False) -> str:
    """Add a new RS256 signing key first (it signs from now on); `retire` drops the others."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = public_jwk(key)["kid"]
    _write_private(directory / f"issuer-{kid}.pem", key)
    path = directory / KEYS_FILE
    entries = _read_json(path)["keys"] if path.exists() else []
    retired = entries if retire else []
    kept = [] if retire else entries
    _write_json(path, {"keys": [{"kid": kid, "file": f"issuer-{kid}.pem"}, *kept]})
    for entry in retired:
        (directory / entry["file"]).unlink(missing_ok=True)
    return kid


def register_client(
    directory: Path,
    client_id: str,
    *,
    scope: str,
    practice: str | None = "*",
    may_request_practice: bool = False,
    may_request_fhir_user: bool = False,
    key: PrivateKey | None = None,
) -> Path:
    """Register a client with a new RSA key pair (or `key`); returns its private key file."""
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = client_key_file(directory, client_id)
    _write_private(key_file, key)
    path = directory / CLIENTS_FILE
    clients = _read_json(path) if path.exists() else {}
    clients[client_id] = {
        "jwks": {"keys": [public_jwk(key)]},
        "scope": scope,
        # The practice claim put in every token unless the client may and does ask for another.
        "practice": practice,
        "may_request_practice": may_request_practice,
        "may_request_fhir_user": may_request_fhir_user,
    }
    _write_json(path, clients)
    return key_file


def init_state(directory: Path) -> None:
    """On first start: a signing key, the dev client and one client per service."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not (directory / KEYS_FILE).exists():
        rotate(directory)
    if (directory / CLIENTS_FILE).exists():
        return
    register_client(
        directory,
        DEV_CLIENT,
        scope="system/*.cruds user/*.cruds system/Ops.r",
        may_request_practice=True,
        may_request_fhir_user=True,
    )
    for client_id in SERVICE_CLIENTS.values():
        # Services only read their peers (vread, _history).
        register_client(directory, client_id, scope="system/*.rs")


@dataclass(frozen=True)
class Client:
    """A registered client: its public keys by kid and what it may ask for."""

    client_id: str
    keys: dict[str, dict[str, Any]]
    scope: tuple[str, ...]
    practice: str | None
    may_request_practice: bool
    may_request_fhir_user: bool


class _Reloading:
    """A JSON file parsed again whenever it changes, so `rotate` needs no restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._value: Any = None

    def current(self) -> Any:
        stat = self.path.stat()
        stamp = (stat.st_mtime_ns, stat.st_ino)
        if stamp != self._stamp:
            self._value, self._stamp = self.parse(_read_json(self.path)), stamp
        return self._value

    def parse(self, data: Any) -> Any:
        return data


class KeyRing(_Reloading):
    """The issuer's signing keys: the first signs, all are published."""

    def parse(self, data: Any) -> list[tuple[str, PrivateKey]]:
        return [(e["kid"], load_private_key(self.path.parent / e["file"])) for e in data["keys"]]

    def signing_key(self) -> tuple[str, PrivateKey]:
        return self.current()[0]

    def jwks(self) -> dict[str, Any]:
        """The public keys, marked for RS256 signatures."""
        keys = [public_jwk(key) | {"use": "sig", "alg": "RS256"} for _, key in self.current()]
        return {"keys": keys}


class ClientRegistry(_Reloading):
    """The registered clients, by client_id."""

    def parse(self, data: Any) -> dict[str, Client]:
        clients = {}
        for client_id, entry in data.items():
            keys = {k["kid"]: k for k in entry["jwks"]["keys"]}
            clients[client_id] = Client(
                client_id,
                keys,
                tuple(entry["scope"].split()),
                entry.get("practice"),
                bool(entry.get("may_request_practice")),
                bool(entry.get("may_request_fhir_user")),
            )
        return clients

    def get(self, client_id: str) -> Client | None:
        return self.current().get(client_id)

    def scopes(self) -> list[str]:
        return sorted({s for c in self.current().values() for s in c.scope})


def verification_key(jwk: dict[str, Any], alg: str) -> Any:
    """The key object PyJWT verifies `alg` with (raises if the key cannot do `alg`)."""
    return jwt.PyJWK(jwk, algorithm=alg).key
