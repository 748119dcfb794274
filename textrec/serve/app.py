"""The FastAPI application: read endpoints, one token-guarded write endpoint, the page at ``/``.

Errors are JSON with a ``detail`` that says what was wrong: 422 names the field and why, 404
names the unknown id (or the missing capability), 409 a clash (an item id that exists), 401/403
a missing or wrong token. Anything unexpected is logged with its traceback on the server and
answered with a bare 500, so no request can leak server internals.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from textrec.serve.backends import CapabilityError, ConflictError, ServedArtifact, UnknownIdError
from textrec.serve.schemas import (
    MAX_K,
    MAX_QUERY_CHARS,
    AddItemRequest,
    AddItemResponse,
    ExplainRequest,
    ExplainResponse,
    ItemOut,
    QueryRequest,
    QueryResponse,
    RecommendRequest,
    RecommendResponse,
)

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("textrec.serve")
_bearer = HTTPBearer(auto_error=False, description="the token given to `textrec serve` at start")


def _field(loc: tuple | list) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # The input itself is never echoed back: it may be megabytes, and the message says enough.
    return [{"field": _field(e.get("loc", ())), "message": str(e.get("msg", "invalid")),
             "type": str(e.get("type", ""))} for e in exc.errors()]


def create_app(artifacts: list[ServedArtifact], token: str | None = None) -> FastAPI:
    """The app serving ``artifacts`` (the first is the default); ``token`` guards ``POST /items``."""
    if not artifacts:
        raise ValueError("serve needs at least one artifact")
    by_name = {a.name: a for a in artifacts}
    if len(by_name) != len(artifacts):
        raise ValueError(f"artifact names must be unique, got {[a.name for a in artifacts]}")
    app = FastAPI(title="textrec", version=_version(),
                  description="Recommend, add new items from text, explain and write search queries "
                              "over saved textrec artifacts.")

    # ---- errors ------------------------------------------------------------------------
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return JSONResponse(status_code=422, content={"detail": f"invalid request: {summary}", "errors": errors})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail},
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        ref = uuid.uuid4().hex[:12]
        log.exception("error %s on %s %s", ref, request.method, request.url.path)
        return JSONResponse(status_code=500, content={"detail": f"internal error (reference {ref})"})

    def artifact(name: str | None) -> ServedArtifact:
        if name is None:
            return artifacts[0]
        if name not in by_name:
            raise HTTPException(404, f"unknown model '{name}'; served: {sorted(by_name)}")
        return by_name[name]

    def require_token(cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        if token is None:
            raise HTTPException(403, "adding items is disabled: start the server with a token "
                                     "(--token or TEXTREC_SERVE_TOKEN)")
        if cred is None or cred.scheme.lower() != "bearer":
            raise HTTPException(401, "this endpoint needs 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})
        if not secrets.compare_digest(cred.credentials.encode(), token.encode()):
            raise HTTPException(403, "wrong token")

    def item_out(a: ServedArtifact, idx: int, score: float | None = None, rank: int | None = None) -> ItemOut:
        return ItemOut(item_id=a.catalog.ids[idx], title=a.catalog.title(idx),
                       score=None if score is None else round(score, 6), rank=rank)

    def resolve(a: ServedArtifact, user: str | None, history: list[str] | None) -> tuple[int, np.ndarray]:
        try:
            if user is not None:
                return a.history_of(user)
            return -1, a.item_indexes(history or [])
        except UnknownIdError as e:
            raise HTTPException(404, str(e)) from None

    # ---- read endpoints ----------------------------------------------------------------
    @app.get("/health", summary="liveness and what each artifact serves")
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": _version(), "models": [a.describe() for a in artifacts],
                "write_enabled": token is not None}

    @app.get("/items", response_model=list[ItemOut], summary="find catalog items by title words")
    def items(q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS)],
              k: Annotated[int, Query(ge=1, le=MAX_K)] = 20,
              model: Annotated[str | None, Query(max_length=64)] = None) -> list[ItemOut]:
        a = artifact(model)
        return [item_out(a, i) for i in a.catalog.search(q, k)]

    @app.post("/recommend", response_model=RecommendResponse, summary="top-k items for a user or a history")
    def recommend(req: RecommendRequest) -> RecommendResponse:
        a = artifact(req.model)
        u, hist = resolve(a, req.user, req.history)
        recs = a.recommend(hist, req.k, user=u, exclude_history=req.exclude_history)
        return RecommendResponse(model=a.name, user=req.user,
                                 history=[item_out(a, int(i)) for i in hist[-20:]],
                                 items=[item_out(a, r.index, r.score, r.rank) for r in recs])

    @app.post("/explain", response_model=ExplainResponse, summary="why a user would like an item")
    def explain(req: ExplainRequest) -> ExplainResponse:
        a = artifact(req.model)
        try:
            idx = a.catalog.index(req.item)
            out = a.explain(req.user, req.item)
        except UnknownIdError as e:
            raise HTTPException(404, str(e)) from None
        except CapabilityError as e:
            raise HTTPException(404, str(e)) from None
        return ExplainResponse(model=a.name, user=req.user, item=item_out(a, idx),
                               explanation=out["explanation"], rating=out["rating"],
                               aspects=out["aspects"], cited=out["cited"])

    @app.post("/query", response_model=QueryResponse, summary="write a search query and retrieve with it")
    def query(req: QueryRequest) -> QueryResponse:
        a = artifact(req.model)
        if a.query_engine is None:
            raise HTTPException(404, f"'{a.name}' has no query engine (its catalog has no item text)")
        _, hist = resolve(a, req.user, req.history)
        q, context, rows = a.query(hist, req.k)
        return QueryResponse(model=a.name, user=req.user, query=q, method=a.query_engine.method,
                             context=context, items=[item_out(a, i, s, r) for r, (i, s) in enumerate(rows, 1)])

    # ---- write endpoint ----------------------------------------------------------------
    @app.post("/items", response_model=AddItemResponse, status_code=201,
              dependencies=[Depends(require_token)], summary="add a new item from its text (token)")
    def add_item(req: AddItemRequest) -> AddItemResponse:
        a = artifact(req.model)
        if not a.can_add_items:
            raise HTTPException(404, f"'{a.name}' ({a.model_type}) cannot add items from text; "
                                     "serve a VQ-Rec or TextKNN artifact for that")
        rank_user = None
        if req.rank_for_user is not None:
            rank_user = resolve(a, req.rank_for_user, None)
        item_id = req.item_id or f"new-{uuid.uuid4().hex[:10]}"
        text = req.title if not req.description else f"{req.title}. {req.description}"
        try:
            idx = a.add_item(item_id, req.title, text)
        except ConflictError as e:
            raise HTTPException(409, str(e)) from None
        except CapabilityError as e:
            raise HTTPException(404, str(e)) from None
        rank = a.rank_of(rank_user[1], idx, user=rank_user[0]) if rank_user is not None else None
        return AddItemResponse(model=a.name, item=item_out(a, idx), n_items=len(a.catalog),
                               rank_for_user=rank, persisted=a.folder is not None)

    # ---- the page ----------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _version() -> str:
    from textrec._version import __version__

    return __version__
