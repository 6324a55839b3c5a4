"""The FastAPI app: REST for checkpoints, sessions, devices and metrics; /v1/stream for audio.

With a token configured, every route but /health and the page at / needs
`Authorization: Bearer TOKEN` (401 otherwise), /docs and /openapi.json included; the socket
takes it as `?token=` or in its `open` message. On loopback, only requests addressed to a
loopback name are answered (DNS rebinding); server/access.py has the rules.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.middleware.trustedhost import TrustedHostMiddleware

from server.access import token_matches, trusted_hosts
from server.catalog import CheckpointCatalog
from server.config import ServerConfig
from server.controllers import start_controllers
from server.devices import DeviceList
from server.errors import ServerError, TooManySessions
from server.host import SessionHost
from server.metrics import ServerMetrics
from server.protocol import PROTOCOL_VERSION, SessionSpec
from server.version import version
from server.ws import StreamHandler

PAGE = Path(__file__).resolve().parent.parent / "clients" / "web"


def create_app(config: ServerConfig) -> FastAPI:
    catalog = CheckpointCatalog(
        config.models_dir, config.backend, config.threads, warm_batches=config.max_sessions
    )
    metrics = ServerMetrics()
    host = SessionHost(catalog, config, metrics)
    # Opened here, not in the lifespan, so a bad port or map is a one-line error at start.
    controllers = start_controllers(
        host, config.midi_in, config.midi_map, config.osc_port, config.osc_host
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        host.start()  # the catalog loaded every checkpoint already, before the first client
        try:
            yield
        finally:
            for controller in controllers:
                controller.close()
            host.stop()

    guarded = config.token is not None  # then the API's description is behind it too (below)
    app = FastAPI(title="Bandmate", version=version(), lifespan=lifespan,
                  docs_url=None if guarded else "/docs", redoc_url=None if guarded else "/redoc",
                  openapi_url=None if guarded else "/openapi.json")  # fmt: skip
    app.state.host, app.state.catalog, app.state.metrics = host, catalog, metrics
    hosts = trusted_hosts(config)
    if hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts, www_redirect=False)
    device_list = DeviceList()

    def authorized(request: Request) -> None:
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else None
        if not token_matches(config.token, given):
            raise HTTPException(401, "missing or wrong token", {"WWW-Authenticate": "Bearer"})

    auth = [Depends(authorized)]

    @app.get("/health")
    def health() -> dict[str, object]:
        return {"status": "ok", "sessions": len(host.all()),
                "batch_window_ms": config.batch_window_ms}  # fmt: skip

    @app.get("/v1/version", dependencies=auth)
    def version_route() -> dict[str, object]:
        return {"bandmate": version(), "protocol": PROTOCOL_VERSION}

    @app.get("/v1/checkpoints", dependencies=auth)
    def checkpoints() -> list[dict[str, object]]:
        return [entry.describe() for entry in catalog.entries.values()]

    @app.get("/v1/sessions", dependencies=auth)
    def list_sessions() -> list[dict[str, object]]:
        return [hosted.describe() for hosted in host.all()]

    @app.post("/v1/sessions", status_code=201, dependencies=auth)
    async def create_session(spec: SessionSpec) -> dict[str, object]:
        try:
            hosted = await asyncio.to_thread(host.create, spec)
        except TooManySessions as exc:
            raise HTTPException(429, str(exc)) from None
        except ServerError as exc:
            raise HTTPException(400, str(exc)) from None
        return hosted.describe()

    @app.get("/v1/sessions/{session_id}", dependencies=auth)
    def inspect_session(session_id: str) -> dict[str, object]:
        hosted = host.get(session_id)
        if hosted is None:
            raise HTTPException(404, f"no session {session_id!r}")
        return hosted.describe()

    @app.delete("/v1/sessions/{session_id}", status_code=204, dependencies=auth)
    def delete_session(session_id: str) -> Response:
        if not host.remove(session_id):
            raise HTTPException(404, f"no session {session_id!r}")
        return Response(status_code=204)

    @app.get("/v1/devices", dependencies=auth)
    def devices() -> list[dict[str, object]]:
        try:
            return device_list.get()
        except ServerError as exc:
            raise HTTPException(503, str(exc)) from None

    @app.get("/metrics", dependencies=auth)
    def metrics_route() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    app.add_api_websocket_route("/v1/stream", StreamHandler(config, host, metrics))

    if guarded:

        @app.get("/openapi.json", dependencies=auth, include_in_schema=False)
        def openapi() -> JSONResponse:
            return JSONResponse(app.openapi())

        @app.get("/docs", dependencies=auth, include_in_schema=False)
        def docs() -> HTMLResponse:
            return get_swagger_ui_html(openapi_url="/openapi.json", title="Bandmate API")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(PAGE / "index.html")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        if name not in {p.name for p in PAGE.iterdir()}:  # never a path from the client
            raise HTTPException(404, "no such file")
        return FileResponse(PAGE / name)

    return app
