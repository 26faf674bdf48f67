"""The baseline: a bare FastAPI endpoint that parses, validates and echoes an Observation.

Served as `python -m bench.baseline` by uvicorn exactly as shared.cli serves a service, so the
benchmark's creates/s can be read against the cost of HTTP, JSON and fhir.resources alone.
"""

from __future__ import annotations

import os

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fhir.resources.R4B.observation import Observation

FHIR_JSON = "application/fhir+json; charset=utf-8"


def create_app() -> FastAPI:
    app = FastAPI(title="benchmark baseline")

    @app.post("/fhir/Observation", status_code=201)
    async def echo(request: Request) -> Response:
        data = orjson.loads(await request.body())
        Observation.model_validate(data)
        return Response(orjson.dumps(data), status_code=201, media_type=FHIR_JSON)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok", "service": "baseline"})

    return app


def main() -> None:
    uvicorn.run(
        create_app(),
        host=os.environ.get("BENCH_BASELINE_HOST", "127.0.0.1"),
        port=int(os.environ["BENCH_BASELINE_PORT"]),
        log_level=os.environ.get("BENCH_BASELINE_LOG_LEVEL", "warning"),
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
