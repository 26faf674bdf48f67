"""The pages under /app: sign-in and sign-out, the programme page, a page per patient and the
charts they show. Every page reads the API as the signed-in clinician."""

from __future__ import annotations

import math
import re
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from services.outcomes.settings import OutcomesSettings
from services.outcomes.web.api import ApiRefused, FHIRApi
from services.outcomes.web.filters import ProgrammeFilters
from services.outcomes.web.oidc import OIDCClient, PendingLogin, PendingLogins, SignInError
from services.outcomes.web.sessions import (
    COOKIE,
    COOKIE_PATH,
    LOGIN_COOKIE,
    SessionStore,
    WebSession,
)
from services.outcomes.web.views import (
    Instruments,
    ScoreRow,
    adherence,
    course_rows,
    patient_name,
    programme_rows,
    response_headline,
    score_rows,
    top_value,
    top_values,
)
from shared.fhir.operations import Operation

HERE = Path(__file__).resolve().parent
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_FORMATS = {"svg": "image/svg+xml", "png": "image/png"}
# Pages hold patient data: never cached, never framed, no script, nothing from elsewhere.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
# An SVG opened on its own must not run anything either.
CHART_HEADERS = {
    "Cache-Control": "private, no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}
_templates = Environment(
    loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True)
)


def _operations(app: FastAPI) -> dict[str, Operation]:
    """The operations this service serves by name (`outcomes`, `programme-report`...): a page
    shows what the API can answer."""
    registry = app.state.fhir.registry
    found = {op.name: op for op in registry.operations}
    for definition in registry.resources.values():
        found |= {op.name: op for op in definition.operations}
    return found


def _draws(operations: dict[str, Operation], name: str) -> bool:
    """Whether an operation is served and answers `Accept: image/svg+xml` with its chart."""
    op = operations.get(name)
    return op is not None and _FORMATS["svg"] in op.renderers


def _safe_next(path: str | None) -> str:
    """Where to go after signing in: a page of ours, never another site."""
    if path and path.startswith("/app/") and not path.startswith("//") and "\\" not in path:
        return path
    return "/app/"


