"""``/docs`` (Swagger UI) without a CDN.

FastAPI's own page loads Swagger UI and a favicon from the internet, so it is blank offline. The assets here
come from the ``fastapi-offline`` package (a maintained PyPI package that ships them); its app factory cannot
build Herald's ``HeraldApp`` subclass, so only its files are used. ``/redoc`` is not served: ReDoc fetches its
own logo from its vendor's CDN whatever it is told, and one offline API page is enough.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(fastapi_offline.__file__).parent / "static"
PREFIX = "/static/docs"

# Swagger UI would otherwise put a badge from validator.swagger.io on the page (a request off this host).
SWAGGER_PARAMETERS = {"validatorUrl": None, "tryItOutEnabled": True}


def add_docs(app: FastAPI) -> None:
    """Register ``/docs`` and ``/docs/oauth2-redirect``; the app must be built with FastAPI's own docs off."""
    assert app.docs_url is None, "create the app with docs_url=None"
    app.mount(PREFIX, StaticFiles(directory=ASSETS), name="docs-assets")
    oauth2_redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{oauth2_redirect}",
            swagger_js_url=f"{root}{PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{root}{PREFIX}/favicon.png",
            swagger_ui_parameters=SWAGGER_PARAMETERS,
        )

    @app.get(oauth2_redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
