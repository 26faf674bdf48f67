"""The issuer's state in one directory: its signing keys, the clients it registered and the
dev users who sign in through its login form."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.auth.jwk import PrivateKey, load_private_key, private_pem, public_jwk
from tooling.dev_issuer import (
    DEV_CLIENT,
    DEV_PASSWORD,
    DEV_PRACTICES,
    SERVICE_CLIENTS,
    WEB_CLIENT,
    client_key_file,
    client_secret_file,
)

KEYS_FILE = "keys.json"
CLIENTS_FILE = "clients.json"
USERS_FILE = "users.json"
# The clinician pages of `make run` (outcomes on 8003); devrun and tests add their own.
DEFAULT_WEB_REDIRECTS = ("http://127.0.0.1:8003/app/callback", "http://localhost:8003/app/callback")
WEB_SCOPE = "openid fhirUser profile user/*.rs"
_PRACTICE_A, _PRACTICE_B = DEV_PRACTICES
# (username, name, role, fhirUser, practices, scopes): who can sign in on a dev machine.
DEV_USERS = (
    ("psychiatrist-a", "Dr Anna de Vries", "Psychiatrist", "Practitioner/dev-psychiatrist-a",
     [_PRACTICE_A], "user/*.cruds"),
    ("therapist-a", "Ben Jansen", "EMDR therapist", "Practitioner/dev-therapist-a",
     [_PRACTICE_A], "user/*.rs user/Observation.cruds"),
    ("psychiatrist-b", "Dr Carla Smit", "Psychiatrist", "Practitioner/dev-psychiatrist-b",
     [_PRACTICE_B], "user/*.cruds"),
    ("programme-lead", "Dr Daan Bakker", "Programme lead", "Practitioner/dev-programme-lead",
     ["*"], "user/*.rs"),
)  # fmt: skip


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


def _secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def register_web_client(
    directory: Path,
    client_id: str = WEB_CLIENT,
    *,
    redirect_uris: tuple[str, ...] = DEFAULT_WEB_REDIRECTS,
    scope: str = WEB_SCOPE,
) -> Path:
    """Register a confidential web client (code + PKCE, client_secret_post or _basic) with a
    new random secret; returns the file holding the secret."""
    secret = secrets.token_urlsafe(32)
    secret_file = client_secret_file(directory, client_id)
    fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")
    path = directory / CLIENTS_FILE
    clients = _read_json(path) if path.exists() else {}
    clients[client_id] = {
        "jwks": {"keys": []},
        # Only a digest: the secret is 256 random bits, so no slow hash is needed.
        "secret_sha256": _secret_digest(secret),
        "redirect_uris": list(redirect_uris),
        "scope": scope,
        "practice": None,
    }
    _write_json(path, clients)
    return secret_file


def add_redirect_uri(directory: Path, uri: str, client_id: str = WEB_CLIENT) -> None:
    """Register one more exact redirect URI for a web client (a running issuer reloads it)."""
    path = directory / CLIENTS_FILE
    clients = _read_json(path)
    uris = clients[client_id].setdefault("redirect_uris", [])
    if uri not in uris:
        uris.append(uri)
        _write_json(path, clients)


def _password_hash(password: str, salt: bytes) -> str:
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 100_000)
    return f"pbkdf2-sha256${salt.hex()}${digest.hex()}"


def add_dev_user(
    directory: Path,
    username: str,
    *,
    name: str,
    role: str,
    fhir_user: str,
    practices: list[str],
    scope: str,
    password: str = DEV_PASSWORD,
) -> None:
    """Add (or replace) one dev user; a running issuer reloads the file."""
    path = directory / USERS_FILE
    users = _read_json(path) if path.exists() else {}
    users[username] = {
        "name": name,
        "role": role,
        "fhirUser": fhir_user,
        "practices": practices,
        "scope": scope,
        "password": _password_hash(password, secrets.token_bytes(16)),
    }
    _write_json(path, users)


def write_dev_users(directory: Path) -> None:
    """The dev users' file: each with its name, role, fhirUser, practices and scopes."""
    for username, name, role, fhir_user, practices, scope in DEV_USERS:
        add_dev_user(
            directory,
            username,
            name=name,
            role=role,
            fhir_user=fhir_user,
            practices=practices,
            scope=scope,
        )


def init_state(directory: Path) -> None:
    """On first start: a signing key, the dev client, one client per service, the clinician
    pages' web client and the dev users."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not (directory / KEYS_FILE).exists():
        rotate(directory)
    if not (directory / USERS_FILE).exists():
        write_dev_users(directory)
    if (directory / CLIENTS_FILE).exists():
        # A state made before the web client existed gains it.
        if WEB_CLIENT not in _read_json(directory / CLIENTS_FILE):
            register_web_client(directory)
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
    register_web_client(directory)


@dataclass(frozen=True)
class Client:
    """A registered client: its public keys by kid and what it may ask for."""

    client_id: str
    keys: dict[str, dict[str, Any]]
    scope: tuple[str, ...]
    practice: str | None
    may_request_practice: bool
    may_request_fhir_user: bool
    # Web clients: the exact redirect URIs and the digest of the client secret.
    redirect_uris: tuple[str, ...] = ()
    secret_sha256: str | None = None

    def secret_matches(self, secret: str) -> bool:
        """Whether `secret` is this client's secret (constant time)."""
        if self.secret_sha256 is None:
            return False
        return hmac.compare_digest(_secret_digest(secret), self.secret_sha256)


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
                tuple(entry.get("redirect_uris", ())),
                entry.get("secret_sha256"),
            )
        return clients

    def get(self, client_id: str) -> Client | None:
        return self.current().get(client_id)

    def scopes(self) -> list[str]:
        return sorted({s for c in self.current().values() for s in c.scope})


@dataclass(frozen=True)
class DevUser:
    """A person who signs in through the login form."""

    username: str
    name: str
    role: str
    fhir_user: str
    practices: tuple[str, ...]
    scope: tuple[str, ...]
    password: str

    def password_matches(self, password: str) -> bool:
        """Whether `password` is this user's (constant-time comparison of the hashes)."""
        try:
            _scheme, salt, _digest = self.password.split("$")
            expected = _password_hash(password, bytes.fromhex(salt))
        except ValueError:
            return False
        return hmac.compare_digest(expected, self.password)

    def practice_claim(self) -> str | list[str]:
        """The practice claim: `*`, one `Organization/<id>`, or a list of them."""
        if "*" in self.practices:
            return "*"
        return self.practices[0] if len(self.practices) == 1 else list(self.practices)


class UserRegistry(_Reloading):
    """The dev users, by username, in the order of the file."""

    def parse(self, data: Any) -> dict[str, DevUser]:
        return {
            username: DevUser(
                username,
                entry["name"],
                entry["role"],
                entry["fhirUser"],
                tuple(entry["practices"]),
                tuple(entry["scope"].split()),
                entry["password"],
            )
            for username, entry in data.items()
        }

    def get(self, username: str) -> DevUser | None:
        return self.current().get(username)

    def all(self) -> list[DevUser]:
        return list(self.current().values())


def verification_key(jwk: dict[str, Any], alg: str) -> Any:
    """The key object PyJWT verifies `alg` with (raises if the key cannot do `alg`)."""
    return jwt.PyJWK(jwk, algorithm=alg).key
