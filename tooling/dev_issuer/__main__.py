"""`python -m tooling.dev_issuer serve|rotate`: run the dev issuer, or rotate its keys."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tooling.dev_issuer import DEFAULT_AUDIENCES, DEFAULT_DIR, DEFAULT_PORT


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tooling.dev_issuer")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve metadata, JWKS, sign-in and tokens")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument("--dir", type=Path, default=Path(DEFAULT_DIR))
    serve.add_argument("--issuer", help="the issuer URL (default http://<host>:<port>)")
    serve.add_argument(
        "--audience",
        action="append",
        help="a FHIR base URL the tokens are for (repeatable; default the three dev services)",
    )
    serve.add_argument("--token-lifetime", type=int, default=300, help="seconds")
    serve.add_argument(
        "--user-token-lifetime",
        type=int,
        default=3600,
        help="seconds, of a signed-in clinician's tokens (the pages' session lasts as long)",
    )
    serve.add_argument("--practice-claim", default="practice")
    serve.add_argument("--log-level", default="warning")
    rotate = commands.add_parser("rotate", help="add a new signing key, first in the JWKS")
    rotate.add_argument("--dir", type=Path, default=Path(DEFAULT_DIR))
    rotate.add_argument("--retire", action="store_true", help="remove every older key")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand."""
    args = _parser().parse_args(argv)
    if args.command == "rotate":
        from tooling.dev_issuer.state import init_state, rotate

        init_state(args.dir)
        kid = rotate(args.dir, retire=args.retire)
        print(f"new signing key {kid}{' (older keys retired)' if args.retire else ''}")
        return 0
    import uvicorn

    from tooling.dev_issuer.app import create_app

    app = create_app(
        args.dir,
        args.issuer or f"http://{args.host}:{args.port}",
        args.audience or DEFAULT_AUDIENCES,
        token_lifetime_s=args.token_lifetime,
        user_token_lifetime_s=args.user_token_lifetime,
        practice_claim=args.practice_claim,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
