"""The Privacy page in the Airflow UI: a FastAPI app mounted at ``/privacy`` and a
top-level navigation entry that embeds it.

Thin on purpose: what the page shows is gathered and rendered by
``patron_privacy.privacy_page`` (tested without Airflow). A plugin's endpoints are
open to anyone unless they ask for the login, so every route depends on
:func:`require_login`, which is Airflow's ``get_user`` (a bearer token or the UI's
session cookie; 401 without), and the app has no docs or OpenAPI routes that would sit
outside that dependency.

Every Airflow process loads the plugins folder, task processes included, so this file
imports nothing of Airflow's API server until a request comes in.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

URL_PREFIX = "/privacy"
_bearer = HTTPBearer(auto_error=False)


async def require_login(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
):
    """Airflow's login check, imported when first needed: the user behind the bearer
    token or the session cookie, else HTTP 401."""
    from airflow.api_fastapi.core_api.security import get_user  # noqa: PLC0415

    return await get_user(request, None, credentials)


def create_app() -> FastAPI:
    app = FastAPI(
        title="Privacy",
        dependencies=[Depends(require_login)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.get("/", response_class=HTMLResponse)
    def privacy_page(request: Request) -> HTMLResponse:
        from patron_privacy import privacy_page as page  # noqa: PLC0415 - not at plugin load

        html = page.render_html(page.page_data(), base=request.scope.get("root_path", ""))
        # The page is about the library's current state: never served from a cache.
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @app.get("/releases/{period}/{name:path}")
    def release_file(period: str, name: str) -> FileResponse:
        from patron_privacy import privacy_page as page  # noqa: PLC0415

        path = page.release_file(page.exports_dir(), period, name)
        if path is None:
            raise HTTPException(status_code=404, detail="no such file in a published release")
        return FileResponse(path)

    return app


class PrivacyPagePlugin(AirflowPlugin):
    name = "patron_privacy"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Privacy page"}]
    external_views = [
        {
            "name": "Privacy",
            "href": f"{URL_PREFIX}/",
            "url_route": "privacy",
            "destination": "nav",
            "nav_top_level": True,
        }
    ]
