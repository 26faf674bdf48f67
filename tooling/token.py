"""`make token`: an access token from the running dev issuer, for curl and the like.

The token comes through the real client-credentials flow with the `kemdr-dev` client; the
last line printed is the token alone (`TOKEN=$(make -s token | tail -1)`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import httpx

from shared.auth.client_credentials import ClientCredentials, TokenError
from shared.auth.jwk import load_private_key
from tooling.dev_issuer import DEV_CLIENT, client_key_file, dev_dir, dev_url


def practice_reference(value: str) -> str:
    """`*` stays; a bare id becomes `Organization/<id>`."""
    value = value.strip()
    if value in ("*", "") or value.startswith("Organization/"):
        return value or "*"
    return f"Organization/{value}"


def main(argv: list[str] | None = None) -> int:
    """Print a token for the given scope, practice and user; 1 with a reason if none."""
    parser = argparse.ArgumentParser(prog="python -m tooling.token")
    parser.add_argument("--scope", default="system/*.rs")
    parser.add_argument("--practice", default="*", help="* or an Organization id")
    parser.add_argument("--user", default="", help="fhirUser, e.g. Practitioner/123")
    parser.add_argument("--issuer", default=None, help="default: the issuer `make run` starts")
    parser.add_argument("--dir", type=Path, default=None, help="the issuer's state directory")
    args = parser.parse_args(argv)
    issuer = (args.issuer or dev_url()).rstrip("/")
    key_file = client_key_file(args.dir or dev_dir(), DEV_CLIENT)
    if not key_file.exists():
        print(
            f"{key_file} does not exist: `make run` starts the dev issuer, which creates it",
            file=sys.stderr,
        )
        return 1
    try:
        httpx.get(f"{issuer}/.well-known/smart-configuration", timeout=5)
    except httpx.TransportError:
        print(f"the dev issuer at {issuer} does not answer: is `make run` on?", file=sys.stderr)
        return 1
    params = {"practice": practice_reference(args.practice)}
    if args.user:
        params["fhir_user"] = args.user
    auth = ClientCredentials(
        DEV_CLIENT, load_private_key(key_file), issuer=issuer, scope=args.scope, params=params
    )
    try:
        token = auth.token()
    except TokenError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    user = f", fhirUser {args.user}" if args.user else ""
    print(f"# {DEV_CLIENT} from {issuer}: practice {params['practice']}{user}, scope {args.scope}")
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
