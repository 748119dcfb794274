"""The FastAPI application: read endpoints, token-guarded writes, the page at ``/``, offline docs.

Errors are JSON with a ``detail`` that says what was wrong: 422 names the field and why, 404
names the unknown id (or the missing capability), 409 a clash, 401/403 a missing or wrong token,
413 a body over the limit, 415 a body that is not JSON. Anything unexpected is logged with its
traceback on the server and answered with a bare 500, so no request can leak server internals.

Speed (each measured in ``docs/serving.md``): request bodies are parsed and validated in one
step by pydantic-core (``model_validate_json``) and answers written with orjson, skipping
FastAPI's generic body and response handling; answers for a user are cached per catalog version
(and every known user's top list is precomputed at start-up); requests that need the model are
computed in natural batches on one worker thread (:mod:`textrec.serve.batching`). Writes run on
their own low-priority thread and publish a new state when done (:mod:`textrec.serve.backends`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from textrec.serve.backends import (
    CapabilityError,
    ConflictError,
    ServedArtifact,
    UnknownIdError,
    UnsupportedOptionError,
)
from textrec.serve.batching import MicroBatcher
from textrec.serve.guard import Guard, GuardSettings
from textrec.serve.schemas import (
    ID_PATTERN,
    MAX_K,
    MAX_QUERY_CHARS,
    AddItemRequest,
    AddItemResponse,
    DeleteItemResponse,
    ExplainRequest,
    ExplainResponse,
    ItemOut,
    QueryRequest,
    QueryResponse,
    RecommendRequest,
    RecommendResponse,
)

try:
    import orjson

    def _dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)
except ImportError:  # pragma: no cover - orjson is a dependency; the standard library is the fallback
    import json

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("textrec.serve")
_bearer = HTTPBearer(auto_error=False, description="the token given to `textrec serve` at start")
#: cached answers per artifact before the cache is emptied
RESPONSE_CACHE_SIZE = 50_000
#: answers whose request history is longer than this are not cached (the key would be large)
CACHE_MAX_HISTORY = 50
#: how many history items an answer echoes
HISTORY_ECHO = 20


def _field(loc: tuple | list) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def _validation_errors(errors: Sequence[dict]) -> list[dict[str, Any]]:
    # The input itself is never echoed back: it may be megabytes, and the message says enough.
    return [{"field": _field(e.get("loc", ())), "message": str(e.get("msg", "invalid")),
             "type": str(e.get("type", ""))} for e in errors]


def _invalid(errors: list[dict[str, Any]]) -> JSONResponse:
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return JSONResponse(status_code=422, content={"detail": f"invalid request: {summary}", "errors": errors})


def _json(body: bytes, status: int = 200) -> Response:
    return Response(content=body, status_code=status, media_type="application/json")


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI ``requestBody`` for a handler that parses its body itself."""
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": model.model_json_schema()}}}}


async def _parse(request: Request, model: type[BaseModel]) -> Any:
    raw = await request.body()  # at most the guard's body limit
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if raw and ctype != "application/json" and not (ctype.startswith("application/") and ctype.endswith("+json")):
        raise HTTPException(415, f"send the body as JSON with 'Content-Type: application/json' "
                                 f"(got '{ctype or 'no content type'}')")
    if not raw:
        raise RequestValidationError([{"loc": ("body",), "msg": "a JSON object is required", "type": "missing"}])
    try:
        return model.model_validate_json(raw)
    except ValidationError as e:
        raise RequestValidationError(e.errors(include_url=False, include_input=False)) from None


def _lower_priority() -> None:
    # writes (encoding text, saving the folder, precomputing top lists) yield the cores to readers
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):  # pragma: no cover - not Linux, or not permitted
        pass


class _Served:
    """Per-artifact serving helpers: the response cache and the batcher."""

    def __init__(self, artifact: ServedArtifact, cache: bool, batching: bool) -> None:
        self.a = artifact
        self.cache_enabled = cache
        artifact.cache_tops = cache
        self.version = -1
        self.cache: dict[Any, bytes] = {}
        self.batcher = MicroBatcher(self._run_batch, name=f"textrec-batch-{artifact.name}") if batching else None

    def _run_batch(self, items: Sequence[tuple]) -> list:
        # items carry the state they were resolved against; normally all the same one
        out: list[Any] = [None] * len(items)
        groups: dict[int, list[int]] = {}
        for n, it in enumerate(items):
            groups.setdefault(id(it[0]), []).append(n)
        for ns in groups.values():
            st = items[ns[0]][0]
            rows = self.a.top_batch([items[n][1:] for n in ns], st)
            for n, r in zip(ns, rows):
                out[n] = r
        return out

    def cached(self, key: Any, version: int) -> bytes | None:
        if not self.cache_enabled:
            return None
        if version != self.version:
            return None
        return self.cache.get(key)

    def store(self, key: Any, version: int, body: bytes) -> None:
        if not self.cache_enabled:
            return
        if version != self.version:
            if version < self.version:
                return
            self.cache, self.version = {}, version
        if len(self.cache) >= RESPONSE_CACHE_SIZE:
            self.cache = {}
        self.cache[key] = body

    async def top(self, st, user: int, history: np.ndarray, exclude: bool):
        if self.batcher is not None:
            return await self.batcher.submit((st, user, history, exclude))
        return await run_in_threadpool(self.a.top, history, user, exclude, st)


