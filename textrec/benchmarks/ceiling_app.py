"""The ceiling of ``textrec bench load``: the serving stack answering a constant JSON body.

Same uvicorn, FastAPI and guard middleware as ``textrec serve``; the handler reads the body and
returns fixed bytes, so what it serves per second is the most the stack can on this machine.
(No ``from __future__ import annotations`` here: FastAPI must see the ``Request`` class itself.)
"""

import json

from fastapi import FastAPI, Request
from fastapi.responses import Response

from textrec.serve.guard import Guard, GuardSettings


def ceiling_app(body_bytes: int = 1200) -> FastAPI:
    """An app whose ``POST /recommend`` answers the same ``body_bytes`` of JSON to every request."""
    app = FastAPI()
    app.add_middleware(Guard, settings=GuardSettings())
    body = json.dumps({"items": [{"item_id": "x", "title": "t" * max(1, body_bytes - 40)}]}).encode()

    @app.post("/recommend")
    async def constant(request: Request) -> Response:
        await request.body()
        return Response(body, media_type="application/json")

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "models": []}

    return app
