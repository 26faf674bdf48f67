"""Map every failure to a FHIR OperationOutcome in one place."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.db.engine import SHUTDOWN, StatementCancelled
from shared.fhir.errors import FHIRError, issue, operation_outcome, statement_stopped
from shared.fhir.http import fhir_response
from shared.log_safety import where_it_failed

log = logging.getLogger(__name__)

_HTTP_CODES = {404: "not-found", 405: "not-supported", 413: "too-costly"}


def install_error_handlers(app: FastAPI) -> None:
    """Register handlers so no error leaves the service as anything but an OperationOutcome."""

    @app.exception_handler(FHIRError)
    async def fhir_error(_request: Request, exc: FHIRError) -> Response:
        return fhir_response(exc.outcome(), exc.status, exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else "Request failed"
        if exc.status_code == 404:
            detail = f"No FHIR endpoint at {request.url.path}: unknown resource type or path"
        body = operation_outcome(
            [issue("error", _HTTP_CODES.get(exc.status_code, "processing"), detail)]
        )
        return fhir_response(body, exc.status_code, dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> Response:
        issues = [
            issue(
                "error",
                "invalid",
                str(err.get("msg")),
                [".".join(str(p) for p in err.get("loc", ()))],
            )
            for err in exc.errors()
        ]
        return fhir_response(operation_outcome(issues), 400)

    @app.exception_handler(StatementCancelled)
    async def stopped(request: Request, exc: StatementCancelled) -> Response:
        # The client asked for too much work (or left, or we stop): not a database outage.
        log.info("statement stopped (%s): %s %s", exc.reason, request.method, request.url.path)
        error = statement_stopped(exc.timeout_ms, exc.reason, exc.reason == SHUTDOWN)
        return fhir_response(error.outcome(), error.status, error.headers)

    @app.exception_handler(IntegrityError)
    async def conflict(_request: Request, _exc: IntegrityError) -> Response:
        # Two writers raced on the same id; nothing was written by the loser.
        body = operation_outcome(
            [issue("error", "conflict", "A concurrent write conflicted with this one; retry it")]
        )
        return fhir_response(body, 409)

    @app.exception_handler(DataError)
    async def bad_value(_request: Request, _exc: DataError) -> Response:
        body = operation_outcome(
            [issue("error", "value", "A value is out of range for storage (too long or too large)")]
        )
        return fhir_response(body, 422)

    @app.exception_handler(OperationalError)
    async def unavailable(request: Request, exc: OperationalError) -> Response:
        # PostgreSQL "program limit exceeded" (54xxx) is the request's fault, not an outage.
        if str(getattr(exc.orig, "sqlstate", "") or "").startswith("54"):
            return await bad_value(request, exc)
        log.error("database unavailable: %s", type(exc).__name__)
        body = operation_outcome(
            [issue("error", "transient", "The database is unavailable; retry later")]
        )
        return fhir_response(body, 503, {"Retry-After": "5"})

    # Innermost middleware: inside the security and audit layers, so a 500 is still audited
    # with its caller.
    app.add_middleware(ErrorBarrier)


class ErrorBarrier:
    """Pure ASGI middleware: an unexpected exception becomes a 500 OperationOutcome here and
    goes no further, logged by place only (the server would log its message, which may
    quote patient data)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            log.error("unexpected %s", where_it_failed(exc))
            if not started:
                body = operation_outcome([issue("fatal", "exception", "Internal server error")])
                await fhir_response(body, 500)(scope, receive, send)