def create_app(artifacts: list[ServedArtifact], token: str | None = None, guard: GuardSettings | None = None,
               cache: bool = True, batching: bool = True, warm: bool = True) -> FastAPI:
    """The app serving ``artifacts`` (the first is the default); ``token`` guards the write endpoints.

    ``guard`` sets the body limit, allowed hosts and rate limit (:class:`GuardSettings`);
    ``cache`` and ``batching`` switch the response cache and request batching off (to measure
    what they buy); ``warm`` loads text encoders and precomputes top lists in the background at
    start-up.
    """
    if not artifacts:
        raise ValueError("serve needs at least one artifact")
    by_name = {a.name: a for a in artifacts}
    if len(by_name) != len(artifacts):
        raise ValueError(f"artifact names must be unique, got {[a.name for a in artifacts]}")
    served = {a.name: _Served(a, cache, batching) for a in artifacts}
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="textrec-write", initializer=_lower_priority)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if warm:
            for a in artifacts:
                writer.submit(_warm, a)
        yield
        for s in served.values():
            if s.batcher is not None:
                s.batcher.close()
        writer.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="textrec", version=_version(), lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Recommend, add and delete items from text, explain and write search queries "
                              "over saved textrec artifacts.")
    app.add_middleware(Guard, settings=guard or GuardSettings())
    app.state.served = served

    # ---- errors ------------------------------------------------------------------------
    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _invalid(_validation_errors(exc.errors()))

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
        # runs before the body is read: an unauthenticated client never gets its body parsed
        if token is None:
            raise HTTPException(403, "writes are disabled: start the server with a token "
                                     "(--token or TEXTREC_SERVE_TOKEN)")
        if cred is None or cred.scheme.lower() != "bearer":
            raise HTTPException(401, "this endpoint needs 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})
        if not secrets.compare_digest(cred.credentials.encode(), token.encode()):
            raise HTTPException(403, "wrong token")

    def item_dict(a: ServedArtifact, idx: int, score: float | None = None, rank: int | None = None) -> dict:
        cat = a.catalog
        return {"item_id": cat.ids[idx], "title": cat.title(idx),
                "score": None if score is None else round(float(score), 6), "rank": rank}

    def resolve(a: ServedArtifact, user: str | None, history: list[str] | None) -> tuple[int, np.ndarray]:
        try:
            if user is not None:
                return a.history_of(user)
            return -1, a.item_indexes(history or [])
        except UnknownIdError as e:
            raise HTTPException(404, str(e)) from None

    async def write(fn: Callable, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(writer, fn, *args)

    # ---- read endpoints ----------------------------------------------------------------
    @app.get("/health", summary="liveness and what each artifact serves")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "version": _version(), "models": [a.describe() for a in artifacts],
                "write_enabled": token is not None}

    @app.get("/items", response_model=list[ItemOut], summary="find catalog items by title words")
    def items(q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS)],
              k: Annotated[int, Query(ge=1, le=MAX_K)] = 20,
              model: Annotated[str | None, Query(max_length=64)] = None) -> list[ItemOut]:
        a = artifact(model)
        st = a.state
        hits = [i for i in st.model.catalog.search(q, k + len(st.deleted)) if st.model.catalog.ids[i] not in st.deleted]
        return [ItemOut(**item_dict(a, i)) for i in hits[:k]]

    @app.post("/recommend", response_class=Response, responses={200: {"model": RecommendResponse}},
              openapi_extra=_body_doc(RecommendRequest), summary="top-k items for a user or a history")
    async def recommend(request: Request) -> Response:
        req = await _parse(request, RecommendRequest)
        a = artifact(req.model)
        s = served[a.name]
        st = a.state
        hist_key = tuple(req.history) if req.history is not None else None
        key = (req.user, hist_key, req.k, req.exclude_history)
        cacheable = hist_key is None or len(hist_key) <= CACHE_MAX_HISTORY
        hit = s.cached(key, st.version) if cacheable else None
        if hit is not None:
            return _json(hit)
        u, hist = resolve(a, req.user, req.history)
        top = st.tops.get((u, req.exclude_history)) if u >= 0 and cache else None
        if top is None:
            top = await s.top(st, u, hist, req.exclude_history)
        idx, val = top
        body = _dumps({"model": a.name, "user": req.user,
                       "history": [item_dict(a, int(i)) for i in hist[-HISTORY_ECHO:]],
                       "items": [item_dict(a, int(i), v, r) for r, (i, v) in
                                 enumerate(zip(idx[:req.k].tolist(), val[:req.k].tolist()), 1)]})
        if cacheable:
            s.store(key, st.version, body)
        return _json(body)

    @app.post("/explain", response_model=ExplainResponse, openapi_extra=_body_doc(ExplainRequest),
              summary="why a user would like an item")
    async def explain(request: Request) -> ExplainResponse:
        req = await _parse(request, ExplainRequest)
        a = artifact(req.model)
        try:
            out = await run_in_threadpool(a.explain, req.user, req.item)
            idx = a.item_index(req.item)
        except UnknownIdError as e:
            raise HTTPException(404, str(e)) from None
        except CapabilityError as e:
            raise HTTPException(404, str(e)) from None
        return ExplainResponse(model=a.name, user=req.user, item=ItemOut(**item_dict(a, idx)),
                               explanation=out["explanation"], rating=out["rating"],
                               aspects=out["aspects"], cited=out["cited"])

    @app.post("/query", response_model=QueryResponse, openapi_extra=_body_doc(QueryRequest),
              summary="write a search query and retrieve with it")
    async def query(request: Request) -> Response:
        req = await _parse(request, QueryRequest)
        a = artifact(req.model)
        if a.query_engine is None:
            raise HTTPException(404, f"'{a.name}' has no query engine (its catalog has no item text)")
        _, hist = resolve(a, req.user, req.history)
        try:
            q, context, rows = await run_in_threadpool(a.query, hist, req.k, req.max_words)
        except UnsupportedOptionError as e:
            return _invalid([{"field": "max_words", "message": str(e), "type": "unsupported"}])
        return QueryResponse(model=a.name, user=req.user, query=q, method=a.query_engine.method,
                             context=context, items=[ItemOut(**item_dict(a, i, s, r))
                                                     for r, (i, s) in enumerate(rows, 1)])

    # ---- write endpoints ---------------------------------------------------------------
    @app.post("/items", response_model=AddItemResponse, status_code=201, dependencies=[Depends(require_token)],
              openapi_extra=_body_doc(AddItemRequest),
              responses={200: {"model": AddItemResponse, "description": "the item already existed with this text"}},
              summary="add a new item from its text (token; idempotent)")
    async def add_item(request: Request,
                       idempotency_key: Annotated[str | None, Header(max_length=128)] = None) -> Response:
        req = await _parse(request, AddItemRequest)
        a = artifact(req.model)
        if not a.can_add_items:
            raise HTTPException(404, f"'{a.name}' ({a.model_type}) cannot add items from text; "
                                     "serve a TextFusion, VQ-Rec or TextKNN artifact for that")
        rank_user = resolve(a, req.rank_for_user, None) if req.rank_for_user is not None else None
        if req.item_id is not None:
            item_id = req.item_id
        elif idempotency_key is not None:  # a retry with the same key names the same item
            item_id = "new-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:12]
        else:
            item_id = f"new-{uuid.uuid4().hex[:12]}"
        text = req.title if not req.description else f"{req.title}. {req.description}"
        try:
            idx, created = await write(a.put_item, item_id, req.title, text)
        except ConflictError as e:
            raise HTTPException(409, str(e)) from None
        except CapabilityError as e:
            raise HTTPException(404, str(e)) from None
        rank = None
        if rank_user is not None:
            rank = await run_in_threadpool(a.rank_of, rank_user[1], idx, rank_user[0])
        out = AddItemResponse(model=a.name, item=ItemOut(**item_dict(a, idx)), n_items=a.n_live_items(),
                              rank_for_user=rank, persisted=a.folder is not None, created=created)
        return _json(out.model_dump_json().encode(), 201 if created else 200)

    @app.delete("/items/{item_id}", response_model=DeleteItemResponse, dependencies=[Depends(require_token)],
                summary="stop recommending an item (token)")
    async def delete_item(item_id: Annotated[str, PathParam(pattern=ID_PATTERN)],
                          model: Annotated[str | None, Query(max_length=64)] = None) -> DeleteItemResponse:
        a = artifact(model)
        try:
            await write(a.delete_item, item_id)
        except UnknownIdError as e:
            raise HTTPException(404, str(e)) from None
        return DeleteItemResponse(model=a.name, item_id=item_id, n_items=a.n_live_items(),
                                  persisted=a.folder is not None)

    # ---- the page and the docs ---------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/docs", include_in_schema=False)
    def docs() -> FileResponse:
        # a packaged page that renders /openapi.json: works offline (no CDN)
        return FileResponse(STATIC / "docs.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _warm(a: ServedArtifact) -> None:
    try:
        a.warm()
    except Exception:  # a failed warm-up only costs speed: requests compute what they need
        log.exception("warm-up of '%s' failed", a.name)


def _version() -> str:
    from textrec._version import __version__

    return __version__
