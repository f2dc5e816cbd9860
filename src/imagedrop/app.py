"""The aiohttp application factory: routes, middlewares, and resources in cleanup contexts."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from imagedrop.config import Settings
from imagedrop.ledger import Ledger
from imagedrop.providers import ImageProvider
from imagedrop.runtime import open_runtime, start_background, stop_background
from imagedrop.storage import ObjectStore
from imagedrop.tracing import Tracing
from imagedrop.web import folders, intake, keys, listings, ops, ui, wxo
from imagedrop.web.middleware import auth_middleware, error_middleware, request_middleware


def create_app(
    settings: Settings, *, public_url: str | None = None, ledger: Ledger | None = None,
    storage: ObjectStore | None = None, provider: ImageProvider | None = None,
    background: bool = True, tracing: Tracing | None = None,
) -> web.Application:
    """Build the service. Injected backends are used as given; `background=False` runs no
    workers (the API only records jobs)."""
    tracing = tracing or Tracing(settings.server.tracing)
    app = web.Application(
        client_max_size=settings.server.max_body_bytes,
        middlewares=[request_middleware(tracing), error_middleware, auth_middleware(
            settings.server.api_keys,
            also_open=("/metrics",) if settings.server.metrics_public else (),
            session=ui.api_credential)],
    )
    app[keys.SETTINGS] = settings
    url = public_url or settings.server.public_url or (
        f"http://{settings.server.host}:{settings.server.port}")

    async def resources(app: web.Application) -> AsyncIterator[None]:
        async with open_runtime(settings, public_url=url, ledger=ledger, storage=storage,
                                provider=provider, tracing=tracing) as rt:
            app[keys.RUNTIME] = rt
            app[keys.LEDGER] = rt.ledger
            app[keys.STORAGE] = rt.storage
            app[keys.EXECUTOR] = rt.executor
            app[keys.SIGNING_KEY] = rt.signing_key
            assert rt.planner is not None
            app[intake.PLANNER] = rt.planner
            assert rt.healer is not None
            app[intake.HEALER] = rt.healer
            if background:
                await start_background(rt)
            try:
                yield
            finally:
                if background:
                    await stop_background(rt)

    app.cleanup_ctx.append(resources)
    for module in (wxo, ops, listings, intake, folders):
        app.add_routes(module.routes)
    ui.setup(app)
    return app