def install_pages(app: FastAPI, settings: OutcomesSettings) -> None:
    """Serve the clinician pages under /app on `app`."""
    oidc = OIDCClient(settings)
    sessions = SessionStore()
    logins = PendingLogins()
    instruments = Instruments(settings.canonical_base)
    router = APIRouter(prefix="/app", include_in_schema=False)

    def render(request: Request, template: str, status: int = 200, /, **context: Any
               ) -> HTMLResponse:  # fmt: skip
        session = sessions.get(request.cookies.get(COOKIE))
        html = _templates.get_template(template).render(session=session, **context)
        return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)

    def problem(request: Request, status: int, message: str) -> HTMLResponse:
        titles = {403: "Not allowed", 404: "Not found", 410: "Gone", 503: "Unavailable"}
        title = titles.get(status, "This page cannot be shown")
        return render(request, "problem.html", status, title=title, message=message)

    def to_login(request: Request) -> RedirectResponse:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/app/login?next={quote(target, safe='')}", status_code=303)

    def cookie(response: Response, name: str, value: str, max_age: int) -> None:
        # Lax: the issuer's redirect back to the callback is a top-level GET that must carry
        # the login cookie; a cross-site POST (sign-out) carries neither cookie.
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=COOKIE_PATH,
            secure=True,
            httponly=True,
            samesite="lax",
        )

    async def reading(
        request: Request, session: WebSession, build: Any
    ) -> Response:  # the page, a friendly refusal, or back to sign-in
        client = request.client.host if request.client else None
        try:
            async with FHIRApi(request.app, session, client) as api:
                return await build(api)
        except ApiRefused as refused:
            if refused.status == 401:  # the token expired or its key was retired
                sessions.drop(session.id)
                return to_login(request)
            messages = {
                403: "Your sign-in does not allow this.",
                404: "There is no such record, or it belongs to a practice that is not yours.",
            }
            text = messages.get(refused.status, refused.message or "The API refused the request.")
            return problem(request, refused.status, text)

    @router.get("", response_model=None)
    async def app_root() -> RedirectResponse:
        return RedirectResponse("/app/", status_code=307)

    @router.get("/static/pages.css", response_model=None)
    async def stylesheet() -> FileResponse:
        return FileResponse(
            HERE / "static" / "pages.css",
            media_type="text/css",
            headers={"Cache-Control": "public, max-age=3600"},
        )

    @router.get("/", response_model=None)
    async def programme_page(request: Request) -> Response:
        session = sessions.get(request.cookies.get(COOKIE))
        if session is None:
            return to_login(request)
        name = request.query_params.get("name", "").strip()[:100]
        filters = ProgrammeFilters.read(request.query_params)
        served = _operations(request.app)

        async def build(api: FHIRApi) -> Response:
            report, refusal = None, ""
            if "programme-report" in served:
                try:
                    report = await api.json("/$programme-report", filters.operation_inputs())
                except ApiRefused as refused:
                    if refused.status not in (400, 403):
                        raise
                    # The patient list may still be theirs to see.
                    refusal = (
                        "Your sign-in does not allow the programme report."
                        if refused.status == 403
                        else f"The filters cannot be applied: {refused.message}"
                    )
            search = {"_count": "50", "_sort": "family", **({"name": name} if name else {})}
            bundle = await api.json("/Patient", search)
            patients = [
                {"id": e["resource"]["id"], "name": patient_name(e["resource"])}
                for e in bundle.get("entry", [])
                if e.get("resource", {}).get("resourceType") == "Patient"
            ]
            return render(
                request,
                "programme.html",
                rows=programme_rows(report, instruments) if report else [],
                report=report is not None,
                refusal=refusal,
                adherence=adherence(report) if report else "—",
                sessions_counted=top_value(report, "sessions") if report else None,
                patients_counted=top_value(report, "patients") if report else None,
                notes=top_values(report, "note") if report else [],
                filters=filters,
                chart=_draws(served, "programme-report"),
                evidence_chart=_draws(served, "window-evidence"),
                patients=patients,
                total=bundle.get("total"),
                name=name,
            )

        return await reading(request, session, build)

    @router.get("/patients/{patient_id}", response_model=None)
    async def patient_page(request: Request, patient_id: str) -> Response:
        session = sessions.get(request.cookies.get(COOKIE))
        if session is None:
            return to_login(request)
        if not _ID.match(patient_id):
            return problem(request, 404, "There is no such record.")
        served = _operations(request.app)

        async def build(api: FHIRApi) -> Response:
            patient = await api.json(f"/Patient/{patient_id}")
            outcomes = await api.json(f"/Patient/{patient_id}/$outcomes")
            rows: list[ScoreRow] = score_rows(outcomes, instruments)
            return render(
                request,
                "patient.html",
                patient_id=patient_id,
                name=patient_name(patient),
                birth_date=patient.get("birthDate"),
                rows=rows,
                headline=response_headline(rows),
                course=course_rows(outcomes),
                chart=_draws(served, "outcomes"),
            )

        return await reading(request, session, build)

    async def chart(
        request: Request, path: str, fmt: str, inputs: list[tuple[str, str]] | None = None
    ) -> Response:
        session = sessions.get(request.cookies.get(COOKIE))
        if session is None:
            return Response("Sign in first", status_code=401, media_type="text/plain")
        media = _FORMATS.get(fmt)
        if media is None:
            return Response("format must be svg or png", status_code=400, media_type="text/plain")
        client = request.client.host if request.client else None
        async with FHIRApi(request.app, session, client) as api:
            answer = await api.raw(path, inputs, accept=media)
        kind = answer.headers.get("content-type", "").split(";")[0]
        if answer.status_code != 200 or kind != media:
            status = answer.status_code if answer.status_code >= 400 else 502
            return Response("No chart", status_code=status, media_type="text/plain")
        return Response(answer.content, media_type=media, headers=CHART_HEADERS)

    @router.get("/charts/patients/{patient_id}", response_model=None)
    async def patient_chart(request: Request, patient_id: str, format: str = "svg") -> Response:
        if not _ID.match(patient_id):
            return Response("No chart", status_code=404, media_type="text/plain")
        return await chart(request, f"/Patient/{patient_id}/$outcomes", format)

    @router.get("/charts/programme", response_model=None)
    async def programme_chart(request: Request, format: str = "svg") -> Response:
        filters = ProgrammeFilters.read(request.query_params).operation_inputs()
        return await chart(request, "/$programme-report", format, filters)

    @router.get("/charts/window-evidence", response_model=None)
    async def evidence_chart(request: Request, format: str = "svg") -> Response:
        filters = ProgrammeFilters.read(request.query_params).operation_inputs()
        return await chart(request, "/$window-evidence", format, filters)

    @router.get("/login", response_model=None)
    async def login(request: Request) -> Response:
        if not oidc.configured:
            message = (
                "Sign-in is not set up: set OUTCOMES_WEB_CLIENT_ID and OUTCOMES_WEB_CLIENT_SECRET "
                "(or _FILE) for a client registered at OUTCOMES_AUTH_ISSUER."
            )
            return problem(request, 503, message)
        pending = PendingLogin(next_path=_safe_next(request.query_params.get("next")))
        try:
            url = await oidc.authorization_url(pending)
        except SignInError as exc:
            return problem(request, 503, str(exc))
        response = RedirectResponse(url, status_code=303)
        cookie(response, LOGIN_COOKIE, logins.add(pending), max_age=600)
        return response

    @router.get("/callback", response_model=None)
    async def callback(request: Request) -> Response:
        params = request.query_params
        key = request.cookies.get(LOGIN_COOKIE)
        pending = logins.take(key) if key else None
        if pending is None:
            message = "This sign-in has expired or was started elsewhere. Please sign in again."
            return render(request, "problem.html", 400, title="Sign in again", message=message)
        if not secrets.compare_digest(params.get("state", ""), pending.state):
            message = "This sign-in does not match the one this browser started (state)."
            return render(request, "problem.html", 400, title="Sign in again", message=message)
        if params.get("error") or not params.get("code"):
            message = f"The sign-in did not complete ({params.get('error', 'no code')})."
            return render(request, "problem.html", 400, title="Not signed in", message=message)
        try:
            claims, access, lifetime = await oidc.redeem(params["code"], pending)
        except SignInError as exc:
            return render(request, "problem.html", 400, title="Not signed in", message=str(exc))
        lasts = min(settings.web_session_minutes * 60, lifetime)
        session = WebSession(
            access_token=access,
            name=str(claims.get("name") or claims.get("fhirUser") or claims["sub"]),
            fhir_user=claims.get("fhirUser"),
            expires=time.time() + lasts,
        )
        sessions.add(session)
        response = RedirectResponse(pending.next_path, status_code=303)
        cookie(response, COOKIE, session.id, max_age=math.ceil(lasts))
        response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH, secure=True, httponly=True)
        return response

    @router.post("/logout", response_model=None)
    async def logout(request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        session = sessions.get(request.cookies.get(COOKIE))
        if session is not None:
            if not secrets.compare_digest(form.get("csrf", ""), session.csrf):
                return problem(request, 403, "This sign-out did not come from our page.")
            sessions.drop(session.id)
        response = HTMLResponse(
            _templates.get_template("signed_out.html").render(session=None),
            headers=PAGE_HEADERS,
        )
        response.delete_cookie(COOKIE, path=COOKIE_PATH, secure=True, httponly=True)
        return response

    app.include_router(router)
