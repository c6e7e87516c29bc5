"""Error responses the framework would otherwise get wrong."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

BODY_NOT_JSON = {
    "type": "json_invalid",
    "loc": ["body"],
    "msg": "the body is not JSON text (UTF-8)",
    "input": None,
}


async def body_error_handler(request: Request, exc: Exception) -> Response:
    """A body FastAPI could not decode (not UTF-8, say) is a 422 like malformed JSON.

    FastAPI answers those with a bare 400 ("There was an error parsing the body"),
    which the OpenAPI document does not list; the cause is a ValueError.
    """
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400 and isinstance(exc.__cause__, ValueError):
        return JSONResponse({"detail": [BODY_NOT_JSON]}, status_code=422)
    return await http_exception_handler(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, body_error_handler)
