"""The HTTP API (FastAPI), versioned under ``/v1``; every error is ``{"error": "<one line>"}`` with a 4xx
or 5xx status, and the server goes on serving. The OpenAPI docs are at ``/docs``."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from attemptctl.serving.errors import ServeError
from attemptctl.serving.inputs import MAX_BODY_BYTES, MAX_INPUTS
from attemptctl.serving.service import Prediction, Service


class PredictRequest(BaseModel):
    """A prompt and the input rows to answer with it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"prompt": "sst2", "inputs": [{"sentence": "a gorgeous, witty film"}]}]})

    prompt: str = Field(description="NAME (the latest version; targets before sources), NAME@V, or KIND:NAME[@V] "
                                    "with KIND target or source.")
    inputs: list[dict[str, Any]] = Field(description=f"1 to {MAX_INPUTS} objects with the task's fields, as in its "
                                                     "data files, string values.")


def create_app(service: Service) -> FastAPI:
    """The app over ``service``; shutting it down answers what is queued and stops the batcher."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        await asyncio.to_thread(service.close)  # drains the in-flight batch

    app = FastAPI(title="attemptctl serve", summary="Every registered prompt behind one frozen backbone.",
                  version="1", lifespan=lifespan)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    _add_error_handlers(app)

    @app.get("/health")
    def health() -> dict:
        """The backbone loaded and the number of servable prompts."""
        return service.health()

    @app.get("/v1/prompts")
    def prompts() -> dict:
        """Every servable prompt: ref, kind, variant, task, labels, sources, dev score, and whether it is the latest."""
        return {"prompts": service.catalog.listing()}

    @app.post("/v1/predict")
    async def predict(body: PredictRequest) -> dict:
        """Answer each input row with the prompt: label tasks ranked (label and every label's log-probability),
        free-form tasks generated (text); prompts that mix sources add each row's attention."""
        record, future = service.submit(body.prompt, body.inputs)
        return Prediction(record, await asyncio.wrap_future(future)).as_json()

    @app.post("/v1/reload")
    def reload() -> dict:
        """Take a new look at the registry: prompts registered (or removed) since the server started."""
        return service.reload()

    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServeError)
    async def refused(_request: Request, exc: ServeError) -> JSONResponse:
        return _error(exc.status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if "json" not in request.headers.get("content-type", ""):  # e.g. curl -d without a content type
            return _error(415, "send the body as JSON with content-type application/json (curl: --json BODY)")
        problem = exc.errors()[0]
        if problem.get("type") == "json_invalid":
            return _error(400, f"malformed JSON: {problem.get('ctx', {}).get('error', problem.get('msg'))}")
        where = _location(problem.get("loc", ()))
        if problem.get("type") == "extra_forbidden":
            return _error(422, f"{where}: unknown key; a request has prompt and inputs")
        return _error(422, f"{where}: {problem.get('msg', 'invalid')}")

    @app.exception_handler(Exception)
    async def crashed(_request: Request, exc: Exception) -> JSONResponse:  # a bug; uvicorn logs the traceback
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")

    @app.exception_handler(HTTPException)
    async def http(_request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _location(loc) -> str:
    """``("body", "inputs", 0, "x")`` -> ``inputs[0].x``; the body itself -> ``body``."""
    text = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


class BodyTooLarge(HTTPException):
    """A request body over the limit, found while it streams in: a 413 (an HTTP error, so FastAPI's body
    parsing passes it on instead of calling it malformed)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit:,} bytes; send fewer rows per request")


class BodyLimit:
    """Refuses a body over ``limit`` bytes: at once from its Content-Length, or while it streams in."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            response = _error(413, f"request body of {int(declared):,} bytes is over {self.limit:,}; "
                                   "send fewer rows per request")
            return await response(scope, receive, send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, counted, send)
