"""Wire security into a service: the verifier, the middleware, CORS and SMART discovery."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response

from shared.auth.keys import IssuerKeys, StaticKeys
from shared.auth.middleware import Authentication
from shared.auth.tokens import TokenVerifier
from shared.fhir.http import fhir_response
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

OPS_SCOPE = "system/Ops.r"
SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


class AuthConfigError(RuntimeError):
    """The service would start open or unable to check a single token."""


def build_verifier(settings: ServiceSettings) -> TokenVerifier | None:
    """The verifier the settings describe; None only when auth is disabled explicitly."""
    if settings.auth_disabled:
        log.warning("AUTH_DISABLED: %s checks no token", settings.service_name)
        return None
    prefix = settings.service_name.upper()
    if not settings.auth_issuer:
        raise AuthConfigError(
            f"{prefix}_AUTH_ISSUER is not set: name the identity provider whose tokens this "
            f"service accepts (or set {prefix}_AUTH_DISABLED=true for an open development server)"
        )
    keys: IssuerKeys | StaticKeys
    if settings.auth_jwks:
        document = settings.auth_jwks
        if not document.lstrip().startswith("{"):
            document = Path(document).read_text()
        keys = StaticKeys(orjson.loads(document))
    else:
        keys = IssuerKeys(settings.auth_issuer, min_refresh_s=settings.auth_jwks_min_refresh_s)
    return TokenVerifier(
        keys,
        issuer=settings.auth_issuer,
        practice_claim=settings.auth_practice_claim,
        clock_skew_s=settings.auth_clock_skew_s,
        max_token_bytes=settings.auth_max_token_bytes,
    )


def install_security(app: FastAPI, settings: ServiceSettings) -> TokenVerifier | None:
    """Add the token check (inside) and CORS (outside, so preflights need no token)."""
    verifier = build_verifier(settings)
    app.state.auth = verifier
    app.add_middleware(
        Authentication,
        verifier=verifier,
        base_path=settings.base_path,
        audience=audience(settings),
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Accept",
                "If-Match",
                "If-None-Exist",
                "If-None-Match",
                "If-Modified-Since",
                "Prefer",
                "traceparent",
            ],
            expose_headers=["Location", "Content-Location", "ETag", "Last-Modified"],
            max_age=600,
        )

    @app.get(
        f"{settings.base_path}/.well-known/smart-configuration",
        tags=["system"],
        summary="SMART configuration",
    )
    async def smart_configuration(_request: Request) -> Response:
        return fhir_response(smart_configuration_document(settings, verifier))

    return verifier


def audience(settings: ServiceSettings) -> str:
    """The `aud` tokens must carry: configured, or the service's own listening base."""
    if settings.auth_audience:
        return settings.auth_audience
    return f"http://{settings.host}:{settings.port}{settings.base_path}"


def token_endpoint(settings: ServiceSettings, verifier: TokenVerifier | None) -> str:
    """The issuer's token endpoint: configured, or as its metadata names it."""
    if settings.auth_token_endpoint:
        return settings.auth_token_endpoint
    metadata = verifier.keys.metadata() if verifier is not None else {}
    found = metadata.get("token_endpoint")
    return found if isinstance(found, str) else f"{settings.auth_issuer.rstrip('/')}/token"


def smart_configuration_document(
    settings: ServiceSettings, verifier: TokenVerifier | None
) -> dict[str, Any]:
    """What a SMART Backend Services client needs to get a token for this service."""
    return {
        "issuer": settings.auth_issuer,
        "jwks_uri": (verifier.keys.metadata() if verifier else {}).get("jwks_uri"),
        "token_endpoint": token_endpoint(settings, verifier),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": ["system/*.cruds", "user/*.cruds", "system/*.rs", OPS_SCOPE],
        "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
    }


def rest_security(settings: ServiceSettings, verifier: TokenVerifier | None) -> dict[str, Any]:
    """CapabilityStatement.rest.security: SMART-on-FHIR and where to get a token."""
    if verifier is None:
        return {"cors": bool(settings.cors_origins), "description": "Authentication is disabled."}
    return {
        "cors": bool(settings.cors_origins),
        "service": [
            {
                "coding": [{"system": SECURITY_SERVICE, "code": "SMART-on-FHIR"}],
                "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)",
            }
        ],
        "extension": [
            {
                "url": OAUTH_URIS,
                "extension": [
                    {"url": "token", "valueUri": token_endpoint(settings, verifier)},
                ],
            }
        ],
        "description": (
            "Bearer JWT access tokens (RS256 or ES384) from the configured issuer; SMART v2 "
            "scopes per interaction; a practice claim limits patient data to that practice."
        ),
    }
